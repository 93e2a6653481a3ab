"""An evaluation set: images to embed and the protocol that scores their embeddings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import Dataset

from amlit.eval.curves import Curve

Views = Literal["sum", "concat"]


@dataclass(frozen=True)
class EvalSet:
    """``dataset`` yields ``(uint8 image (H, W, 3), image index)``; ``evaluate`` maps the embeddings in index order
    (NaN rows where an image was not embedded) to named metrics (logged as ``<stage>/<name>/<key>``) and curves.

    ``views`` says which features ``evaluate`` gets: ``"sum"`` (N, D) = L2-normalize(f(image) + f(mirror)), the
    AM-Softmax test feature; ``"concat"`` (N, 2D) = [f(image), f(mirror)] un-normalized, for protocols that
    normalize themselves (SphereFace's LFW variant subtracts a mean first).
    """

    name: str
    dataset: Dataset
    num_images: int
    evaluate: Callable[[torch.Tensor], dict[str, float | Curve]]
    views: Views = "sum"
