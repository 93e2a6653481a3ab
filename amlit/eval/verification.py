"""Pair verification: the LFW 10-fold protocol on cosine scores, and ROC / AUC / EER / TAR@FAR.

Protocol as in SphereFace's ``evaluation.m`` (followed by AM-Softmax): for each fold k, the threshold is chosen on
the other 9 folds over the grid ``-1:1e-4:1``; accuracy(t) = (#matched with score > t + #mismatched with score < t)
/ #pairs; where several grid points reach the best training accuracy their mean is taken; the accuracy of fold k
at that threshold is reported. The result is the mean over folds, with the sample standard deviation (ddof=1).

Two ways of turning a face into the feature that is compared (``protocol=``):

- ``"amsoftmax"`` (default; AM-Softmax deploy net): L2-normalize(f(image) + f(mirror)); one cosine per pair.
- ``"sphereface"`` (SphereFace ``evaluation.m``): the concatenation [f(image), f(mirror)] (2D, un-normalized);
  per held-out fold k, the mean of the left and right features of the pairs of the other folds is subtracted from
  every feature, then features are L2-normalized and compared by cosine; threshold rule as above.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from amlit import keys
from amlit.errors import ConfigError
from amlit.eval.curves import Curve
from amlit.eval.evalset import Views
from amlit.eval.far import FarRule, calibration_metrics
from amlit.eval.far import tar_at_far as tar_at_far_from_top
from amlit.eval.pairs import PairList

SPHEREFACE_THRESHOLDS = torch.arange(-10_000, 10_001, dtype=torch.float64) / 10_000


def threshold_accuracy(scores: torch.Tensor, issame: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Accuracy at each threshold: (#matched > t + #mismatched < t) / N. (P,), (P,), (T,) -> (T,) float64.

    A score equal to the threshold counts as an error for both classes, exactly as ``evaluation.m``.
    """
    scores = scores.double()
    matched = scores[issame].sort().values
    mismatched = scores[~issame].sort().values
    above = len(matched) - torch.searchsorted(matched, thresholds, right=True)  # matched scores > t
    below = torch.searchsorted(mismatched, thresholds, right=False)  # mismatched scores < t
    return (above + below).double() / len(scores)


def best_threshold(scores: torch.Tensor, issame: torch.Tensor, thresholds: torch.Tensor) -> float:
    """Mean of all grid thresholds that reach the best accuracy on (scores, issame)."""
    accuracy = threshold_accuracy(scores, issame, thresholds)
    return float(thresholds[accuracy == accuracy.max()].mean())


@dataclass(frozen=True)
class KFoldResult:
    accuracies: torch.Tensor  # (K,) accuracy of each held-out fold
    thresholds: torch.Tensor  # (K,) threshold chosen on the other folds

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        return float(self.accuracies.std(correction=1)) if len(self.accuracies) > 1 else 0.0


def _kfold(
    scores_for_fold: Callable[[int], torch.Tensor],
    issame: torch.Tensor,
    fold: torch.Tensor,
    thresholds: torch.Tensor,
) -> KFoldResult:
    """K-fold accuracy where the scores may depend on the held-out fold: ``scores_for_fold(k)`` -> (P,)."""
    issame, fold, thresholds = issame.bool().cpu(), fold.cpu(), thresholds.double().cpu()
    accuracies, chosen = [], []
    for k in fold.unique(sorted=True).tolist():
        test = fold == k
        if test.all():
            raise ValueError("k-fold accuracy needs at least two folds")
        scores = scores_for_fold(k).double().cpu()
        threshold = best_threshold(scores[~test], issame[~test], thresholds)
        correct = torch.where(issame[test], scores[test] > threshold, scores[test] < threshold)
        accuracies.append(correct.double().mean())
        chosen.append(threshold)
    return KFoldResult(torch.stack(accuracies), torch.tensor(chosen, dtype=torch.float64))


def kfold_accuracy(
    scores: torch.Tensor,
    issame: torch.Tensor,
    fold: torch.Tensor,
    thresholds: torch.Tensor = SPHEREFACE_THRESHOLDS,
) -> KFoldResult:
    """K-fold verification accuracy: threshold from the other folds, accuracy on the held-out one."""
    return _kfold(lambda _: scores, issame, fold, thresholds)


def pair_scores(features: torch.Tensor, pairs: PairList) -> torch.Tensor:
    """Cosine similarity of each pair: features (N, D), L2-normalized, rows in ``pairs.images`` order -> (P,)."""
    left = torch.as_tensor(pairs.left, device=features.device)
    right = torch.as_tensor(pairs.right, device=features.device)
    return (features[left].double() * features[right].double()).sum(dim=1)


def sphereface_scorer(features: torch.Tensor, pairs: PairList) -> Callable[[int], torch.Tensor]:
    """SphereFace's per-fold centered cosines (``evaluation.m``): returns ``held_out -> scores (P,) float64``.

    ``features`` (N, 2D) are the concatenations [f(image), f(mirror)], un-normalized, rows in ``pairs.images``
    order; only images named by ``pairs`` are read (others may be NaN). For held-out fold k, μ = mean of the left
    and the right features of the pairs outside fold k (an image counts once per pair side it is on, as MATLAB's
    ``mean([featureLs(:, valFold), featureRs(:, valFold)], 2)``); a pair's score is the cosine of x_l - μ and x_r - μ.

    Computed without materializing the centered features: with d = x_l·x_r, p = x·μ and n = |x|² (float64, d and n
    once for all folds), (x_l - μ)·(x_r - μ) = d - p_l - p_r + μ·μ and |x - μ|² = n - 2p + μ·μ, so each fold costs
    two matrix-vector products.
    """
    device = features.device
    left = torch.as_tensor(pairs.left, device=device)
    right = torch.as_tensor(pairs.right, device=device)
    fold = torch.as_tensor(pairs.fold, device=device)
    used, position = torch.unique(torch.cat([left, right]), return_inverse=True)
    x = features[used].double()  # (U, 2D): the images the pairs name
    left, right = position[: len(left)], position[len(left) :]
    pair_dot = (x[left] * x[right]).sum(dim=1)  # (P,)
    squared_norm = (x * x).sum(dim=1)  # (U,)

    def scores(held_out: int) -> torch.Tensor:
        train = fold != held_out
        sides = torch.bincount(left[train], minlength=len(x)) + torch.bincount(right[train], minlength=len(x))
        mean = sides.double() @ x / sides.sum()  # (2D,)
        projection = x @ mean  # (U,)
        mean_square = mean @ mean
        centered_dot = pair_dot - projection[left] - projection[right] + mean_square
        centered_norm = (squared_norm - 2 * projection + mean_square).sqrt()  # (U,)
        return centered_dot / (centered_norm[left] * centered_norm[right])

    return scores


def sphereface_kfold_accuracy(
    features: torch.Tensor, pairs: PairList, thresholds: torch.Tensor = SPHEREFACE_THRESHOLDS
) -> KFoldResult:
    """SphereFace's LFW 10-fold accuracy: per held-out fold, the scores of :func:`sphereface_scorer` with that
    fold's centering, then the usual threshold rule (mean of the best grid thresholds on the other folds).

    ``features`` (N, 2D): [f(image), f(mirror)] per image, un-normalized; every image of ``pairs`` must have a
    finite row (leave pairs with missing images out first, e.g. with ``pairs.select``).
    """
    return _kfold(
        sphereface_scorer(features, pairs), torch.as_tensor(pairs.issame), torch.as_tensor(pairs.fold), thresholds
    )


def out_of_fold_scores(scorer: Callable[[int], torch.Tensor], fold: torch.Tensor) -> torch.Tensor:
    """Each pair's score under its own held-out fold's scoring. -> (P,) float64 on the CPU."""
    scores = torch.empty(len(fold), dtype=torch.float64)
    for k in fold.unique().tolist():
        scores[fold == k] = scorer(k).double().cpu()[fold == k]
    return scores


TAR_FARS = (1e-3, 1e-4)  # TAR@FAR points reported beside the 10-fold accuracy


def tar_at_far(scores: torch.Tensor, issame: torch.Tensor, far: float, far_rule: FarRule = "evalroc") -> float:
    """True accept rate at ``far`` on pair scores (P,) with labels (P,), under ``far_rule`` (``amlit.eval.far``:
    ``evalroc`` by default, ``at_most``, ``interpolated``).

    Resolution: the smallest non-zero FAR a set can measure is 1 / N_impostor. Below it (e.g. FAR=1e-4 with LFW's
    3,000 impostor pairs) the result is the TAR at zero false accepts (genuine > the largest impostor score): valid,
    but not comparable with TAR@FAR on sets large enough to resolve that FAR.
    """
    scores, issame = scores.double().cpu(), issame.bool().cpu()
    impostors = scores[~issame].sort(descending=True).values
    return tar_at_far_from_top(scores[issame], impostors, len(impostors), far, far_rule)


def _order_preserving_unit_scores(scores: torch.Tensor) -> torch.Tensor:
    """Dense ranks of ``scores`` scaled to [0, 1] (P,) float64: same order, same ties.

    torchmetrics applies a sigmoid to predictions outside [0, 1] (a cosine can be 1 + 1 ulp), and (cos + 1) / 2
    merges cosines that differ near 1 in the last bit; ranks keep the ROC of the cosines exactly. The resulting
    torchmetrics thresholds are ranks, never cosines, and are not reported.
    """
    unique, rank = torch.unique(scores, return_inverse=True)
    return rank.double() / max(len(unique) - 1, 1)


def roc_metrics(
    scores: torch.Tensor, issame: torch.Tensor, far_points: Sequence[float] = TAR_FARS, far_rule: FarRule = "evalroc"
) -> dict[str, float | Curve]:
    """ROC measures of pair scores (P,) with labels (P,): ``auc``, ``eer``, ``tar@far=<FAR>``, the calibrated
    ``threshold@far=<FAR>`` with ``num_impostors`` (``amlit.eval.far.calibration_metrics``) and the ``roc`` curve.

    ROC, AUC and EER via torchmetrics: a pair is accepted when its score >= threshold, one ROC point per distinct
    score (plus (0, 0)); AUC = trapezoidal area under it (= P(genuine > impostor) + P(tie) / 2); EER = (FAR + FRR)
    / 2 at the ROC point where |FAR - FRR| is smallest (the first, i.e. strictest, on ties). TAR@FAR as
    :func:`tar_at_far` with ``far_rule`` (the TAR at zero false accepts below the set's resolution). The curve has
    FAR on a logarithmic x axis (its FAR=0 points cannot be drawn there).
    """
    # Imported here: torchmetrics costs ~3 s of imports, which `amlit score blufr|megaface` do not need.
    from torchmetrics.functional.classification import binary_auroc, binary_eer, binary_roc

    scores, issame = scores.double().cpu(), issame.bool().cpu()
    if issame.all() or not issame.any():
        raise ValueError("ROC metrics need both genuine and impostor pairs")
    unit, target = _order_preserving_unit_scores(scores), issame.long()
    far, tar, _ = binary_roc(unit, target)
    metrics: dict[str, float | Curve] = {
        "auc": float(binary_auroc(unit, target)),
        "eer": float(binary_eer(unit, target)),
    }
    for point in far_points:
        metrics[keys.far_key(point)] = tar_at_far(scores, issame, point, far_rule)
    impostors = scores[~issame].sort(descending=True).values
    metrics.update(calibration_metrics(impostors, len(impostors)))  # the cosine to deploy at each resolved FAR
    metrics["roc"] = Curve(
        far.double().numpy(), tar.double().numpy(), "false accept rate", "true accept rate", log_x=True
    )
    return metrics


PairProtocol = Literal["amsoftmax", "sphereface"]


def _amsoftmax_protocol(features: torch.Tensor, pairs: PairList) -> tuple[KFoldResult, torch.Tensor]:
    if features.ndim != 2:
        raise ConfigError(
            f"protocol 'amsoftmax' compares L2-normalized flip-sum features (N, D), got shape {tuple(features.shape)}"
        )
    scores = pair_scores(features, pairs).cpu()
    return kfold_accuracy(scores, torch.as_tensor(pairs.issame), torch.as_tensor(pairs.fold)), scores


def _sphereface_protocol(features: torch.Tensor, pairs: PairList) -> tuple[KFoldResult, torch.Tensor]:
    if features.ndim != 2 or features.shape[1] % 2:
        raise ConfigError(
            "protocol 'sphereface' needs the un-normalized concatenation [f(image), f(mirror)] per image, shape "
            f"(N, 2D) (EvalSet views='concat'), got {tuple(features.shape)}"
        )
    scorer = sphereface_scorer(features, pairs)
    issame, fold = torch.as_tensor(pairs.issame), torch.as_tensor(pairs.fold)
    return _kfold(scorer, issame, fold, SPHEREFACE_THRESHOLDS), out_of_fold_scores(scorer, fold)


PAIR_PROTOCOLS: dict[str, Callable[[torch.Tensor, PairList], tuple[KFoldResult, torch.Tensor]]] = {
    "amsoftmax": _amsoftmax_protocol,
    "sphereface": _sphereface_protocol,
}
PROTOCOL_VIEWS: dict[str, Views] = {"amsoftmax": "sum", "sphereface": "concat"}  # the features each one takes


def pair_verification_metrics(
    features: torch.Tensor, pairs: PairList, protocol: PairProtocol = "amsoftmax", far_rule: FarRule = "evalroc"
) -> dict[str, float | Curve]:
    """10-fold accuracy and ROC measures on ``pairs`` for the embeddings of ``pairs.images``.

    ``features`` (rows in ``pairs.images`` order, NaN rows for images not embedded), as ``PROTOCOL_VIEWS`` says:
    protocol ``"amsoftmax"`` (N, D) L2-normalized flip-sum features (EvalSet ``views="sum"``); protocol
    ``"sphereface"`` (N, 2D) un-normalized concatenations [f(image), f(mirror)] (``views="concat"``).

    Pairs with a missing image are left out (``num_pairs`` says how many were scored); a fold with no scored
    pair is left out too. Returns ``acc`` (mean fold accuracy), ``acc_std``, ``threshold`` (mean chosen cosine),
    ``num_pairs``, and when both classes are present the :func:`roc_metrics`: ``auc``, ``eer``,
    ``tar@far=1e-3``, ``tar@far=1e-4`` (floats, under ``far_rule``) and ``roc`` (a :class:`Curve`). For the
    sphereface protocol the ROC uses each pair's score under its own held-out fold's centering, and there are no
    calibrated thresholds (``threshold@far=<FAR>``, ``num_impostors``): those cosines are of fold-centered
    concatenations, and a threshold on them would not apply to the flip-sum cosines ``amlit verify`` compares.
    """
    if protocol not in PAIR_PROTOCOLS:
        raise ConfigError(f"unknown pair protocol {protocol!r}; choose one of {', '.join(PAIR_PROTOCOLS)}")
    embedded = torch.isfinite(features.reshape(len(features), -1)).all(dim=1).cpu().numpy()  # (N,)
    scored = pairs.select(embedded[pairs.left] & embedded[pairs.right])
    metrics: dict[str, float | Curve] = {"num_pairs": float(len(scored))}
    if len(set(scored.fold.tolist())) < 2:
        return metrics
    result, scores = PAIR_PROTOCOLS[protocol](features, scored)
    metrics.update(acc=result.mean, acc_std=result.std, threshold=float(result.thresholds.mean()))
    if scored.issame.any() and not scored.issame.all():
        roc = roc_metrics(scores, torch.as_tensor(scored.issame), far_rule=far_rule)
        if protocol != "amsoftmax":  # not the deployed feature's cosines: no threshold for amlit verify to take
            roc = {key: value for key, value in roc.items() if not keys.is_calibration(key)}
        metrics.update(roc)
    return metrics
