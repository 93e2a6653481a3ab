"""scripts/gpu_check.sh in its CPU dry-run mode: every stage runs (tiny sizes) and lands in one JSON."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_stage(tmp_path):
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["failed_stages"] == []
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
