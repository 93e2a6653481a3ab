"""A launcher (srun, torchrun) that started another number of processes than the trainer expects is refused."""

import os
import warnings

import pytest
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.loggers.logger import DummyExperiment
from lightning.pytorch.utilities import rank_zero_only
from test_cli import CONFIGS, overrides

from amlit.cli import find_user_error, run_cli
from amlit.errors import ConfigError
from amlit.launcher import check_launch_matches, check_master_port_free, configured_processes, slurm_detected
from amlit.loggers import WandbLogger

LAUNCH_ENV = ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES", "SLURM_JOB_NAME", "SLURM_PROCID")
LAUNCH_ENV += ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID")

# what torchrun --nnodes=2 --nproc-per-node=2 sets for its last process (among others)
TORCHRUN_FOUR = {
    "WORLD_SIZE": "4",
    "LOCAL_WORLD_SIZE": "2",
    "RANK": "3",
    "LOCAL_RANK": "1",
    "GROUP_RANK": "1",
    "TORCHELASTIC_RUN_ID": "none",
}

# `srun --ntasks=2` of a single-device run, as rank 1 sees it
SLURM_TWO_TASKS = {
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_NNODES": "1",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_JOB_NAME": "amlit",
}


@pytest.fixture
def launched(monkeypatch):
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)

    def launch(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return launch


def test_a_slurm_launch_must_match_devices_times_nodes(launched):
    launched(**SLURM_TWO_TASKS)
    with pytest.raises(ConfigError, match=r"SLURM started 2 tasks \(SLURM_NTASKS=2\) but the trainer is set up for 1 "):
        check_launch_matches(1, 1)
    with pytest.raises(ConfigError, match=r"set --trainer.devices=2 --trainer.num_nodes=1 --trainer.strategy=ddp, or"):
        check_launch_matches("1", 1)
    check_launch_matches(2, 1)  # what scripts/slurm/amlit.sbatch passes: tasks per node x nodes
    check_launch_matches("auto", 1)  # known once the trainer is built (checked again there)
    launched(SLURM_JOB_NAME="interactive")  # Lightning ignores SLURM for such a job, so does the check
    check_launch_matches(1, 1)


def test_a_torchrun_launch_must_match_devices_times_nodes(launched):
    check_launch_matches(1, 1)  # no launcher
    launched(**TORCHRUN_FOUR)
    with pytest.raises(
        ConfigError, match=r"started 4 processes \(WORLD_SIZE=4\) .*--trainer.devices=2 --trainer.num_nodes=2"
    ):
        check_launch_matches(2, 1)
    check_launch_matches(2, 2)
    check_launch_matches([0, 1], 2)


def test_a_bare_world_size_left_in_the_shell_is_no_launch(launched):
    launched(WORLD_SIZE="4")  # an `export WORLD_SIZE=4` from another job: Lightning trains one process
    check_launch_matches(1, 1)
    launched(LOCAL_RANK="1", RANK="1")  # as Lightning's own DDP children see it (their count matches anyway)
    check_launch_matches(1, 1)


def test_rank_variables_no_launcher_set_are_refused_where_lightning_would_misread_them(launched):
    # `export LOCAL_RANK=1` left from another job: Lightning took the single process for rank 1 and logged nothing
    launched(LOCAL_RANK="1")
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=1 is set, but no launcher .* write no logs.* Unset LOCAL_RANK"):
        check_launch_matches(1, 1)
    # LOCAL_RANK=0 with 2 devices: Lightning took the processes for started by a launcher and waited for rank 1
    launched(LOCAL_RANK="0")
    check_launch_matches(1, 1)  # harmless alone
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=0 is set.* wait for them forever"):
        check_launch_matches(2, 1)
    launched(RANK="2")
    with pytest.raises(ConfigError, match=r"RANK=2 is set"):
        check_launch_matches(1, 1)
    launched(WORLD_SIZE="2")  # Lightning's own DDP processes, or a hand-made launch: Lightning's protocol
    check_launch_matches(2, 1)


def test_fit_with_a_leftover_local_rank_stops_before_the_data_is_indexed(launched, tiny_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    launched(LOCAL_RANK="1")  # (LOCAL_RANK=0 with 2 devices hung here before the check)
    args = ["fit", "--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=1 is set"):
        run_cli([*args, "--trainer.max_steps=1"])
    assert not (tmp_path / "synthetic").exists()  # the demo data was not generated


def test_a_master_port_in_use_is_refused_before_lightning_starts_the_ddp_processes(launched, tmp_path, monkeypatch):
    import socket

    import lightning as L

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, default_root_dir=tmp_path)
    with socket.socket() as holder:  # another run's rendezvous on the port left in MASTER_PORT
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        monkeypatch.setenv("MASTER_PORT", str(holder.getsockname()[1]))
        # before: rank 0 died of torch's EADDRINUSE traceback, the rank it had started waited on the port
        with pytest.raises(ConfigError, match=r"MASTER_PORT=\d+ is set and that port is in use.*unset MASTER_PORT"):
            check_master_port_free(trainer)
    check_master_port_free(trainer)  # free again
    monkeypatch.delenv("MASTER_PORT")
    check_master_port_free(trainer)


def test_an_installed_but_unused_srun_is_not_warned_of_by_the_check(launched, tmp_path, monkeypatch):
    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_launch_matches(1, 1)
    assert [str(warning.message) for warning in caught] == []  # the trainer warns once itself


@pytest.mark.parametrize(
    "env",
    [
        {},
        SLURM_TWO_TASKS,
        {**SLURM_TWO_TASKS, "SLURM_JOB_NAME": "bash"},
        {**SLURM_TWO_TASKS, "SLURM_JOB_NAME": "interactive"},
    ],
)
def test_slurm_is_detected_by_lightnings_rule(launched, env):
    launched(**env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = SLURMEnvironment.detect()
    assert slurm_detected() is expected


def test_configured_processes_reads_lightnings_device_spellings():
    assert [configured_processes(d, 2) for d in (1, "3", [0, 1], "0,1,", "auto", -1, None)] == [
        2,
        6,
        4,
        4,
        None,
        None,
        None,
    ]


def test_fit_under_a_mismatched_launch_stops_before_the_data_is_indexed(launched, tiny_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    launched(**SLURM_TWO_TASKS)
    args = ["fit", "--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    with pytest.raises(ConfigError, match=r"SLURM started 2 tasks") as info:
        run_cli([*args, "--trainer.max_steps=1"])
    assert isinstance(find_user_error(info.value), ConfigError)
    assert not (tmp_path / "synthetic").exists()  # the demo data was not generated


def test_run_files_are_logged_on_rank_zero_only(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = WandbLogger(offline=True, save_dir=tmp_path)
    assert isinstance(logger.experiment, DummyExperiment)  # what other ranks hold
    config = tmp_path / "config.yaml"
    config.write_text("a: 1\n")
    logger.log_run_files({"config.yaml": config})  # was a TypeError: Path(<the dummy's method>)
