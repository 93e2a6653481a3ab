"""scripts/gpu_check.sh in its CPU dry-run mode: every stage runs (tiny sizes) and lands in one JSON; its time budget
and stage selection (what a lent GPU's ~15 minutes need: an end in time, and a rerun of only what failed)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO


@pytest.mark.slow
def gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_stage(tmp_path):
    done = gpu_check(str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Only the report and the log: the device tool brings back at most 8 files (data and runs stay in a scratch folder).
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["gpu_check.json", "gpu_check.log"]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["failed_stages"] == [] and report["skipped_stages"] == []
    stages = ["environment", "fit-bf16-mixed", "fit-bf16-mixed-loss", "train-eager", "embed", "eval"]
    assert list(report["stages"]) == stages
    assert all(stage["status"] == "ok" and stage["exit"] == 0 for stage in report["stages"].values())
    assert "===== train-eager: ok" in (tmp_path / "out" / "gpu_check.log").read_text()
    assert report["environment"]["torch"]
    fit = report["fit-bf16-mixed"]
    assert fit["finite"] and fit["steps"] == 12
    for variant in ("plain", "lightning/packed", "lightning/resident"):
        assert report["train-eager"][variant]["img_per_s"] > 0
    assert report["train-eager"]["flops_per_step"] > 0
    embed = {(run["batch"], run["precision"]): run for run in report["embed"]["runs"]}
    assert embed[16, "32"]["images_per_s"] > 0 and 0.9 < embed[16, "bf16"]["min_cosine_to_fp32"] < 1
    megaface = report["eval"]["megaface"]
    assert megaface["same_numbers"] and megaface["amlit_s"] > 0 and megaface["products_s"] > 0


def test_a_spent_budget_skips_the_stages_and_says_so(tmp_path):
    done = gpu_check("--budget=1", "--stages=eval", str(tmp_path))
    assert done.returncode == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    # The environment stage always runs when time allows; --stages=eval leaves the rest out entirely.
    assert report["skipped_stages"] == ["environment", "eval"] and report["failed_stages"] == []
    assert "eval: SKIPPED" in done.stdout and "--stages=eval" in done.stdout


def test_stages_selects_a_stage_and_its_sub_stages(tmp_path):
    done = gpu_check("--budget=1", "--stages=fit,embed", str(tmp_path))  # no time: every selected stage is listed
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report["stages"]) == ["environment", "fit-bf16-mixed", "fit-bf16-mixed-loss", "embed"], done.stdout


def test_an_unknown_option_is_refused(tmp_path):
    done = gpu_check("--budget=soon", str(tmp_path))
    assert done.returncode == 2 and "--budget=soon is not a number" in done.stderr
    done = gpu_check("--stage=eval", str(tmp_path))
    assert done.returncode == 2 and "unknown option --stage=eval" in done.stderr
