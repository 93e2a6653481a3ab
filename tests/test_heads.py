import math

import pytest
import torch
import torch.nn.functional as F

from amlit.errors import ConfigError
from amlit.heads import AMSoftmax, am_softmax_logits


def reference_am_softmax_loss(features, weight, labels, margin, scale, conditional=False):
    """Eq. 6 written out sample by sample in float64, independent of the implementation."""
    total = 0.0
    for f, y in zip(features.tolist(), labels.tolist(), strict=True):
        f_norm = math.sqrt(sum(v * v for v in f))
        logits = []
        for j, w in enumerate(weight.tolist()):
            w_norm = math.sqrt(sum(v * v for v in w))
            cos = sum(a * b for a, b in zip(f, w, strict=True)) / (f_norm * w_norm)
            if j == y and (not conditional or cos > margin):
                cos -= margin
            logits.append(scale * cos)
        top = max(logits)
        log_sum = top + math.log(sum(math.exp(z - top) for z in logits))
        total += log_sum - logits[y]
    return total / len(labels)


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize(("margin", "scale"), [(0.35, 30.0), (0.0, 10.0), (0.5, 64.0)])
def test_loss_and_gradients_match_float64_recomputation(margin, scale, conditional):
    torch.manual_seed(0)
    head = AMSoftmax(embedding_dim=6, num_classes=5, margin=margin, scale=scale, conditional_margin=conditional)
    head.double()
    features = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 5, (8,))
    # Put some targets below the margin so that the conditional branch is exercised both ways.
    with torch.no_grad():
        features[:2] = -head.weight[labels[:2]]

    # normalized_cosine computes in float32; compare the float64 reference at float32 tolerance.
    loss = head(features, labels).loss
    expected = reference_am_softmax_loss(features.detach(), head.weight.detach(), labels, margin, scale, conditional)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)

    # Gradients against an independent float64 autograd of the textbook formula.
    loss.backward()
    grad_features, grad_weight = features.grad.clone(), head.weight.grad.clone()
    f = features.detach().clone().requires_grad_(True)
    w = head.weight.detach().clone().requires_grad_(True)
    cos = (f / f.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
    target = cos[torch.arange(8), labels]
    apply = (target > margin) if conditional else torch.ones(8, dtype=torch.bool)
    one_hot = F.one_hot(labels, 5).double() * apply[:, None]
    F.cross_entropy(scale * (cos - margin * one_hot), labels).backward()
    torch.testing.assert_close(grad_features, f.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad_weight, w.grad, rtol=1e-4, atol=1e-6)


def test_zero_margin_is_normalized_softmax():
    torch.manual_seed(1)
    head = AMSoftmax(embedding_dim=16, num_classes=10, margin=0.0, scale=30.0)
    features, labels = torch.randn(32, 16), torch.randint(0, 10, (32,))
    logits = 30.0 * F.normalize(features) @ F.normalize(head.weight).T
    torch.testing.assert_close(head(features, labels).loss, F.cross_entropy(logits, labels))


def test_margin_lowers_only_the_target_logit():
    cosine = torch.tensor([[0.9, 0.2, -0.1], [0.1, 0.3, 0.2]])
    labels = torch.tensor([0, 2])
    logits = am_softmax_logits(cosine, labels, margin=0.35, scale=30.0)
    expected = 30.0 * torch.tensor([[0.55, 0.2, -0.1], [0.1, 0.3, -0.15]])
    torch.testing.assert_close(logits, expected)
    # Caffe's LabelSpecificAdd: no margin where cos(theta_y) <= margin (second row: 0.2 <= 0.35).
    conditional = am_softmax_logits(cosine, labels, margin=0.35, scale=30.0, conditional_margin=True)
    torch.testing.assert_close(conditional, 30.0 * torch.tensor([[0.55, 0.2, -0.1], [0.1, 0.3, 0.2]]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])  # bf16-mixed and 16-mixed autocast
def test_head_math_stays_float32_under_half_precision_autocast(dtype):
    torch.manual_seed(2)
    head = AMSoftmax(embedding_dim=8, num_classes=4)
    features, labels = torch.randn(4, 8), torch.randint(0, 4, (4,))
    reference = head(features, labels)
    with torch.autocast("cpu", dtype=dtype):
        out = head(features.to(dtype), labels)
    assert out.cosine.dtype == torch.float32
    assert out.loss.dtype == torch.float32
    # The only half-precision rounding is of the inputs; the loss stays close to the fp32 one.
    assert out.loss.item() == pytest.approx(reference.loss.item(), rel=2e-2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"margin": 1.0}, "0 <= margin < 1"),
        ({"margin": -0.1}, "0 <= margin < 1"),
        ({"scale": 0.0}, "scale must be > 0"),
        ({"scale": -30.0}, "scale must be > 0"),
    ],
)
def test_out_of_range_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AMSoftmax(embedding_dim=8, num_classes=4, **kwargs)


def test_labels_out_of_range_are_refused():
    head = AMSoftmax(embedding_dim=8, num_classes=4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\).*max 4"):
        head(torch.randn(2, 8), torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="int64"):
        head(torch.randn(2, 8), torch.tensor([0, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match="embeddings of size 8"):
        head(torch.randn(2, 7), torch.tensor([0, 1]))


# ---- Table 1 baselines: each against a sample-by-sample float64 recomputation (the heads compute in float32) -----
def _cross_entropy(logit_rows, labels):
    total = 0.0
    for logits, y in zip(logit_rows, labels, strict=True):
        top = max(logits)
        total += top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y]
    return total / len(labels)


def _norm(v):
    return math.sqrt(sum(x * x for x in v))


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True)) / (_norm(a) * _norm(b))


def _batch(seed=0, batch=6, dim=5, classes=4):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=generator, dtype=torch.float64), torch.arange(batch) % classes


def test_softmax_is_plain_linear_cross_entropy():
    from amlit.heads import Softmax

    features, labels = _batch()
    head = Softmax(5, 4).double()
    torch.nn.init.normal_(head.bias)
    weights, biases = head.weight.tolist(), head.bias.tolist()
    rows = [
        [sum(a * b for a, b in zip(f, w, strict=True)) + b for w, b in zip(weights, biases, strict=True)]
        for f in features.tolist()
    ]
    assert head(features, labels).loss.item() == pytest.approx(
        _cross_entropy(rows, labels.tolist()), rel=1e-6
    )  # the head computes in float32 by design
    with pytest.raises(ConfigError, match="dropout"):
        Softmax(5, 4, dropout=1.0)


def test_am_softmax_without_feature_normalization_uses_the_feature_norm_as_scale():
    features, labels = _batch(1)
    head = AMSoftmax(5, 4, margin=0.35, scale=30.0, feature_normalization=False).double()
    rows = []
    for f, y in zip(features.tolist(), labels.tolist(), strict=True):
        rows.append([_norm(f) * (_cos(f, w) - (0.35 if j == y else 0.0)) for j, w in enumerate(head.weight.tolist())])
    assert head(features, labels).loss.item() == pytest.approx(
        _cross_entropy(rows, labels.tolist()), rel=1e-6
    )  # the head computes in float32 by design


def test_a_softmax_target_logit_and_lambda_schedule():
    from amlit.heads import ASoftmax, sphereface_psi

    features, labels = _batch(2)
    head = ASoftmax(5, 4, margin=4).double()
    for step in range(3):
        lam = max(5.0, 1000.0 / (1 + 0.12 * step))
        rows = []
        for f, y in zip(features.tolist(), labels.tolist(), strict=True):
            row = []
            for j, w in enumerate(head.weight.tolist()):
                cos = _cos(f, w)
                if j == y:
                    theta = math.acos(cos)
                    k = math.floor(theta * 4 / math.pi)
                    psi = (-1) ** k * math.cos(4 * theta) - 2 * k
                    cos = (lam * cos + psi) / (1 + lam)
                row.append(_norm(f) * cos)
            rows.append(row)
        assert head(features, labels).loss.item() == pytest.approx(
            _cross_entropy(rows, labels.tolist()), rel=1e-6
        )  # the head computes in float32 by design
    assert int(head.iteration) == 3
    head.eval()
    head(features, labels)
    assert int(head.iteration) == 3  # evaluation does not advance the schedule
    head.iteration.fill_(10**6)
    assert head.current_lambda().item() == 5.0
    # psi is continuous and decreasing on [0, pi]: the property that makes it a margin
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    psi = sphereface_psi(torch.cos(theta), 4)
    assert torch.all(psi[1:] <= psi[:-1] + 1e-9) and psi[0] == 1.0 and psi[-1] == pytest.approx(-7.0)


def test_center_loss_term_and_center_update():
    from amlit.heads import CenterLoss

    features, labels = _batch(3, batch=7)
    head = CenterLoss(5, 4, loss_weight=0.01, alpha=0.5).double()
    head.centers.normal_()
    centers = head.centers.clone()
    rows = [[sum(a * b for a, b in zip(f, w, strict=True)) for w in head.weight.tolist()] for f in features.tolist()]
    center_term = sum(
        sum((a - b) ** 2 for a, b in zip(f, centers[y].tolist(), strict=True))
        for f, y in zip(features.tolist(), labels.tolist(), strict=True)
    ) / (2 * len(labels))
    loss = head(features, labels).loss.item()
    assert loss == pytest.approx(
        _cross_entropy(rows, labels.tolist()) + 0.01 * center_term, rel=1e-6
    )  # the head computes in float32 by design
    for j in range(4):  # Wen et al. Eq. 4, one class at a time
        members = features[labels == j]
        delta = (centers[j] - members).sum(0) / (1 + len(members))
        torch.testing.assert_close(head.centers[j], centers[j] - 0.5 * delta)
