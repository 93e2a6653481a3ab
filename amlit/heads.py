"""Margin heads: embedding (B, D) + labels (B,) -> cross-entropy loss over ``num_classes`` class weights.

Each loss is a small pure function on the cosine matrix plus a thin ``nn.Module`` that owns the class weights
(layout (num_classes, embedding_dim) as in ``F.linear``). The cosine and the loss are computed in float32 even
under bf16/fp16 autocast: ``scale * cos`` with scale 30 and a 10k-way log-softmax lose too much precision (and
overflow in fp16) otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from amlit.errors import ConfigError


class HeadOutput(NamedTuple):
    loss: torch.Tensor  # () mean cross-entropy over the batch
    cosine: torch.Tensor  # (B, C) cos(theta_j) in float32, without margin: for accuracy and diagnostics


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Fail with a readable message when a label is outside [0, num_classes).

    On CUDA this is an asynchronous device-side assert, so it costs no host synchronisation per step.
    """
    if labels.dtype != torch.long:
        raise TypeError(f"labels must be int64 (torch.long), got {labels.dtype}")
    in_range = (labels.min() >= 0) & (labels.max() < num_classes)
    message = f"labels must lie in [0, {num_classes}); check the data's class count against model num_classes"
    if labels.is_cuda:
        torch._assert_async(in_range, message)
    elif not bool(in_range):
        raise ValueError(f"{message} (got min {int(labels.min())}, max {int(labels.max())})")


def normalized_cosine(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """cos(theta_j) = <f/|f|, W_j/|W_j|>: (B, D) x (C, D) -> (B, C), computed in float32."""
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        return F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(weight.float(), dim=1))


def am_softmax_logits(
    cosine: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    scale: float,
    conditional_margin: bool = False,
) -> torch.Tensor:
    """AM-Softmax logits, Wang et al. 2018, Eq. 6: ``s*cos(theta_j)`` for j != y and ``s*(cos(theta_y) - m)``.

    Args:
        cosine: (B, C) cosines between normalized features and normalized class weights.
        labels: (B,) target classes.
        conditional_margin: the original Caffe ``LabelSpecificAdd`` layer subtracts the margin only where
            ``cos(theta_y) > margin``; the paper's Eq. 6 always subtracts it (default).
    Returns:
        (B, C) logits for cross-entropy.
    """
    index = labels[:, None]  # (B, 1)
    target = cosine.gather(1, index)  # (B, 1) cos(theta_y)
    shifted = target - margin
    if conditional_margin:
        shifted = torch.where(target > margin, shifted, target)
    return scale * cosine.scatter(1, index, shifted)


class MarginHead(nn.Module):
    """Class weights (num_classes, embedding_dim) and the fp32 cosine layer shared by all margin losses."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        # Caffe xavier filler of the AM-Softmax fc6 layer: U(-sqrt(3/fan_in), +sqrt(3/fan_in)).
        bound = math.sqrt(3.0 / embedding_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def logits(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        if embeddings.shape[-1] != self.embedding_dim:
            raise ValueError(f"head expects embeddings of size {self.embedding_dim}, got {tuple(embeddings.shape)}")
        check_labels(labels, self.num_classes)
        cosine = normalized_cosine(embeddings, self.weight)  # (B, C) float32
        with torch.autocast(device_type=cosine.device.type, enabled=False):
            loss = F.cross_entropy(self.logits(cosine, labels), labels)
        return HeadOutput(loss=loss, cosine=cosine)

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}"


class AMSoftmax(MarginHead):
    """Additive Margin Softmax (AM-Softmax / CosFace), Wang et al. 2018, Eq. 6.

    Args:
        embedding_dim: feature size D (given by the module from the backbone).
        num_classes: number of training identities C (linked from the data module).
        margin: additive cosine margin m, 0 <= m < 1 (paper: 0.35). ``margin=0`` is NormFace.
        scale: fixed scale s > 0 (paper: 30).
        conditional_margin: subtract the margin only where cos(theta_y) > margin, as the original Caffe layer.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        margin: float = 0.35,
        scale: float = 30.0,
        conditional_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        if not 0.0 <= margin < 1.0:
            raise ConfigError(f"AM-Softmax margin must satisfy 0 <= margin < 1, got {margin} (paper: 0.35)")
        if not scale > 0.0:
            raise ConfigError(f"AM-Softmax scale must be > 0, got {scale} (paper: 30)")
        self.margin = float(margin)
        self.scale = float(scale)
        self.conditional_margin = conditional_margin

    def logits(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return am_softmax_logits(cosine, labels, self.margin, self.scale, self.conditional_margin)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, margin={self.margin}, scale={self.scale}, "
            f"conditional_margin={self.conditional_margin}"
        )
