"""BLUFR: EvalROC / OpenSetROC against hand-computed answers and brute-force numpy, and the real config's facts."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest
import torch

from amlit.errors import BadDataError, MissingDataError
from amlit.eval.blufr import (
    BlufrConfig,
    blufr_verification,
    evaluate_blufr,
    open_set_identification,
    read_blufr_config,
    verification_rates,
)
from amlit.eval.far import evalroc_count, operating_points

SQRT_EPS = math.sqrt(np.finfo(np.float64).eps)  # MATLAB sqrt(eps)

# ---------------------------------------------------------------- brute force references (numpy, dense)


def matlab_round(x: float) -> int:
    """MATLAB round: half away from zero, on the exact value of the float."""
    return int(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def threshold_np(gen: np.ndarray, imp_desc: np.ndarray, count: int) -> float:
    if count == len(imp_desc):
        return min(imp_desc[-1], gen.min()) - np.sqrt(np.finfo(float).eps)
    if count == 0:
        high = gen[gen > imp_desc[0]]
        return (imp_desc[0] + high.min()) / 2 if len(high) else imp_desc[0] + np.sqrt(np.finfo(float).eps)
    return imp_desc[count - 1]


def eval_roc_np(score: np.ndarray, labels: np.ndarray, fars) -> np.ndarray:
    i, j = np.tril_indices(len(labels), k=-1)
    same = labels[i] == labels[j]
    gen, imp = score[i, j][same], np.sort(score[i, j][~same])[::-1]
    return np.array([np.mean(gen >= threshold_np(gen, imp, matlab_round(far * len(imp)))) for far in fars])


def open_set_np(score: np.ndarray, gal_labels: np.ndarray, prob_labels: np.ndarray, far: float, rank: int) -> float:
    """OpenSetROC with score (G, P), one loop per probe; rank via a stable descending sort like MATLAB."""
    imp, gen, ranks = [], [], []
    for p in range(score.shape[1]):
        column = score[:, p]
        mates = np.flatnonzero(gal_labels == prob_labels[p])
        if len(mates) == 0:
            imp.append(column.max())
            continue
        mate = mates[np.argmax(column[mates])]  # first maximum, like MATLAB max
        order = np.argsort(-column, kind="stable")
        gen.append(column[mate])
        ranks.append(int(np.flatnonzero(order == mate)[0]) + 1)
    imp_desc, gen = np.sort(imp)[::-1], np.array(gen)
    tau = threshold_np(gen, imp_desc, matlab_round(far * len(imp_desc)))
    return float(np.mean((gen >= tau) & (np.array(ranks) <= rank)))


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=generator, dtype=torch.float64), dim=1)


# ---------------------------------------------------------------- false alarms / EvalROC


def test_false_alarm_counts_round_half_away_from_zero():
    assert [evalroc_count(far, 10) for far in (0.25, 0.5, 0.75, 0.1, 0, 1)] == [3, 5, 8, 1, 0, 10]  # 2.5->3, 7.5->8
    assert evalroc_count(0.125, 4) == 1  # 0.5 -> 1 (Python round would give 0)
    with pytest.raises(ValueError, match=r"FAR must be in \[0, 1\]"):
        evalroc_count(1.5, 10)


def planted(gen: list[float], imp: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A square score matrix whose strict lower triangle holds exactly these genuine and impostor scores.

    Images 2k and 2k+1 share label k, so the genuine pairs are (2k+1, 2k); every other lower-triangle entry is an
    impostor pair, filled from ``imp`` (whose length must be C(2G, 2) - G).
    """
    n_gen = len(gen)
    n = 2 * n_gen
    labels = torch.arange(n) // 2
    i, j = np.tril_indices(n, k=-1)
    impostor_slots = [(a, b) for a, b in zip(i, j, strict=True) if a // 2 != b // 2]
    assert len(impostor_slots) == len(imp), f"need {len(impostor_slots)} impostor scores"
    score = torch.zeros(n, n, dtype=torch.float64)
    for k, value in enumerate(gen):
        score[2 * k + 1, 2 * k] = value
    for (a, b), value in zip(impostor_slots, imp, strict=True):
        score[a, b] = value
    score = score + score.T  # the upper triangle must be ignored anyway; make it symmetric like X X^T
    return score, labels


# 3 genuine pairs (3 couples) -> C(6,2) - 3 = 12 impostor pairs
GEN = [0.9, 0.5, 0.3]
IMP = [0.8, 0.6, 0.6, 0.5, 0.4, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4]


@pytest.mark.parametrize(
    ("far", "expected"),
    [
        (1 / 12, 1 / 3),  # falseAlarms 1: tau = 0.8 -> only 0.9 passes
        (2 / 12, 1 / 3),  # falseAlarms 2: tau = 0.6 -> 0.9
        (3 / 12, 1 / 3),  # falseAlarms 3: tau = 0.6 (tie) -> 0.9
        (4 / 12, 2 / 3),  # falseAlarms 4: tau = 0.5 -> 0.9, 0.5 (>= counts the tie with a genuine score)
        (0.37, 2 / 3),  # 0.37 * 12 = 4.44 -> 4, a FAR between two impostor scores' FARs
        (0.375, 2 / 3),  # 4.5 -> 5 (half away from zero): tau = 0.4 -> 0.9, 0.5
        (6 / 12, 1.0),  # falseAlarms 6: tau = 0.2 -> all
        (0.0, 1 / 3),  # falseAlarms 0: tau = (0.8 + 0.9) / 2 -> 0.9
        (1.0, 1.0),  # falseAlarms Nimp: tau = min(-0.4, 0.3) - sqrt(eps) -> all
    ],
)
def test_verification_rates_planted(far, expected):
    score, labels = planted(GEN, IMP)
    assert float(verification_rates(score, labels, [far])[0]) == pytest.approx(expected)
    assert eval_roc_np(score.numpy(), labels.numpy(), [far])[0] == pytest.approx(expected)  # the reference agrees


def test_zero_far_threshold_when_no_genuine_beats_the_top_impostor():
    score, labels = planted([0.8, 0.5, 0.3], [0.8 + SQRT_EPS / 2, *IMP[1:]])
    # tau = imp(1) + sqrt(eps) > 0.8 -> no genuine score passes
    assert float(verification_rates(score, labels, [0.0])[0]) == 0.0
    score, labels = planted([0.8 + SQRT_EPS, 0.5, 0.3], [0.8, *IMP[1:]])
    # some genuine above imp(1): tau = midpoint -> 1 passes
    assert float(verification_rates(score, labels, [0.0])[0]) == pytest.approx(1 / 3)


def test_evalroc_operating_points_accept_what_the_toolkits_thresholds_accept():
    """EvalROC.m's thresholds for falseAlarms 0, 1, 2 and Nimp (midway to the lowest higher genuine score, the k-th
    impostor, ..., below everything) accept exactly the genuine scores the evalroc operating points accept."""
    genuine = torch.tensor([0.9, 0.85, 0.3, 0.82, 0.8, 0.5, 0.45], dtype=torch.float64)
    top = torch.tensor([0.8, 0.5, 0.45, 0.4], dtype=torch.float64)  # the 4 largest of 10 impostor scores
    matlab = {0: (0.8 + 0.82) / 2, 1: 0.8, 2: 0.5, 10: 0.3 - SQRT_EPS}
    for count, threshold in matlab.items():
        (point,) = operating_points(top, 10, count / 10, "evalroc")
        assert point.accepts(genuine).tolist() == (genuine >= threshold).tolist(), count


def test_one_far_threshold_below_the_lowest_genuine():
    score, labels = planted([0.9, 0.5, -0.9], IMP)  # lowest genuine below every impostor
    assert float(verification_rates(score, labels, [1.0])[0]) == 1.0
    assert float(verification_rates(score, labels, [11 / 12])[0]) == pytest.approx(2 / 3)  # tau = -0.3


def test_verification_rates_match_dense_numpy():
    features = unit(60, 4, seed=1)
    labels = torch.randint(0, 12, (60,), generator=torch.Generator().manual_seed(2))
    fars = [0, 1e-3, 0.01, 0.05, 0.1, 0.33, 0.5, 0.99, 1]
    score = features @ features.T
    expected = eval_roc_np(score.numpy(), labels.numpy(), fars)
    np.testing.assert_allclose(verification_rates(score, labels, fars).numpy(), expected)


@pytest.mark.parametrize("chunk", [1, 7, 64, 100, 1000])
def test_chunked_verification_matches_dense_numpy(chunk):
    features = unit(300, 8, seed=3)
    labels = torch.randint(0, 40, (300,), generator=torch.Generator().manual_seed(4))
    fars = [0, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1]
    score = (features @ features.T).numpy()
    expected = eval_roc_np(score, labels.numpy(), fars)
    np.testing.assert_allclose(blufr_verification(features, labels, fars, chunk=chunk).numpy(), expected)


def test_chunked_verification_with_ties():
    # 4 distinct vectors with exactly representable dot products (so every GEMM blocking gives the same float):
    # massive exact ties between genuine and impostor scores
    base = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.75, 0.0], [0.0, 0.5, 0.5], [0.25, 0.25, 0.75]], dtype=torch.float64)
    pick = torch.randint(0, 4, (80,), generator=torch.Generator().manual_seed(6))
    features, labels = base[pick], torch.randint(0, 10, (80,), generator=torch.Generator().manual_seed(7))
    fars = [0, 0.01, 0.2, 0.5, 0.77, 1]
    expected = eval_roc_np((features @ features.T).numpy(), labels.numpy(), fars)
    for chunk in (3, 80):
        np.testing.assert_allclose(blufr_verification(features, labels, fars, chunk=chunk).numpy(), expected)


# ---------------------------------------------------------------- OpenSetROC


def test_open_set_identification_hand_made():
    # gallery: subjects 10, 20, 30 at e0, e1, e2. probes: 4 genuine, 4 impostors (labels 98, 99)
    e = torch.eye(3, dtype=torch.float64)
    gallery, gallery_labels = e, torch.tensor([10, 20, 30])

    def probe(a, b, c):
        return torch.tensor([a, b, c], dtype=torch.float64)

    probes = torch.stack(
        [
            probe(0.9, 0.1, 0.0),  # subject 10: mate 0.9, rank 1
            probe(0.7, 0.6, 0.0),  # subject 20: mate 0.6, rank 2
            probe(0.0, 0.0, 0.5),  # subject 30: mate 0.5, rank 1
            probe(0.4, 0.4, 0.0),  # subject 20: mate 0.4 ties with gallery 0 (earlier) -> rank 2
            probe(0.8, 0.0, 0.0),  # impostor max 0.8
            probe(0.0, 0.45, 0.0),  # impostor max 0.45
            probe(0.3, 0.0, 0.0),  # impostor max 0.3
            probe(0.0, 0.0, 0.2),  # impostor max 0.2
        ]
    )
    labels = torch.tensor([10, 20, 30, 20, 98, 99, 98, 99])
    # Nimp = 4. FAR 0.25 -> 1 false alarm: tau = 0.8 -> probe 0 only: DIR = 1/4
    assert open_set_identification(gallery, gallery_labels, probes, labels, far=0.25) == pytest.approx(1 / 4)
    # FAR 0.5 -> tau = 0.45: probes 0 (0.9, r1), 1 (0.6, r2), 2 (0.5, r1) pass the threshold; rank 1: 0, 2
    assert open_set_identification(gallery, gallery_labels, probes, labels, far=0.5) == pytest.approx(2 / 4)
    assert open_set_identification(gallery, gallery_labels, probes, labels, far=0.5, rank=2) == pytest.approx(3 / 4)
    # FAR 0.75 -> tau = 0.3: probe 3 (0.4) passes but ranks 2 (tie broken by gallery order)
    assert open_set_identification(gallery, gallery_labels, probes, labels, far=0.75) == pytest.approx(2 / 4)
    assert open_set_identification(gallery, gallery_labels, probes, labels, far=0.75, rank=2) == pytest.approx(1.0)
    # FAR 0 -> tau = (0.8 + 0.9) / 2
    assert open_set_identification(gallery, gallery_labels, probes, labels, far=0.0) == pytest.approx(1 / 4)
    # with the mate first in the gallery, the same tie ranks 1
    swapped = open_set_identification(gallery[[1, 0, 2]], gallery_labels[[1, 0, 2]], probes, labels, far=0.75)
    assert swapped == pytest.approx(3 / 4)


@pytest.mark.parametrize(("far", "rank", "chunk"), [(0.0, 1, 50), (0.01, 1, 7), (0.1, 3, 4096), (1.0, 1, 13)])
def test_open_set_identification_matches_numpy(far, rank, chunk):
    gallery = unit(30, 3, seed=8)
    probes = unit(200, 3, seed=9)
    gallery_labels = torch.arange(30)
    probe_labels = torch.randint(0, 60, (200,), generator=torch.Generator().manual_seed(10))
    expected = open_set_np((gallery @ probes.T).numpy(), gallery_labels.numpy(), probe_labels.numpy(), far, rank)
    got = open_set_identification(gallery, gallery_labels, probes, probe_labels, far, rank, chunk=chunk)
    assert got == pytest.approx(expected)


def test_open_set_identification_ties_match_numpy():
    # duplicated gallery vectors with exactly representable dot products -> exact ties
    base = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.75, 0.25], [0.25, 0.5]], dtype=torch.float64)
    gallery = base[torch.tensor([0, 1, 0, 2, 1, 3, 4, 0])]
    gallery_labels = torch.arange(8)
    probes = gallery[torch.randint(0, 8, (60,), generator=torch.Generator().manual_seed(12))]
    probe_labels = torch.randint(0, 12, (60,), generator=torch.Generator().manual_seed(13))
    for far, rank in [(0.1, 1), (0.5, 1), (0.5, 2)]:
        expected = open_set_np((gallery @ probes.T).numpy(), gallery_labels.numpy(), probe_labels.numpy(), far, rank)
        assert open_set_identification(gallery, gallery_labels, probes, probe_labels, far, rank) == expected


# ---------------------------------------------------------------- evaluate_blufr on a small fake config


def fake_config() -> BlufrConfig:
    rng = np.random.default_rng(14)
    n = 90
    labels = np.repeat(np.arange(1, 31), 3)  # 30 subjects x 3 images
    tests, galleries, probes = [], [], []
    for _ in range(3):
        test = np.sort(rng.choice(n, 60, replace=False))
        subjects = rng.choice(np.unique(labels[test]), 8, replace=False)
        gallery = np.array([test[labels[test] == s][0] for s in subjects])
        tests.append(test)
        galleries.append(gallery)
        probes.append(np.setdiff1d(test, gallery))
    return BlufrConfig(
        image_list=[f"Person_{i // 3:03d}_{i % 3 + 1:04d}.jpg" for i in range(n)],
        labels=labels.astype(np.int64),
        train_index=[np.setdiff1d(np.arange(n), t) for t in tests],
        test_index=tests,
        gallery_index=galleries,
        probe_index=probes,
    )


def test_evaluate_blufr_summary():
    config = fake_config()
    # subject centres + noise: genuine scores are high but overlap impostors, so the measures vary across trials
    noise = 0.5 * unit(90, 8, seed=15)
    features = torch.nn.functional.normalize(unit(30, 8, seed=18)[torch.as_tensor(config.labels - 1)] + noise, dim=1)
    order = np.random.default_rng(16).permutation(90)  # features given in another order, names with folders
    names = [f"{config.image_list[i][:10]}/{config.image_list[i]}" for i in order]
    result = evaluate_blufr((names, features[order]), config, chunk=17)
    keys = ["vr@far=1e-4", "vr@far=1e-3", "dir@far=1e-2,rank=1"]
    rates = [f"{k}_{s}" for k in keys for s in ("mean", "std", "mean_minus_std")]
    assert list(result)[: len(rates)] == rates
    assert list(result)[len(rates) :] == [
        "num_trials", "num_impostors", "threshold@far=1e-3", "threshold@far=1e-3_std"
    ]  # fmt: skip
    assert result["num_trials"] == 3  # what the figures are over (the official config: 10), for amlit report
    labels = config.labels
    for key in keys:
        per_trial = []
        for t in range(3):
            test, gal, prob = config.test_index[t], config.gallery_index[t], config.probe_index[t]
            x = features.numpy()
            if key.startswith("vr"):
                far = float(key.split("=")[1])
                per_trial.append(eval_roc_np(x[test] @ x[test].T, labels[test], [far])[0])
            else:
                per_trial.append(open_set_np(x[gal] @ x[prob].T, labels[gal], labels[prob], 0.01, 1))
        assert len(set(per_trial)) > 1, f"{key} is the same in every trial: the std would not be tested"
        mean = sum(per_trial) / 3
        std = math.sqrt(sum((v - mean) ** 2 for v in per_trial) / 2)
        assert result[f"{key}_mean"] == pytest.approx(mean)
        assert result[f"{key}_std"] == pytest.approx(std)
        assert result[f"{key}_mean_minus_std"] == pytest.approx(mean - std)
    # calibrated thresholds: per trial the k-th largest impostor cosine, k = round(1e-3 N) (k >= 1 in every trial:
    # 1e-4 is not resolved, it is left out), averaged over the trials; num_impostors is the smallest trial's
    thresholds, impostor_counts = [], []
    for t in range(3):
        x, y = features.numpy().astype(np.float64)[config.test_index[t]], labels[config.test_index[t]]
        lower = np.tril(np.ones((len(y), len(y)), dtype=bool), -1)
        impostors = np.sort((x @ x.T)[lower & (y[:, None] != y[None, :])])[::-1]
        thresholds.append(impostors[math.floor(1e-3 * len(impostors) + 0.5) - 1])
        impostor_counts.append(len(impostors))
    assert 1e-4 * max(impostor_counts) < 1 <= 1e-3 * min(impostor_counts)
    assert result["num_impostors"] == min(impostor_counts)
    assert result["threshold@far=1e-3"] == pytest.approx(np.mean(thresholds))
    assert result["threshold@far=1e-3_std"] == pytest.approx(np.std(thresholds, ddof=1))
    # the dict form gives the same numbers
    by_name = {name: features[i] for name, i in zip(names, order, strict=True)}
    assert evaluate_blufr(by_name, config) == pytest.approx(result)


def test_evaluate_blufr_missing_features():
    config = fake_config()
    needed = np.unique(np.concatenate(config.test_index))
    keep = [i for i in range(90) if i != needed[0] and i != needed[1]]
    names = [config.image_list[i] for i in keep]
    with pytest.raises(BadDataError, match=f"2 of the {len(needed)} BLUFR test images have no feature"):
        evaluate_blufr((names, unit(len(keep), 3, seed=17)), config)


# ---------------------------------------------------------------- the real config


def test_read_blufr_config_missing_and_bad(tmp_path: Path):
    with pytest.raises(MissingDataError, match=r"blufr_lfw_config\.mat"):
        read_blufr_config(tmp_path / "blufr_lfw_config.mat")
    scipy_io = pytest.importorskip("scipy.io")
    bad = tmp_path / "bad.mat"
    scipy_io.savemat(str(bad), {"labels": np.arange(3)})
    with pytest.raises(BadDataError, match="imageList"):
        read_blufr_config(bad)


def test_a_config_with_an_empty_name_or_text_labels_is_refused(tmp_path: Path):
    """An empty imageList entry and labels that are strings gave IndexError/ValueError tracebacks."""
    from amlit.eval.blufr import sample_blufr_protocol, write_blufr_config

    scipy_io = pytest.importorskip("scipy.io")
    names = [f"Person_{s:03d}_{n:04d}.jpg" for s in range(60) for n in range(1, 2 + s % 4)]
    labels = np.array([int(name.split("_")[1]) + 1 for name in names])
    write_blufr_config(tmp_path / "config.mat", sample_blufr_protocol(names, labels, num_trials=2, seed=3))
    mat = {k: v for k, v in scipy_io.loadmat(str(tmp_path / "config.mat")).items() if not k.startswith("__")}
    empty_name = mat["imageList"].copy()
    empty_name.ravel()[0] = np.zeros((0, 0))
    scipy_io.savemat(str(tmp_path / "empty_name.mat"), {**mat, "imageList": empty_name})
    with pytest.raises(BadDataError, match=r"empty_name\.mat: variable 'imageList' has an empty entry"):
        read_blufr_config(tmp_path / "empty_name.mat")
    text_labels = np.empty(mat["labels"].shape, dtype=object)
    text_labels.ravel()[:] = "x"
    scipy_io.savemat(str(tmp_path / "text_labels.mat"), {**mat, "labels": text_labels})
    with pytest.raises(BadDataError, match=r"text_labels\.mat: variable 'labels' is not a vector of integer"):
        read_blufr_config(tmp_path / "text_labels.mat")


@pytest.fixture(scope="module")
def real_config(shared_data: Path) -> BlufrConfig:
    path = shared_data / "blufr" / "blufr_lfw_config.mat"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return read_blufr_config(path)


def genuine_pairs(labels: np.ndarray) -> int:
    sizes = np.unique(labels, return_counts=True)[1]
    return int((sizes * (sizes - 1) // 2).sum())


def test_real_config_facts(real_config: BlufrConfig):
    c = real_config
    assert len(c.image_list) == 13233 and len(set(c.image_list)) == 13233
    assert c.image_list[0] == "Aaron_Eckhart_0001.jpg"
    assert c.image_list != sorted(c.image_list)  # Windows-style order, kept as in the file
    assert c.labels.dtype == np.int64 and c.labels.min() == 1 and c.labels.max() == 5749
    assert len(np.unique(c.labels)) == 5749
    assert c.num_trials == 10
    assert len(c.test_index[0]) == 10281 and genuine_pairs(c.labels[c.test_index[0]]) == 231834
    assert len(c.test_index[2]) == 9388 and genuine_pairs(c.labels[c.test_index[2]]) == 59104
    assert round(np.mean([genuine_pairs(c.labels[t]) for t in c.test_index])) == 156915
    assert round(np.mean([len(t) for t in c.test_index])) == 9708
    for t in range(10):
        test, gal, prob = c.test_index[t], c.gallery_index[t], c.probe_index[t]
        assert test.min() >= 0 and test.max() < 13233
        assert set(test) == set(gal) | set(prob) and not set(gal) & set(prob)
        assert len(gal) == 1000 and len(np.unique(c.labels[gal])) == 1000
        assert not set(c.labels[c.train_index[t]]) & set(c.labels[test])


def test_written_config_reads_back_and_sampled_protocol_has_blufr_structure(tmp_path):
    from amlit.eval.blufr import sample_blufr_protocol, write_blufr_config

    names = [f"Person_{s:03d}_{n:04d}.jpg" for s in range(60) for n in range(1, 2 + s % 4)]
    labels = np.array([int(name.split("_")[1]) + 1 for name in names])
    config = sample_blufr_protocol(names, labels, num_trials=4, seed=3)
    write_blufr_config(tmp_path / "config.mat", config)
    back = read_blufr_config(tmp_path / "config.mat")
    assert back.image_list == names and np.array_equal(back.labels, labels)
    for field in ("train_index", "test_index", "gallery_index", "probe_index"):
        for a, b in zip(getattr(back, field), getattr(config, field), strict=True):
            assert np.array_equal(a, b)
    for t in range(back.num_trials):
        train, test = set(labels[back.train_index[t]]), set(labels[back.test_index[t]])
        assert not train & test and train | test == set(labels)  # subject-disjoint, everything used
        gallery = labels[back.gallery_index[t]]
        assert len(set(gallery)) == len(gallery) == round(0.235 * len(test))  # one image per gallery subject
        assert sorted(np.concatenate([back.gallery_index[t], back.probe_index[t]])) == sorted(back.test_index[t])
        # every gallery subject has a genuine probe
        assert set(gallery) <= set(labels[back.probe_index[t]])


def test_a_config_whose_trials_do_not_split_into_gallery_and_probes_is_refused(tmp_path):
    """galIndex/probIndex swapped (every probe of a gallery subject) crashed open-set identification with a
    ValueError traceback after the verification work; refused when the config is read, naming the trial."""
    from dataclasses import replace

    from amlit.eval.blufr import sample_blufr_protocol, write_blufr_config

    names = [f"Person_{s:03d}_{n:04d}.jpg" for s in range(60) for n in range(1, 2 + s % 4)]
    labels = np.array([int(name.split("_")[1]) + 1 for name in names])
    config = sample_blufr_protocol(names, labels, num_trials=3, seed=3)
    first_gallery = config.gallery_index[0]
    for broken, problem in (
        (replace(config, gallery_index=config.probe_index, probe_index=config.gallery_index), "no impostor probe"),
        (replace(config, probe_index=[np.setdiff1d(p, p[:1]) for p in config.probe_index]), "are not testIndex"),
        (replace(config, probe_index=[np.union1d(p, first_gallery) for p in config.probe_index]), "overlap"),
    ):
        write_blufr_config(tmp_path / "config.mat", broken)
        with pytest.raises(BadDataError, match=f"config.mat: trial 1: .*{problem}"):
            read_blufr_config(tmp_path / "config.mat")
