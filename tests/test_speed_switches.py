"""Speed switches of FaceVerificationModule give the results of the default path (up to float rounding)."""

from __future__ import annotations

import pytest
import torch

from amlit.backbones import SphereFace
from amlit.heads import AMSoftmax
from amlit.module import FaceVerificationModule


def module(**kwargs) -> FaceVerificationModule:
    torch.manual_seed(0)
    backbone = SphereFace(depth=20, embedding_dim=32, width_multiplier=0.125, input_size=(32, 32))
    return FaceVerificationModule(backbone=backbone, head=AMSoftmax, num_classes=10, **kwargs)


def train_steps(model: FaceVerificationModule, steps: int = 3) -> dict[str, torch.Tensor]:
    """A few SGD steps (the module's own optimizer and parameter groups) on fixed batches; the weights after."""
    optimizer = model.configure_optimizers()["optimizer"]
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        images = torch.randn(8, 3, 32, 32, generator=generator)
        labels = torch.randint(0, 10, (8,), generator=generator)
        loss = model.head(model(images), labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("implementation", ["foreach", "fused"])
def test_sgd_implementations_update_like_the_for_loop(implementation):
    expected = train_steps(module(sgd_implementation="for_loop"))
    model = module(sgd_implementation=implementation)
    assert model.configure_optimizers()["optimizer"].defaults[implementation] is True
    got = train_steps(model)
    changed = False
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6)
        changed |= not torch.equal(value, module().state_dict()[name])
    assert changed  # the steps moved the weights


@pytest.mark.slow
def test_compiled_backbone_and_head_train_like_the_eager_ones():
    expected = train_steps(module(), steps=2)
    compiled = module(compile_backbone=True, compile_head=True)
    got = train_steps(compiled, steps=2)
    assert set(got) == set(expected)  # same checkpoint keys (compiled in place, no _orig_mod prefix)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-5)


def test_compile_mode_reaches_torch_compile(monkeypatch):
    # reduce-overhead (CUDA graphs) only acts on a GPU; here: that the setting reaches torch.compile, on the backbone
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: calls.append((type(self), kwargs)))
    module(compile_backbone=True, compile_mode="reduce-overhead")
    module(compile_head=True, compile_mode="max-autotune")
    module(compile_mode="max-autotune")  # without compile_backbone/compile_head: nothing compiled
    assert calls == [(SphereFace, {"mode": "reduce-overhead"}), (AMSoftmax, {"mode": "max-autotune"})]
