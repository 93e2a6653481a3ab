"""Metric keys, stated once. Evaluation keys are ``<stage>/<eval set>/<metric>`` (e.g. ``test/lfw/acc``)."""

import numpy as np

TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"  # arg-max of the cosines without margin
TRAIN_NONFINITE_SKIPS = "train/nonfinite_skips"  # optimizer steps skipped by NonFiniteGuard
TRAIN_TARGET_ANGLE = "train/target_angle_deg"  # mean angle between features and their class weight
# Margin diagnostics, logged every `log_every_n_steps` (definitions: amlit.diagnostics.margin_diagnostics).
TRAIN_MARGIN_VIOLATION = "train/margin_violation"  # share of samples with cos(theta_y) - m < max_{j!=y} cos(theta_j)
TRAIN_EMBEDDING_NORM = "train/embedding_norm"  # mean L2 norm of the features before normalization
TRAIN_WEIGHT_NORM_MEAN = "train/weight_norm_mean"  # mean L2 norm of the class weights
TRAIN_WEIGHT_NORM_STD = "train/weight_norm_std"  # their population std


def far_name(far: float) -> str:
    """How a FAR appears in metric keys, every digit kept: 1e-4 -> ``1e-4``, 0.0137 -> ``1.37e-2``."""
    return np.format_float_scientific(far, trim="-", exp_digits=1)


def far_key(far: float) -> str:
    """Metric key of a TAR at a FAR without losing digits: 1e-6 -> ``tar@far=1e-6``, 0.0137 -> ``tar@far=1.37e-2``."""
    return f"tar@far={far_name(far)}"


def distractors_key(count: int) -> str:
    """MegaFace rank-1 identification with ``count`` distractors: 1000 -> ``rank1@distractors=1000``."""
    return f"rank1@distractors={int(count)}"


def eval_key(stage: str, eval_set: str, metric: str) -> str:
    return f"{stage}/{eval_set}/{metric}"


# Calibration (amlit.eval.far.calibrated_thresholds): per test set, the cosine to accept at (>=) for a FAR, and the
# number of impostor pairs behind it (BLUFR: per trial, the smallest of its trials; thresholds averaged over trials).
NUM_IMPOSTORS = "num_impostors"
# BLUFR: how many trials its mean, std and mean - std are over (the official config has 10; amlit.eval.blufr).
NUM_TRIALS = "num_trials"
THRESHOLD_PREFIX = "threshold@far="


def is_calibration(metric: str) -> bool:
    """Whether a metric (without stage and set) is part of a set's calibration: ``num_impostors`` or a threshold."""
    return metric == NUM_IMPOSTORS or metric.startswith(THRESHOLD_PREFIX)


def threshold_key(far: float) -> str:
    """Metric key of the calibrated cosine threshold at a FAR: 1e-3 -> ``threshold@far=1e-3``."""
    return f"{THRESHOLD_PREFIX}{far_name(far)}"
