import numpy as np
import pytest
import torch

from amlit.errors import ConfigError
from amlit.eval.curves import Curve
from amlit.eval.pairs import PairList
from amlit.eval.verification import (
    PROTOCOL_VIEWS,
    SPHEREFACE_THRESHOLDS,
    best_threshold,
    kfold_accuracy,
    out_of_fold_scores,
    pair_verification_metrics,
    roc_metrics,
    sphereface_kfold_accuracy,
    sphereface_scorer,
    tar_at_far,
    threshold_accuracy,
)
from amlit.keys import far_key


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


# ---- ROC / AUC / EER / TAR@FAR ------------------------------------------------------------------------------------
# Planted set: 5 genuine, 10 impostor scores with ties across the classes (0.8 and 0.5 are in both).
PLANTED_GENUINE = [0.9, 0.8, 0.8, 0.5, 0.3]
PLANTED_IMPOSTOR = [0.85, 0.8, 0.6, 0.5, 0.4, 0.2, 0.1, 0.0, -0.2, -0.5]


def planted():
    scores = torch.tensor(PLANTED_GENUINE + PLANTED_IMPOSTOR, dtype=torch.float64)
    issame = torch.tensor([True] * 5 + [False] * 10)
    return scores, issame


@pytest.mark.parametrize(
    ("far", "far_rule", "expected"),
    [
        # at_most: k = floor(FAR * 10) false accepts allowed; accept genuine > the (k+1)-th largest impostor.
        (0.1, "at_most", 1 / 5),  # k=1: threshold 0.8 (2nd impostor); the tied genuine 0.8s are not accepted
        (0.25, "at_most", 3 / 5),  # k=2 (2.5 falls between ROC points): threshold 0.6 -> 0.9, 0.8, 0.8
        (0.3, "at_most", 3 / 5),  # k=3: threshold 0.5; genuine 0.5 ties with an impostor and is not accepted
        (0.5, "at_most", 1.0),  # k=5: threshold 0.2 (6th largest impostor) -> all five genuine scores
        (1.0, "at_most", 1.0),  # k = all impostors: everything accepted
        # evalroc (BLUFR): k = round(FAR * 10); accept genuine >= the k-th largest impostor.
        (0.1, "evalroc", 1 / 5),  # k=1: >= 0.85 -> 0.9
        (0.2, "evalroc", 3 / 5),  # k=2: >= 0.8 -> 0.9 and the tied 0.8s
        (0.25, "evalroc", 3 / 5),  # 2.5 -> k=3 (half away from zero): >= 0.6
        (0.5, "evalroc", 4 / 5),  # k=5: >= 0.4 -> all but 0.3
        (0.05, "evalroc", 1 / 5),  # 0.5 -> k=1
        (1.0, "evalroc", 1.0),
        # interpolated: between at_most's points k and k+1
        (0.25, "interpolated", 3 / 5),  # between k=2 (3/5) and k=3 (3/5)
        (0.45, "interpolated", 0.5 * 4 / 5 + 0.5 * 1.0),  # k=4: > 0.4 -> 4/5; k=5: > 0.2 -> 1
    ],
)
def test_tar_at_far_on_planted_scores(far, far_rule, expected):
    scores, issame = planted()
    assert tar_at_far(scores, issame, far, far_rule) == pytest.approx(expected)


def test_tar_at_far_below_resolution_allows_no_false_accept_and_decimal_fars_are_exact():
    scores, issame = planted()
    # 0.05 * 10 = 0.5 < 1 false accept: accept only genuine > the largest impostor (0.85) -> 0.9 alone.
    assert tar_at_far(scores, issame, 0.05) == pytest.approx(1 / 5)
    # 0.001 * 3000 is 3 false accepts (binary 0.001 is slightly above or below; the count must not become 2).
    impostors = torch.linspace(-1, 0.5, 3000, dtype=torch.float64)
    genuine = torch.tensor([0.4995, 0.4993, 0.4990], dtype=torch.float64)  # around the 3rd-5th largest impostors
    scores3 = torch.cat([genuine, impostors])
    issame3 = torch.cat([torch.ones(3, dtype=torch.bool), torch.zeros(3000, dtype=torch.bool)])
    fourth = float(impostors.sort(descending=True).values[3])  # threshold for k = 3
    expected = float((genuine > fourth).double().mean())
    assert tar_at_far(scores3, issame3, 1e-3, "at_most") == pytest.approx(expected)
    assert expected == 1.0 and tar_at_far(scores3, issame3, 1e-4) == 0.0  # 0.3 < 1: none above the top impostor 0.5


def test_roc_metrics_on_planted_scores_by_hand():
    scores, issame = planted()
    metrics = roc_metrics(scores, issame, far_points=(0.1, 0.05))
    # AUC = P(gen > imp) + P(tie)/2: 0.9 beats 10; each 0.8 beats 8 and ties 1; 0.5 beats 6, ties 1; 0.3 beats 5.
    assert metrics["auc"] == pytest.approx((10 + 2 * 8.5 + 6.5 + 5) / 50)
    # Accept score >= t. At t = 0.6: FAR = 3/10, FRR = 2/5 (|diff| 0.1, the smallest) -> EER = 0.35.
    assert metrics["eer"] == pytest.approx(0.35)
    assert metrics["tar@far=1e-1"] == pytest.approx(0.2)
    assert metrics["tar@far=5e-2"] == pytest.approx(0.2)  # below resolution: zero false accepts
    roc = metrics["roc"]
    assert isinstance(roc, Curve) and roc.log_x
    # One point per distinct score, descending thresholds, starting at (0, 0).
    expected_far = [0, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    expected_tar = [0, 0.2, 0.2, 0.6, 0.6, 0.8, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(roc.x, expected_far, atol=1e-7)
    np.testing.assert_allclose(roc.y, expected_tar, atol=1e-7)


def numpy_roc_reference(scores: np.ndarray, issame: np.ndarray, far_points):
    """Brute force in float64: every candidate threshold t (accept score >= t), t over the distinct scores + inf."""
    genuine, impostor = scores[issame], scores[~issame]
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    far = np.array([(impostor >= t).mean() for t in thresholds])
    frr = np.array([(genuine < t).mean() for t in thresholds])
    eer_index = np.argmin(np.abs(far - frr))
    eer = (far[eer_index] + frr[eer_index]) / 2
    auc = np.mean([(g > impostor).mean() + 0.5 * (g == impostor).mean() for g in genuine])
    at_most, evalroc = {}, {}
    descending = np.sort(impostor)[::-1]
    for point in far_points:
        allowed = far * len(impostor) <= np.floor(point * len(impostor) + 1e-9)  # counts, exact for these sizes
        at_most[point] = (1 - frr[allowed]).max()
        product = point * len(impostor)
        k = int(np.floor(product)) + (product - np.floor(product) >= 0.5)  # MATLAB round
        evalroc[point] = (genuine > descending[0]).mean() if k == 0 else (genuine >= descending[k - 1]).mean()
    return auc, eer, at_most, evalroc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_metrics_match_a_numpy_brute_force(seed):
    rng = np.random.default_rng(seed)
    genuine = np.clip(rng.normal(0.5, 0.2, 300), -1, 1)
    impostor = np.clip(rng.normal(0.0, 0.2, 700), -1, 1)
    scores = np.round(np.concatenate([genuine, impostor]), 2)  # rounding makes many cross-class ties
    issame = np.r_[np.ones(300, bool), np.zeros(700, bool)]
    far_points = (1e-4, 1e-3, 1e-2, 0.05, 0.3)  # 1e-4 * 700 < 1: below resolution
    metrics = roc_metrics(torch.tensor(scores), torch.tensor(issame), far_points)
    at_most_metrics = roc_metrics(torch.tensor(scores), torch.tensor(issame), far_points, far_rule="at_most")
    auc, eer, at_most, evalroc = numpy_roc_reference(scores, issame, far_points)
    assert metrics["auc"] == pytest.approx(auc, abs=1e-6)
    assert metrics["eer"] == pytest.approx(eer, abs=1e-6)
    for point in far_points:
        assert metrics[far_key(point)] == pytest.approx(evalroc[point])  # the default rule
        assert at_most_metrics[far_key(point)] == pytest.approx(at_most[point])
    assert any(evalroc[p] != at_most[p] for p in far_points)  # the ties make the rules differ here


def test_roc_keeps_cosines_apart_that_differ_in_the_last_bit_and_exceed_one():
    # (cos + 1) / 2 would merge these two (both -> 1.0) and torchmetrics would apply a sigmoid to 1 + 1 ulp.
    top = 1.0 + 2.0**-52
    scores = torch.tensor([top, 1.0, 1.0 - 2.0**-53, -0.3], dtype=torch.float64)
    issame = torch.tensor([True, False, False, False])
    assert (scores[0] + 1) / 2 == (scores[1] + 1) / 2  # the naive mapping really does merge them
    metrics = roc_metrics(scores, issame, far_points=(0.34,))  # one false accept allowed
    assert metrics["auc"] == pytest.approx(1.0)
    assert metrics["eer"] == pytest.approx(0.0)
    assert metrics[far_key(0.34)] == pytest.approx(1.0)


def test_pair_metrics_report_roc_keys_and_curve():
    rng = np.random.default_rng(3)
    features = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(40, 6))), dim=1)
    pairs = PairList(
        images=[str(i) for i in range(40)],
        left=np.arange(0, 40, 2),
        right=np.arange(1, 40, 2),
        issame=np.tile([True, False], 10),
        fold=np.repeat(np.arange(10), 2),
    )
    metrics = pair_verification_metrics(features, pairs)
    scores = (features[0::2] * features[1::2]).sum(1)
    expected = roc_metrics(scores, torch.as_tensor(pairs.issame))
    assert {"acc", "acc_std", "threshold", "num_pairs", "auc", "eer", "tar@far=1e-3", "tar@far=1e-4", "roc"} <= set(
        metrics
    )
    assert metrics["auc"] == pytest.approx(expected["auc"]) and metrics["eer"] == pytest.approx(expected["eer"])
    # 10 impostor pairs: FAR 1e-3 is below resolution -> the TAR at zero false accepts.
    impostor_top = scores[~torch.as_tensor(pairs.issame)].max()
    assert metrics["tar@far=1e-3"] == pytest.approx(
        float((scores[torch.as_tensor(pairs.issame)] > impostor_top).double().mean())
    )
    np.testing.assert_allclose(metrics["roc"].x, expected["roc"].x)


def test_pair_metrics_reject_unknown_protocol_and_wrong_shapes():
    pairs = PairList(["a", "b"], np.array([0]), np.array([1]), np.array([True]), np.array([0]))
    with pytest.raises(ConfigError, match="unknown pair protocol"):
        pair_verification_metrics(torch.zeros(2, 4), pairs, protocol="insightface")
    two_folds = PairList(["a", "b"], np.array([0, 0]), np.array([1, 1]), np.array([True, False]), np.array([0, 1]))
    with pytest.raises(ConfigError, match=r"\(N, 2D\)"):
        pair_verification_metrics(torch.zeros(2, 5), two_folds, protocol="sphereface")
    with pytest.raises(ConfigError, match=r"\(N, D\)"):
        pair_verification_metrics(torch.zeros(2, 2, 4), two_folds, protocol="amsoftmax")
    assert PROTOCOL_VIEWS == {"amsoftmax": "sum", "sphereface": "concat"}


# ---- SphereFace's variant: concatenated features, per-fold mean subtraction -------------------------------------
def numpy_sphereface_evaluation(concat: np.ndarray, left, right, issame, fold):
    """Literal float64 transcription of SphereFace's test/code/evaluation.m (features per pair, as MATLAB)."""
    feature_l, feature_r = concat[left], concat[right]  # (P, 2D) each, an image repeated once per pair
    grid = np.arange(-10000, 10001) / 10000
    accuracies, thresholds, fold_scores = [], [], []
    for k in np.unique(fold):
        val, test = fold != k, fold == k
        mu = np.concatenate([feature_l[val], feature_r[val]]).mean(axis=0)
        fl, fr = feature_l - mu, feature_r - mu
        fl /= np.sqrt((fl**2).sum(axis=1, keepdims=True))
        fr /= np.sqrt((fr**2).sum(axis=1, keepdims=True))
        scores = (fl * fr).sum(axis=1)
        fold_scores.append(scores)
        s_val, y_val = scores[val], issame[val]
        acc = ((s_val[y_val][None, :] > grid[:, None]).sum(1) + (s_val[~y_val][None, :] < grid[:, None]).sum(1)) / len(
            s_val
        )
        threshold = grid[acc == acc.max()].mean()
        s_test, y_test = scores[test], issame[test]
        accuracies.append(((s_test[y_test] > threshold).sum() + (s_test[~y_test] < threshold).sum()) / len(s_test))
        thresholds.append(threshold)
    return np.array(accuracies), np.array(thresholds), fold_scores


def planted_sphereface_problem(seed: int, num_images: int = 60, dim: int = 4, num_pairs: int = 80):
    rng = np.random.default_rng(seed)
    identity = rng.integers(0, 12, num_images)
    centers = rng.normal(size=(12, dim))
    # A large common offset: without the mean subtraction every cosine would be close to 1.
    raw = centers[identity] + 0.8 * rng.normal(size=(num_images, dim)) + 4.0
    mirror = raw + 0.3 * rng.normal(size=(num_images, dim))
    left = rng.integers(0, num_images, num_pairs)
    right = rng.integers(0, num_images, num_pairs)  # images recur across pairs and folds
    issame = identity[left] == identity[right]
    issame[:10] = True
    right[:10] = left[:10]  # make sure both classes occur (identical images are genuine)
    fold = rng.permutation(np.arange(num_pairs) % 5)  # planted, non-contiguous folds
    return np.stack([raw, mirror], axis=1), left, right, issame, fold


@pytest.mark.parametrize("seed", [0, 1])
def test_sphereface_kfold_matches_a_float64_numpy_transcription_of_evaluation_m(seed):
    features, left, right, issame, fold = planted_sphereface_problem(seed)
    concat = features.reshape(len(features), -1)
    pairs = PairList([str(i) for i in range(len(features))], left, right, issame, fold)
    result = sphereface_kfold_accuracy(torch.tensor(concat, dtype=torch.float32), pairs)
    accuracies, thresholds, fold_scores = numpy_sphereface_evaluation(
        concat.astype(np.float32).astype(np.float64), left, right, issame, fold
    )
    np.testing.assert_allclose(result.accuracies.numpy(), accuracies)
    np.testing.assert_allclose(result.thresholds.numpy(), thresholds, atol=1e-12)
    for k, expected in enumerate(fold_scores):  # every pair's score under each fold's centering
        got = sphereface_scorer(torch.tensor(concat, dtype=torch.float32), pairs)(k)
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    # The mean subtraction matters here: plain cosines of the concatenation score differently.
    plain = kfold_accuracy(
        torch.nn.functional.cosine_similarity(torch.tensor(concat[left]), torch.tensor(concat[right])),
        torch.tensor(issame),
        torch.tensor(fold),
    )
    assert not np.allclose(plain.thresholds.numpy(), thresholds)


def test_sphereface_protocol_takes_concatenated_features_and_skips_missing_images():
    features, left, right, issame, fold = planted_sphereface_problem(5)
    features[7] = np.nan  # image 7 was not embedded: its pairs are left out, and the means stay finite
    concat = features.reshape(len(features), -1)  # (N, 2D) = [f(image), f(mirror)], what views="concat" gives
    pairs = PairList([str(i) for i in range(len(features))], left, right, issame, fold)
    metrics = pair_verification_metrics(torch.tensor(concat), pairs, protocol="sphereface")
    keep = (left != 7) & (right != 7)
    assert metrics["num_pairs"] == keep.sum() < len(left)
    accuracies, thresholds, _ = numpy_sphereface_evaluation(concat, left[keep], right[keep], issame[keep], fold[keep])
    assert metrics["acc"] == pytest.approx(accuracies.mean())
    assert metrics["threshold"] == pytest.approx(thresholds.mean())
    # ROC scores: each pair scored with its own held-out fold's centering.
    kept = pairs.select(keep)
    scores = out_of_fold_scores(sphereface_scorer(torch.tensor(concat), kept), torch.as_tensor(kept.fold))
    for k in range(5):
        in_fold = kept.fold == k
        np.testing.assert_allclose(
            scores.numpy()[in_fold], sphereface_scorer(torch.tensor(concat), kept)(k).numpy()[in_fold]
        )
    assert metrics["auc"] == pytest.approx(roc_metrics(scores, torch.tensor(kept.issame))["auc"])


def test_sphereface_protocol_reports_no_calibrated_threshold_for_amlit_verify():
    """Its cosines are of fold-centered concatenations: a threshold@far on them, taken by amlit verify (which
    compares flip-sum cosines of the same model) into the model card, would accept at another FAR than it says."""
    features, left, right, issame, fold = planted_sphereface_problem(0, num_pairs=2000)
    concat = torch.tensor(features.reshape(len(features), -1))
    pairs = PairList([str(i) for i in range(len(features))], left, right, issame, fold)
    assert (~issame).sum() >= 1000  # FAR 1e-3 resolved: the amsoftmax protocol calibrates it
    plain = pair_verification_metrics(torch.nn.functional.normalize(concat, dim=1), pairs, protocol="amsoftmax")
    assert "threshold@far=1e-3" in plain and "num_impostors" in plain
    metrics = pair_verification_metrics(concat, pairs, protocol="sphereface")
    assert "auc" in metrics and "tar@far=1e-3" in metrics
    assert not [key for key in metrics if key.startswith("threshold@far=") or key == "num_impostors"]
