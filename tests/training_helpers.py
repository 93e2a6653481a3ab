"""Training runs for the tests: the demo config on tiny data with the callbacks under test, what a run logged, and
callbacks that inject faults into a run (used through ``--trainer.callbacks+=...``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import lightning as L
import pandas as pd
import torch
import yaml
from test_cli import CONFIGS, overrides


class PoisonSteps(L.Callback):
    """Fills the images of the batches at the given optimizer steps with NaN, so their loss and gradients are NaN."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(steps)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step in self.steps:
            batch[0].fill_(float("nan"))  # the (B, 3, H, W) float images the training step receives


class SnapshotAroundStep(L.Callback):
    """Copies the weights and SGD momentum buffers before and after the batch of optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.before: dict = {}
        self.after: dict = {}
        self.changed_by_next_step = False

    def _state(self, trainer, pl_module) -> dict:
        state = {f"param/{n}": p.detach().clone() for n, p in pl_module.named_parameters()}
        optimizer = trainer.optimizers[0]
        for n, p in pl_module.named_parameters():
            buffer = optimizer.state.get(p, {}).get("momentum_buffer")
            if buffer is not None:
                state[f"momentum/{n}"] = buffer.clone()
        return state

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.before = self._state(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step + 1:
            self.after = self._state(trainer, pl_module)
        if trainer.global_step == self.step + 2:
            now = self._state(trainer, pl_module)
            self.changed_by_next_step = any(not (now[k] == self.after[k]).all() for k in self.after)


class SignalGroupAtStep(L.Callback):
    """Sends ``signal_name`` to its whole process group (DataLoader workers included, as ``timeout``, systemd and
    SLURM do) when the batch of optimizer step ``step`` has run. Run the process in its own session."""

    def __init__(self, step: int, signal_name: str = "SIGTERM") -> None:
        self.step = step
        self.signum = getattr(signal, signal_name)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step + 1:
            os.killpg(os.getpgrp(), self.signum)


class SignalRankMidStep(L.Callback):
    """Sends ``signal_name`` to the process of global rank ``rank`` alone, in the middle of optimizer step ``step``
    (before its backward), as ``docker stop`` or Kubernetes signal only the first process of a DDP run."""

    def __init__(self, step: int, rank: int = 0, signal_name: str = "SIGTERM") -> None:
        self.step = step
        self.rank = rank
        self.signum = getattr(signal, signal_name)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            os.kill(os.getpid(), self.signum)


class PauseAtStep(L.Callback):
    """After the batch of optimizer step ``step``: writes ``marker`` (its text: this PID), then sleeps until killed."""

    def __init__(self, step: int, marker: str) -> None:
        self.step = step
        self.marker = marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step + 1:
            with open(self.marker + ".tmp", "w") as file:
                file.write(str(os.getpid()))
            os.replace(self.marker + ".tmp", self.marker)
            while True:
                time.sleep(1)


def callbacks_config(
    tmp_path: Path, *extra: dict, every_n_train_steps: int | None = None, policy: str = "stop", name: str = "callbacks"
):
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
    path = tmp_path / f"{name}.yaml"
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


def logged_losses(run_dir: Path, version: Path | None = None) -> pd.Series:
    """train/loss per step over every version (run) logged under run_dir, or of one ``version`` folder, by step."""
    files = [version / "metrics.csv"] if version else sorted((run_dir / "logs").glob("version_*/metrics.csv"))
    frames = [pd.read_csv(p) for p in files]
    rows = pd.concat(frames)[["step", "train/loss"]].dropna()
    return rows.set_index("step")["train/loss"].sort_index()


def final_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True, map_location="cpu")["state_dict"]
