"""A named curve (ROC, CMC, ...) that an evaluation returns beside its scalar metrics, for plots and logs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """Points of a curve, e.g. ROC: ``x`` = false accept rate, ``y`` = true accept rate (both ascending in x).

    Protocol functions return ``{metric_key: float | Curve}``; the module logs the floats and hands the curves to
    the plotting/results code (``log_x`` asks for a logarithmic x axis, as ROC plots at FAR 1e-6..1 need).
    """

    x: np.ndarray
    y: np.ndarray
    x_label: str
    y_label: str
    log_x: bool = False

    def __post_init__(self) -> None:
        if np.shape(self.x) != np.shape(self.y) or np.ndim(self.x) != 1:
            raise ValueError(f"curve needs 1-d x and y of one length, got {np.shape(self.x)} and {np.shape(self.y)}")
