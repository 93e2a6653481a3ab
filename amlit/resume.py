"""Which checkpoint ``amlit fit`` resumes from. Lightning (2.6) turns ``--ckpt_path last`` without a checkpoint into
a warning and a new run from step 0 that ends with exit status 0, overwriting the old ``last.ckpt`` on its way.

- ``--ckpt_path last``: the newest of the ``last.ckpt`` of each ``ModelCheckpoint(save_last=True)`` folder and the
  SLURM ``hpc_ckpt_<n>.ckpt`` in ``default_root_dir``; none is an error.
- ``--ckpt_path last_or_new``: the same, or a new run when there is none (job scripts that are simply re-run).
- no ``--ckpt_path`` in a requeued SLURM job (``SLURM_RESTART_COUNT`` > 0): as ``last_or_new``; otherwise a new run
  (Lightning still resumes a SLURM ``hpc_ckpt`` by itself, as it always did).
- any other value: that file (``amlit.checkpoint_io`` refuses a missing or damaged one).

``validate``/``test``/``predict`` take ``last`` (or ``last_or_new``) the same way, and always need a checkpoint:
without one they would score the untrained model.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from amlit.errors import ConfigError
from amlit.launcher import slurm_detected

LAST = "last"
LAST_OR_NEW = "last_or_new"


def resume_candidates(trainer: L.Trainer) -> tuple[list[Path], list[Path]]:
    """(where a resumable checkpoint would be, those that exist). Raises ``ConfigError`` when no
    ``ModelCheckpoint`` has ``save_last`` and a fixed ``dirpath`` (a new run would write to a new folder)."""
    places = [
        Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath
    ]
    if not places:
        raise ConfigError(
            "--ckpt_path last needs a lightning.pytorch.callbacks.ModelCheckpoint with save_last: true and a fixed "
            "dirpath in trainer.callbacks (as in configs/demo.yaml); otherwise give the checkpoint's path"
        )
    hpc = sorted(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"))
    return places, [path for path in [*places, *hpc] if path.is_file()]


def resolve_ckpt_path(trainer: L.Trainer, ckpt_path: str | Path | None, fitting: bool = True) -> str | Path | None:
    """The ``ckpt_path`` to hand to ``Trainer.fit`` (or ``test`` ... with ``fitting=False``), see the docstring."""
    if not fitting:
        if ckpt_path is None:
            rank_zero_warn("no --ckpt_path: evaluating the model as initialized, not a trained one")
            return None
        ckpt_path = LAST if ckpt_path == LAST_OR_NEW else ckpt_path
    requeued = slurm_detected() and int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    if ckpt_path is None and not requeued:
        _warn_if_overwriting(trainer)
        return None
    if ckpt_path not in (None, LAST, LAST_OR_NEW):
        return ckpt_path
    try:
        places, found = resume_candidates(trainer)
    except ConfigError:
        if ckpt_path is None:  # a requeued job without a last.ckpt folder: Lightning's hpc rule alone
            return None
        raise
    if found:
        newest = max(found, key=lambda path: path.stat().st_mtime_ns)
        why = "SLURM requeued the job: " if ckpt_path is None else ""
        rank_zero_info(f"{why}resuming from {newest}")
        return str(newest)
    if ckpt_path == LAST:
        where = f"{', '.join(str(p.parent) for p in places)} (no {places[0].name} or hpc_ckpt_*.ckpt)"
        if not fitting:
            raise ConfigError(f"--ckpt_path last: no checkpoint in {where}; give the path of the one to evaluate")
        raise ConfigError(
            f"--ckpt_path last: no checkpoint to resume in {where}. Leave out --ckpt_path to start a new run, or "
            f"pass --ckpt_path {LAST_OR_NEW} to resume when there is a checkpoint and start anew otherwise"
        )
    rank_zero_info(f"no checkpoint in {', '.join(str(p.parent) for p in places)} yet: starting a new run")
    return None


def _warn_if_overwriting(trainer: L.Trainer) -> None:
    try:
        places, found = resume_candidates(trainer)
    except ConfigError:
        return
    for path in set(places) & set(found):
        rank_zero_warn(
            f"starting a new run: {path} of an earlier run will be overwritten. To continue that run instead, "
            "stop now and pass --ckpt_path last"
        )
