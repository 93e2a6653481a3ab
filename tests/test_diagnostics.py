"""Margin diagnostics against a float64 numpy recomputation, on a planted batch and inside a training run."""

import csv
import math

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from amlit import keys
from amlit.backbones import SphereFace
from amlit.data import CasiaDataModule, ImageFolder
from amlit.diagnostics import margin_diagnostics
from amlit.heads import AMSoftmax
from amlit.module import FaceVerificationModule


def reference(embeddings: np.ndarray, weight: np.ndarray, labels: np.ndarray, margin: float) -> dict[str, float]:
    """Brute force, one sample at a time, in float64."""
    angles, violations = [], []
    for feature, label in zip(embeddings, labels, strict=True):
        cosines = [feature @ w / (np.linalg.norm(feature) * np.linalg.norm(w)) for w in weight]
        others = [c for j, c in enumerate(cosines) if j != label]
        angles.append(math.degrees(math.acos(min(1.0, cosines[label]))))
        violations.append(cosines[label] - margin < max(others))
    norms = [np.linalg.norm(w) for w in weight]
    return {
        keys.TRAIN_TARGET_ANGLE: float(np.mean(angles)),
        keys.TRAIN_MARGIN_VIOLATION: float(np.mean(violations)),
        keys.TRAIN_EMBEDDING_NORM: float(np.mean([np.linalg.norm(f) for f in embeddings])),
        keys.TRAIN_WEIGHT_NORM_MEAN: float(np.mean(norms)),
        keys.TRAIN_WEIGHT_NORM_STD: float(np.sqrt(np.mean((np.array(norms) - np.mean(norms)) ** 2))),
    }


def test_planted_batch_matches_the_brute_force_and_hand_counts():
    # Class weights along the axes of R^3, norms 1, 2, 3: cos(theta_j) of a feature is its j-th direction cosine.
    weight = np.diag([1.0, 2.0, 3.0])
    # Cosines to (class 0, class 1): 0.8/0.6 satisfies a 0.35 margin only if 0.8-0.35 >= 0.6: it does not.
    embeddings = np.array(
        [
            [0.8, 0.6, 0.0],  # label 0: correct but inside the margin (0.45 < 0.6)      -> violation
            [5.0, 0.0, 0.0],  # label 0: cos 1 vs 0, far outside the margin             -> ok
            [0.6, 0.8, 0.0],  # label 0: misclassified                                  -> violation
            [0.0, 0.0, 2.0],  # label 2: cos 1 vs 0                                     -> ok
        ]
    )
    labels = np.array([0, 0, 0, 2])
    expected = reference(embeddings, weight, labels, margin=0.35)
    assert expected[keys.TRAIN_MARGIN_VIOLATION] == 0.5  # the hand count above
    embeddings_t, weight_t = torch.tensor(embeddings, dtype=torch.float32), torch.tensor(weight, dtype=torch.float32)
    cosine = torch.nn.functional.normalize(embeddings_t, dim=1) @ torch.nn.functional.normalize(weight_t, dim=1).T
    got = margin_diagnostics(cosine, torch.tensor(labels), 0.35, embeddings_t, weight_t)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(value, abs=1e-4), key
    # Without a margin only the misclassified sample counts.
    no_margin = margin_diagnostics(cosine, torch.tensor(labels), 0.0, embeddings_t, weight_t)
    assert float(no_margin[keys.TRAIN_MARGIN_VIOLATION]) == 0.25


def test_random_batch_matches_the_brute_force():
    rng = np.random.default_rng(0)
    embeddings, weight = rng.normal(size=(32, 8)) * 3, rng.normal(size=(10, 8))
    labels = rng.integers(0, 10, size=32)
    head = AMSoftmax(8, 10, margin=0.2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weight))
    embeddings_t = torch.tensor(embeddings, dtype=torch.float32)
    out = head(embeddings_t, torch.tensor(labels))
    got = margin_diagnostics(out.cosine, torch.tensor(labels), head.margin, embeddings_t, head.weight)
    for key, value in reference(embeddings, weight, labels, margin=0.2).items():
        assert float(got[key]) == pytest.approx(value, rel=1e-4, abs=1e-4), key


def test_training_logs_the_diagnostics_every_n_steps(tiny_tree, tmp_path):
    torch.manual_seed(0)
    dm = CasiaDataModule(ImageFolder(tiny_tree / "casia"), batch_size=8, num_workers=0)
    backbone = SphereFace(width_multiplier=0.125, embedding_dim=16)
    module = FaceVerificationModule(backbone=backbone, head=AMSoftmax, num_classes=dm.num_classes)
    weights_before_step = {}

    class RecordWeights(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            weights_before_step[batch_idx] = pl_module.head.weight.detach().double().clone()

    trainer = L.Trainer(
        callbacks=[RecordWeights()],
        max_steps=4,
        log_every_n_steps=2,
        logger=CSVLogger(tmp_path, name="logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=dm)
    with open(trainer.logger.log_dir + "/metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get(keys.TRAIN_LOSS)]
    assert [int(row["step"]) for row in rows] == [1, 3]  # Lightning's logging steps for log_every_n_steps=2
    for row in rows:
        assert 0.0 <= float(row[keys.TRAIN_MARGIN_VIOLATION]) <= 1.0
        assert 0.0 < float(row[keys.TRAIN_TARGET_ANGLE]) < 180.0
        assert float(row[keys.TRAIN_EMBEDDING_NORM]) > 0.0
    # The weight norms logged at step 3 are those the head had in that step (before its optimizer update).
    norms = weights_before_step[3].norm(dim=1)
    assert float(rows[-1][keys.TRAIN_WEIGHT_NORM_MEAN]) == pytest.approx(float(norms.mean()), rel=1e-5)
    assert float(rows[-1][keys.TRAIN_WEIGHT_NORM_STD]) == pytest.approx(float(norms.std(correction=0)), rel=1e-4)
