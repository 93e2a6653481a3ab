"""SphereFace residual networks ("modified ResNet-20/36/64") of Liu et al., CVPR 2017.

Layer for layer the Caffe model of wy1iu/sphereface ``train/code/sphereface_model.prototxt``, which
AM-Softmax (Wang et al. 2018, Sec. 4.1) reuses unchanged:

- four stages of a stride-2 3x3 conv (+PReLU) followed by residual units
  ``y = x + PReLU(conv(PReLU(conv(x))))``; widths 64/128/256/512;
- no BatchNorm, no pooling, no dropout; PReLU per channel, slope initialised to 0.25;
- ``fc5``: a fully connected layer from the flattened last feature map to the embedding (512-d), no activation.

Initialisation as in the prototxt: stride-2 convs and fc5 use Caffe ``xavier`` (U(-sqrt(3/fan_in), +sqrt(3/fan_in)))
with zero, trainable biases; residual convs use N(0, 0.01) and their Caffe bias is frozen at zero (lr_mult 0), so
here they have no bias at all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Residual units per stage (stride-2 conv excluded) -> conv count 4 + 2 * sum(units).
UNITS_PER_STAGE: dict[int, tuple[int, int, int, int]] = {
    20: (1, 2, 4, 1),
    36: (2, 4, 8, 2),
    64: (3, 8, 16, 3),
}
BASE_WIDTHS = (64, 128, 256, 512)


def caffe_xavier_(weight: torch.Tensor) -> None:
    """Caffe's ``xavier`` filler (variance_norm FAN_IN): U(-a, a) with a = sqrt(3 / fan_in)."""
    fan_in = weight[0].numel()
    bound = math.sqrt(3.0 / fan_in)
    nn.init.uniform_(weight, -bound, bound)


class ResidualUnit(nn.Module):
    """``x + PReLU(conv(PReLU(conv(x))))`` at constant width and resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.act_a = nn.PReLU(channels, init=0.25)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.act_b = nn.PReLU(channels, init=0.25)
        for conv in (self.conv_a, self.conv_b):
            nn.init.normal_(conv.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act_b(self.conv_b(self.act_a(self.conv_a(x))))


class Stage(nn.Sequential):
    """Stride-2 conv + PReLU (halves H and W), then ``units`` residual units."""

    def __init__(self, in_channels: int, out_channels: int, units: int) -> None:
        down = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        caffe_xavier_(down.weight)
        nn.init.zeros_(down.bias)
        super().__init__(down, nn.PReLU(out_channels, init=0.25), *(ResidualUnit(out_channels) for _ in range(units)))


class SphereFace(nn.Module):
    """SphereFace-20/36/64 backbone: image batch (B, 3, H, W) -> embedding (B, embedding_dim).

    Args:
        depth: 20, 36 or 64 (number of conv layers plus one). The paper's network is 20.
        embedding_dim: size of the fc5 output (512 in the paper).
        input_size: (height, width) of the aligned crop: (112, 96) as in SphereFace/AM-Softmax, or (112, 112)
            for insightface crops. Any size works; fc5 is sized from it.
        width_multiplier: scales the stage widths 64/128/256/512 (1.0 = the paper). Small values give a
            CPU-sized network for demos and tests.
    """

    def __init__(
        self,
        depth: int = 20,
        embedding_dim: int = 512,
        input_size: tuple[int, int] = (112, 96),
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if depth not in UNITS_PER_STAGE:
            raise ValueError(f"SphereFace depth={depth} is not defined; choose one of {sorted(UNITS_PER_STAGE)}")
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
        height, width = input_size
        if height < 16 or width < 16:
            raise ValueError(f"input_size {input_size} is too small: four stride-2 stages need >= 16 pixels")
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.input_size = (int(height), int(width))
        self.width_multiplier = width_multiplier  # each __init__ argument is an attribute: checkpoints record them
        widths = [max(1, round(w * width_multiplier)) for w in BASE_WIDTHS]

        stages, in_channels = [], 3
        for out_channels, units in zip(widths, UNITS_PER_STAGE[depth], strict=True):
            stages.append(Stage(in_channels, out_channels, units))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)

        # k=3, s=2, p=1 maps n -> ceil(n / 2); four stages: 112x96 -> 7x6, 112x112 -> 7x7.
        out_h, out_w = height, width
        for _ in range(4):
            out_h, out_w = (out_h + 1) // 2, (out_w + 1) // 2
        self.fc5 = nn.Linear(in_channels * out_h * out_w, embedding_dim)  # 512*7*6 = 21504 -> 512
        caffe_xavier_(self.fc5.weight)
        nn.init.zeros_(self.fc5.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != self.input_size:
            raise ValueError(
                f"SphereFace was built for input_size={self.input_size} (H, W) but got images of "
                f"{tuple(images.shape[-2:])}; set model.backbone.init_args.input_size to the crop size of the data"
            )
        features = self.stages(images)  # (B, C4, H/16, W/16)
        return self.fc5(features.flatten(1))  # (B, embedding_dim)


def sphereface20(**kwargs) -> SphereFace:
    return SphereFace(depth=20, **kwargs)


def sphereface36(**kwargs) -> SphereFace:
    return SphereFace(depth=36, **kwargs)


def sphereface64(**kwargs) -> SphereFace:
    return SphereFace(depth=64, **kwargs)
