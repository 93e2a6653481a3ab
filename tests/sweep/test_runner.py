"""The local sweep runner (amlit.sweep.runner): trials recorded as they go, resumed and selected; end to end on
the demo."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from sweep_helpers import TABLE1_MARGINS, valid_sweep, write_sweep

from amlit.cli import run_tool
from amlit.errors import BadDataError, ConfigError
from amlit.sweep import (
    read_final_metric,
    run_sweep,
)
from amlit.sweep.overrides import overridden_parameters
from amlit.sweep.runner import TrialsFailedError, amlit_cli_args

FAKE_TRAINER = """
import json, os, sys
args = dict(item[2:].split("=", 1) for item in sys.argv[1:])
root = args["trainer.default_root_dir"]
x = float(args["x"])
os.makedirs(os.path.join(root, "logs", "version_0"))
with open(os.path.join(root, "invocation.json"), "w") as f:
    json.dump({"executable": sys.executable, "argv": sys.argv[1:]}, f)
with open(os.path.join(root, "logs", "version_0", "metrics.csv"), "w") as f:
    acc = 1 - (x - 2) ** 2 / 10
    f.write("step,train/loss,val/heldout/acc\\n0,1.0,\\n1,0.9,0.5\\n2,0.8,\\n3,0.7,{}\\n".format(acc))
sys.exit(3 if x == 3 else 0)
"""


def _fake_sweep(tmp_path: Path, values: list) -> Path:
    program = tmp_path / "fake_trainer.py"
    program.write_text(FAKE_TRAINER, encoding="utf-8")
    config = {
        "program": str(program),
        "method": "grid",
        "metric": {"name": "val/heldout/acc", "goal": "maximize"},
        "parameters": {"x": {"values": values}},
    }
    return write_sweep(tmp_path / "fake.yaml", config)


def test_runner_records_every_trial_as_it_goes_and_resumes(tmp_path, capsys, monkeypatch):
    sweep = _fake_sweep(tmp_path, [1, 2, 3])
    output = tmp_path / "out"
    run_sweep(sweep, output=output, max_trials=1, extra_args=["--extra=1"])
    assert len(pd.read_csv(output / "trials.csv")) == 1  # written after each trial

    with pytest.raises(TrialsFailedError) as failed:  # x = 3 fails, after the others ran
        run_sweep(sweep, output=output, extra_args=["--extra=1"])
    table = failed.value.table
    saved = pd.read_csv(output / "trials.csv")
    assert saved["trial"].tolist() == [0, 1, 2] and table["trial"].tolist() == [0, 1, 2]
    assert saved["status"].tolist() == ["finished", "finished", "failed"]
    assert saved["exit_code"].tolist() == [0, 0, 3]
    expected = [1 - (x - 2) ** 2 / 10 for x in (1, 2, 3)]  # the fake's final val/heldout/acc
    np.testing.assert_allclose(saved["val/heldout/acc"], expected)
    invocation = json.loads((output / "trial-1" / "invocation.json").read_text())
    assert invocation["executable"] == sys.executable  # ${interpreter} ran this interpreter, not PATH's python
    assert invocation["argv"][-2:] == ["--trainer.default_root_dir=" + str(output / "trial-1"), "--extra=1"]
    summary = capsys.readouterr().out.split("sorted by val/heldout/acc (maximize)")[-1]
    first_rows = [line.split()[0] for line in summary.strip().splitlines()[2:]]  # after the "all rows" line, header
    assert first_rows == ["1", "0", "2"]  # best first: x=2 (acc 1.0), then x=1, then x=3 (same acc, but failed later)

    calls = []
    monkeypatch.setattr(
        subprocess, "run", lambda argv, **kw: calls.append(argv) or subprocess.CompletedProcess(argv, 3)
    )
    with pytest.raises(TrialsFailedError):
        run_sweep(sweep, output=output, extra_args=["--extra=1"])
    assert len(calls) == 1 and calls[0][-2].endswith("trial-2")  # only the failed trial runs again


def test_sweep_command_exits_non_zero_naming_the_failed_trials_logs(tmp_path):
    sweep, output = _fake_sweep(tmp_path, [1, 3, 2]), tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "amlit", "sweep", f"--file={sweep}", f"--output={output}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    log = f"{output / 'trial-1' / 'output.log'}"
    assert f"fake.yaml: 3 trials (1 failed: see {log}), sorted by" in result.stdout
    assert f"amlit: error: 1 of 3 trials of {sweep} failed: trial 1 (exit status 3): {log}." in result.stderr
    assert pd.read_csv(output / "trials.csv")["status"].tolist() == ["finished", "failed", "finished"]


def test_runner_refuses_an_output_folder_of_another_command_or_extra_args(tmp_path, monkeypatch):
    sweep, output = _fake_sweep(tmp_path, [1, 3]), tmp_path / "out"
    with pytest.raises(TrialsFailedError):
        run_sweep(sweep, output=output)  # trial 0 finished, trial 1 failed
    changed = yaml.safe_load(sweep.read_text()) | {
        "command": ["${env}", "${interpreter}", "${program}", "--lr=0.5", "${args}"]
    }
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: calls.append(argv))
    with pytest.raises(ConfigError, match=r"trial 0 finished with other settings.*the command of .*fake\.yaml "
                       r"changed: .*\$\{program\} \$\{args\} -> .*\$\{program\} --lr=0\.5 \$\{args\}.*"
                       r"pass another --output"):  # fmt: skip
        run_sweep(write_sweep(sweep, changed), output=output)
    _fake_sweep(tmp_path, [1, 3])  # the command as it was
    with pytest.raises(ConfigError, match=r"--extra_args changed: \[\] -> \['--trainer.max_steps=20'\]"):
        run_sweep(sweep, output=output, extra_args=["--trainer.max_steps=20"])
    assert calls == []  # refused before any trial ran (the failed trial 1 too)

    # trials.csv of an amlit that did not record sweep_command: the whole command each trial ran is compared
    saved = pd.read_csv(output / "trials.csv")
    saved.drop(columns="sweep_command").to_csv(output / "trials.csv", index=False)
    ran = r"it ran `.*--x=1 --trainer.default_root_dir=\S*trial-0`, the sweep now runs `.* --trainer.max_steps=20`"
    with pytest.raises(ConfigError, match=r"trial 0 finished with other settings .*" + ran):
        run_sweep(sweep, output=output, extra_args=["--trainer.max_steps=20"])
    assert calls == []
    monkeypatch.undo()
    # the same sweep from another venv, with --output relative: the interpreter and the run folder do not count
    saved = pd.read_csv(output / "trials.csv")
    saved["command"] = saved["command"].str.replace(sys.executable, "/old/venv/bin/python3", regex=False)
    assert saved["command"][0].startswith(f"/usr/bin/env /old/venv/bin/python3 {tmp_path / 'fake_trainer.py'} ")
    saved.to_csv(output / "trials.csv", index=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrialsFailedError):
        run_sweep(sweep, output=Path("out"))  # unchanged: continues, trial 1 runs (and fails) again
    rerun = pd.read_csv(output / "trials.csv")
    assert rerun["status"].tolist() == ["finished", "failed"]
    assert rerun["sweep_command"].isna().tolist() == [True, False]  # trial 0 kept, trial 1 ran again


def test_amlit_cli_arguments_of_a_trial_command():
    python = sys.executable
    assert amlit_cli_args(["/usr/bin/env", python, "-m", "amlit", "fit", "--config", "c.yaml", "--a=1"]) == (
        2,
        ["fit", "--config", "c.yaml", "--a=1"],
    )
    assert amlit_cli_args([python, "-m", "amlit.sweep.trial", "--a=1"]) == (1, ["fit", "--a=1"])  # fit, then test
    assert amlit_cli_args([python, "train.py", "--a=1"]) is None  # another program: not amlit's to check
    assert amlit_cli_args([python, "-m", "amlit", "sweep", "--file=x"]) is None


@pytest.mark.slow
def test_runner_refuses_a_misspelt_parameter_before_any_trial_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the command names configs/demo.yaml
    config = valid_sweep() | {"parameters": {"model.head.marign": {"values": [0.25, 0.35]}}}
    with pytest.raises(ConfigError, match=r"(?s)trial 0's command does not parse with the amlit CLI.*nothing was run"
                       r".*Option 'marign' is not accepted.*--model.head.marign=0.25"):  # fmt: skip
        run_sweep(write_sweep(tmp_path / "typo.yaml", config), output=tmp_path / "out")
    assert not (tmp_path / "out" / "trials.csv").exists() and not (tmp_path / "out" / "trial-0" / "output.log").exists()


def test_runner_runs_only_the_selected_trials(tmp_path):
    sweep = _fake_sweep(tmp_path, [1, 2, 3])
    table = run_sweep(sweep, output=tmp_path / "out", trials=[1])
    assert table["trial"].tolist() == [1] and table["x"].tolist() == [2]  # a SLURM array task's row only
    assert not (tmp_path / "out" / "trial-0").exists()
    with pytest.raises(ConfigError, match=r"has trials 0\.\.2; there is no trial 3"):
        run_sweep(sweep, output=tmp_path / "out", trials=[3])


def test_runner_refuses_an_output_folder_of_a_changed_sweep(tmp_path):
    output = tmp_path / "out"
    run_sweep(_fake_sweep(tmp_path, [1]), output=output)
    with pytest.raises(ConfigError, match="the sweep changed: pass another --output"):
        run_sweep(_fake_sweep(tmp_path, [2]), output=output)


def test_runner_explains_bayes_and_uncapped_random(tmp_path):
    with pytest.raises(ConfigError, match=r"needs a W&B server.*wandb sweep .*wandb agent"):
        run_sweep(REPO / "sweeps" / "margin_scale_bayes.yaml", output=tmp_path)
    random = valid_sweep() | {"method": "random", "parameters": {"m": {"min": 0.2, "max": 0.5}}}
    with pytest.raises(ConfigError, match="set run_cap in the file or pass --max_trials"):
        run_sweep(write_sweep(tmp_path / "random.yaml", random), output=tmp_path)


def test_final_metric_is_the_last_logged_value_of_the_newest_log(tmp_path):
    old, new = tmp_path / "logs" / "version_0", tmp_path / "logs" / "version_1"
    for folder, rows in ((old, "0,0.9\n"), (new, "0,0.6\n5,\n9,0.7\n")):
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("step,val/heldout/acc\n" + rows)
    assert read_final_metric(tmp_path, "val/heldout/acc") == 0.7
    assert math.isnan(read_final_metric(tmp_path, "val/other"))
    assert math.isnan(read_final_metric(tmp_path / "nothing", "val/heldout/acc"))
    tested = tmp_path / "logs" / "version_2"  # `amlit test` after fit (amlit.sweep.trial): a newer log without it
    tested.mkdir()
    (tested / "metrics.csv").write_text("step,test/lfw/acc\n0,0.8\n")
    assert read_final_metric(tmp_path, "val/heldout/acc") == 0.7


@pytest.mark.parametrize("extra", ["--extra_args+=--trainer.max_steps=2", "--extra_args=--trainer.max_steps=2"])
def test_sweep_tool_command_dry_run_prints_the_trial_commands(extra, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    output = tmp_path / "out"
    run_tool(["sweep", "--file=sweeps/table1_margin_grid.yaml", f"--output={output}", "--dry_run=true", extra])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(TABLE1_MARGINS)
    run_folder = f"--trainer.default_root_dir={output / 'trial-0'}"
    assert lines[0].endswith(f"--model.head.margin=0.25 --model.head.scale=30.0 {run_folder} --trainer.max_steps=2")
    assert not (output / "trials.csv").exists()


@pytest.mark.slow
def test_runner_runs_a_two_trial_demo_grid_end_to_end(tmp_path, monkeypatch):
    from test_cli import overrides

    monkeypatch.chdir(tmp_path)
    config = valid_sweep()
    config["command"][6] = str(REPO / "configs" / "demo.yaml")
    config["parameters"] = {"model.head.margin": {"values": [0.0, 0.35]}}
    tiny = [arg for arg in overrides("demo.yaml", None, tmp_path) if not arg.startswith("--trainer.default_root_dir")]
    table = run_sweep(
        write_sweep(tmp_path / "demo.yaml", config),
        output=tmp_path / "sweep",
        extra_args=[
            *tiny,
            "--trainer.max_steps=2",
            "--trainer.val_check_interval=2",
            "--trainer.enable_progress_bar=false",
        ],
    )
    assert table["status"].tolist() == ["finished", "finished"], (
        tmp_path / "sweep" / "trial-0" / "output.log"
    ).read_text()[-3000:]
    assert table["val/heldout/acc"].between(0, 1).all()
    saved = pd.read_csv(tmp_path / "sweep" / "trials.csv")
    assert saved["model.head.margin"].tolist() == [0.0, 0.35]
    for trial in (0, 1):
        assert (tmp_path / "sweep" / f"trial-{trial}" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "runs").exists()  # nothing landed in the config's own runs/demo


@pytest.mark.parametrize(
    ("command_tail", "extra_args", "overridden_by"),
    [
        # a config after the swept arguments that sets the swept setting (spelt with init_args)
        (["${args}", "--config", "late.yaml"], [], "--config=late.yaml"),
        # an --extra_args key the sweep sweeps
        (["${args}"], ["--model.head.margin=0.5"], "--model.head.margin=0.5"),
        # a new head class replaces the whole head, margin included
        (["${args}"], ["--model.head=amlit.heads.ArcFace"], "--model.head=amlit.heads.ArcFace"),
    ],
)
def test_runner_refuses_a_swept_parameter_a_later_argument_overrides(
    command_tail, extra_args, overridden_by, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    late = {"model": {"head": {"class_path": "amlit.heads.AMSoftmax", "init_args": {"margin": 0.4}}}}
    (tmp_path / "late.yaml").write_text(yaml.safe_dump(late), encoding="utf-8")
    config = valid_sweep()
    config["command"] = config["command"][:-1] + command_tail
    with pytest.raises(ConfigError, match=r"in trial 0, model\.head\.margin \(set by --model\.head\.margin=0\.25\) "
                       rf"is overridden by the later {re.escape(overridden_by)},.*nothing was run"):  # fmt: skip
        run_sweep(write_sweep(tmp_path / "late.yaml.sweep", config), output=tmp_path / "out", extra_args=extra_args)
    assert not (tmp_path / "out").exists()


def test_overrides_are_read_from_the_arguments_in_their_order(tmp_path):
    head = tmp_path / "head.yaml"
    head.write_text("model:\n  head:\n    class_path: amlit.heads.Softmax\n    init_args: {dropout: 0.5}\n")
    margin = {"model.head.margin": 0.25}
    assert overridden_parameters(["fit", "--config", str(head), "--model.head.margin=0.25"], margin) == []
    assert overridden_parameters(["fit", "--model.head.margin=0.25", "--model.head.scale=64"], margin) == []
    assert overridden_parameters(["fit", "--model.head.margin=0.25", "--trainer.max_steps=5"], margin) == []
    assert overridden_parameters(["fit", "--model.head.margin", "0.25", "-c", str(head)], margin) == [
        f"model.head.margin (set by --model.head.margin=0.25) is overridden by the later --config={head}"
    ]
    # the command may set the swept setting before ${args}: the swept argument is the one with the trial's value
    assert overridden_parameters(["fit", "--model.head.margin=0.1", "--model.head.margin=0.25"], margin) == []
    # a swept config (Table 1's rows): a later argument that sets one of its settings overrides it
    row = "{model: {head: {class_path: amlit.heads.AMSoftmax, init_args: {margin: 0.3, scale: 30.0}}}}"
    argv = ["fit", f"--config={row}", "--model.head.init_args.scale=64"]
    assert overridden_parameters(argv, {"config": row}) == [
        f"config (set by --config={row}) is overridden by the later --model.head.init_args.scale=64"
    ]
    assert overridden_parameters(["fit", f"--config={head}", "--model.head.scale=64"], {"config": str(head)}) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('trial,status,run_dir,params,command\n0,finished,a,"{}",x\n1,fini', r"line 3 is cut short or lacks a value"),
        (
            "trial,status,run_dir,params,command\n0,finished,a,{},x\n0,failed,b,{},x\n",
            "trial 0 is listed more than once",
        ),
        ("step,loss\n0,1.0\n", "it has no column command, params, run_dir, status, trial"),
        ('trial,status,run_dir,params,command\n0,finished,"a\n', "is not a readable sweep trials.csv"),
        ("", "is not a readable sweep trials.csv"),
    ],
)
def test_a_damaged_trials_csv_is_refused_in_one_line_by_sweep_and_report(text, message, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "trials.csv").write_text(text, encoding="utf-8")
    with pytest.raises(BadDataError, match=rf"trials\.csv.*{message}.*restore it, or delete it"):
        run_sweep(_fake_sweep(tmp_path, [1, 2]), output=output)
    with pytest.raises(BadDataError, match="restore it, or delete it"):
        run_tool(["report", f"--runs={output / 'trials.csv'}", f"--output={tmp_path / 'report'}"])
