"""The agent's command rendering (amlit.sweep.command): macros as the installed wandb agent makes them."""

from __future__ import annotations

import json

from amlit.sweep import (
    render_command,
)
from amlit.sweep.command import macro_values


def test_args_macros_match_the_installed_wandb_agent():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    parameters = {"flag": True, "off": False, "lr": 1e-05, "steps": 30, "name": "a b", "sizes": [112, 96]}
    reference = create_sweep_command_args({"args": {k: {"value": v} for k, v in parameters.items()}})
    ours = macro_values(parameters)
    for macro, values in ours.items():
        assert values == reference[macro], macro


def test_render_command_replaces_whole_item_macros_like_the_agent(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLIT_TEST_CONFIG", "configs/x.yaml")
    command = ["${env}", "${interpreter}", "${program}", "--config=${envvar:AMLIT_TEST_CONFIG}", "${args_json_file}"]
    argv = render_command(
        [*command, "${args}"], {"m": 0.35}, program="train.py", args_json_file=tmp_path / "a.json", interpreter="py"
    )
    assert argv[1:] == ["py", "train.py", "--config=configs/x.yaml", str(tmp_path / "a.json"), "--m=0.35"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"m": 0.35}
    assert render_command(None, {"m": 1}, program="p.py")[1:] == ["python", "p.py", "--m=1"]  # the default command
