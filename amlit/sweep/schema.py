"""Validate wandb sweep files offline, with the rules of the wandb sweep schema (``sweeps`` package, schema.json).

Nothing in wandb validates a sweep without a server, and the ``sweeps`` package pins ``numpy<2``, so the rules are
restated here: allowed top-level keys, methods, ``metric``, the parameter forms and their distributions, grid only
over discrete parameters, ``min < max``, Hyperband fields of ``early_terminate``, and command macros (whole list items,
known names). Two rules are amlit's own: parameters are flat dotted CLI keys (``model.head.margin``; nested
``parameters:`` blocks do not run in the local engine) and the metric is never a test-set key (no test-set
model selection).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from amlit.errors import BadDataError, ConfigError, MissingDataError

TOP_LEVEL_KEYS = frozenset(
    {
        "apiVersion",
        "kind",
        "controller",
        "description",
        "program",
        "job",
        "image_uri",
        "entity",
        "project",
        "method",
        "command",
        "name",
        "run_cap",
        "metric",
        "early_terminate",
        "parameters",
    }
)
METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
METRIC_KEYS = frozenset({"name", "goal", "target", "impute", "impute_while_running"})
HYPERBAND_KEYS = frozenset({"type", "min_iter", "max_iter", "s", "eta", "strict"})

# distribution -> (required keys, optional keys); ``distribution`` itself is always allowed. From schema.json.
DISTRIBUTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "constant": (frozenset({"value"}), frozenset()),
    "categorical": (frozenset({"values"}), frozenset({"probabilities"})),
    "int_uniform": (frozenset({"min", "max"}), frozenset()),
    "uniform": (frozenset({"min", "max"}), frozenset()),
    "q_uniform": (frozenset({"min", "max"}), frozenset({"q"})),
    "log_uniform": (frozenset({"min", "max"}), frozenset()),  # min/max are natural logs (legacy form)
    "q_log_uniform": (frozenset({"min", "max"}), frozenset({"q"})),
    "inv_log_uniform": (frozenset({"min", "max"}), frozenset()),
    "log_uniform_values": (frozenset({"min", "max"}), frozenset()),
    "q_log_uniform_values": (frozenset({"min", "max"}), frozenset({"q"})),
    "inv_log_uniform_values": (frozenset({"min", "max"}), frozenset()),
    "normal": (frozenset(), frozenset({"mu", "sigma"})),
    "q_normal": (frozenset(), frozenset({"mu", "sigma", "q"})),
    "log_normal": (frozenset(), frozenset({"mu", "sigma"})),
    "q_log_normal": (frozenset(), frozenset({"mu", "sigma", "q"})),
    "beta": (frozenset(), frozenset({"a", "b"})),
    "q_beta": (frozenset(), frozenset({"a", "b", "q"})),
}
GRID_DISTRIBUTIONS = frozenset({"constant", "categorical", "int_uniform", "q_uniform"})
POSITIVE_RANGE_DISTRIBUTIONS = frozenset({"log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"})

# Macros the wandb agent replaces; each must be a whole command item (``wandb_agent.py``). ``${envvar:NAME}`` is
# the one macro substituted inside a string.
COMMAND_MACROS = frozenset(
    {
        "env",
        "interpreter",
        "program",
        "args",
        "args_no_equals",
        "args_no_hyphens",
        "args_no_boolean_flags",
        "args_json",
        "args_json_file",
        "args_append_hydra",
        "args_override_hydra",
    }
)
ARGS_MACROS = COMMAND_MACROS - {"env", "interpreter", "program"}
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
ENVVAR_MACRO = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
_WHOLE_MACRO = re.compile(r"^\$\{([^{}]*)\}$")
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parameter_distribution(spec: Mapping[str, Any]) -> str:
    """The distribution wandb infers for a parameter spec when ``distribution`` is not given.

    ``value`` -> constant, ``values`` -> categorical, ``min``/``max`` both ints -> int_uniform, else uniform.
    """
    if "distribution" in spec:
        return str(spec["distribution"])
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if isinstance(spec.get("min"), int) and isinstance(spec.get("max"), int):
        return "int_uniform"
    if "min" in spec or "max" in spec:
        return "uniform"
    return "constant"  # reported as a missing ``value`` below


def _parameter_problems(name: str, spec: object, method: str) -> list[str]:
    where = f"parameters.{name}"
    if not _PARAMETER_NAME.match(name):
        return [f"{where}: a parameter name is a dotted CLI key such as model.head.margin"]
    if not isinstance(spec, Mapping):
        return [f"{where}: expected a mapping such as {{values: [...]}} or {{min: ..., max: ...}}, got {spec!r}"]
    if "parameters" in spec:
        return [f"{where}: nested 'parameters' blocks are not supported; use flat dotted names ({name}.child: ...)"]
    distribution = parameter_distribution(spec)
    if distribution not in DISTRIBUTIONS:
        return [f"{where}.distribution: unknown distribution {distribution!r}; expected one of {sorted(DISTRIBUTIONS)}"]
    required, optional = DISTRIBUTIONS[distribution]
    problems = [
        f"{where}: '{key}' is required for distribution {distribution}" for key in sorted(required - spec.keys())
    ]
    unknown = spec.keys() - required - optional - {"distribution"}
    problems += [f"{where}: unknown key '{key}' for distribution {distribution}" for key in sorted(unknown)]
    if problems:
        return problems

    never_null = "a null renders as the string 'None', which the amlit CLI rejects; leave the parameter out"
    if distribution == "constant" and spec["value"] is None:
        problems.append(f"{where}.value: {never_null}")
    if distribution == "categorical":
        values, probabilities = spec["values"], spec.get("probabilities")
        if not isinstance(values, list) or not values:
            problems.append(f"{where}.values: expected a non-empty list, got {values!r}")
        elif any(value is None for value in values):
            problems.append(f"{where}.values: {never_null}")
        if probabilities is not None:
            if method == "grid":
                problems.append(f"{where}.probabilities: grid search takes every value; remove 'probabilities'")
            elif not (
                isinstance(probabilities, list) and isinstance(values, list) and len(probabilities) == len(values)
            ):
                problems.append(f"{where}.probabilities: expected one probability per value ({len(values)})")
            elif not all(_is_number(p) and p >= 0 for p in probabilities) or not math.isclose(sum(probabilities), 1):
                problems.append(
                    f"{where}.probabilities: expected non-negative numbers that sum to 1, got {probabilities}"
                )
    for key in ("min", "max", "mu", "sigma", "q", "a", "b"):
        if key in spec and not _is_number(spec[key]):
            problems.append(f"{where}.{key}: expected a number, got {spec[key]!r}")
    if problems:
        return problems
    if distribution == "int_uniform" and not (isinstance(spec["min"], int) and isinstance(spec["max"], int)):
        problems.append(f"{where}: int_uniform needs integer min and max, got {spec['min']!r}, {spec['max']!r}")
    if "min" in spec and spec["min"] >= spec["max"]:
        problems.append(
            f"{where}: min must be less than max, got min={spec['min']} max={spec['max']} "
            f"(for a fixed value write {{value: {spec['min']}}})"
        )
    if distribution in POSITIVE_RANGE_DISTRIBUTIONS and spec["min"] <= 0:
        problems.append(f"{where}.min: {distribution} needs min > 0, got {spec['min']}")
    if spec.get("q", 1) <= 0:
        problems.append(f"{where}.q: expected q > 0, got {spec['q']}")
    for key in ("sigma", "a", "b"):
        if spec.get(key, 0) < 0:
            problems.append(f"{where}.{key}: expected {key} >= 0, got {spec[key]}")
    if method == "grid" and distribution not in GRID_DISTRIBUTIONS:
        problems.append(
            f"{where}: grid search takes only discrete parameters (value, values, int_uniform, q_uniform), "
            f"got distribution {distribution}; use method: random or bayes, or list the values"
        )
    return problems


def _metric_problems(metric: object) -> list[str]:
    if not isinstance(metric, Mapping):
        return [f"metric: expected a mapping {{name: ..., goal: maximize}}, got {metric!r}"]
    problems = [f"metric: unknown key '{key}'" for key in sorted(metric.keys() - METRIC_KEYS)]
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        problems.append("metric.name: required, the logged key to optimize (e.g. val/heldout/acc)")
    elif name.startswith("test/"):
        problems.append(
            f"metric.name: {name!r} is a test-set metric; selecting on it is test-set model selection. "
            "Hold out training identities (--data.val_identities=...) and optimize val/heldout/acc"
        )
    if metric.get("goal", "minimize") not in GOALS:
        problems.append(f"metric.goal: expected one of {list(GOALS)}, got {metric['goal']!r}")
    if "target" in metric and not _is_number(metric["target"]):
        problems.append(f"metric.target: expected a number, got {metric['target']!r}")
    return problems


def _early_terminate_problems(early_terminate: object) -> list[str]:
    if not isinstance(early_terminate, Mapping):
        return [f"early_terminate: expected a mapping {{type: hyperband, min_iter: ...}}, got {early_terminate!r}"]
    problems = [f"early_terminate: unknown key '{key}'" for key in sorted(early_terminate.keys() - HYPERBAND_KEYS)]
    if early_terminate.get("type") != "hyperband":
        problems.append(f"early_terminate.type: expected 'hyperband', got {early_terminate.get('type')!r}")
    if "min_iter" not in early_terminate and not {"max_iter", "s"} <= early_terminate.keys():
        problems.append("early_terminate: Hyperband needs min_iter, or max_iter together with s")
    for key, minimum in (("min_iter", 1), ("max_iter", 1)):
        value = early_terminate.get(key, minimum)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            problems.append(f"early_terminate.{key}: expected an integer >= {minimum}, got {value!r}")
    if "s" in early_terminate and not _is_number(early_terminate["s"]):
        problems.append(f"early_terminate.s: expected a number, got {early_terminate['s']!r}")
    eta = early_terminate.get("eta", 3)
    if not _is_number(eta) or eta <= 1:
        problems.append(f"early_terminate.eta: expected a number > 1, got {eta!r}")
    if not isinstance(early_terminate.get("strict", True), bool):
        problems.append(f"early_terminate.strict: expected true or false, got {early_terminate['strict']!r}")
    return problems


def _command_problems(command: object, has_program: bool) -> list[str]:
    if not isinstance(command, list) or not command:
        return [
            "command: expected a non-empty block list (one '- item' per line); a flow list [${env}, ...] "
            f"does not parse as YAML, got {command!r}"
        ]
    problems = []
    macros = set()
    for index, item in enumerate(command):
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            problems.append(f"command[{index}]: expected a string, got {item!r}")
            continue
        text = ENVVAR_MACRO.sub("", str(item))
        whole = _WHOLE_MACRO.match(text)
        if whole and text == str(item):
            if whole.group(1) not in COMMAND_MACROS:
                problems.append(f"command[{index}]: unknown macro {item!r}; known: {sorted(COMMAND_MACROS)}")
            macros.add(whole.group(1))
        elif "${" in text:
            problems.append(
                f"command[{index}]: {item!r}: a macro must be a whole list item (the agent replaces only "
                "items that are exactly ${name}); split it into its own '- ${...}' line"
            )
    if not macros & ARGS_MACROS:
        problems.append("command: no ${args} (or another args macro), so the swept parameters never reach the run")
    if "program" in macros and not has_program:
        problems.append("command: uses ${program} but the sweep has no 'program' key")
    return problems


def sweep_problems(config: object) -> list[str]:
    """Every rule the sweep config breaks, as ``key: what is wrong`` lines (empty when valid)."""
    if not isinstance(config, Mapping):
        return [f"expected a mapping of sweep settings at the top level, got {type(config).__name__}"]
    problems = [
        f"unknown top-level key '{key}'; allowed: {sorted(TOP_LEVEL_KEYS)}"
        for key in sorted(config.keys() - TOP_LEVEL_KEYS)
    ]
    method = config.get("method")
    if method not in METHODS:
        problems.append(f"method: expected one of {list(METHODS)}, got {method!r}")
    for key in ("program", "name", "description", "project", "entity"):
        if key in config and not isinstance(config[key], str):
            problems.append(f"{key}: expected a string, got {config[key]!r}")
    if "run_cap" in config and (not isinstance(config["run_cap"], int) or config["run_cap"] < 1):
        problems.append(f"run_cap: expected a positive integer, got {config['run_cap']!r}")
    if "metric" in config:
        problems += _metric_problems(config["metric"])
    elif method == "bayes" or "early_terminate" in config:
        problems.append("metric: Bayesian search and early termination need a metric {name: ..., goal: ...}")
    if "early_terminate" in config:
        problems += _early_terminate_problems(config["early_terminate"])
    parameters = config.get("parameters")
    if not isinstance(parameters, Mapping) or not parameters:
        problems.append(f"parameters: expected a non-empty mapping of dotted CLI keys, got {parameters!r}")
    else:
        for name, spec in parameters.items():
            problems += _parameter_problems(str(name), spec, str(method))
    command = config.get("command", list(DEFAULT_COMMAND))
    problems += _command_problems(command, has_program="program" in config)
    return problems


def validate_sweep(config: object, source: str | Path = "<sweep>") -> dict[str, Any]:
    """Raise ``ConfigError`` listing every problem of a sweep config; return it unchanged when valid."""
    problems = sweep_problems(config)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"{source}: not a valid wandb sweep:\n{listed}\nSee the sweep files in sweeps/ for examples.")
    return dict(config)  # type: ignore[arg-type]


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read and validate a sweep YAML file."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"sweep file {path} does not exist: expected a wandb sweep YAML such as sweeps/*.yaml")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        hint = ""
        if "${" in path.read_text(encoding="utf-8"):
            hint = (
                "\nA flow list such as command: [${env}, ...] does not parse ('${' opens a mapping): write the "
                "command as a block list, one '- ${env}' item per line, or quote every item."
            )
        raise BadDataError(f"{path}: not valid YAML: {error}{hint}") from error
    return validate_sweep(config, path)
