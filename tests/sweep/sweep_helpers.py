"""The shipped sweep files and sweep files written by the tests."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import REPO

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
TABLE1_MARGINS = [0.25, 0.3, 0.35, 0.4, 0.45, 0.5]  # Wang et al. 2018, Table 1, AM-Softmax rows (s = 30)


def write_sweep(path: Path, config: dict | str) -> Path:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def valid_sweep() -> dict:
    return {
        "method": "grid",
        "metric": {"name": "val/heldout/acc", "goal": "maximize"},
        "parameters": {"model.head.margin": {"values": [0.25, 0.35]}},
        "command": ["${env}", "${interpreter}", "-m", "amlit", "fit", "--config", "configs/demo.yaml", "${args}"],
    }
