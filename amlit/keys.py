"""Metric keys, stated once. Evaluation keys are ``<stage>/<eval set>/<metric>`` (e.g. ``test/lfw/acc``)."""

TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"  # arg-max of the cosines without margin
TRAIN_NONFINITE_SKIPS = "train/nonfinite_skips"  # optimizer steps skipped by NonFiniteGuard
TRAIN_TARGET_ANGLE = "train/target_angle_deg"  # mean angle between features and their class weight
# Margin diagnostics, logged every `log_every_n_steps` (definitions: amlit.diagnostics.margin_diagnostics).
TRAIN_MARGIN_VIOLATION = "train/margin_violation"  # share of samples with cos(theta_y) - m < max_{j!=y} cos(theta_j)
TRAIN_EMBEDDING_NORM = "train/embedding_norm"  # mean L2 norm of the features before normalization
TRAIN_WEIGHT_NORM_MEAN = "train/weight_norm_mean"  # mean L2 norm of the class weights
TRAIN_WEIGHT_NORM_STD = "train/weight_norm_std"  # their population std


def eval_key(stage: str, eval_set: str, metric: str) -> str:
    return f"{stage}/{eval_set}/{metric}"
