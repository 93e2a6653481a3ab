"""amlit.callbacks on training runs: the NaN/Inf guard (stop, skip, refusing a non-finite checkpoint). The results
and embeddings writers run in every `amlit test`/`predict` of test_cli.py; SIGTERM saving is in test_training.py."""

from __future__ import annotations

import pytest
import torch
from training_helpers import callbacks_config, demo_args

from amlit.callbacks import NonFiniteGuard, NonFiniteTrainingError
from amlit.cli import run_cli


@pytest.mark.slow
def test_guard_stop_keeps_the_last_good_checkpoint(tiny_tree, tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    poison = {"class_path": "training_helpers.PoisonSteps", "init_args": {"steps": [3]}}
    cfg = callbacks_config(tmp_path, poison, every_n_train_steps=2)
    args = [*demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=6"), "--config", str(cfg)]
    with pytest.raises(NonFiniteTrainingError, match="optimizer step 3: stopped before applying it") as info:
        run_cli(["fit", *args])
    assert "learning_rate" in str(info.value) and "bf16-mixed" in str(info.value)
    assert f"The newest checkpoint of this run, {tmp_path / 'checkpoints' / 'last.ckpt'}, was" in str(info.value)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == 2  # written after step 2; nothing after the NaN
    assert all(bool(value.isfinite().all()) for value in checkpoint["state_dict"].values())


@pytest.mark.slow
def test_guard_skip_leaves_weights_and_momentum_untouched_and_counts(tiny_tree, tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    poison = {"class_path": "training_helpers.PoisonSteps", "init_args": {"steps": [2]}}
    snapshot = {"class_path": "training_helpers.SnapshotAroundStep", "init_args": {"step": 2}}
    cfg = callbacks_config(tmp_path, poison, snapshot, policy="skip")
    cli = run_cli(["fit", *demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=4"), "--config", str(cfg)])
    assert cli.trainer.global_step == 4
    (guard,) = [c for c in cli.trainer.callbacks if isinstance(c, NonFiniteGuard)]
    assert guard.skipped == 1
    assert float(cli.trainer.callback_metrics["train/nonfinite_skips"]) == 1.0
    (snap,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "SnapshotAroundStep"]
    before, after = snap.before, snap.after
    assert before.keys() == after.keys() and any(k.startswith("momentum/") for k in before)
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert all(bool(p.isfinite().all()) for p in cli.model.parameters())
    # the steps around the skipped one did train: the momentum buffers exist and the weights moved from init
    assert snap.changed_by_next_step


@pytest.mark.slow
def test_guard_skip_stops_after_max_consecutive(tiny_tree, tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    poison = {"class_path": "training_helpers.PoisonSteps", "init_args": {"steps": [1, 2]}}
    cfg = callbacks_config(tmp_path, poison, policy="skip")  # max_consecutive=2
    with pytest.raises(NonFiniteTrainingError, match="optimizer step 2: 2 steps in a row skipped"):
        run_cli(["fit", *demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=4"), "--config", str(cfg)])


def test_guard_refuses_to_write_a_checkpoint_with_non_finite_weights():
    guard = NonFiniteGuard()
    trainer = type("T", (), {"global_step": 7, "ckpt_path": None, "checkpoint_callbacks": []})()
    good = {"state_dict": {"w": torch.ones(3), "step": torch.tensor(3)}}
    guard.on_save_checkpoint(trainer, None, good)
    bad = {"state_dict": {"w": torch.tensor([1.0, float("inf")]), "b": torch.zeros(2)}}
    with pytest.raises(
        NonFiniteTrainingError, match="step 7: weights w are non-finite; checkpoint not written"
    ) as info:
        guard.on_save_checkpoint(trainer, None, bad)
    # nothing was saved before (no checkpoint callback wrote, no resume): the message must not promise one
    assert "No checkpoint was written before that step" in str(info.value) and "intact" not in str(info.value)
