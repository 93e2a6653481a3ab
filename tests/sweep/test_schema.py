"""The offline sweep-file validator (amlit.sweep.schema), checked against wandb's published schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from sweep_helpers import SWEEPS, valid_sweep, write_sweep

from amlit.errors import BadDataError, ConfigError
from amlit.sweep import (
    load_sweep,
)


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
