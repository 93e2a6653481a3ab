"""torchmetrics state that gathers embeddings across processes for the evaluation protocols."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class EmbeddingCollector(Metric):
    """Collects (embedding, image index) from every batch and every process.

    ``compute()`` returns (num_items, D) float32 embeddings in index order; rows never seen are NaN. Indices make
    the result independent of how the images were sharded, and a DistributedSampler's padding (a repeated
    sample) lands on its own row again instead of being counted twice.
    """

    full_state_update = False

    def __init__(self, num_items: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_items = num_items
        self.add_state("features", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, indices: torch.Tensor) -> None:
        self.features.append(features.detach().float())
        self.indices.append(indices.detach().long())

    def compute(self) -> torch.Tensor:
        if not self.features:
            return torch.full((self.num_items, 0), float("nan"), device=self.device)
        features, indices = dim_zero_cat(self.features), dim_zero_cat(self.indices)
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_items):
            raise IndexError(f"image indices must lie in [0, {self.num_items})")
        out = torch.full((self.num_items, features.shape[1]), float("nan"), device=features.device)
        out[indices] = features
        return out
