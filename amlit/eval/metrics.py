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

    Under DDP every process joins the gather, also one that got no batch at all (``limit_test_batches``, fewer
    images than processes): features are kept flattened (B * D,) so that such a process can send an empty
    (0,) tensor (torchmetrics gathers tensors of equal ndim only), and its empty index list is sent as int64.
    """

    full_state_update = False

    def __init__(self, num_items: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_items = num_items
        self.add_state("features", default=[], dist_reduce_fx="cat")  # flattened (B * D,) float32 per batch
        self.add_state("indices", default=[], dist_reduce_fx="cat")  # (B,) int64 per batch

    def update(self, features: torch.Tensor, indices: torch.Tensor) -> None:
        self.features.append(features.detach().float().reshape(-1))
        self.indices.append(indices.detach().long())

    def sync(self, *args, **kwargs) -> None:
        if isinstance(self.indices, list) and not self.indices:  # no batch here: send typed empty tensors
            self.features.append(torch.empty(0, device=self.device))
            self.indices.append(torch.empty(0, dtype=torch.long, device=self.device))
        super().sync(*args, **kwargs)

    def compute(self) -> torch.Tensor:
        features, indices = self.features, self.indices
        if isinstance(indices, list):  # not synced (one process)
            features = dim_zero_cat(features) if features else torch.empty(0, device=self.device)
            indices = dim_zero_cat(indices) if indices else torch.empty(0, dtype=torch.long, device=self.device)
        if not indices.numel():
            return torch.full((self.num_items, 0), float("nan"), device=self.device)
        if indices.min() < 0 or indices.max() >= self.num_items:
            raise IndexError(f"image indices must lie in [0, {self.num_items})")
        features = features.reshape(indices.numel(), -1)  # (N, D)
        out = torch.full((self.num_items, features.shape[1]), float("nan"), device=features.device)
        out[indices.long()] = features
        return out
