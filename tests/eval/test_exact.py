"""Float32 products with float64 decisions (amlit.eval.exact) give the float64 protocols' numbers exactly.

The features here are adversarial for float32: 512-d vectors whose components are multiples of 2^-16, so every
float64 dot product is exact whatever the summation order (the dense numpy reference is the true value, exact ties
included), while float32 sums round (~1e-6 here). Rows are small perturbations (+-2^-16 on a few components) of a
few base vectors, or exact copies, so thousands of scores lie within ~1e-6 of one another, far below float32's
resolution: near every threshold and every mate there are scores float32 alone would order wrongly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_blufr import eval_roc_np, open_set_np

from amlit.eval.blufr import blufr_verification, open_set_identification, verification_scores
from amlit.eval.exact import RunningTop, RunningTopPerRow, entries_at_or_above, pair_dots, rounding_bound
from amlit.eval.far import calibration_impostors_needed, calibration_metrics, calibration_ranks
from amlit.eval.megaface import evaluate_megaface, scan_distractors

QUANTUM = 2.0**-16
DIM = 512


def clustered(num_rows: int, num_bases: int, seed: int) -> torch.Tensor:
    """(num_rows, DIM) float64 features on the 2^-16 grid, norm ~1: perturbed copies of ``num_bases`` vectors."""
    rng = np.random.default_rng(seed)
    bases = rng.normal(size=(num_bases, DIM))
    bases /= np.linalg.norm(bases, axis=1, keepdims=True)
    rows = np.round(bases[rng.integers(0, num_bases, num_rows)] / QUANTUM)  # integers
    for row in rows[: num_rows * 3 // 4]:  # a quarter stay exact copies: exact ties
        row[rng.integers(0, DIM, 3)] += rng.integers(-1, 2, 3)
    return torch.from_numpy(rows * QUANTUM)


def test_the_features_defeat_float32():
    # the premise of the other tests: float32 alone orders some of these scores differently from float64
    features = clustered(300, 6, seed=0)
    exact = (features @ features.T).numpy()
    approximate = (features.float() @ features.float().T).double().numpy()
    assert np.abs(approximate - exact).max() > 0
    i, j = np.triu_indices(len(features), k=1)
    pairs = np.random.default_rng(1).integers(0, len(i), (20000, 2))
    a, b = pairs[:, 0], pairs[:, 1]
    exact_order = np.sign(exact[i[a], j[a]] - exact[i[b], j[b]])
    float32_order = np.sign(approximate[i[a], j[a]] - approximate[i[b], j[b]])
    assert (exact_order != float32_order).sum() > 10
    # and rounding_bound covers the float32 error
    assert np.abs(approximate - exact).max() <= rounding_bound(features)


@pytest.mark.parametrize(("seed", "chunk"), [(2, 2048), (3, 37), (4, 1)])
def test_verification_rates_equal_the_float64_reference(seed, chunk):
    features = clustered(240, 5, seed=seed)
    labels = torch.from_numpy(np.random.default_rng(seed + 100).integers(0, 30, len(features)))
    fars = [0, 1e-4, 1e-3, 0.003, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9, 1]
    expected = eval_roc_np((features @ features.T).numpy(), labels.numpy(), fars)
    got = blufr_verification(features, labels, fars, chunk=chunk).numpy()
    np.testing.assert_array_equal(got, expected)
    # float32 features: the reference is float64 arithmetic on the same (float32) values
    single = features.float()
    expected = eval_roc_np((single.double() @ single.double().T).numpy(), labels.numpy(), fars)
    np.testing.assert_array_equal(blufr_verification(single, labels, fars, chunk=chunk).numpy(), expected)


def test_top_impostor_scores_are_the_float64_ones():
    # blufr_trial reads the calibrated thresholds from these values: every one must be the float64 score
    features = clustered(260, 4, seed=5)
    labels = torch.from_numpy(np.random.default_rng(6).integers(0, 25, len(features)))
    score = (features @ features.T).numpy()
    i, j = np.tril_indices(len(labels), k=-1)
    impostor = np.sort(score[i, j][labels.numpy()[i] != labels.numpy()[j]])[::-1]
    genuine = np.sort(score[i, j][labels.numpy()[i] == labels.numpy()[j]])
    k = max(calibration_impostors_needed(len(impostor), fars=(1e-3, 1e-2)), 500)
    got_genuine, top, num_impostors = verification_scores(features, labels, k, chunk=64)
    assert num_impostors == len(impostor)
    np.testing.assert_array_equal(top.numpy(), impostor[:k])
    # genuine scores: exact where they are within the float32 error of a top impostor score, close elsewhere
    np.testing.assert_allclose(np.sort(got_genuine.numpy()), genuine, atol=rounding_bound(features), rtol=0)
    near = np.abs(genuine[:, None] - impostor[None, :k]).min(axis=1) <= rounding_bound(features)
    assert near.any()
    assert set(genuine[near]) <= set(got_genuine.numpy())


def test_calibrated_thresholds_read_exact_values():
    # blufr_trial asks for exact values at the ranks the calibrated thresholds read only
    features = clustered(300, 3, seed=11)
    labels = torch.from_numpy(np.random.default_rng(12).integers(0, 20, len(features)))
    score = (features @ features.T).numpy()
    i, j = np.tril_indices(len(labels), k=-1)
    impostor = np.sort(score[i, j][labels.numpy()[i] != labels.numpy()[j]])[::-1]
    needed = calibration_impostors_needed(len(impostor))
    ranks = calibration_ranks(len(impostor))
    assert len(ranks) >= 2  # FAR 1e-3 and 1e-4 resolved by ~40k impostor scores
    _, top, _ = verification_scores(features, labels, needed, chunk=50, exact_ranks=ranks)
    expected = calibration_metrics(torch.from_numpy(impostor.copy()), len(impostor))
    assert calibration_metrics(top, len(impostor)) == expected


def open_set_case(seed: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """Gallery: 3 near copies (3 labels) of each of 30 base vectors; probes: near copies of the bases, 70% with one
    of their base's gallery labels, the rest impostors. A probe's mate and its 2 rivals lie within ~1e-6."""
    rng = np.random.default_rng(seed)
    bases = rng.normal(size=(30, DIM))
    bases /= np.linalg.norm(bases, axis=1, keepdims=True)

    def near_copies(pick: np.ndarray) -> torch.Tensor:
        rows = np.round(bases[pick] / QUANTUM)
        for row in rows:
            row[rng.integers(0, DIM, 3)] += rng.integers(-1, 2, 3)
        return torch.from_numpy(rows * QUANTUM)

    gallery, gallery_labels = near_copies(np.repeat(np.arange(30), 3)), np.arange(90)
    base_of_probe = rng.integers(0, 30, 400)
    probes = near_copies(base_of_probe)
    genuine = rng.random(400) < 0.7
    probe_labels = np.where(genuine, 3 * base_of_probe + rng.integers(0, 3, 400), 1000 + np.arange(400))
    return gallery, gallery_labels, probes, probe_labels


OPEN_SET_POINTS = [(0.0, 1), (0.1, 1), (0.3, 2), (1.0, 1)]  # (far, rank)


@pytest.mark.parametrize("chunk", [4096, 37])
def test_open_set_identification_equals_the_float64_reference(chunk):
    gallery, gallery_labels, probes, probe_labels = open_set_case(seed=0)
    exact = (gallery @ probes.T).numpy()
    float32 = (gallery.float() @ probes.float().T).double().numpy()
    differs = 0
    for far, rank in OPEN_SET_POINTS:
        expected = open_set_np(exact, gallery_labels, probe_labels, far, rank)
        differs += expected != open_set_np(float32, gallery_labels, probe_labels, far, rank)
        got = open_set_identification(
            gallery, torch.from_numpy(gallery_labels), probes, torch.from_numpy(probe_labels), far, rank, chunk=chunk
        )
        assert got == expected, (far, rank)
    assert differs >= 2  # the premise: float32 scores alone give other rates here


def test_pair_dots_is_float64():
    features = clustered(50, 3, seed=9)
    rows, cols = torch.tensor([0, 5, 49, 7]), torch.tensor([1, 5, 0, 30])
    expected = (features @ features.T).numpy()[rows.numpy(), cols.numpy()]
    np.testing.assert_array_equal(pair_dots(features.float(), features.float(), rows, cols).numpy(), expected)


def test_running_top_keeps_every_candidate_of_the_k_largest():
    values = torch.tensor([0.5, 0.9, 0.1, 0.88, 0.3, 0.89, 0.7])
    top = RunningTop(k=2, margin=0.01, device="cpu")
    for index, value in enumerate(values):
        top.add(value[None], torch.tensor([index]), torch.tensor([0]))
    _, rows, _ = top.kept()
    # the 2nd largest approximate value is 0.89: whatever is within 2 * margin of it may be among the exact top 2
    assert sorted(rows.tolist()) == [1, 3, 5]
    exact = {1: 0.9, 3: 0.895, 5: 0.885}  # the exact values reorder 3 and 5
    result = top.exact(lambda r, c: torch.tensor([exact[int(i)] for i in r], dtype=torch.float64))
    assert result.tolist() == [0.9, 0.895]
    with pytest.raises(ValueError, match="k must be"):
        RunningTop(k=0, margin=0.0, device="cpu")


def test_running_top_exact_prefix_rescores_every_candidate_of_the_first_values():
    top = RunningTop(k=4, margin=0.01, device="cpu")
    approximate = {0: 0.9, 1: 0.89, 2: 0.5, 3: 0.875, 4: 0.2}
    exact = {0: 0.9, 1: 0.88, 2: 0.5, 3: 0.885, 4: 0.2}  # 3 overtakes 1 in float64
    top.add(torch.tensor(list(approximate.values())), torch.tensor(list(approximate)), torch.zeros(5, dtype=torch.long))
    result = top.exact(lambda r, c: torch.tensor([exact[int(i)] for i in r], dtype=torch.float64), ranks=[], prefix=2)
    # the first two exact (0.9, then 0.885, which float32 ranked third); the others the approximate values
    assert result.tolist() == [0.9, 0.885, pytest.approx(0.875), 0.5]


def test_running_top_per_row_keeps_each_rows_candidates():
    # rows 0 and 1, k = 2, margin 0.01: row 0's 2nd largest approximate value is 0.8, so 0.79 (within 2 * margin)
    # is kept and 0.7 is not; row 1 has one value only.
    top = RunningTopPerRow(num_rows=2, k=2, margin=0.01, device="cpu")
    values = torch.tensor([0.9, 0.8, 0.79, 0.7, 0.3])
    rows, cols = torch.tensor([0, 0, 0, 0, 1]), torch.tensor([10, 11, 12, 13, 14])
    top.add(values, rows, cols)
    exact = {10: 0.9, 11: 0.795, 12: 0.805, 13: 0.7, 14: 0.3}
    asked = []

    def rescore(r, c):
        asked.extend(c.tolist())
        return torch.tensor([exact[int(i)] for i in c], dtype=torch.float64)

    result = top.exact(rescore)
    assert result.tolist() == [[0.9, 0.805], [0.3, -math.inf]] and sorted(asked) == [10, 11, 12, 14]
    asked.clear()
    assert top.exact(rescore, k=1).tolist() == [[0.9], [0.3]] and sorted(asked) == [10, 14]
    assert top.cut.tolist() == [pytest.approx(0.78), -math.inf]


@pytest.mark.parametrize("tile", [1, 4, 32, 1000])
def test_entries_at_or_above_equals_a_dense_comparison(tile):
    scores = torch.from_numpy(np.random.default_rng(3).normal(size=(37, 101)).astype(np.float32))
    row_cut = torch.from_numpy(np.random.default_rng(4).normal(1.5, 0.5, size=37).astype(np.float32))
    row_cut[5] = -math.inf  # a row without a cut yet: every entry
    rows, cols, values = entries_at_or_above(scores, row_cut, tile=tile)
    expected = (scores >= row_cut[:, None]).nonzero()
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [tuple(pair) for pair in expected.tolist()]
    np.testing.assert_array_equal(values.numpy(), scores[rows, cols].numpy())


def megaface_case(seed: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Probes: near copies of 8 base vectors (label = base, 5-6 each); distractors: 600 near copies of the probes
    (one component moved by 2^-16), so each probe's mates, its best distractors and the impostor scores near the
    genuine ones crowd within ~1e-6 of one another, on the 2^-16 grid (float64 products exact)."""
    rng = np.random.default_rng(seed)
    bases = rng.normal(size=(8, DIM))
    bases /= np.linalg.norm(bases, axis=1, keepdims=True)
    labels = np.arange(45) % 8
    probes = np.round(bases[labels] / QUANTUM)
    for row in probes:
        row[rng.integers(0, DIM, 3)] += rng.integers(-1, 2, 3)
    distractors = probes[rng.integers(0, len(probes), 600)]
    distractors[np.arange(600), rng.integers(0, DIM, 600)] += rng.choice([-1, 1], 600)
    return torch.from_numpy(probes * QUANTUM), labels, torch.from_numpy(distractors * QUANTUM)


@pytest.mark.parametrize(("seed", "chunk"), [(0, 16384), (1, 37), (2, 1)])
def test_megaface_equals_the_float64_reference(seed, chunk):
    from test_megaface import brute_force

    probes, labels, distractors = megaface_case(seed)
    far, counts = 1e-3, (10, 100)  # 45 x 600 = 27,000 impostor scores: 27 false accepts
    order = np.random.default_rng(5).permutation(len(distractors))  # the nested subsets of distractor_seed=5
    differs = 0
    for dtype in (torch.float64, torch.float32):  # float32 features: the reference is float64 on the same values
        p, d = probes.to(dtype), distractors.to(dtype)
        p64, d64 = p.double().numpy(), d.double().numpy()
        cmc, at_most, interpolated, evalroc, _, impostor, *_ = brute_force(p64, labels, d64, far)
        cmc32, *rates32 = brute_force(p.float().numpy(), labels, d.float().numpy(), far)[:4]  # float32 products
        differs += int(not np.array_equal(cmc32, cmc)) + int(rates32 != [at_most, interpolated, evalroc])
        for rule, expected in (("at_most", at_most), ("interpolated", interpolated), ("evalroc", evalroc)):
            got = evaluate_megaface(
                p,
                torch.from_numpy(labels),
                d,
                far=far,
                far_rule=rule,
                chunk=chunk,
                distractor_counts=counts,
                distractor_seed=5,
                device="cpu",
                progress=False,
            )
            assert got["tar@far=1e-3"] == expected, rule
            np.testing.assert_array_equal(got["cmc"].y, cmc)
        assert got["threshold@far=1e-3"] == impostor[26]  # evalroc: the 27th largest impostor score
        for n in counts:
            assert got[f"rank1@distractors={n}"] == brute_force(p64, labels, d64[order[:n]], far)[0][0], n
    assert differs >= 1  # the premise: float32 scores alone give other numbers here


@pytest.mark.parametrize("chunk", [16384, 37])
def test_megaface_scan_keeps_the_float64_values(chunk):
    # What the metrics read, value by value: each probe's largest distractor scores (also among the first n of the
    # scan order), the largest impostor scores at the exact ranks. Float32 orders some of them wrongly here.
    probes, _, distractors = megaface_case(1)
    exact = (probes @ distractors.T).numpy()  # (45, 600), exact on the grid
    approximate = (probes.float() @ distractors.float().T).double().numpy()
    order = np.random.default_rng(5).permutation(len(distractors))
    scan = scan_distractors(
        probes,
        distractors,
        num_top_impostors=300,
        exact_top=100,
        exact_ranks=[150, 299],
        max_rank=4,
        counts=[50],
        seed=5,
        chunk=chunk,
        device="cpu",
        progress=False,
    )
    per_probe = -np.sort(-exact, axis=1)[:, :4]
    np.testing.assert_array_equal(scan.top_per_probe.numpy(), per_probe)
    np.testing.assert_array_equal(scan.best_at_count[50].numpy(), exact[:, order[:50]].max(axis=1))
    impostors = -np.sort(-exact.ravel())
    top = scan.top_impostors.numpy()
    np.testing.assert_array_equal(top[:100], impostors[:100])
    assert top[150] == impostors[150] and top[299] == impostors[299]
    # the premise: float32 alone gets some of these values wrong
    float32_best = exact[np.arange(len(exact)), approximate.argmax(axis=1)]
    assert (float32_best != per_probe[:, 0]).any()
    assert (exact.ravel()[np.argsort(-approximate.ravel(), kind="stable")][:100] != impostors[:100]).any()
