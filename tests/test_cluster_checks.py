"""The container and SLURM check scripts: their arguments, the sbatch script's command lines, the checkpoint
comparison; the full checks (root, buildah, slurm-wlm, minutes) run only when asked for."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import pytest
import torch
from conftest import REPO

CONTAINER_CHECK = REPO / "scripts" / "container_check.sh"
SLURM_CHECK = REPO / "scripts" / "slurm" / "check_local.sh"
SBATCH = REPO / "scripts" / "slurm" / "amlit.sbatch"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False, env=env, timeout=60)


@pytest.mark.parametrize("script", [CONTAINER_CHECK, SLURM_CHECK])
def test_check_scripts_are_valid_bash_with_help(script):
    assert run("bash", "-n", str(script)).returncode == 0
    result = run("bash", str(script), "--help")
    assert result.returncode == 0 and "Options:" in result.stdout and "--steps N" in result.stdout


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        (CONTAINER_CHECK, ["--bogus"], "unknown argument: --bogus"),
        (CONTAINER_CHECK, ["--steps", "0"], "--steps must be a positive integer, got 0"),
        (SLURM_CHECK, ["--steps", "x"], "not a positive integer: x"),
        (SLURM_CHECK, ["--steps", "50", "--interrupt-at", "60"], "--interrupt-at (60) must be below --steps (50)"),
        (SLURM_CHECK, ["--scenarios", "requeue,reboot"], "unknown scenario: reboot"),
    ],
)
def test_check_scripts_refuse_bad_arguments_before_touching_the_machine(script, args, message):
    result = run("bash", str(script), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def _sbatch_commands(tmp_path, *args: str, restarts: int | None) -> list[str]:
    """The command lines amlit.sbatch hands to srun, recorded by an `srun` placed first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "srun.log"
    (bin_dir / "srun").write_text(f'#!/bin/bash\necho "$*" >> {log}\n')
    (bin_dir / "srun").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "1", "SLURM_NTASKS_PER_NODE": "2"}
    if restarts is not None:
        env |= {"SLURM_RESTART_COUNT": str(restarts), "SLURM_JOB_ID": "7"}
    result = run("bash", str(SBATCH), *args, env=env)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def test_sbatch_fits_then_tests_the_last_checkpoint_with_the_same_overrides(tmp_path):
    layout = "--config configs/amsoftmax_casia.yaml --trainer.num_nodes=1 --trainer.devices=2 --trainer.strategy=ddp"
    assert _sbatch_commands(tmp_path, "--trainer.max_steps=5", restarts=None) == [
        f"amlit fit {layout} --trainer.max_steps=5",
        f"amlit test {layout} --ckpt_path last --trainer.max_steps=5",
    ]


@pytest.mark.parametrize("restarts", [0, 1])
def test_sbatch_leaves_resuming_to_amlit_after_a_requeue(tmp_path, restarts):
    """No --ckpt_path on fit: a requeued job (SLURM_RESTART_COUNT > 0) resumes the newest checkpoint by itself
    (amlit.resume, tested in tests/test_training.py), a first run starts fresh; `last` would refuse a requeue that
    came before the first checkpoint."""
    fit = _sbatch_commands(tmp_path, restarts=restarts)[0]
    assert "--ckpt_path" not in fit


def _compare_module():
    spec = importlib.util.spec_from_file_location("compare_checkpoints", REPO / "scripts/slurm/compare_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(path, weight: torch.Tensor, step: int = 10) -> str:
    torch.save(
        {
            "global_step": step,
            "epoch": 0,
            "state_dict": {"backbone.weight": weight, "head.weight": torch.ones(3, 2)},
            "optimizer_states": [{"state": {0: {"momentum_buffer": weight * 0.5}}, "param_groups": [{"lr": 0.1}]}],
        },
        path,
    )
    return str(path)


def test_compare_checkpoints_reports_the_largest_difference(tmp_path, capsys):
    main = _compare_module().main
    weight = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    reference = _checkpoint(tmp_path / "a.ckpt", weight)
    assert main([reference, _checkpoint(tmp_path / "same.ckpt", weight.clone())]) == 0
    assert "max |weight difference| 0 over 2 tensors; max |optimizer-state difference| 0" in capsys.readouterr().out

    changed = weight.clone()
    changed[1, 2] += 0.25  # the expected difference, recomputed in float64 from the stored float32 values:
    expected = abs(float(weight[1, 2].double()) - float(changed[1, 2].double()))
    other = _checkpoint(tmp_path / "changed.ckpt", changed)
    assert main([reference, other]) == 1
    assert f"max |weight difference| {expected:.3g}" in capsys.readouterr().out
    assert main([reference, other, "--atol", "0.3"]) == 0


def test_compare_checkpoints_fails_on_another_step_or_other_tensors(tmp_path, capsys):
    main = _compare_module().main
    weight = torch.zeros(2, 2)
    reference = _checkpoint(tmp_path / "a.ckpt", weight)
    assert main([reference, _checkpoint(tmp_path / "later.ckpt", weight, step=11)]) == 1
    torch.save({"global_step": 10, "epoch": 0, "state_dict": {}, "optimizer_states": []}, tmp_path / "empty.ckpt")
    assert main([reference, str(tmp_path / "empty.ckpt")]) == 1
    assert "checkpoints differ in structure" in capsys.readouterr().out


def _full_check_or_skip(*tools: str) -> None:
    if os.environ.get("AMLIT_CLUSTER_CHECKS") != "1":
        pytest.skip("the full container/SLURM checks take minutes and root: set AMLIT_CLUSTER_CHECKS=1 to run them")
    if os.geteuid() != 0:
        pytest.skip("the full container/SLURM checks need root")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (the scripts apt-get them when run by hand)")


@pytest.mark.slow
def test_container_check_passes():
    _full_check_or_skip("buildah", "debootstrap")
    result = subprocess.run([str(CONTAINER_CHECK)], capture_output=True, text=True, check=False, timeout=3600)
    assert result.returncode == 0 and "PASS:" in result.stdout, result.stdout[-5000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_slurm_check_passes():
    _full_check_or_skip("slurmctld", "slurmd", "munged")
    result = subprocess.run([str(SLURM_CHECK)], capture_output=True, text=True, check=False, timeout=3600)
    assert result.returncode == 0 and "PASS:" in result.stdout, result.stdout[-5000:] + result.stderr[-3000:]
