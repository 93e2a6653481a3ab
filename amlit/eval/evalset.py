"""An evaluation set: images to embed and the protocol that scores their embeddings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class EvalSet:
    """``dataset`` yields ``(uint8 image (H, W, 3), image index)``; ``evaluate`` maps the (N, D) embeddings in
    index order (NaN rows where an image was not embedded) to named metrics, logged as ``<stage>/<name>/<key>``."""

    name: str
    dataset: Dataset
    num_images: int
    evaluate: Callable[[torch.Tensor], dict[str, float]]
