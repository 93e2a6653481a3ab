"""Recipe details of the paper's runs: the w/o FN margin ramp resumes exactly, Table 2's overlay trains on all ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_cli import CONFIGS, overrides
from test_training import callbacks_config, demo_args, final_weights, logged_losses

from amlit.cli import run_cli


@pytest.fixture
def data_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "demo-synthetic"  # generated once, shared with test_training


@pytest.mark.slow
def test_margin_ramp_resumes_exactly(tiny_tree, tmp_path, data_root, monkeypatch):
    """Stopped at step 4 and resumed, a ramped head continues the ramp: same per-step loss, same step counter."""
    total, stop_at = 9, 4
    ramp = ["--config", str(CONFIGS / "heads" / "amsoftmax_wo_fn.yaml"), "--model.head.margin_ramp=0.05"]
    runs = {}
    for name in ("straight", "interrupted"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        monkeypatch.chdir(run_dir)
        args = [*demo_args(tiny_tree, run_dir, data_root), *ramp, "--config", str(callbacks_config(run_dir))]
        if name == "interrupted":
            assert run_cli(["fit", *args, f"--trainer.max_steps={stop_at}"]).model.head.iteration == stop_at
            cli = run_cli(["fit", *args, f"--trainer.max_steps={total}", "--ckpt_path=last"])
        else:
            cli = run_cli(["fit", *args, f"--trainer.max_steps={total}"])
        assert int(cli.model.head.iteration) == total  # the margin is min(0.4, 0.05 * 9) now
        runs[name] = run_dir
    expected, got = logged_losses(runs["straight"]), logged_losses(runs["interrupted"])
    assert list(got.index) == list(range(total))
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-5, atol=1e-6)
    weights = final_weights(runs["interrupted"] / "checkpoints" / "last.ckpt")
    assert int(weights["head.iteration"]) == total
    for name, value in final_weights(runs["straight"] / "checkpoints" / "last.ckpt").items():
        torch.testing.assert_close(weights[name], value)


def test_table2_overlay_trains_on_every_identity(tiny_tree, tmp_path, monkeypatch):
    """The paper config names the 59-id exclusion list; the overlay drops it, so every identity folder is a class."""
    monkeypatch.chdir(tmp_path)
    args = [a for a in overrides("amsoftmax_casia.yaml", tiny_tree, tmp_path) if not a.startswith("--data.exclude")]
    config = [
        "--config",
        str(CONFIGS / "amsoftmax_casia.yaml"),
        "--config",
        str(CONFIGS / "data" / "no_overlap_removal.yaml"),
    ]
    cli = run_cli(["fit", *config, *args, "--trainer.fast_dev_run=1"])
    identities = [p for p in (tiny_tree / "casia").iterdir() if p.is_dir()]
    assert cli.datamodule.num_classes == len(identities) == cli.model.head.num_classes
    manifest = cli.datamodule.manifest()
    assert manifest["removed_identities"] == [] and manifest["exclude_id_lists"] == []
