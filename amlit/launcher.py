"""The processes a launcher started must be the ones the trainer is set up for.

``srun`` (SLURM) and ``torchrun`` start the processes themselves and tell each its rank through the environment
(``SLURM_NTASKS``/``SLURM_PROCID``, ``WORLD_SIZE``/``RANK``); Lightning runs ``trainer.devices x trainer.num_nodes``
of them. When the two differ (``srun --ntasks=2`` with ``trainer.devices=1``), Lightning does not stop: rank 0
trains alone and the other ranks fail somewhere later (their loggers are rank-zero only). Checked before the data
and the model are built, so every rank stops at once with one line.
"""

from __future__ import annotations

import errno
import os
import socket

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from amlit.errors import ConfigError


def _env_int(name: str) -> int | None:
    """An integer variable; None when unset or not a plain number (``SLURM_NTASKS_PER_NODE=2(x3)``)."""
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def slurm_detected() -> bool:
    """Lightning's ``SLURMEnvironment.detect()`` rule (srun set ``SLURM_NTASKS``, and the job is not named ``bash``
    or ``interactive``) without its warning that srun is installed but unused: the trainer detects the environment
    too and gives that warning itself. (Silencing it with ``warnings.catch_warnings`` would reset Python's
    once-per-place memory, and Lightning's later detects would repeat it.)"""
    return "SLURM_NTASKS" in os.environ and SLURMEnvironment.job_name() not in ("bash", "interactive")


def launched_processes() -> tuple[int, str, str] | None:
    """(processes, who started them, what to do on a mismatch) of this process's launcher; None without one.

    The environments Lightning would choose, in its order: SLURM (``SLURMEnvironment.detect``: not for a job named
    ``bash`` or ``interactive``), then torchelastic (``torchrun`` sets ``TORCHELASTIC_RUN_ID``). A bare
    ``WORLD_SIZE`` left in the shell is no launch: Lightning ignores it too. Lightning's own DDP children are
    neither, and their count matches by construction."""
    if slurm_detected() and _env_int("SLURM_NTASKS") is not None:
        tasks, per_node, nodes = _env_int("SLURM_NTASKS"), _env_int("SLURM_NTASKS_PER_NODE"), _env_int("SLURM_NNODES")
        layout = (
            f"--trainer.devices={per_node} --trainer.num_nodes={nodes}"
            if per_node is not None and nodes is not None and per_node * nodes == tasks
            else "--trainer.devices=<tasks per node> --trainer.num_nodes=<nodes>"
        )
        fix = f"set {layout} --trainer.strategy=ddp, or start one task (srun --ntasks=1)"
        return tasks, f"SLURM started {tasks} tasks (SLURM_NTASKS={tasks})", fix
    world = _env_int("WORLD_SIZE")
    if TorchElasticEnvironment.detect() and world is not None:
        per_node = _env_int("LOCAL_WORLD_SIZE")
        layout = (
            f"--trainer.devices={per_node} --trainer.num_nodes={world // per_node}"
            if per_node and world % per_node == 0
            else "--trainer.devices=<processes per node> --trainer.num_nodes=<nodes>"
        )
        fix = f"set {layout} --trainer.strategy=ddp, or start one process (without torchrun)"
        return world, f"the launcher started {world} processes (WORLD_SIZE={world})", fix
    return None


def configured_processes(devices, num_nodes) -> int | None:
    """``trainer.devices x trainer.num_nodes`` as configured; None while it depends on the machine
    (``auto``, ``-1``)."""
    if isinstance(devices, list | tuple):
        count = len(devices)
    elif isinstance(devices, str) and "," in devices:  # "0,1": device indices
        count = len([index for index in devices.split(",") if index.strip()])
    else:
        try:
            count = int(devices)
        except (TypeError, ValueError):
            return None
        if count < 1:
            return None
    try:
        return count * int(num_nodes if num_nodes is not None else 1)
    except (TypeError, ValueError):
        return None


# Where Lightning reads a process's rank outside SLURM: its rank-zero-only output (logs, checkpoint messages,
# warnings) takes the first of these that is set (lightning.fabric.utilities.rank_zero._get_rank), and a LOCAL_RANK
# alone makes it take the process as started by a launcher (LightningEnvironment.creates_processes_externally).
# (SLURM_PROCID, read after them, is left out: srun sets it in the tasks of `bash`/`interactive` jobs too, which
# Lightning deliberately does not treat as a SLURM launch.)
RANK_VARIABLES = ("RANK", "LOCAL_RANK")


def check_no_leftover_rank(configured: int | None) -> None:
    """A ``ConfigError`` for rank variables that no launcher set (an ``export LOCAL_RANK=1`` from another job, a
    shell inside a torchrun or srun task): with none of SLURM, torchrun and the ``WORLD_SIZE`` that Lightning's own
    DDP processes and hand-made launches carry, Lightning would still read them. A rank other than 0 silences the run's
    logs (no metrics.csv, no wandb run, no warnings); a ``LOCAL_RANK`` with ``configured`` > 1 processes makes
    Lightning wait forever for processes it does not start."""
    if launched_processes() is not None or "WORLD_SIZE" in os.environ:
        return
    found = {name: os.environ[name] for name in RANK_VARIABLES if name in os.environ}
    nonzero = {name: value for name, value in found.items() if value.strip() != "0"}
    waits = "LOCAL_RANK" in found and configured is not None and configured > 1
    if not nonzero and not waits:
        return
    named = ", ".join(f"{name}={value}" for name, value in (nonzero or found).items())
    harm = (
        f"Lightning would not start the other {configured - 1} process(es) and wait for them forever"
        if waits
        else "Lightning would take this process for another rank than 0 and write no logs (no metrics, no wandb run)"
    )
    raise ConfigError(
        f"{named} is set, but no launcher started this process (no srun, torchrun or WORLD_SIZE): {harm}. Unset "
        f"{' '.join(nonzero or found)} (left over from another job in this shell), or start the run with torchrun or "
        "srun"
    )


def check_launch_matches(devices, num_nodes) -> None:
    """A ``ConfigError`` when a launcher started another number of processes than ``devices x num_nodes``, or when
    rank variables no launcher set would mislead Lightning (``check_no_leftover_rank``)."""
    launched, configured = launched_processes(), configured_processes(devices, num_nodes)
    check_no_leftover_rank(configured)
    if launched is None or configured is None or launched[0] == configured:
        return
    _, who, fix = launched
    raise ConfigError(
        f"{who} but the trainer is set up for {configured} (trainer.devices={devices} x trainer.num_nodes="
        f"{num_nodes}), so the ranks would not train together: {fix}"
    )


def check_master_port_free(trainer) -> None:
    """A ``ConfigError`` when Lightning is about to start the DDP processes itself on a ``MASTER_PORT`` from the
    environment that another process holds (one left from another run or shell): rank 0 failed with torch's
    EADDRINUSE traceback and left the other ranks it had started waiting on the port. Without ``MASTER_PORT``
    Lightning picks a free port itself."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    port = _env_int("MASTER_PORT")
    if port is None or trainer.world_size < 2 or trainer.global_rank != 0 or environment is None:
        return
    if environment.creates_processes_externally:  # a launcher's port: its processes bind and join it
        return
    with socket.socket() as probe:
        try:
            probe.bind((os.environ.get("MASTER_ADDR", "127.0.0.1"), port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                return
            raise ConfigError(
                f"MASTER_PORT={port} is set and that port is in use (by another run?), so the DDP processes could not "
                "meet there: unset MASTER_PORT (Lightning then picks a free port) or set a free one"
            ) from None
