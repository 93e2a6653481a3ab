"""Margin diagnostics of a training batch: how far the features are from satisfying the AM-Softmax margin.

All are cheap reductions of tensors the training step already has (the (B, C) cosine matrix, the (B, D) raw
embeddings, the (C, D) class weights); they stay on the device, so computing them adds no host synchronisation.
"""

from __future__ import annotations

import torch

from amlit import keys


@torch.no_grad()
def margin_diagnostics(
    cosine: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    embeddings: torch.Tensor,
    weight: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per-batch diagnostics (0-d float32 tensors, keyed by ``amlit.keys``).

    With ``cos(theta_j)`` the cosine between a sample's feature and class weight ``W_j`` and ``y`` its label:

    - ``train/target_angle_deg``: mean over the batch of ``theta_y`` in degrees.
    - ``train/margin_violation``: share of samples with ``cos(theta_y) - margin < max_{j != y} cos(theta_j)``,
      i.e. outside the AM-Softmax decision margin of Wang et al. 2018, Eq. 6 (``s(cos theta_y - m)`` does not
      exceed every other logit ``s cos theta_j``). Training drives it towards 0; with ``margin=0`` it is the
      training error.
    - ``train/embedding_norm``: mean L2 norm of the features before normalization.
    - ``train/weight_norm_mean``, ``train/weight_norm_std``: mean and population std (ddof=0) of the L2 norms of
      the C class weights (before normalization; the loss only sees their directions).

    Args:
        cosine: (B, C) cosines without margin.
        labels: (B,) int64 target classes.
        margin: additive cosine margin m of the head (0 for heads without one).
        embeddings: (B, D) raw features.
        weight: (C, D) class weights.
    """
    cosine = cosine.float()
    index = labels[:, None]  # (B, 1)
    target = cosine.gather(1, index).squeeze(1)  # (B,) cos(theta_y)
    others = cosine.scatter(1, index, float("-inf"))  # (B, C) the target column masked out
    closest_other = others.amax(dim=1)  # (B,) max_{j != y} cos(theta_j)
    weight_norms = weight.detach().float().norm(dim=1)  # (C,)
    return {
        keys.TRAIN_TARGET_ANGLE: torch.rad2deg(torch.acos(target.clamp(-1.0, 1.0))).mean(),
        keys.TRAIN_MARGIN_VIOLATION: (target - margin < closest_other).float().mean(),
        keys.TRAIN_EMBEDDING_NORM: embeddings.detach().float().norm(dim=1).mean(),
        keys.TRAIN_WEIGHT_NORM_MEAN: weight_norms.mean(),
        keys.TRAIN_WEIGHT_NORM_STD: weight_norms.std(correction=0),
    }
