"""Callbacks that inject faults into a training run (used by tests through ``--trainer.callbacks+=...``)."""

from __future__ import annotations

import os
import signal

import lightning as L


class PoisonSteps(L.Callback):
    """Fills the images of the batches at the given optimizer steps with NaN, so their loss and gradients are NaN."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(steps)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step in self.steps:
            batch[0].fill_(float("nan"))  # the (B, 3, H, W) float images the training step receives


class SigtermAtStep(L.Callback):
    """Sends SIGTERM to its own process when the batch of optimizer step ``step`` has run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step + 1:  # global_step counts the step just taken
            os.kill(os.getpid(), signal.SIGTERM)


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
