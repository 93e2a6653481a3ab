"""Metric keys, stated once. Evaluation keys are ``<stage>/<eval set>/<metric>`` (e.g. ``test/lfw/acc``)."""

TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"  # arg-max of the cosines without margin
TRAIN_NONFINITE_SKIPS = "train/nonfinite_skips"  # optimizer steps skipped by NonFiniteGuard
TRAIN_TARGET_ANGLE = "train/target_angle_deg"  # mean angle between features and their class weight


def eval_key(stage: str, eval_set: str, metric: str) -> str:
    return f"{stage}/{eval_set}/{metric}"
