"""Pair verification: the LFW 10-fold protocol on cosine scores.

Protocol as in SphereFace's ``evaluation.m`` (followed by AM-Softmax): for each fold k, the threshold is chosen on
the other 9 folds over the grid ``-1:1e-4:1``; accuracy(t) = (#matched with score > t + #mismatched with score < t)
/ #pairs; where several grid points reach the best training accuracy their mean is taken; the accuracy of fold k
at that threshold is reported. The result is the mean over folds, with the sample standard deviation (ddof=1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amlit.data.pairs import PairList

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


def kfold_accuracy(
    scores: torch.Tensor,
    issame: torch.Tensor,
    fold: torch.Tensor,
    thresholds: torch.Tensor = SPHEREFACE_THRESHOLDS,
) -> KFoldResult:
    """K-fold verification accuracy: threshold from the other folds, accuracy on the held-out one."""
    scores, issame, fold = scores.double().cpu(), issame.bool().cpu(), fold.cpu()
    thresholds = thresholds.double().cpu()
    accuracies, chosen = [], []
    for k in fold.unique(sorted=True).tolist():
        test = fold == k
        if test.all():
            raise ValueError("k-fold accuracy needs at least two folds")
        threshold = best_threshold(scores[~test], issame[~test], thresholds)
        correct = torch.where(issame[test], scores[test] > threshold, scores[test] < threshold)
        accuracies.append(correct.double().mean())
        chosen.append(threshold)
    return KFoldResult(torch.stack(accuracies), torch.tensor(chosen, dtype=torch.float64))


def pair_scores(features: torch.Tensor, pairs: PairList) -> torch.Tensor:
    """Cosine similarity of each pair: features (N, D), L2-normalized, rows in ``pairs.images`` order -> (P,)."""
    left = torch.as_tensor(pairs.left, device=features.device)
    right = torch.as_tensor(pairs.right, device=features.device)
    return (features[left].double() * features[right].double()).sum(dim=1)


def pair_verification_metrics(features: torch.Tensor, pairs: PairList) -> dict[str, float]:
    """10-fold metrics on ``pairs`` for embeddings ``features`` (N, D), NaN rows for images not embedded.

    Pairs with a missing image are left out (``num_pairs`` says how many were scored); a fold with no scored
    pair is left out too. Returns ``acc`` (mean fold accuracy), ``acc_std``, ``threshold`` (mean chosen cosine).
    """
    scores = pair_scores(features, pairs).cpu()
    valid = torch.isfinite(scores)
    issame = torch.as_tensor(pairs.issame)[valid]
    fold = torch.as_tensor(pairs.fold)[valid]
    if fold.unique().numel() < 2:
        return {"num_pairs": float(valid.sum())}
    result = kfold_accuracy(scores[valid], issame, fold)
    return {
        "acc": result.mean,
        "acc_std": result.std,
        "threshold": float(result.thresholds.mean()),
        "num_pairs": float(valid.sum()),
    }
