"""Lightning callbacks of amlit."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from amlit import keys
from amlit.compat import save_last_checkpoint, saved_run_config, stop_at_end_of_step
from amlit.errors import ConfigError
from amlit.eval.curves import CURVES_FILE, Curve, save_curves
from amlit.eval.plots import plot_curves
from amlit.preemption import DeferredSignal


class NonFiniteTrainingError(RuntimeError):
    """Training produced a NaN/Inf loss, gradient or weight (raised by ``NonFiniteGuard``)."""


class EmbeddingWriter(BasePredictionWriter):
    """Writes ``amlit predict`` results as one ``.npz``: ``names`` (image paths relative to the data root, str)
    and ``features`` (N, D) float32, flip-summed and L2-normalized, in the order of ``names``.

    This is the embeddings-file interface of the design: protocols can be recomputed outside amlit from it.
    With several predict dataloaders, the file of dataloader ``i > 0`` gets the suffix ``.<i>``.
    Under DDP the ranks' results are gathered and rank 0 writes the file (padding duplicates removed by index).
    """

    def __init__(self, output: str | Path | None = None) -> None:
        super().__init__(write_interval="epoch")
        # unset: <trainer.default_root_dir>/embeddings.npz (filled by amlit.cli.place_outputs; here as a fallback)
        self.output = Path(output) if output is not None else None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        # Lightning gives a list per dataloader only when there are several.
        loaders = trainer.predict_dataloaders
        loaders = list(loaders) if isinstance(loaders, list | tuple) else [loaders]
        per_loader = predictions if len(loaders) > 1 else [predictions]
        for loader_index, (loader, outputs) in enumerate(zip(loaders, per_loader, strict=True)):
            features = torch.cat([f for f, _ in outputs]) if outputs else torch.empty(0, 0)
            indices = torch.cat([i for _, i in outputs]) if outputs else torch.empty(0, dtype=torch.long)
            if dist.is_available() and dist.is_initialized():
                gathered: list = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, (features, indices))
                features = torch.cat([f for f, _ in gathered if f.numel()])
                indices = torch.cat([i for _, i in gathered if i.numel()])
            if trainer.global_rank != 0:
                continue
            output = self.output or Path(trainer.default_root_dir) / "embeddings.npz"
            names = list(loader.dataset.files)
            out = np.full((len(names), features.shape[1]), np.nan, dtype=np.float32)
            out[indices.numpy()] = features.numpy()
            path = output if loader_index == 0 else output.with_suffix(f".{loader_index}.npz")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, names=np.array(names, dtype=str), features=out)
            rank_zero_info(f"wrote {len(names)} embeddings of dimension {out.shape[1]} to {path}")


class ResultsWriter(Callback):
    """After ``test``: ``results.json`` (flat ``{metric_key: number}`` plus ``config``, ``manifest`` and
    ``checkpoint``), ``results.csv`` (one row: the metric keys as columns), ``curves.json`` (every curve's points,
    ``amlit.eval.curves.save_curves``), PNG plots of the curves (ROC, CMC) and the model card
    (``model_card.md``/``.json``, with ``model_license`` as its license and the calibrated thresholds).

    Files go to ``output_dir``, or to the logger's directory (``trainer.log_dir``) when unset; plots are also sent
    to loggers that take images (wandb). Only rank 0 writes. This is the results-file interface of the design.
    """

    def __init__(
        self, output_dir: str | Path | None = None, plots: bool = True, model_license: str | None = None
    ) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.plots = plots
        self.model_license = model_license

    def on_test_end(self, trainer, pl_module) -> None:
        # trainer.log_dir broadcasts from rank 0, so every rank reads it before rank 0 goes on alone.
        output_dir = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.global_rank != 0:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        results = pl_module.eval_results
        metrics = {key: float(value) for key, value in results.items() if not isinstance(value, Curve)}
        curves = {key: value for key, value in results.items() if isinstance(value, Curve)}
        datamodule = trainer.datamodule
        document = {
            **metrics,
            "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None,
            "config": saved_run_config(trainer),
            "manifest": datamodule.manifest() if hasattr(datamodule, "manifest") else None,
        }
        (output_dir / "results.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
        pd.DataFrame([metrics]).to_csv(output_dir / "results.csv", index=False)
        save_curves(curves, output_dir / CURVES_FILE)  # the curves' numbers, for `amlit report` (Figure 6)
        written = plot_curves(curves, output_dir / "plots") if self.plots and curves else []
        for logger in trainer.loggers:
            if hasattr(logger, "log_image") and written:
                logger.log_image(key="test/plots", images=[str(p) for p in written], caption=[p.stem for p in written])
        self._write_model_card(trainer, pl_module, metrics, output_dir)
        rank_zero_info(
            f"{_results_table('test', metrics)}\nwrote results.json, results.csv, {CURVES_FILE}, model_card.md/.json "
            f"and {len(written)} plot(s) to {output_dir}"
        )

    def _write_model_card(self, trainer, pl_module, metrics: dict[str, float], output_dir: Path) -> None:
        """``model_card.md``/``.json`` beside results.json: the model, its data, the results and calibrated
        thresholds (``amlit.inference.model_card``; ``amlit verify --calibration`` reads the .json)."""
        from amlit.inference.model_card import card_from_test, write_card

        card = card_from_test(pl_module, trainer, metrics, output_dir / "results.json", self.model_license)
        write_card(output_dir, card)

    def on_validation_end(self, trainer, pl_module) -> None:
        """``amlit validate`` prints its metrics as ``test`` does (during ``fit`` the loggers and the progress bar
        have them)."""
        if trainer.state.fn != TrainerFn.VALIDATING or trainer.sanity_checking:
            return
        metrics = {
            k: float(v) for k, v in pl_module.eval_results.items() if k.startswith("val/") and not isinstance(v, Curve)
        }
        rank_zero_info(_results_table("validation", metrics))


def _results_table(stage: str, metrics: dict[str, float]) -> str:
    width = max(map(len, metrics), default=0)
    return f"{stage} results:\n" + "\n".join(f"  {key:<{width}}  {value:.6g}" for key, value in metrics.items())


class NonFiniteGuard(Callback):
    """Stops, or skips the optimizer step, when the loss or a gradient is NaN/Inf; never lets a non-finite
    weight reach a checkpoint.

    The check runs in ``on_before_optimizer_step`` (after backward and DDP's gradient all-reduce, before the step):
    the loss of every rank (from ``on_before_backward``) and the norm of all gradients, as one flag reduced over
    the ranks so that every rank decides the same. Caught there, a bad batch changes nothing: no weight, momentum
    buffer or weight-decay update happens.

    - ``policy="stop"``: raise ``NonFiniteTrainingError`` naming the step. The last checkpoint written before stays
      the newest; resume from it with a lower ``model.learning_rate`` or another precision.
    - ``policy="skip"``: drop the gradients (``zero_grad(set_to_none=True)``; SGD then leaves parameters *and*
      momentum buffers untouched) and go on; the step still counts for the schedule. ``train/nonfinite_skips``
      logs the total. ``max_consecutive`` skips in a row raise as ``stop`` does (the model is not recovering).

    Every checkpoint being written is checked too (``on_save_checkpoint``): non-finite weights raise instead of
    overwriting the last good file (weights can overflow from finite gradients, e.g. with a far too high lr).

    Mixed precision: under ``16-mixed`` Lightning's GradScaler finds inf/NaN gradients itself, skips that step and
    lowers the loss scale; that is routine, so with a scaler this guard ignores non-finite *gradients* and acts on
    a non-finite *loss* only (which a smaller scale does not cure). ``bf16-mixed`` has no scaler and is checked fully.

    Cost: one fused norm over the gradients and one host sync (plus one all-reduce of a flag under DDP) per step.

    Args:
        policy: ``"stop"`` or ``"skip"``.
        max_consecutive: with ``"skip"``, this many skipped steps in a row stop training.
    """

    def __init__(self, policy: Literal["stop", "skip"] = "stop", max_consecutive: int = 10) -> None:
        if policy not in ("stop", "skip"):
            raise ConfigError(f'NonFiniteGuard policy must be "stop" or "skip", got {policy!r}')
        if max_consecutive < 1:
            raise ConfigError(f"NonFiniteGuard max_consecutive must be >= 1, got {max_consecutive}")
        self.policy = policy
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0
        self._losses: list[torch.Tensor] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.consecutive = 0  # self.skipped is restored from a checkpoint (state_dict) and keeps counting

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach())  # unscaled loss; no sync here

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        losses, self._losses = self._losses, []
        finite = torch.stack([loss.float() for loss in losses]).isfinite().all() if losses else torch.tensor(True)
        if getattr(trainer.precision_plugin, "scaler", None) is None:  # a GradScaler handles non-finite gradients
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if grads:
                total_norm = torch.nn.utils.get_total_norm(grads, foreach=True).float()
                finite = finite & total_norm.isfinite().to(finite.device)
        bad = not bool(finite)  # the one host sync
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)  # any rank bad -> all act alike
        if not bad:
            self.consecutive = 0
            return
        step = trainer.global_step
        if self.policy == "stop":
            raise NonFiniteTrainingError(self._message(trainer, "stopped before applying it"))
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteTrainingError(self._message(trainer, f"{self.consecutive} steps in a row skipped, stopped"))
        optimizer.zero_grad(set_to_none=True)  # SGD skips parameters without a gradient: no update at all
        rank_zero_warn(f"non-finite loss or gradient at optimizer step {step}: step skipped ({self.skipped} so far)")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        pl_module.log(keys.TRAIN_NONFINITE_SKIPS, float(self.skipped))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.skipped:
            rank_zero_warn(f"NonFiniteGuard skipped {self.skipped} optimizer steps with a non-finite loss/gradient")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        bad = [name for name, value in checkpoint["state_dict"].items() if value.is_floating_point()]
        bad = [name for name in bad if not bool(checkpoint["state_dict"][name].isfinite().all())]
        if bad:
            raise NonFiniteTrainingError(
                self._message(trainer, f"weights {', '.join(bad[:3])} are non-finite; checkpoint not written")
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))

    @staticmethod
    def _message(trainer: L.Trainer, what: str) -> str:
        newest = newest_checkpoint(trainer)
        if newest is not None:
            resume = (
                f"The newest checkpoint of this run, {newest}, was written before that step and is intact; resume "
                f"from it (--ckpt_path={newest}) after one of"
            )
        else:
            resume = (
                "No checkpoint was written before that step (ModelCheckpoint's every_n_train_steps saves during "
                "fit), so there is nothing to resume: start again after one of"
            )
        return (
            f"non-finite loss or gradient at optimizer step {trainer.global_step}: {what}. {resume}: lower "
            "model.learning_rate; --trainer.precision=bf16-mixed instead of 16-mixed (fp16 overflows); "
            "--trainer.gradient_clip_val=...; check the data (labels int64 and < num_classes, no broken images); or "
            "set policy: skip of amlit.callbacks.NonFiniteGuard in the config to skip such steps"
        )


def newest_checkpoint(trainer: L.Trainer) -> Path | None:
    """The newest existing file among the checkpoints this run wrote (each ``ModelCheckpoint``'s last and best)
    and the one it resumed from; None when there is none."""
    candidates = [getattr(trainer, "ckpt_path", None)]
    for callback in getattr(trainer, "checkpoint_callbacks", []):
        candidates += [getattr(callback, "last_model_path", None), getattr(callback, "best_model_path", None)]
    existing = {Path(p) for p in candidates if p and Path(p).is_file()}
    return max(existing, key=lambda p: p.stat().st_mtime_ns, default=None)


class CheckpointOnSigterm(Callback):
    """SIGTERM during ``fit`` -> the last checkpoint is written -> the process exits; ``--ckpt_path last`` resumes.

    Lightning (2.6) already catches SIGTERM: it forwards it to the DDP ranks, finishes the current batch and raises
    ``SIGTERMException`` (a ``SystemExit``), but writes no checkpoint unless
    ``ModelCheckpoint(save_on_exception=True)``, which saves on *every* exception under an extra name. This callback
    saves only on SIGTERM, as the ``last.ckpt`` of each ``ModelCheckpoint(save_last=True)`` (or
    ``<default_root_dir>/sigterm.ckpt`` without one).
    The saved loop state sits at the end of the finished batch, so resuming repeats and skips nothing.
    DataLoader workers survive a SIGTERM sent to the whole process group or job (``amlit.preemption``).

    On SLURM (``SLURMEnvironment(auto_requeue=True)``, Lightning's default there, with ``#SBATCH
    --signal=SIGUSR1@90``), Lightning saves ``hpc_ckpt_<n>.ckpt`` on SIGUSR1 and requeues the job, which resumes it
    when ``ckpt_path`` is unset. This callback moves that save from inside the signal handler (wherever the step
    was) to the end of the current batch, on every rank at the same step.

    Under DDP, SIGTERM is taken over the same way: Lightning's handler broadcasts from inside the signal handler,
    wherever the rank is (in the middle of the gradient all-reduce of backward, say), so the ranks' collectives no
    longer pair up and the run hangs, saving nothing, until it is killed (``docker stop`` and Kubernetes signal only
    the first process, whose handler then broadcasts alone). Here the signal is only noted; after every
    ``agree_every_n_batches`` batches the ranks agree whether any of them got one, and all stop at that step.

    Args:
        agree_every_n_batches: under DDP, how often the ranks compare notes: each time is an all-reduce whose result
            the host waits for, which would stall the GPU's queue at every step; 10 steps are well under a second
            of the 10 s (docker stop) to 30 s (Kubernetes) before SIGKILL. One process checks after every batch.
    """

    def __init__(self, agree_every_n_batches: int = 10) -> None:
        if agree_every_n_batches < 1:
            raise ConfigError(f"CheckpointOnSigterm.agree_every_n_batches must be >= 1, got {agree_every_n_batches}")
        self.agree_every_n_batches = agree_every_n_batches
        self._batches = 0  # batches ended in this fit: the same count on every rank
        self._sigusr1: DeferredSignal | None = None
        self._sigterm: DeferredSignal | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread
        # Lightning has registered its signal handlers by now; a callable SIGUSR1 handler is its SLURM requeue.
        sigusr1 = getattr(signal, "SIGUSR1", None)  # None on Windows
        if sigusr1 and callable(signal.getsignal(sigusr1)):
            self._sigusr1 = DeferredSignal(sigusr1)
        if trainer.world_size > 1:  # one process: Lightning's handler only sets a flag, which is safe
            self._sigterm = DeferredSignal(signal.SIGTERM)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        deferred = [self._sigterm, self._sigusr1]
        if not any(deferred):
            return
        self._batches += 1
        if trainer.world_size > 1 and self._batches % self.agree_every_n_batches:
            return
        pending = [d is not None and d.pending for d in deferred]
        if trainer.world_size > 1:  # every rank acts at the same step, or the save's barrier would hang
            flags = torch.tensor(pending, dtype=torch.int, device=trainer.strategy.root_device)
            pending = (trainer.strategy.reduce(flags, reduce_op="sum") > 0).tolist()
        sigterm, sigusr1 = pending
        if sigusr1:
            self._sigusr1.run()
        if sigterm:  # Lightning raises SIGTERMException after this batch, on every rank; on_exception saves
            self._sigterm.pending = False
            stop_at_end_of_step(trainer)

    def _restore_signals(self) -> None:
        for deferred in (self._sigusr1, self._sigterm):
            if deferred is not None:
                deferred.restore()
        self._sigusr1 = self._sigterm = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_signals()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_signals()
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        savers = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.save_last]
        for saver in savers:
            # ModelCheckpoint's own routine: same file name and bookkeeping as its regular last.ckpt.
            save_last_checkpoint(saver, trainer)
        paths = [s.last_model_path for s in savers]
        if not savers:
            paths = [str(Path(trainer.default_root_dir) / "sigterm.ckpt")]
            trainer.save_checkpoint(paths[0])
        rank_zero_info(f"SIGTERM at step {trainer.global_step}: saved {', '.join(paths)}; resume with --ckpt_path")
