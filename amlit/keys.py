"""Metric keys, stated once. Evaluation keys are ``<stage>/<eval set>/<metric>`` (e.g. ``test/lfw/acc``)."""

TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"  # arg-max of the cosines without margin
TRAIN_NONFINITE_SKIPS = "train/nonfinite_skips"  # optimizer steps skipped by NonFiniteGuard
TRAIN_TARGET_ANGLE = "train/target_angle_deg"  # mean angle between features and their class weight


def eval_key(stage: str, eval_set: str, metric: str) -> str:
    return f"{stage}/{eval_set}/{metric}"


def far_name(far: float) -> str:
    """A FAR as it appears in metric keys: 1e-4 -> ``"1e-4"`` (e.g. ``tar@far=1e-4``, ``vr@far=1e-3``)."""
    return f"{far:.0e}".replace("e-0", "e-")
