import math

import pytest
import torch

from amlit.backbones import BACKBONES, SphereFace


def expected_parameter_count(units, widths=(64, 128, 256, 512), size=(112, 96), embedding_dim=512):
    """Count from the prototxt: each stride-2 conv has a bias, residual convs have none, PReLU per channel."""
    total, in_channels = 0, 3
    h, w = size
    for out, n in zip(widths, units, strict=True):
        total += in_channels * out * 9 + out + out  # stride-2 conv weight + bias, PReLU
        total += n * 2 * (out * out * 9 + out)  # residual convs (no bias) + their PReLU
        in_channels = out
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return total + in_channels * h * w * embedding_dim + embedding_dim


def test_sphereface20_parameter_count_and_fc5_size():
    model = SphereFace(depth=20)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameter_count((1, 2, 4, 1)) == 22_666_944  # ~22.67 M: the prototxt's layer shapes
    assert model.fc5.in_features == 512 * 7 * 6 == 21_504
    assert SphereFace(depth=20, input_size=(112, 112)).fc5.in_features == 512 * 7 * 7
    conv_layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(conv_layers) == 4 + 2 * (1 + 2 + 4 + 1) == 20  # 20 conv layers, then fc5


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("size", [(112, 96), (112, 112)])
def test_forward_backward_every_parameter_gets_a_gradient(name, size):
    torch.manual_seed(0)
    model = BACKBONES[name](input_size=size, width_multiplier=0.125, embedding_dim=32)
    images = torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last)
    out = model(images)
    assert out.shape == (2, 32)
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(("depth", "units"), [(36, (2, 4, 8, 2)), (64, (3, 8, 16, 3))])
def test_deeper_variants_have_the_published_unit_counts(depth, units):
    model = SphereFace(depth=depth, width_multiplier=0.25, embedding_dim=64)
    widths = tuple(round(w * 0.25) for w in (64, 128, 256, 512))
    assert sum(p.numel() for p in model.parameters()) == expected_parameter_count(units, widths, embedding_dim=64)
    conv_layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(conv_layers) == depth


def test_caffe_initialisation():
    torch.manual_seed(0)
    model = SphereFace(depth=20)
    first = model.stages[0][0]
    bound = math.sqrt(3 / (3 * 9))  # Caffe xavier: fan_in = C_in * k * k
    assert first.weight.abs().max() <= bound
    assert first.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    assert torch.all(first.bias == 0)
    residual = model.stages[2][2].conv_a
    assert residual.bias is None
    assert residual.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(model.stages[0][1].weight == 0.25)  # PReLU slopes, one per channel
    assert model.stages[0][1].weight.numel() == 64


def test_wrong_input_size_and_depth_are_explained():
    with pytest.raises(ValueError, match=r"input_size=\(112, 96\).*\(112, 112\)"):
        SphereFace(width_multiplier=0.125)(torch.randn(1, 3, 112, 112))
    with pytest.raises(ValueError, match="depth=21"):
        SphereFace(depth=21)
