"""Training sample order that resumes exactly, mid-epoch and on a different number of devices.

The order of an epoch is a permutation that depends only on ``(seed, epoch)``. Each run of ``global_batch``
consecutive positions is one global batch (the paper's 256); rank ``r`` of ``W`` takes the ``r``-th slice of
``global_batch / W`` of it. So the samples of global batch ``t`` are the same for any device count, and a run can be
resumed at any batch: skipping ``t`` batches of the permutation is all it takes. The last incomplete global batch of
an epoch is dropped (the paper trains on full batches), so every rank sees the same number of batches and no sample
is padded or repeated. (Skipped: ``num_samples % global_batch`` images per epoch, a different set each epoch.)

The random mirror of the paper's augmentation is keyed the same way (``mirror_flags``): by the global batch number
and the position in the global batch, not by a process's RNG state, which checkpoints do not hold and which differs
between ranks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from amlit.errors import ConfigError


def check_global_batch(global_batch: int, num_replicas: int) -> None:
    """Every device takes ``global_batch / num_replicas`` samples of each global batch: it must divide evenly."""
    if global_batch < 1 or global_batch % num_replicas:
        raise ConfigError(
            f"data.batch_size={global_batch} (the global batch) is not divisible by {num_replicas} devices: "
            f"use a multiple of {num_replicas}, or another number of devices"
        )


class EpochShardSampler(DistributedSampler):
    """Seeded, per-rank sharded sample order that starts where training left off.

    With ``batches_done`` (how many global batches training has finished, over all epochs), every new iteration
    starts at global batch ``n = batches_done()``: epoch ``n // batches_per_epoch``, batch ``n % batches_per_epoch``
    of it, and runs to the end of that epoch. The position is read from the trainer's restored count rather than
    kept here, because a loader's iterator runs ahead of training (Lightning prefetches a batch, workers prefetch
    more) and Lightning's epoch counter is not the data epoch after a run that stopped at ``max_steps``. Without
    ``batches_done`` it behaves as an ordinary epoch sampler (``set_epoch``).

    It subclasses ``DistributedSampler`` only so that Lightning keeps it under DDP instead of wrapping it in its own
    ``DistributedSamplerWrapper`` (``use_distributed_sampler`` leaves loaders whose sampler is one already).

    Args:
        num_samples: training images.
        global_batch: samples per optimizer step over all devices; divisible by ``num_replicas``.
        num_replicas: devices (world size).
        rank: this device's global rank.
        seed: the order of epoch ``e`` is ``permutation(seed, e)``.
        batches_done: returns the number of global batches trained so far (restored from checkpoints).
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        batches_done: Callable[[], int] | None = None,
    ) -> None:
        check_global_batch(global_batch, num_replicas)
        if num_samples < global_batch:
            raise ConfigError(f"{num_samples} training images are fewer than one global batch of {global_batch}")
        super().__init__(range(num_samples), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.num_samples = num_samples  # DistributedSampler's per-rank count; __len__ below is the real one
        self.global_batch = global_batch
        self.batch_per_replica = global_batch // num_replicas
        self.batches_per_epoch = num_samples // global_batch
        self.batches_done = batches_done

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_per_replica

    def epoch_order(self, epoch: int) -> np.ndarray:
        """All ranks' sample indices of ``epoch``, (batches_per_epoch, global_batch): row t is global batch t."""
        permutation = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        return permutation[: self.batches_per_epoch * self.global_batch].reshape(self.batches_per_epoch, -1)

    def __iter__(self) -> Iterator[int]:
        epoch, start = self.epoch, 0
        if self.batches_done is not None:
            epoch, start = divmod(int(self.batches_done()), self.batches_per_epoch)
        first = self.rank * self.batch_per_replica
        mine = self.epoch_order(epoch)[start:, first : first + self.batch_per_replica]  # (batches, B/W)
        return iter(mine.reshape(-1).tolist())


class ResumableLoader(DataLoader):
    """Training ``DataLoader`` over an ``EpochShardSampler`` that tells Lightning it resumes mid-epoch.

    Lightning (2.x) stores ``state_dict()`` of the training loaders in checkpoints and calls ``load_state_dict`` on
    resume (and warns about loaders without them). The position itself comes back with the trainer's batch count;
    the state records what the order depends on, so that a resume with other data or another global batch fails
    instead of silently training on a different order. The device count may change.

    ``listing_sha256`` fingerprints the training images (``amlit.data.provenance.listing_sha256``): the same number
    of images under other names (a renamed identity folder) would shift every class label after it, so a resume
    on another listing is refused too. Checkpoints written before it was recorded are compared by count only.
    """

    def __init__(
        self, dataset: Dataset, sampler: EpochShardSampler, listing_sha256: str | None = None, **kwargs
    ) -> None:
        super().__init__(dataset, batch_size=sampler.batch_per_replica, sampler=sampler, drop_last=True, **kwargs)
        self.listing_sha256 = listing_sha256

    def state_dict(self) -> dict[str, Any]:
        sampler = self.sampler
        done = sampler.batches_done() if sampler.batches_done is not None else None
        return {
            "batches_done": done,
            "mirror_seed": mirror_seed(),
            "seed": sampler.seed,
            "global_batch": sampler.global_batch,
            "num_samples": sampler.num_samples,
            "listing_sha256": self.listing_sha256,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = self.sampler
        saved = (state["seed"], state["global_batch"], state["num_samples"])
        if saved != (sampler.seed, sampler.global_batch, sampler.num_samples):
            raise ConfigError(
                f"the checkpoint was trained with (seed, global batch_size, training images) = {saved}, this run has "
                f"{(sampler.seed, sampler.global_batch, sampler.num_samples)}: resume with the same data, data.seed "
                "and data.batch_size (the device count may change), or start a new run from the weights only"
            )
        saved_mirror_seed = state.get("mirror_seed")  # absent in checkpoints written before it was recorded
        if saved_mirror_seed is not None and saved_mirror_seed != mirror_seed():
            # A warning, not a refusal: a requeued job with seed_everything: true gets a new seed each time, and
            # other mirrors train as well; only the exact continuation is lost.
            rank_zero_warn(
                f"the checkpoint was trained with seed_everything={saved_mirror_seed}, this run has {mirror_seed()}: "
                "every later batch gets other random mirrors than the uninterrupted run would have (not an exact "
                f"resume). Resume with --seed_everything={saved_mirror_seed} (keep it fixed, not true) for one"
            )
        saved_listing = state.get("listing_sha256")
        if saved_listing and self.listing_sha256 and saved_listing != self.listing_sha256:
            raise ConfigError(
                f"the checkpoint was trained on other images than this run's: the same number ({sampler.num_samples})"
                f" of training images, but the sha256 of their (identity, image name) listing differs (checkpoint "
                f"{saved_listing[:12]}..., this run {self.listing_sha256[:12]}...). An identity folder or image was "
                "renamed, added or removed, or data.exclude_id_lists or data.val_identities changed, so the class "
                "labels no longer match the trained head. Resume with the data the checkpoint was trained on, or "
                "start a new run: leave out --ckpt_path (it overwrites this run folder's last.ckpt) or give another "
                "--trainer.default_root_dir"
            )


def mirror_seed() -> int:
    """The seed of ``mirror_flags``: ``seed_everything``'s, which Lightning sets on every rank as ``PL_GLOBAL_SEED``."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def mirror_flags(seed: int, batch_number: int, global_batch: int) -> np.ndarray:
    """(global_batch,) bool: which samples of global batch ``batch_number`` are mirrored (probability 1/2).

    A function of its arguments only, so a resumed run and a run on another device count mirror the same samples;
    rank ``r`` takes the slice of the positions it was given by ``EpochShardSampler``.
    """
    return np.random.default_rng([seed, batch_number, 1]).random(global_batch) < 0.5
