"""Calibrated thresholds (``amlit.eval.far.calibrated_thresholds``): the cosine that reaches a FAR on a test set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amlit.eval.far import calibrated_thresholds, calibration_impostors_needed, resolves
from amlit.eval.megaface import evaluate_megaface
from amlit.eval.verification import roc_metrics


def planted_impostors(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` distinct impostor cosines (i + 0.5) / count - 0.5 for i = 0..count-1, shuffled."""
    values = (np.arange(count, dtype=np.float64) + 0.5) / count - 0.5
    return torch.from_numpy(np.random.default_rng(seed).permutation(values))


def test_threshold_at_far_1e_3_on_planted_scores_is_exact():
    impostors = planted_impostors(10_000)  # FAR 1e-3: 10 false accepts; 1e-4: 1; 1e-5, 1e-6: not resolved
    top = impostors.sort(descending=True).values
    thresholds = calibrated_thresholds(top, len(impostors))
    assert set(thresholds) == {1e-3, 1e-4}
    # the 10th largest of (i + 0.5) / 10000 - 0.5 is i = 9990
    assert thresholds[1e-3] == (9990 + 0.5) / 10_000 - 0.5
    assert thresholds[1e-4] == (9999 + 0.5) / 10_000 - 0.5
    for far, threshold in thresholds.items():  # accepting cosine >= threshold gives exactly FAR x N false accepts
        assert int((impostors >= threshold).sum()) == round(far * len(impostors))
    assert calibration_impostors_needed(len(impostors)) == 10  # what a streaming scan must keep


def test_only_resolved_fars_get_a_threshold_and_decimal_fars_count_exactly():
    assert resolves(1e-3, 1000) and not resolves(1e-3, 999)  # 1e-3 * 1000 = 1 exactly (decimal, not binary)
    assert resolves(1e-6, 3_530_000_000) and not resolves(1e-6, 999_999)
    top = planted_impostors(999).sort(descending=True).values
    assert calibrated_thresholds(top, 999) == {}
    assert calibration_impostors_needed(999) == 0


def test_pair_sets_report_the_threshold_and_the_impostors_behind_it():
    rng = np.random.default_rng(1)
    impostors = planted_impostors(2000, seed=2)
    genuine = torch.from_numpy(rng.uniform(0.2, 0.9, 300))
    scores = torch.cat([genuine, impostors])
    issame = torch.cat([torch.ones(300, dtype=torch.bool), torch.zeros(2000, dtype=torch.bool)])
    metrics = roc_metrics(scores, issame)
    assert metrics["num_impostors"] == 2000
    expected = np.sort(impostors.numpy())[::-1][1]  # FAR 1e-3 of 2000: 2 false accepts -> the 2nd largest
    assert metrics["threshold@far=1e-3"] == expected
    assert "threshold@far=1e-4" not in metrics  # 0.2 < 1: this set cannot measure 1e-4
    # the threshold is the operating point of the reported TAR: accepting >= it gives tar@far=1e-3
    assert metrics["tar@far=1e-3"] == pytest.approx(float((genuine >= expected).double().mean()))


def test_megaface_thresholds_match_a_brute_force_on_all_probe_distractor_scores():
    rng = np.random.default_rng(3)
    probes = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(30, 16))), dim=1)
    distractors = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(400, 16))), dim=1)
    labels = torch.arange(30) // 3
    metrics = evaluate_megaface(probes, labels, distractors, chunk=64, device="cpu", progress=False)
    impostors = np.sort((probes.numpy() @ distractors.numpy().T).ravel())[::-1]  # 12,000: 1e-3 and 1e-4 resolved
    assert metrics["num_impostors"] == 12_000
    assert metrics["threshold@far=1e-3"] == pytest.approx(impostors[11], abs=1e-12)  # round(12) = 12th largest
    assert metrics["threshold@far=1e-4"] == pytest.approx(impostors[0], abs=1e-12)  # round(1.2) = 1: the largest
    assert "threshold@far=1e-5" not in metrics
