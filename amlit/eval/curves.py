"""A named curve (ROC, CMC, ...) that an evaluation returns beside its scalar metrics, for plots and logs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amlit.errors import BadDataError


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


CURVES_FILE = "curves.json"  # written by amlit.callbacks.ResultsWriter beside results.json


def save_curves(curves: Mapping[str, Curve], path: str | Path) -> None:
    """Curves as JSON: ``{key: {"x": [...], "y": [...], "x_label", "y_label", "log_x"}}`` (float64 values kept
    exactly: JSON numbers are written with every digit Python needs)."""
    document = {
        key: {
            "x": np.asarray(curve.x, dtype=np.float64).tolist(),
            "y": np.asarray(curve.y, dtype=np.float64).tolist(),
            "x_label": curve.x_label,
            "y_label": curve.y_label,
            "log_x": bool(curve.log_x),
        }
        for key, curve in curves.items()
    }
    Path(path).write_text(json.dumps(document) + "\n")


def load_curves(path: str | Path) -> dict[str, Curve]:
    """Read a file written by ``save_curves``; a damaged one is a ``BadDataError`` naming it."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
        return {
            key: Curve(
                np.asarray(entry["x"], dtype=np.float64),
                np.asarray(entry["y"], dtype=np.float64),
                str(entry["x_label"]),
                str(entry["y_label"]),
                bool(entry["log_x"]),
            )
            for key, entry in document.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise BadDataError(
            f"{path} is not a curves file (JSON {{key: {{x, y, x_label, y_label, log_x}}}} written by amlit test): "
            f"{error}"
        ) from error
