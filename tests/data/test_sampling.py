import numpy as np
import pytest
import torch

from amlit.data.sampling import EpochShardSampler, ResumableLoader, mirror_flags
from amlit.errors import ConfigError


def epoch_batches(sampler: EpochShardSampler) -> list[list[int]]:
    order = list(sampler)
    step = sampler.batch_per_replica
    return [order[i : i + step] for i in range(0, len(order), step)]


def test_each_epoch_is_a_fresh_shuffle_of_distinct_samples_in_full_batches():
    sampler = EpochShardSampler(num_samples=50, global_batch=8, seed=3)
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = epoch_batches(sampler)
        assert len(batches) == 6 == len(sampler) // 8 and all(len(b) == 8 for b in batches)
        flat = [i for b in batches for i in b]
        assert len(set(flat)) == 48 and set(flat) <= set(range(50))  # 2 dropped, none repeated
        seen.append(flat)
    assert seen[0] != seen[1] != seen[2]
    again = EpochShardSampler(num_samples=50, global_batch=8, seed=3)
    again.set_epoch(1)
    assert list(again) == seen[1]  # a function of (seed, epoch) only
    other_seed = EpochShardSampler(num_samples=50, global_batch=8, seed=4)
    other_seed.set_epoch(1)
    assert list(other_seed) != seen[1]


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_split_each_global_batch_into_disjoint_slices_in_rank_order(world):
    single = EpochShardSampler(num_samples=70, global_batch=16, seed=1)
    ranks = [EpochShardSampler(70, 16, num_replicas=world, rank=r, seed=1) for r in range(world)]
    per_rank = [epoch_batches(s) for s in ranks]
    assert all(len(b) == len(per_rank[0]) for b in per_rank)  # same number of batches on every rank
    for t, global_batch in enumerate(epoch_batches(single)):
        assert [i for r in range(world) for i in per_rank[r][t]] == global_batch


def test_position_comes_from_the_batches_done_count_across_epochs():
    done = {"n": 0}
    sampler = EpochShardSampler(num_samples=40, global_batch=8, seed=0, batches_done=lambda: done["n"])
    reference = EpochShardSampler(num_samples=40, global_batch=8, seed=0)
    straight = []
    for epoch in range(3):
        reference.set_epoch(epoch)
        straight += epoch_batches(reference)  # 5 batches per epoch
    for n in (0, 3, 5, 7, 14):
        done["n"] = n
        epoch_end = (n // 5 + 1) * 5
        assert epoch_batches(sampler) == straight[n:epoch_end]  # from batch n to the end of its epoch


def test_loader_state_refuses_a_different_order():
    sampler = EpochShardSampler(num_samples=40, global_batch=8, seed=0, batches_done=lambda: 3)
    loader = ResumableLoader(list(range(40)), sampler)
    state = loader.state_dict()
    assert state["batches_done"] == 3 and loader.batch_size == 8
    loader.load_state_dict(state)
    other = ResumableLoader(list(range(40)), EpochShardSampler(num_samples=40, global_batch=4, seed=0))
    with pytest.raises(ConfigError, match="global batch_size"):
        other.load_state_dict(state)
    two_devices = ResumableLoader(list(range(40)), EpochShardSampler(40, 8, num_replicas=2, rank=1, seed=0))
    two_devices.load_state_dict(state)  # another device count resumes the same order
    assert two_devices.batch_size == 4


def test_loader_state_refuses_other_images_of_the_same_count():
    sampler = EpochShardSampler(num_samples=40, global_batch=8, seed=0, batches_done=lambda: 3)
    state = ResumableLoader(list(range(40)), sampler, listing_sha256="a" * 64).state_dict()
    assert state["listing_sha256"] == "a" * 64
    ResumableLoader(list(range(40)), sampler, listing_sha256="a" * 64).load_state_dict(state)
    renamed = ResumableLoader(list(range(40)), sampler, listing_sha256="b" * 64)
    with pytest.raises(ConfigError, match=r"same number \(40\) .* listing differs \(checkpoint aaaaaaaaaaaa"):
        renamed.load_state_dict(state)
    older = {k: v for k, v in state.items() if k != "listing_sha256"}  # a checkpoint from before the fingerprint
    renamed.load_state_dict(older)


def test_loader_state_warns_of_another_seed_everything_which_keys_the_mirror(monkeypatch):
    # the random mirror of each batch is keyed by seed_everything (PL_GLOBAL_SEED): a resume under another seed
    # trained every later batch with other mirrors, without a word (a warning, not a refusal: a requeued job with
    # seed_everything: true must still resume)
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")
    sampler = EpochShardSampler(num_samples=40, global_batch=8, seed=0, batches_done=lambda: 3)
    state = ResumableLoader(list(range(40)), sampler).state_dict()
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    resumed = ResumableLoader(list(range(40)), sampler)
    with pytest.warns(UserWarning, match=r"trained with seed_everything=0, this run has 7.* --seed_everything=0"):
        resumed.load_state_dict(state)
    older = {k: v for k, v in state.items() if k != "mirror_seed"}  # a checkpoint from before it was recorded
    resumed.load_state_dict(older)


def test_bad_batch_settings_are_config_errors():
    with pytest.raises(ConfigError, match="not divisible by 3 devices"):
        EpochShardSampler(num_samples=40, global_batch=8, num_replicas=3, rank=0)
    with pytest.raises(ConfigError, match="fewer than one global batch of 64"):
        EpochShardSampler(num_samples=40, global_batch=64)


def test_mirror_flags_are_a_fair_coin_per_position_and_reproducible():
    flags = np.stack([mirror_flags(0, n, 64) for n in range(200)])
    assert flags.dtype == bool and flags.shape == (200, 64)
    assert abs(flags.mean() - 0.5) < 0.02
    assert abs(flags[:, 0].mean() - 0.5) < 0.15  # every position flips sometimes, not a fixed pattern
    np.testing.assert_array_equal(mirror_flags(0, 5, 64), flags[5])
    assert not np.array_equal(mirror_flags(1, 5, 64), flags[5])
    assert torch.from_numpy(flags[5]).dtype == torch.bool
