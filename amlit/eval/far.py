"""False accept rates: which scores a FAR target accepts, stated once for every protocol (LFW and ``.bin`` TAR@FAR,
BLUFR VR@FAR and DIR@FAR, MegaFace TAR@FAR).

Given the impostor scores of a set (N of them) and a FAR target, a rule picks the operating point(s); a score is
accepted at an operating point when it is above (or at) its threshold. Three named rules exist in the literature:

- ``"evalroc"`` (default everywhere): the BLUFR toolkit's ``EvalROC.m``, which published BLUFR numbers use.
  ``k = round(FAR * N)`` (MATLAB: half away from zero, in float64); accept scores ``>=`` the k-th largest impostor
  score; ``k = 0`` accepts scores ``>`` the largest impostor (the toolkit's threshold halfway to the next genuine
  score accepts exactly these); ``k = N`` accepts everything.
- ``"at_most"``: the largest TAR whose FAR is at most the target (torchmetrics' sensitivity at specificity; the
  insightface maintainer's reading of MegaFace, deepinsight/insightface#409): ``k = floor(FAR * N)`` with FAR read
  as the decimal it prints as; accept scores ``>`` the (k+1)-th largest impostor. Never more than k false accepts,
  ties included.
- ``"interpolated"``: ``at_most``'s operating points k and k+1, linearly interpolated at ``FAR * N`` (happynear's
  MegaFace ``draw_curve.m``: ``interp1`` on the devkit's ROC; happynear is the AM-Softmax first author).

The rules differ only for genuine scores between the k-th and (k+1)-th largest impostor scores (and in rounding
FAR * N): negligible on MegaFace's 3.5e9 impostors, visible on LFW's 3,000. Below a set's resolution
(FAR * N < 0.5 for evalroc, < 1 for at_most) every rule gives the TAR at zero false accepts: a valid value, but not
comparable with sets large enough to resolve that FAR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import torch

from amlit import keys
from amlit.errors import ConfigError

FarRule = Literal["evalroc", "at_most", "interpolated"]
FAR_RULES: tuple[str, ...] = ("evalroc", "at_most", "interpolated")


def check_far(far: float, rule: str = "evalroc") -> None:
    if not 0 <= far <= 1:
        raise ConfigError(f"FAR must be in [0, 1], got {far}")
    if rule not in FAR_RULES:
        raise ConfigError(f"unknown FAR rule {rule!r}: choose one of {', '.join(FAR_RULES)}")


def far_count(far: float, num_impostors: int) -> int:
    """``floor(far * num_impostors)`` with ``far`` read as the decimal it prints as (1e-6 * 3.53e9 = 3530 exactly)."""
    check_far(far)
    return math.floor(Fraction(repr(float(far))) * num_impostors)


def evalroc_count(far: float, num_impostors: int) -> int:
    """``round(far * num_impostors)`` as MATLAB computes it: float64 product, half away from zero."""
    check_far(far)
    product = float(far) * num_impostors
    return math.floor(product) + (1 if product - math.floor(product) >= 0.5 else 0)


def top_impostors_needed(far: float, num_impostors: int, rule: FarRule = "evalroc") -> int:
    """How many of the largest impostor scores ``rule`` reads (at least 1, at most all of them)."""
    check_far(far, rule)
    if rule == "evalroc":
        count = evalroc_count(far, num_impostors)
        needed = count if count < num_impostors else 1  # all false accepts allowed: every score is accepted
    else:
        needed = far_count(far, num_impostors) + (1 if rule == "at_most" else 2)
    return max(1, min(needed, num_impostors))


def deciding_ranks(far: float, num_impostors: int, rule: FarRule = "evalroc") -> list[int]:
    """0-based ranks of the largest impostor scores whose values ``operating_points`` reads for ``far`` under
    ``rule`` (the thresholds): only these need exact values."""
    check_far(far, rule)
    if rule == "evalroc":
        count = evalroc_count(far, num_impostors)
        ranks = [0] if count == 0 else [count - 1] if count < num_impostors else []
    else:
        count = far_count(far, num_impostors)
        ranks = [count] if rule == "at_most" else [count, count + 1]
    return [rank for rank in ranks if rank < num_impostors]


@dataclass(frozen=True)
class OperatingPoint:
    """Accept a score when it is above ``threshold`` (or at it, when ``inclusive``); ``weight`` in an average."""

    threshold: float
    inclusive: bool
    weight: float = 1.0

    def accepts(self, scores: torch.Tensor) -> torch.Tensor:
        return scores >= self.threshold if self.inclusive else scores > self.threshold


_ACCEPT_ALL = OperatingPoint(-math.inf, True)


def operating_points(
    top_impostors: torch.Tensor, num_impostors: int, far: float, rule: FarRule = "evalroc"
) -> list[OperatingPoint]:
    """The operating point(s) of ``rule`` at ``far``, from the largest impostor scores ``top_impostors`` (K,) sorted
    descending, with K >= ``top_impostors_needed(far, num_impostors, rule)`` (or all N of them)."""
    check_far(far, rule)
    if num_impostors < 1:
        raise ConfigError("a FAR needs at least one impostor score")
    needed = top_impostors_needed(far, num_impostors, rule)
    if len(top_impostors) < needed:
        raise ValueError(f"need the {needed} largest impostor scores, got {len(top_impostors)}")
    top = top_impostors.double().cpu()

    def above(j: int) -> OperatingPoint:  # at_most's operating point j: at most j false accepts
        return OperatingPoint(float(top[j]), False) if j < num_impostors else _ACCEPT_ALL

    if rule == "evalroc":
        count = evalroc_count(far, num_impostors)
        if count == 0:
            return [OperatingPoint(float(top[0]), False)]
        return [OperatingPoint(float(top[count - 1]), True) if count < num_impostors else _ACCEPT_ALL]
    count = far_count(far, num_impostors)
    if rule == "at_most":
        return [above(count)]
    fraction = float(Fraction(repr(float(far))) * num_impostors - count)  # in [0, 1)
    low, high = above(count), above(count + 1)
    return [
        OperatingPoint(low.threshold, low.inclusive, 1 - fraction),
        OperatingPoint(high.threshold, high.inclusive, fraction),
    ]


def accept_rate(scores: torch.Tensor, points: Sequence[OperatingPoint], also: torch.Tensor | None = None) -> float:
    """Weighted mean over ``points`` of the share of ``scores`` (G,) accepted (and ``also`` true, e.g. rank <= r)."""
    if len(scores) == 0:
        raise ValueError("a true accept rate needs at least one genuine score")
    scores = scores.double().cpu()
    rate = 0.0
    for point in points:
        accepted = point.accepts(scores)
        if also is not None:
            accepted = accepted & also.cpu()
        rate += point.weight * float(accepted.double().mean())
    return rate


def tar_at_far(
    genuine: torch.Tensor, top_impostors: torch.Tensor, num_impostors: int, far: float, rule: FarRule = "evalroc"
) -> float:
    """TAR at ``far`` under ``rule``: genuine scores (G,), the largest impostor scores (K,) sorted descending."""
    return accept_rate(genuine, operating_points(top_impostors, num_impostors, far, rule))


# ---- calibrated thresholds: the cosine to deploy at a FAR --------------------------------------------------------
CALIBRATION_FARS = (1e-3, 1e-4, 1e-5, 1e-6)  # FARs whose thresholds ``amlit test`` stores where a set resolves them
CALIBRATION_RULE: FarRule = "evalroc"  # one closed threshold per FAR: accept a pair when its cosine >= threshold


def resolves(far: float, num_impostors: int) -> bool:
    """Whether ``num_impostors`` impostor scores can measure ``far``: at least one false accept at that FAR
    (FAR x N >= 1, FAR read as the decimal it prints as). Below that the threshold would only be "above every
    impostor seen", which says nothing about the FAR reached on new pairs."""
    return far_count(far, num_impostors) >= 1


def calibration_impostors_needed(num_impostors: int, fars: Sequence[float] = CALIBRATION_FARS) -> int:
    """How many of the largest impostor scores ``calibrated_thresholds`` reads (0 when no FAR is resolved)."""
    return max(
        (top_impostors_needed(far, num_impostors, CALIBRATION_RULE) for far in fars if resolves(far, num_impostors)),
        default=0,
    )


def calibration_ranks(num_impostors: int, fars: Sequence[float] = CALIBRATION_FARS) -> list[int]:
    """0-based ranks of the largest impostor scores whose values ``calibrated_thresholds`` reads."""
    return [
        rank
        for far in fars
        if resolves(far, num_impostors)
        for rank in deciding_ranks(far, num_impostors, CALIBRATION_RULE)
    ]


def calibrated_thresholds(
    top_impostors: torch.Tensor, num_impostors: int, fars: Sequence[float] = CALIBRATION_FARS
) -> dict[float, float]:
    """The cosine threshold reaching each FAR of ``fars`` that the set resolves (``resolves``), from the largest
    impostor scores (K,) sorted descending (K >= ``calibration_impostors_needed``).

    The ``evalroc`` operating point (``operating_points``): with k = round(FAR x N) false accepts allowed, the
    threshold is the k-th largest impostor score and a pair is accepted when its cosine is >= it, so exactly k
    impostors of this set (ties aside) are accepted: the deployable reading of "TAR at FAR" of the same set.
    """
    thresholds = {}
    for far in fars:
        if resolves(far, num_impostors):
            (point,) = operating_points(top_impostors, num_impostors, far, CALIBRATION_RULE)
            assert point.inclusive  # k >= 1 and k < N: the k-th largest impostor itself is accepted
            thresholds[far] = point.threshold
    return thresholds


def calibration_metrics(top_impostors: torch.Tensor, num_impostors: int) -> dict[str, float]:
    """``num_impostors`` and ``threshold@far=<FAR>`` for every FAR of ``CALIBRATION_FARS`` the set resolves."""
    thresholds = calibrated_thresholds(top_impostors, num_impostors)
    return {keys.NUM_IMPOSTORS: float(num_impostors), **{keys.threshold_key(f): t for f, t in thresholds.items()}}
