"""Backbones: image batch (B, 3, H, W) -> embedding (B, D). Each exposes ``embedding_dim``.

``BACKBONES`` maps a name to a factory, for tools that build a network from a name (and for generic tests).
In configs, give the class: ``class_path: amlit.backbones.SphereFace`` with ``init_args: {depth: 20}``.
"""

from collections.abc import Callable

from torch import nn

from amlit.backbones.sphereface import SphereFace, sphereface20, sphereface36, sphereface64

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "sphereface20": sphereface20,
    "sphereface36": sphereface36,
    "sphereface64": sphereface64,
}

__all__ = ["BACKBONES", "SphereFace"]
