"""Tool commands start without Lightning (~5 s of imports `amlit score lfw` does not need), checked in a fresh
interpreter, since this test process has imported Lightning long before."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from amlit.cli import main
from amlit.eval.pairs import read_lfw_pairs

# Runs `amlit score lfw` through amlit.cli.main, imports every tool command's module, then reports which of the
# framework packages got imported.
PROBE = """
import json, sys
from amlit.cli import TOOL_GROUPS, main, tool_commands
sys.argv = ["amlit", "score", "lfw", "--embeddings=" + sys.argv[1], "--pairs=" + sys.argv[2]]
main()
# Every tool command's module but those that read or write Lightning checkpoints (export onnx, convert caffe:
# amlit.checkpoint_io is built on Lightning's CheckpointIO).
tool_commands([group for group in TOOL_GROUPS if group not in ("export", "convert")])
import amlit.data, amlit.eval.blufr, amlit.eval.megaface, amlit.eval.score, amlit.eval.verification
print(json.dumps({name: name in sys.modules for name in ("lightning", "pytorch_lightning", "lightning.pytorch")}))
"""


@pytest.mark.slow
def test_tool_commands_do_not_import_lightning(tiny_tree, tmp_path):
    pairs = tiny_tree / "lfw" / "pairs.txt"
    images = read_lfw_pairs(pairs).images
    features = np.random.default_rng(0).normal(size=(len(images), 8)).astype(np.float32)
    np.savez(tmp_path / "emb.npz", names=np.array(images), features=features)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "emb.npz"), str(pairs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lfw/acc:" in result.stdout  # the command ran
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    assert imported == {"lightning": False, "pytorch_lightning": False, "lightning.pytorch": False}


def test_lightning_names_of_the_cli_are_still_importable_from_it():
    from amlit import cli, lightning_cli

    assert cli.run_cli is lightning_cli.run_cli and cli.AmlitCLI is lightning_cli.AmlitCLI
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = cli.nothing


def test_help_lists_every_command_with_its_description(monkeypatch, capsys):
    from test_faults import amlit_main

    from amlit.cli import TOOL_GROUPS, TRAINER_COMMANDS, tool_commands

    monkeypatch.setattr(sys, "argv", ["amlit", "--help"])
    with pytest.raises(SystemExit) as info:
        main()
    shown = capsys.readouterr().out
    assert info.value.code == 0
    listed = {line[2:20].strip() for line in shown.splitlines() if line.startswith("  ")}
    expected = set(TRAINER_COMMANDS)
    for name, tool in tool_commands(list(TOOL_GROUPS)).items():
        expected |= {f"{name} {sub}" for sub in tool} if isinstance(tool, dict) else {name}
    assert listed == expected
    assert "  score lfw         LFW 10-fold verification (accuracy, AUC, EER, TAR@FAR) of an embeddings file." in shown
    code, err = amlit_main([], monkeypatch, capsys)  # no command: the same list, as an error
    assert code == 2 and err.startswith("usage: amlit <command>")
