import numpy as np
import pytest
import torch

from amlit.data.pairs import PairList
from amlit.eval.verification import (
    SPHEREFACE_THRESHOLDS,
    best_threshold,
    kfold_accuracy,
    pair_verification_metrics,
    threshold_accuracy,
)


def naive_accuracy(scores, issame, t):
    return (
        sum(s > t for s, same in zip(scores, issame, strict=True) if same)
        + sum(s < t for s, same in zip(scores, issame, strict=True) if not same)
    ) / len(scores)


def test_threshold_accuracy_matches_a_loop_including_ties():
    scores = torch.tensor([0.5, 0.2, 0.2, -0.1, 0.7, 0.2], dtype=torch.float64)
    issame = torch.tensor([True, True, False, False, True, False])
    thresholds = torch.tensor([-0.2, -0.1, 0.0, 0.2, 0.3, 0.5, 0.8], dtype=torch.float64)
    got = threshold_accuracy(scores, issame, thresholds)
    expected = [naive_accuracy(scores.tolist(), issame.tolist(), t) for t in thresholds.tolist()]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    # At t = 0.2 the three tied scores are all errors: only 0.5, 0.7 (> t) and -0.1 (< t) are right.
    assert got[3].item() == pytest.approx(3 / 6)


def test_best_threshold_is_the_mean_of_all_maximisers():
    # Separable: any t in (0.1, 0.4) is perfect; grid 0.0:0.1:0.5 -> maximisers 0.2 and 0.3 -> 0.25.
    scores = torch.tensor([0.4, 0.45, 0.1, 0.05], dtype=torch.float64)
    issame = torch.tensor([True, True, False, False])
    grid = torch.arange(0, 6, dtype=torch.float64) / 10
    assert best_threshold(scores, issame, grid) == pytest.approx(0.25)


def test_kfold_on_hand_made_scores_with_known_answer():
    # Two folds of 4 pairs. Fold 0: matched 0.9, 0.6; mismatched 0.3, 0.7 (one overlap).
    # Fold 1: matched 0.8, 0.5; mismatched 0.2, 0.1 (separable).
    scores = torch.tensor([0.9, 0.6, 0.3, 0.7, 0.8, 0.5, 0.2, 0.1], dtype=torch.float64)
    issame = torch.tensor([True, True, False, False] * 2)
    fold = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    result = kfold_accuracy(scores, issame, fold)
    # Testing fold 0, threshold from fold 1: perfect for 0.2 < t < 0.5 (a score equal to t is an error)
    # -> grid 0.2001..0.4999, mean 0.35. Fold 0 at 0.35: 0.9 ok, 0.6 ok, 0.3 ok, 0.7 wrong -> 0.75.
    # Testing fold 1, threshold from fold 0: the best training accuracy 0.75 is reached for 0.3 < t < 0.6 and
    # for 0.7 < t < 0.9 -> the mean of both grid ranges.
    first = torch.arange(3001, 6000, dtype=torch.float64) / 10000
    second = torch.arange(7001, 9000, dtype=torch.float64) / 10000
    t1 = float(torch.cat([first, second]).mean())
    assert t1 == pytest.approx((0.45 * 2999 + 0.8 * 1999) / 4998)
    assert result.thresholds[0].item() == pytest.approx(0.35)
    assert result.thresholds[1].item() == pytest.approx(t1)
    # Fold 1 at t1 = 0.59: matched 0.8 ok, 0.5 wrong, mismatched 0.2 ok, 0.1 ok -> 0.75.
    torch.testing.assert_close(result.accuracies, torch.tensor([0.75, 0.75], dtype=torch.float64))
    assert result.mean == pytest.approx(0.75)
    assert result.std == pytest.approx(0.0)


def test_kfold_separable_random_scores_are_perfect_and_std_is_sample_std():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.5, 1, 300), rng.uniform(-1, 0.4, 300)])
    issame = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    fold = np.tile(np.arange(10), 60)
    result = kfold_accuracy(torch.tensor(scores), torch.tensor(issame), torch.tensor(fold))
    assert result.mean == 1.0
    assert len(result.accuracies) == 10
    accs = torch.tensor([1.0, 0.5, 0.75])
    assert float(accs.std(correction=1)) == pytest.approx(np.std([1.0, 0.5, 0.75], ddof=1))


def test_pair_metrics_skip_missing_images_and_score_cosines():
    features = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [float("nan"), float("nan")]])
    pairs = PairList(
        images=["a", "b", "c", "d"],
        left=np.array([0, 0, 1, 2, 0, 3]),
        right=np.array([1, 2, 2, 0, 0, 1]),
        issame=np.array([True, False, True, False, True, True]),
        fold=np.array([0, 0, 1, 1, 2, 2]),
    )
    metrics = pair_verification_metrics(features, pairs)
    assert metrics["num_pairs"] == 5  # the pair with the missing image "d" is left out
    assert 0.0 <= metrics["acc"] <= 1.0


def test_default_grid_is_spherefaces():
    assert len(SPHEREFACE_THRESHOLDS) == 20001
    assert SPHEREFACE_THRESHOLDS[0] == -1 and SPHEREFACE_THRESHOLDS[-1] == 1
    assert SPHEREFACE_THRESHOLDS[10001] - SPHEREFACE_THRESHOLDS[10000] == pytest.approx(1e-4)
