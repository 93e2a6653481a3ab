"""Grid expansion and random sampling of sweep parameters (amlit.sweep.params), in wandb's order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amlit.sweep import (
    expand_grid,
    sample_random,
)


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
