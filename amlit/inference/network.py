"""The feature network of a trained model in PyTorch: backbone + the test-time feature, from uint8 faces.

Used by ``amlit embed``/``verify`` on checkpoints and by ``amlit export onnx`` (which traces it), so an export and
the checkpoint compute the same function: the one ``FaceVerificationModule.embed`` computes in ``amlit test``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from amlit.checkpoint_io import checkpoint_digest
from amlit.errors import BadDataError

InputFormat = Literal["uint8_nhwc", "float_nchw"]
BACKBONE_PREFIX = "backbone."


def allowed_backbones() -> dict[str, type[nn.Module]]:
    """class path -> class of every backbone amlit ships (``amlit.backbones``): the only classes a record may name."""
    import amlit.backbones as backbones

    classes = [value for value in vars(backbones).values() if isinstance(value, type) and issubclass(value, nn.Module)]
    return {f"{cls.__module__}.{cls.__qualname__}": cls for cls in classes}


def build_backbone(spec: dict, source: str) -> nn.Module:
    """The backbone an inference record names (``record.backbone_spec``), built from amlit's own classes only: a
    file never chooses which code runs."""
    allowed = allowed_backbones()
    class_path = spec.get("class_path")
    if class_path not in allowed:
        raise BadDataError(
            f"{source} names the backbone {class_path!r}, which is not one of amlit's ({', '.join(allowed)}): amlit "
            "builds only the networks it ships, never code a file names"
        )
    if spec.get("unrecorded"):
        raise BadDataError(
            f"{source}: its backbone {class_path} was saved without the value of {', '.join(spec['unrecorded'])} "
            "(not readable from the network), so it cannot be rebuilt for inference"
        )
    try:
        return allowed[class_path](**spec.get("init_args", {}))
    except (TypeError, ValueError) as error:
        raise BadDataError(f"{source}: cannot build {class_path} from its recorded arguments: {error}") from None


def backbone_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's tensors of a ``FaceVerificationModule`` state dict, without the ``backbone.`` prefix."""
    return {k[len(BACKBONE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(BACKBONE_PREFIX)}


def weights_digest(backbone_tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the backbone's weights (``checkpoint_digest``): the identity of a model, shared by a checkpoint,
    its exports and the model cards and calibrations made from it."""
    return checkpoint_digest(backbone_tensors)


def load_backbone(spec: dict, tensors: dict[str, torch.Tensor], source: str) -> nn.Module:
    """``build_backbone`` with ``tensors`` loaded strictly (every weight present, every shape right), in eval mode."""
    backbone = build_backbone(spec, source)
    try:
        backbone.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        raise BadDataError(f"{source}: its weights do not fit its recorded backbone ({reason})") from None
    return backbone.eval()


class EmbeddingNet(nn.Module):
    """Faces -> features: ``uint8_nhwc`` input (B, H, W, 3) RGB in 0..255, normalized here as (x - mean) / std, or
    ``float_nchw`` input (B, 3, H, W) already normalized; then, with ``flip_sum``, f(x) + f(mirror(x)) (one pass over
    2B images), and with ``normalize`` L2-normalized: with both, amlit's test feature (B, D) float32."""

    def __init__(
        self,
        backbone: nn.Module,
        pixel_mean: float,
        pixel_std: float,
        input_format: InputFormat = "uint8_nhwc",
        flip_sum: bool = True,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pixel_mean, self.pixel_std = float(pixel_mean), float(pixel_std)
        self.input_format = input_format
        self.flip_sum, self.normalize = flip_sum, normalize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_format == "uint8_nhwc":
            # permute of NHWC is NCHW in channels_last memory, as in FaceVerificationModule.on_after_batch_transfer
            x = (images.permute(0, 3, 1, 2).float() - self.pixel_mean) / self.pixel_std
        else:
            x = images.float()
        if self.flip_sum:
            count = x.shape[0]
            both = self.backbone(torch.cat([x, x.flip(-1)])).float()  # (2B, D)
            features = both[:count] + both[count:]  # slices, not chunk(2): chunk pins the batch size in an export
        else:
            features = self.backbone(x).float()
        return nn.functional.normalize(features, dim=1) if self.normalize else features
