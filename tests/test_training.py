"""Training robustness on the demo config and tiny data: exact resume, NaN/Inf guard, SIGTERM, DDP equivalence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from test_cli import CONFIGS, overrides

from amlit.callbacks import NonFiniteGuard, NonFiniteTrainingError
from amlit.cli import run_cli

STEPS_PER_EPOCH = 6  # tiny demo data: 8 training identities x 6 images, batch 8


def callbacks_config(tmp_path: Path, *extra: dict, every_n_train_steps: int | None = None, policy: str = "stop"):
    """A config file replacing the demo's callbacks: last.ckpt (optionally every n steps), the guard, SIGTERM."""
    checkpoint = {"dirpath": str(tmp_path / "checkpoints"), "save_last": True, "save_top_k": 0}
    if every_n_train_steps:
        checkpoint["every_n_train_steps"] = every_n_train_steps
    callbacks = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": checkpoint},
        {"class_path": "amlit.callbacks.NonFiniteGuard", "init_args": {"policy": policy, "max_consecutive": 2}},
        {"class_path": "amlit.callbacks.CheckpointOnSigterm"},
        *extra,
    ]
    path = tmp_path / "callbacks.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return path


def demo_args(tiny_tree, run_dir: Path, data_root: Path, *more: str) -> list[str]:
    """Demo config on tiny data; every step logged to <run_dir>/logs/version_*/metrics.csv."""
    args = overrides("demo.yaml", tiny_tree, run_dir)
    args = [a for a in args if not a.startswith("--data.root=")] + [f"--data.root={data_root}"]
    return [
        "--config",
        str(CONFIGS / "demo.yaml"),
        *args,
        f"--trainer.logger.init_args.save_dir={run_dir}",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0",
        "--model.backbone.init_args.width_multiplier=0.125",  # CPU-sized
        *more,
    ]


def logged_losses(run_dir: Path) -> pd.Series:
    """train/loss per step over every version (run) logged under run_dir, by step."""
    frames = [pd.read_csv(p) for p in sorted((run_dir / "logs").glob("version_*/metrics.csv"))]
    rows = pd.concat(frames)[["step", "train/loss"]].dropna()
    return rows.set_index("step")["train/loss"].sort_index()


def final_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True, map_location="cpu")["state_dict"]


@pytest.fixture
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "demo-synthetic"  # generated once, shared by the runs


@pytest.mark.slow
def test_resume_mid_epoch_continues_the_same_loss_curve(tiny_tree, tmp_path, data_root, monkeypatch):
    total, stop_at = 9, 4  # 9 steps cross the first epoch's end (6 batches); 4 stops mid-epoch
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    for run_dir in (straight, interrupted):
        run_dir.mkdir()
    monkeypatch.chdir(straight)
    cfg = callbacks_config(straight)
    run_cli(["fit", *demo_args(tiny_tree, straight, data_root, f"--trainer.max_steps={total}"), "--config", str(cfg)])
    monkeypatch.chdir(interrupted)
    cfg = callbacks_config(interrupted)
    args = [*demo_args(tiny_tree, interrupted, data_root), "--config", str(cfg)]
    first = run_cli(["fit", *args, f"--trainer.max_steps={stop_at}"])
    assert first.trainer.global_step == stop_at
    resumed = run_cli(["fit", *args, f"--trainer.max_steps={total}", "--ckpt_path=last"])
    assert resumed.trainer.global_step == total

    expected, got = logged_losses(straight), logged_losses(interrupted)
    assert list(expected.index) == list(range(total)) and list(got.index) == list(range(total))
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-5, atol=1e-6)
    assert expected.iloc[stop_at] != expected.iloc[stop_at - 1]  # the curve moves: a shifted batch would show
    for name, value in final_weights(straight / "checkpoints" / "last.ckpt").items():
        torch.testing.assert_close(final_weights(interrupted / "checkpoints" / "last.ckpt")[name], value)


@pytest.mark.slow
def test_guard_stop_keeps_the_last_good_checkpoint(tiny_tree, tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    poison = {"class_path": "training_helpers.PoisonSteps", "init_args": {"steps": [3]}}
    cfg = callbacks_config(tmp_path, poison, every_n_train_steps=2)
    args = [*demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=6"), "--config", str(cfg)]
    with pytest.raises(NonFiniteTrainingError, match="optimizer step 3: stopped before applying it") as info:
        run_cli(["fit", *args])
    assert "learning_rate" in str(info.value) and "bf16-mixed" in str(info.value)
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
    trainer = type("T", (), {"global_step": 7})()
    good = {"state_dict": {"w": torch.ones(3), "step": torch.tensor(3)}}
    guard.on_save_checkpoint(trainer, None, good)
    bad = {"state_dict": {"w": torch.tensor([1.0, float("inf")]), "b": torch.zeros(2)}}
    with pytest.raises(NonFiniteTrainingError, match="step 7: weights w are non-finite; checkpoint not written"):
        guard.on_save_checkpoint(trainer, None, bad)


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint_that_resumes(tiny_tree, tmp_path, data_root, monkeypatch):
    sigterm = {"class_path": "training_helpers.SigtermAtStep", "init_args": {"step": 2}}
    cfg = callbacks_config(tmp_path, sigterm)  # last.ckpt only at the end of training: any earlier one is SIGTERM's
    args = [*demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=100"), "--config", str(cfg)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    result = subprocess.run(
        [sys.executable, "-m", "amlit", "fit", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert "SIGTERM at step 3: saved" in output, output[-3000:]
    assert result.returncode == 143  # 128 + SIGTERM: a scheduler sees the run was stopped, not finished
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == 3  # the step the signal arrived in was finished, then training stopped

    monkeypatch.chdir(tmp_path)
    args = [
        *demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=5"),
        "--config",
        str(callbacks_config(tmp_path)),
    ]
    resumed = run_cli(["fit", *args, "--ckpt_path=last"])
    assert resumed.trainer.global_step == 5
    assert list(logged_losses(tmp_path).index) == [0, 1, 2, 3, 4]  # no step repeated or skipped


def run_subprocess(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    result = subprocess.run(  # a timeout: a DDP deadlock fails the test instead of hanging CI
        [sys.executable, "-m", "amlit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def logged_test_metrics(run_dir: Path) -> dict[str, float]:
    frames = [pd.read_csv(p) for p in sorted((run_dir / "logs").glob("version_*/metrics.csv"))]
    row = pd.concat(frames).filter(like="test/").dropna(how="all").iloc[-1]
    return row.to_dict()


@pytest.mark.slow
def test_two_process_cpu_ddp_trains_and_tests_like_one_process(tiny_tree, tmp_path, data_root):
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    runs = {}
    for name, extra in (("single", []), ("ddp", ddp)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        args = [*demo_args(tiny_tree, run_dir, data_root, "--trainer.max_steps=4"), *extra]
        results = {"class_path": "amlit.callbacks.ResultsWriter"}  # into trainer.log_dir: a broadcast under DDP
        args += ["--config", str(callbacks_config(run_dir, results))]
        args = [a for a in args if a != "--trainer.devices=1"]
        run_subprocess(["fit", *args], run_dir)
        runs[name] = (run_dir, args)
    single_ckpt = runs["single"][0] / "checkpoints" / "last.ckpt"
    ddp_weights = final_weights(runs["ddp"][0] / "checkpoints" / "last.ckpt")
    for name, value in final_weights(single_ckpt).items():  # same samples per global batch, averaged gradients
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-4, atol=1e-5)

    # the same checkpoint scored by one and by two processes (DistributedSampler pads and splits the images)
    for name in ("single", "ddp"):
        run_dir, args = runs[name]
        run_subprocess(["test", *args, f"--ckpt_path={single_ckpt}"], run_dir)
    single, distributed = logged_test_metrics(runs["single"][0]), logged_test_metrics(runs["ddp"][0])
    assert single["test/lfw/num_pairs"] > 0 and single.keys() == distributed.keys()
    for key, value in single.items():
        assert distributed[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    written = {name: next(runs[name][0].rglob("results.json")) for name in runs}  # one file, from rank 0
    documents = {name: json.loads(path.read_text()) for name, path in written.items()}
    assert documents["ddp"]["test/lfw/acc"] == pytest.approx(documents["single"]["test/lfw/acc"], rel=1e-5)

    # the 1-process checkpoint resumed on 2 processes continues like it resumed on 1 (the head is not sharded)
    resumed = {}
    for name, extra in (("single", []), ("ddp", ddp)):
        run_dir = tmp_path / f"resume-{name}"
        run_dir.mkdir()
        args = [*demo_args(tiny_tree, run_dir, data_root, "--trainer.max_steps=6"), *extra]
        args = [a for a in args if a != "--trainer.devices=1"] + ["--config", str(callbacks_config(run_dir))]
        run_subprocess(["fit", *args, f"--ckpt_path={single_ckpt}"], run_dir)
        resumed[name] = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert resumed["single"]["global_step"] == resumed["ddp"]["global_step"] == 6
    for name, value in resumed["single"]["state_dict"].items():
        torch.testing.assert_close(resumed["ddp"]["state_dict"][name], value, rtol=1e-4, atol=1e-5)
