"""One trial that trains and then tests: ``python -m amlit.sweep.trial <LightningCLI arguments>``.

Runs ``amlit fit <arguments>`` and then ``amlit test <arguments> --ckpt_path=<its last.ckpt>``, each as its own
process (a DDP run started by Lightning re-executes its command in every rank; two trainers in one process would
train twice), so that a sweep file's command (``amlit sweep``, ``wandb agent``, a SLURM array task) leaves a
``results.json`` per trial for ``amlit report``. The checkpoint is the ``last.ckpt`` of the run config's
``ModelCheckpoint(save_last=true)``, named explicitly: a missing one stops the trial instead of testing an untrained
network. The exit status is fit's when it fails, else test's.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import yaml

from amlit.errors import ConfigError

CHECKPOINT_CLASS = "lightning.pytorch.callbacks.ModelCheckpoint"


def last_checkpoint(args: list[str]) -> Path:
    """``<dirpath>/last.ckpt`` of the ``ModelCheckpoint(save_last=true)`` in the config that ``args`` resolve to."""
    from amlit.cli import run_cli

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            run_cli(["fit", *args, "--print_config"])
    except SystemExit as exit_info:  # --print_config always exits; 0 once printed
        if exit_info.code not in (0, None):
            raise ConfigError(f"the trial's arguments do not make a valid run config (above): {args}") from None
    callbacks = (yaml.safe_load(printed.getvalue()) or {}).get("trainer", {}).get("callbacks") or []
    for callback in callbacks:
        init = callback.get("init_args") or {}
        if callback.get("class_path") == CHECKPOINT_CLASS and init.get("save_last") and init.get("dirpath"):
            return Path(init["dirpath"]) / "last.ckpt"
    raise ConfigError(
        f"the run config has no {CHECKPOINT_CLASS} with save_last: true and a dirpath; a trial needs one to test "
        "the trained network"
    )


def run_trial(args: list[str]) -> int:
    checkpoint = last_checkpoint(args)
    amlit = [sys.executable, "-m", "amlit"]
    code = subprocess.run([*amlit, "fit", *args], check=False).returncode
    if code != 0:
        return code
    if not checkpoint.is_file():
        print(f"amlit.sweep.trial: error: fit finished but wrote no {checkpoint}", file=sys.stderr)
        return 2
    return subprocess.run([*amlit, "test", *args, f"--ckpt_path={checkpoint}"], check=False).returncode


def main() -> None:
    try:
        sys.exit(run_trial(sys.argv[1:]))
    except ConfigError as error:
        print(f"amlit.sweep.trial: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
