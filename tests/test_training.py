"""Training robustness on the demo config and tiny data: exact resume, kill -9, SIGTERM/SIGUSR1, DDP equivalence
(the NaN/Inf guard: test_callbacks.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from training_helpers import callbacks_config, demo_args, final_weights, logged_losses

from amlit.checkpoint_io import load_verified
from amlit.cli import run_cli
from amlit.run_lock import RunFolderBusyError

STEPS_PER_EPOCH = 6  # tiny demo data: 8 training identities x 6 images, batch 8


TOTAL_STEPS = 9  # crosses the first epoch's end (6 batches)


@pytest.fixture(scope="module")
def straight_run(tiny_tree, tmp_path_factory) -> Path:
    """One uninterrupted run of TOTAL_STEPS: the loss curve and weights that every interrupted run must reproduce."""
    run_dir = tmp_path_factory.mktemp("straight")
    data_root = tmp_path_factory.getbasetemp() / "demo-synthetic"
    args = [*demo_args(tiny_tree, run_dir, data_root, f"--trainer.max_steps={TOTAL_STEPS}")]
    cwd = os.getcwd()
    os.chdir(run_dir)  # the config's relative paths land in the run's folder
    try:
        run_cli(["fit", *args, "--config", str(callbacks_config(run_dir))])
    finally:
        os.chdir(cwd)
    return run_dir


@pytest.mark.slow
def test_resume_mid_epoch_continues_the_same_loss_curve(tiny_tree, tmp_path, data_root, monkeypatch, straight_run):
    stop_at = 4  # stops mid-epoch
    monkeypatch.chdir(tmp_path)
    args = [*demo_args(tiny_tree, tmp_path, data_root), "--config", str(callbacks_config(tmp_path))]
    first = run_cli(["fit", *args, f"--trainer.max_steps={stop_at}"])
    assert first.trainer.global_step == stop_at
    resumed = run_cli(["fit", *args, f"--trainer.max_steps={TOTAL_STEPS}", "--ckpt_path=last"])
    assert resumed.trainer.global_step == TOTAL_STEPS

    expected, got = logged_losses(straight_run), logged_losses(tmp_path)
    assert list(expected.index) == list(range(TOTAL_STEPS)) and list(got.index) == list(range(TOTAL_STEPS))
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-5, atol=1e-6)
    assert expected.iloc[stop_at] != expected.iloc[stop_at - 1]  # the curve moves: a shifted batch would show
    for name, value in final_weights(straight_run / "checkpoints" / "last.ckpt").items():
        torch.testing.assert_close(final_weights(tmp_path / "checkpoints" / "last.ckpt")[name], value)


@pytest.mark.slow
def test_device_resident_images_train_exactly_like_the_loader(
    tiny_tree, tmp_path, data_root, monkeypatch, straight_run
):
    # Same batches in the same order, gathered from the images held in (CPU) device memory instead of loaded.
    monkeypatch.chdir(tmp_path)
    args = [*demo_args(tiny_tree, tmp_path, data_root), "--config", str(callbacks_config(tmp_path))]
    run_cli(["fit", *args, f"--trainer.max_steps={TOTAL_STEPS}", "--data.device_resident=always"])
    expected, got = logged_losses(straight_run), logged_losses(tmp_path)
    assert list(got.index) == list(range(TOTAL_STEPS))
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    for name, value in final_weights(straight_run / "checkpoints" / "last.ckpt").items():
        torch.testing.assert_close(final_weights(tmp_path / "checkpoints" / "last.ckpt")[name], value, rtol=0, atol=0)


@pytest.mark.slow
def test_kill_9_loses_only_the_steps_since_the_periodic_checkpoint_and_frees_the_run_folder(
    tiny_tree, tmp_path, data_root, monkeypatch, straight_run
):
    marker = tmp_path / "paused"
    pause = {"class_path": "training_helpers.PauseAtStep", "init_args": {"step": 4, "marker": str(marker)}}
    args = [*demo_args(tiny_tree, tmp_path, data_root, f"--trainer.max_steps={TOTAL_STEPS}")]
    cfg = callbacks_config(tmp_path, pause, every_n_train_steps=2, name="paused")
    first = subprocess.Popen(
        [sys.executable, "-m", "amlit", "fit", *args, "--config", str(cfg)],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    monkeypatch.chdir(tmp_path)
    again = [*args, "--config", str(callbacks_config(tmp_path)), "--ckpt_path=last"]
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():  # paused after step 5: the periodic last.ckpt of step 4 is all that is saved
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the first run never reached step 5"
            time.sleep(0.2)
        # a second run in the same folders is refused, naming the first one's PID
        with pytest.raises(RunFolderBusyError, match=f"is in use by another amlit fit \\(pid {first.pid} on "):
            run_cli(["fit", *again])
    finally:
        first.kill()  # kill -9: no handler runs, nothing more is saved, amlit does not release its lock
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert load_verified(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 4

    resumed = run_cli(["fit", *again])  # the dead run's lock went with it; training continues from step 4
    assert resumed.trainer.global_step == TOTAL_STEPS
    expected = logged_losses(straight_run)
    *killed, after = [logged_losses(tmp_path, f.parent) for f in sorted((tmp_path / "logs").glob("*/metrics.csv"))]
    assert list(after.index) == list(range(4, TOTAL_STEPS))  # steps 4 and 5 were lost and are trained again
    for curve in [*killed, after]:  # what the killed run had logged, and the resumed run: both on the same curve
        np.testing.assert_allclose(curve.to_numpy(), expected.loc[curve.index].to_numpy(), rtol=1e-5, atol=1e-6)


def subprocess_env(**more: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), **more}


@pytest.mark.slow
def test_sigusr1_and_sigterm_to_the_whole_slurm_job_save_between_steps_and_resume_with_a_new_learning_rate(
    tiny_tree, tmp_path, data_root, monkeypatch
):
    # SLURM signals every process of the job step, DataLoader workers included (so do timeout and systemd): SIGUSR1
    # before the time limit (--signal=SIGUSR1@90), then SIGTERM. The workers must outlive both, or the main process
    # dies of "DataLoader worker ... is killed by signal" before it saves.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # SLURM's answer to `scontrol requeue`: SIGTERM to every process of the job
    scontrol.write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\ntrap "" TERM\nkill -TERM 0\n')
    scontrol.chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "amlit", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0"}
    slurm |= {"SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    env = subprocess_env(**slurm, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SCONTROL_LOG=str(tmp_path / "log"))
    sigusr1 = {"class_path": "training_helpers.SignalGroupAtStep", "init_args": {"step": 2, "signal_name": "SIGUSR1"}}
    args = [*demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=100", "--data.num_workers=1")]
    result = subprocess.run(
        [sys.executable, "-m", "amlit", "fit", *args, "--config", str(callbacks_config(tmp_path, sigusr1))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # its own process group: the signals must not reach pytest
    )
    output = result.stdout + result.stderr
    assert result.returncode == 143, output[-3000:]  # 128 + SIGTERM: the scheduler sees a stopped run
    assert "Traceback" not in output and "killed by signal" not in output, output[-3000:]
    assert (tmp_path / "log").read_text() == "requeue 4242\n"
    # Lightning's SLURM checkpoint, written at the end of a step (not inside the signal handler, mid-step) ...
    hpc = load_verified(tmp_path / "hpc_ckpt_1.ckpt")
    progress = hpc["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]
    assert hpc["global_step"] in (3, 4) and progress["ready"] == progress["processed"] == hpc["global_step"]
    # ... and last.ckpt, written on the SIGTERM that the requeue sent, after the step it arrived in
    last = load_verified(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] >= hpc["global_step"] and f"SIGTERM at step {last['global_step']}: saved" in output

    # Resumed from that file with the lower learning rate that the NaN guard advises: applied to the restored
    # optimizer and recorded (LightningCLI alone would keep 0.025, given a path even in the recorded config).
    # (A requeued job resumes the newest checkpoint without --ckpt_path: tests/test_faults.py.)
    monkeypatch.chdir(tmp_path)
    steps = last["global_step"] + 2
    args = [*demo_args(tiny_tree, tmp_path, data_root, f"--trainer.max_steps={steps}", "--model.learning_rate=0.001")]
    path = tmp_path / "checkpoints" / "last.ckpt"
    resumed = run_cli(["fit", *args, "--config", str(callbacks_config(tmp_path)), f"--ckpt_path={path}"])
    assert list(logged_losses(tmp_path).index) == list(range(steps))  # nothing repeated, nothing lost
    optimizer = resumed.trainer.optimizers[0]  # the demo's 0.025 (biases 0.05) was restored, then replaced
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.001, 0.002])
    assert resumed.trainer.lr_scheduler_configs[0].scheduler.base_lrs == pytest.approx([0.001, 0.002])
    assert all(optimizer.state[p]["momentum_buffer"] is not None for p in resumed.model.parameters())  # kept
    recorded = yaml.safe_load(sorted((tmp_path / "logs").glob("version_*/hparams.yaml"))[-1].read_text())
    assert recorded["learning_rate"] == recorded["model"]["learning_rate"] == 0.001  # the module's and the config's


@pytest.mark.slow
def test_sigterm_to_one_ddp_process_mid_step_stops_every_rank_after_that_step_with_last_ckpt(
    tiny_tree, tmp_path, data_root
):
    # docker stop and Kubernetes signal only the first process; Lightning's own SIGTERM handler then broadcast from
    # inside the handler, in the middle of the step, the ranks' collectives no longer paired up and the run hung
    # with nothing saved until it was killed.
    sigterm = {"class_path": "training_helpers.SignalRankMidStep", "init_args": {"step": 2, "rank": 0}}
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    args = demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=100")
    args = [a for a in args if a != "--trainer.devices=1"]
    result = subprocess.run(
        [sys.executable, "-m", "amlit", "fit", *args, *ddp, "--config", str(callbacks_config(tmp_path, sigterm))],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,  # a hang fails the test
    )
    output = result.stdout + result.stderr
    assert result.returncode == 143, output[-3000:]
    # the ranks compare notes every agree_every_n_batches (10) batches: all stop after the 10th, which they finish
    assert "SIGTERM at step 10: saved" in output, output[-3000:]
    last = load_verified(tmp_path / "checkpoints" / "last.ckpt")
    progress = last["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]
    assert last["global_step"] == progress["ready"] == progress["processed"] == 10


def run_subprocess(args: list[str], cwd: Path) -> str:
    result = subprocess.run(  # a timeout: a DDP deadlock fails the test instead of hanging CI
        [sys.executable, "-m", "amlit", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
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
