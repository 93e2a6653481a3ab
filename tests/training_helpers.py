"""Callbacks that inject faults into a training run (used by tests through ``--trainer.callbacks+=...``)."""

from __future__ import annotations

import os
import signal
import time

import lightning as L


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
