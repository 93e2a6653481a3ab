"""The shipped sweep files: valid, selecting on held-out identities, and every swept command parses with the CLI and
writes only into its trial's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO
from sweep_helpers import SWEEPS, TABLE1_MARGINS

from amlit.sweep import (
    expand_grid,
    isolate_trial_outputs,
    load_sweep,
    render_command,
    sample_random,
)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda path: path.name)
def test_every_shipped_sweep_validates_and_selects_on_held_out_identities(path):
    config = load_sweep(path)
    if "metric" not in config:  # a report (sweeps/table1.yaml): a grid that trains and tests every row, selects nothing
        assert config["method"] == "grid" and "amlit.sweep.trial" in config["command"]
    else:
        assert config["metric"] == {"name": "val/heldout/acc", "goal": "maximize"}
    assert config["command"].index("--config") < config["command"].index("${args}")  # the sweep overrides the config


def test_table1_grid_is_the_papers_margins_at_scale_30():
    config = load_sweep(REPO / "sweeps" / "table1_margin_grid.yaml")
    trials = expand_grid(config["parameters"])
    assert trials == [{"model.head.margin": margin, "model.head.scale": 30.0} for margin in TABLE1_MARGINS]


def test_bayes_sweep_searches_the_agreed_ranges_with_hyperband():
    config = load_sweep(REPO / "sweeps" / "margin_scale_bayes.yaml")
    parameters = config["parameters"]
    assert (parameters["model.head.margin"]["min"], parameters["model.head.margin"]["max"]) == (0.2, 0.5)
    assert (parameters["model.head.scale"]["min"], parameters["model.head.scale"]["max"]) == (16, 64)
    assert config["early_terminate"]["type"] == "hyperband"


def _dotted(config: dict, key: str):
    """Value of a dotted CLI key in a printed LightningCLI config (descending through ``init_args``)."""
    node = config
    for part in key.split("."):
        if part not in node and "init_args" in node:
            node = node["init_args"]
        node = node[part]
    return node


def _trials(config: dict) -> list[dict]:
    if config["method"] == "grid":
        return expand_grid(config["parameters"])
    return sample_random(config["parameters"], 2, seed=0)


class _Parsed(Exception):
    pass


def parsed_run_config(cli_args: list[str]) -> dict:
    """The run config as the CLI has it just before instantiating anything (outputs placed in the run folder)."""
    from amlit.cli import AmlitCLI
    from amlit.loggers import SaveConfigToLoggers
    from amlit.module import FaceVerificationModule

    class ParseOnly(AmlitCLI):
        def instantiate_classes(self) -> None:
            raise _Parsed(self.parser.dump(self.config, skip_check=True))

    with pytest.raises(_Parsed) as parsed:
        ParseOnly(FaceVerificationModule, subclass_mode_data=True, save_config_callback=SaveConfigToLoggers,
                  auto_configure_optimizers=False, args=cli_args)  # fmt: skip
    return yaml.safe_load(str(parsed.value))[cli_args[0]]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda path: path.name)
def test_every_swept_command_parses_with_the_cli_and_writes_only_into_its_trial(path, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the commands name configs/... relative to the repository root
    config = load_sweep(path)
    for index, parameters in enumerate(_trials(config)):
        trial_dir = tmp_path / f"trial-{index}"
        trial_dir.mkdir()
        argv = isolate_trial_outputs(render_command(config["command"], parameters), trial_dir)
        if "amlit.sweep.trial" in argv:  # fit, then test with the same arguments
            cli_args = ["fit", *argv[argv.index("amlit.sweep.trial") + 1 :]]
        else:
            cli_args = argv[argv.index("amlit") + 1 :]
        full = parsed_run_config(cli_args)
        for key, value in parameters.items():
            if key != "config":  # a whole run-config overlay (tests/test_report.py checks those)
                assert _dotted(full, key) == value, key
        loggers = full["trainer"]["logger"]  # one logger or a list (wandb + CSV)
        outputs = [
            full["trainer"]["default_root_dir"],
            *[logger["init_args"]["save_dir"] for logger in (loggers if isinstance(loggers, list) else [loggers])],
            *[
                c["init_args"][key]
                for c in full["trainer"]["callbacks"]
                for key in ("dirpath", "output", "output_dir")
                if key in c.get("init_args", {})
            ],
        ]
        assert len(outputs) == 6 and all(Path(out).is_relative_to(trial_dir) for out in outputs), outputs
        assert "runs/" not in yaml.safe_dump(full)
