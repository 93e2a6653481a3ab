"""The pairs of a label vector: how many pairs of images share an identity, and which (BLUFR, MegaFace)."""

from __future__ import annotations

import torch


def count_pairs(labels: torch.Tensor) -> tuple[int, int]:
    """(#genuine, #impostor) pairs i > j among ``labels`` (N,)."""
    n = len(labels)
    sizes = torch.unique(labels.cpu(), return_counts=True)[1].long()
    genuine = int((sizes * (sizes - 1) // 2).sum())
    return genuine, n * (n - 1) // 2 - genuine


def genuine_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) (G,) each: the pairs i > j with equal labels, sorted by i, then j."""
    device = labels.device
    order = torch.argsort(labels, stable=True)  # each label's rows together, in increasing row order
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=device)  # each row's place in `order`
    _, counts = torch.unique_consecutive(labels[order], return_counts=True)
    group_start = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)  # (N,) along `order`
    earlier = (torch.arange(len(order), device=device) - group_start)[position]  # same-label rows before each row
    rows = torch.repeat_interleave(torch.arange(len(order), device=device), earlier)  # row i, `earlier[i]` times
    offset = torch.arange(len(rows), device=device) - torch.repeat_interleave(
        torch.cumsum(earlier, 0) - earlier, earlier
    )
    return rows, order[group_start[position[rows]] + offset]
