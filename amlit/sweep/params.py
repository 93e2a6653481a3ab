"""Trial parameters of grid and random sweeps, with the semantics of wandb's sweep engine (``sweeps`` package).

Grid: the cartesian product over the parameters sorted by name (the first name varies slowest); ``int_uniform``
takes every integer in [min, max], ``q_uniform`` takes ``numpy.arange(min, max, q)`` (max excluded, as in wandb).
Random: each parameter drawn independently from its distribution with a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from amlit.errors import ConfigError
from amlit.sweep.schema import GRID_DISTRIBUTIONS, parameter_distribution


def grid_values(spec: Mapping[str, Any]) -> list[Any]:
    """The values a grid sweep takes for one parameter."""
    distribution = parameter_distribution(spec)
    if distribution == "constant":
        return [spec["value"]]
    if distribution == "categorical":
        return list(spec["values"])
    if distribution == "int_uniform":
        return list(range(spec["min"], spec["max"] + 1))
    if distribution == "q_uniform":
        return np.arange(spec["min"], spec["max"], spec.get("q", 1.0)).tolist()
    raise ConfigError(f"grid search takes only {sorted(GRID_DISTRIBUTIONS)} parameters, got {distribution}")


def expand_grid(parameters: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every combination of the parameters' grid values, in wandb's order."""
    names = sorted(parameters)
    combinations = itertools.product(*(grid_values(parameters[name]) for name in names))
    return [dict(zip(names, combination, strict=True)) for combination in combinations]


def _quantize(value: float, q: float | int) -> float | int:
    rounded = round(value / q) * q
    return int(rounded) if isinstance(q, int) else float(rounded)


def sample_value(spec: Mapping[str, Any], rng: np.random.Generator) -> Any:
    """One draw from a parameter's distribution (``min``/``max`` of ``log_uniform`` are natural logs, as in wandb)."""
    distribution = parameter_distribution(spec)
    low, high = spec.get("min"), spec.get("max")
    mu, sigma, q = spec.get("mu", 0.0), spec.get("sigma", 1.0), spec.get("q", 1.0)
    if distribution == "constant":
        return spec["value"]
    if distribution == "categorical":
        probabilities = spec.get("probabilities")
        return spec["values"][int(rng.choice(len(spec["values"]), p=probabilities))]
    if distribution == "int_uniform":
        return int(rng.integers(low, high, endpoint=True))
    draws = {
        "uniform": lambda: rng.uniform(low, high),
        "q_uniform": lambda: _quantize(rng.uniform(low, high), q),
        "log_uniform": lambda: math.exp(rng.uniform(low, high)),
        "q_log_uniform": lambda: _quantize(math.exp(rng.uniform(low, high)), q),
        "inv_log_uniform": lambda: math.exp(-rng.uniform(low, high)),
        "log_uniform_values": lambda: math.exp(rng.uniform(math.log(low), math.log(high))),
        "q_log_uniform_values": lambda: _quantize(math.exp(rng.uniform(math.log(low), math.log(high))), q),
        # ln(1/X) uniform on [ln(1/max), ln(1/min)], so X lies in [min, max] with more mass near min
        "inv_log_uniform_values": lambda: 1.0 / math.exp(rng.uniform(math.log(1 / high), math.log(1 / low))),
        "normal": lambda: rng.normal(mu, sigma),
        "q_normal": lambda: _quantize(rng.normal(mu, sigma), q),
        "log_normal": lambda: math.exp(rng.normal(mu, sigma)),
        "q_log_normal": lambda: _quantize(math.exp(rng.normal(mu, sigma)), q),
        "beta": lambda: rng.beta(spec.get("a", 1.0), spec.get("b", 1.0)),
        "q_beta": lambda: _quantize(rng.beta(spec.get("a", 1.0), spec.get("b", 1.0)), q),
    }
    value = draws[distribution]()
    return value if isinstance(value, int) else float(value)  # plain Python numbers render like wandb's


def sample_random(parameters: Mapping[str, Mapping[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` independent draws of every parameter (names sorted, so a seed always gives the same trials)."""
    rng = np.random.default_rng(seed)
    return [{name: sample_value(parameters[name], rng) for name in sorted(parameters)} for _ in range(count)]
