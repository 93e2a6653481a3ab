"""One trial that trains and then tests: ``python -m amlit.sweep.trial <LightningCLI arguments>``.

Runs ``amlit fit <arguments>`` and then ``amlit test <arguments> --ckpt_path=last``, each as its own process (a DDP
run started by Lightning re-executes its command in every rank; two trainers in one process would train twice), so
that a sweep file's command (``amlit sweep``, ``wandb agent``, a SLURM array task) leaves a ``results.json`` per trial
for ``amlit report``. ``--ckpt_path=last`` is the newest checkpoint of the run folder the fit wrote; when there is
none, ``amlit test`` stops with an error instead of testing an untrained network (``amlit.resume``). The exit status
is fit's when it fails, else test's.
"""

from __future__ import annotations

import subprocess
import sys


def run_trial(args: list[str]) -> int:
    amlit = [sys.executable, "-m", "amlit"]
    code = subprocess.run([*amlit, "fit", *args], check=False).returncode
    if code != 0:
        return code
    return subprocess.run([*amlit, "test", *args, "--ckpt_path=last"], check=False).returncode


def main() -> None:
    sys.exit(run_trial(sys.argv[1:]))


if __name__ == "__main__":
    main()
