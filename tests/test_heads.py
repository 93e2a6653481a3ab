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
        ({"scale": math.inf}, "scale must be > 0 and finite"),
        ({"scale": math.nan}, "scale must be > 0 and finite"),
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


def test_center_update_keeps_bfloat16_centers_of_a_bf16_true_run():
    """Under bf16-true the centers are bfloat16 and the head's features float32: index_add_ refused the mix."""
    from amlit.heads import CenterLoss

    head = CenterLoss(5, 4).to(torch.bfloat16)
    features = torch.randn(6, 5, dtype=torch.bfloat16)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.isfinite(head(features, labels).loss)
    assert head.centers.dtype == torch.bfloat16 and head.centers.abs().sum() > 0


# ---- ArcFace and the combined margin: float64 oracles, including the angles near pi - m ------------------------
def _features_at_angles(weight_row: torch.Tensor, angles: list[float], seed: int = 0) -> torch.Tensor:
    """(len(angles), D) float64 features at exactly these angles (radians) to ``weight_row``, norms 0.5..2."""
    generator = torch.Generator().manual_seed(seed)
    w = weight_row.double() / weight_row.double().norm()
    rows = []
    for i, angle in enumerate(angles):
        other = torch.randn(len(w), generator=generator, dtype=torch.float64)
        other -= (other @ w) * w
        other /= other.norm()
        rows.append((0.5 + 0.25 * i) * (math.cos(angle) * w + math.sin(angle) * other))
    return torch.stack(rows)


def arcface_psi_reference(cos, margin, easy_margin=False):
    """insightface's rule (arcface_torch/losses.py @eca1d9a, easy_margin False/True), written with acos."""
    theta = math.acos(max(-1.0, min(1.0, cos)))
    if easy_margin:
        return math.cos(theta + margin) if cos > 0 else cos
    return math.cos(theta + margin) if cos > math.cos(math.pi - margin) else cos - margin * math.sin(margin)


def combined_psi_reference(cos, m1, m2, m3):
    phi = m1 * math.acos(max(-1.0, min(1.0, cos))) + m2
    k = math.floor(phi / math.pi)
    return (-1) ** k * math.cos(phi) - 2 * k - m3


def _margin_loss_reference(features, weight, labels, scale, psi):
    rows = []
    for f, y in zip(features.tolist(), labels.tolist(), strict=True):
        rows.append([scale * (psi(_cos(f, w)) if j == y else _cos(f, w)) for j, w in enumerate(weight.tolist())])
    return _cross_entropy(rows, labels.tolist())


def _near_threshold_batch(head, threshold, seed=0):
    """Targets on both sides of the angle ``threshold`` where the target logit changes branch (pi - m for ArcFace),
    1e-3 rad away (float32 cannot flip the branch), at 0 and pi exactly, and some in between."""
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    angles = [threshold - 1e-3, threshold + 1e-3, math.pi, 0.0, 0.3, 1.2, 2.0, (threshold + math.pi) / 2]
    features = torch.cat(
        [
            _features_at_angles(head.weight[y].detach(), [a], seed + i)
            for i, (y, a) in enumerate(zip(labels, angles, strict=True))
        ]
    )
    return features, labels


@pytest.mark.parametrize(("margin", "scale", "easy"), [(0.5, 64.0, False), (0.3, 30.0, False), (0.5, 64.0, True)])
def test_arcface_matches_insightface_rule_in_float64(margin, scale, easy):
    from amlit.heads import ArcFace, arcface_target

    torch.manual_seed(3)
    head = ArcFace(embedding_dim=6, num_classes=4, margin=margin, scale=scale, easy_margin=easy).double()
    features, labels = _near_threshold_batch(head, math.pi - margin)
    features.requires_grad_(True)
    loss = head(features, labels).loss
    expected = _margin_loss_reference(
        features.detach(), head.weight.detach(), labels, scale, lambda c: arcface_psi_reference(c, margin, easy)
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)  # the head computes in float32
    if not easy:  # just below pi - m the margin applies (cos(pi - 1e-3) ~ -1), just above it the fallback
        below, above = torch.tensor([[math.cos(math.pi - margin - 1e-3)], [math.cos(math.pi - margin + 1e-3)]]).unbind()
        assert arcface_target(below, margin).item() == pytest.approx(math.cos(math.pi - 1e-3), abs=1e-6)
        assert arcface_target(above, margin).item() == pytest.approx(
            math.cos(math.pi - margin + 1e-3) - margin * math.sin(margin), abs=1e-6
        )
    loss.backward()
    assert torch.isfinite(features.grad).all()  # also at theta = 0 and theta = pi exactly
    # gradients against float64 autograd of the acos form, on the samples away from 0 and pi (acos' is infinite)
    keep = torch.tensor([0, 1, 4, 5, 6, 7])
    f = features.detach()[keep].clone().requires_grad_(True)
    w = head.weight.detach().clone().requires_grad_(True)
    cosine = F.normalize(f) @ F.normalize(w).T
    target = cosine[torch.arange(len(keep)), labels[keep]]
    theta = torch.acos(target)
    if easy:
        psi_t = torch.where(target > 0, torch.cos(theta + margin), target)
    else:
        psi_t = torch.where(
            target > math.cos(math.pi - margin), torch.cos(theta + margin), target - margin * math.sin(margin)
        )
    logits = cosine.scatter(1, labels[keep][:, None], psi_t[:, None])
    F.cross_entropy(scale * logits, labels[keep], reduction="sum").backward()
    f_sub = features.detach()[keep].clone().requires_grad_(True)
    head.zero_grad()
    (head(f_sub, labels[keep]).loss * len(keep)).backward()
    torch.testing.assert_close(f_sub.grad, f.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(head.weight.grad, w.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("m1", "m2", "m3"), [(1.0, 0.3, 0.2), (1.35, 0.0, 0.0), (1.0, 0.5, 0.0), (4.0, 0.0, 0.0)])
def test_combined_margin_matches_float64_formula(m1, m2, m3):
    from amlit.heads import CombinedMargin

    torch.manual_seed(4)
    head = CombinedMargin(6, 4, multiplicative_margin=m1, angular_margin=m2, cosine_margin=m3, scale=30.0).double()
    features, labels = _near_threshold_batch(head, (math.pi - m2) / m1)  # where m1 theta + m2 = pi
    # theta = pi and 0 exactly (rows 2, 3) only for finite gradients: the acos clamp (|cos| <= 1 - 1e-6) moves them
    # by 1.4e-3 rad, the price of a bounded gradient where d psi / d cos is infinite
    features.requires_grad_(True)
    head(features, labels).loss.backward()
    assert torch.isfinite(features.grad).all()
    keep = torch.tensor([0, 1, 4, 5, 6, 7])  # both sides of the threshold, and in between
    expected = _margin_loss_reference(
        features.detach()[keep],
        head.weight.detach(),
        labels[keep],
        30.0,
        lambda c: combined_psi_reference(c, m1, m2, m3),
    )
    assert head(features.detach()[keep], labels[keep]).loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_combined_margin_special_cases_are_arcface_am_softmax_and_a_softmax():
    from amlit.heads import arcface_target, combined_margin_target, sphereface_psi

    theta = torch.linspace(0.01, math.pi - 0.01, 2001, dtype=torch.float64)
    cos = torch.cos(theta)[:, None]
    below = theta[:, None] < math.pi - 0.5  # where insightface's ArcFace uses cos(theta + m)
    arc = arcface_target(cos, 0.5)
    torch.testing.assert_close(combined_margin_target(cos, 1.0, 0.5, 0.0)[below], arc[below])
    torch.testing.assert_close(combined_margin_target(cos, 1.0, 0.0, 0.35), cos - 0.35)
    torch.testing.assert_close(combined_margin_target(cos, 4.0, 0.0, 0.0), sphereface_psi(cos, 4))
    # decreasing in theta for every setting, also past m1 theta + m2 = pi (where cos would turn back up)
    for m1, m2, m3 in [(1.0, 0.5, 0.0), (1.35, 0.2, 0.1), (2.5, 0.3, 0.0)]:
        psi = combined_margin_target(cos, m1, m2, m3).squeeze(1)
        assert torch.all(psi[1:] < psi[:-1]), (m1, m2, m3)
    # insightface's ArcFace fallback keeps decreasing too (with its jump down at pi - m)
    assert torch.all(arc.squeeze(1)[1:] < arc.squeeze(1)[:-1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["ArcFace", "CombinedMargin"])
def test_angular_margin_heads_stay_float32_under_autocast(name, dtype):
    import amlit.heads

    torch.manual_seed(5)
    head = getattr(amlit.heads, name)(embedding_dim=8, num_classes=4)
    features, labels = torch.randn(6, 8), torch.randint(0, 4, (6,))
    reference = head(features, labels).loss
    with torch.autocast("cpu", dtype=dtype):
        out = head(features.to(dtype), labels)
    assert out.loss.dtype == out.cosine.dtype == torch.float32
    assert out.loss.item() == pytest.approx(reference.item(), rel=3e-2)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("ArcFace", {"margin": -0.1}, "0 <= margin < pi/2"),
        ("ArcFace", {"margin": 1.6}, "0 <= margin < pi/2"),
        ("ArcFace", {"scale": 0.0}, "scale must be > 0"),
        ("CombinedMargin", {"multiplicative_margin": 0.9}, "m1"),
        ("CombinedMargin", {"angular_margin": 2.0}, "m2"),
        ("CombinedMargin", {"cosine_margin": 1.0}, "m3"),
        ("CombinedMargin", {"scale": -1.0}, "scale must be > 0"),
        ("AMSoftmax", {"margin_ramp": -1e-5}, "margin_ramp"),
        ("ArcFace", {"scale": math.inf}, "scale must be > 0 and finite"),
        ("CenterLoss", {"loss_weight": math.nan}, "need loss_weight >= 0"),
        ("CenterLoss", {"loss_weight": math.inf}, "need loss_weight >= 0"),
        ("ASoftmax", {"lambda_min": -1.0}, r"lambda schedule .* \{'lambda_min': -1.0\}"),
        ("ASoftmax", {"lambda_base": math.nan}, "lambda schedule"),
    ],
)
def test_angular_margin_settings_out_of_range_are_refused(name, kwargs, match):
    import amlit.heads

    with pytest.raises(ConfigError, match=match):
        getattr(amlit.heads, name)(embedding_dim=8, num_classes=4, **kwargs)


# ---- the AM-Softmax margin ramp of the original "w/o FN" prototxt ----------------------------------------------
def test_margin_ramp_follows_caffe_label_specific_add_and_is_checkpointed():
    features, labels = _batch(6)
    ramp, margin = 0.15, 0.4  # reaches the margin at the 3rd step (Caffe: min(-bias_min, -bias_gamma * t))
    head = AMSoftmax(5, 4, margin=margin, scale=30.0, margin_ramp=ramp).double()
    for step in range(5):
        expected_margin = min(margin, ramp * step)  # bias_base + (1 + gamma t)^1 - 1, clamped, for t = 0, 1, ...
        expected = reference_am_softmax_loss(features, head.weight.detach(), labels, expected_margin, 30.0)
        assert head(features, labels).loss.item() == pytest.approx(expected, rel=1e-5), step
    assert int(head.iteration) == 5
    head.eval()
    head(features, labels)
    assert int(head.iteration) == 5  # evaluation does not advance it
    restored = AMSoftmax(5, 4, margin=margin, scale=30.0, margin_ramp=ramp)
    restored.load_state_dict(head.state_dict())
    assert int(restored.iteration) == 5 and float(restored.current_margin()) == pytest.approx(margin)
    assert "iteration" not in AMSoftmax(5, 4).state_dict()  # fixed-margin checkpoints keep their keys


def test_wo_fn_overlay_is_the_prototxt_ramp():
    import yaml
    from conftest import REPO

    overlay = yaml.safe_load((REPO / "configs" / "heads" / "amsoftmax_wo_fn.yaml").read_text())["model"]["head"]
    head = AMSoftmax(8, 4, **overlay["init_args"])
    assert not head.feature_normalization
    # label_specific_add_param { bias_gamma: -5e-05 bias_min: -0.4 }: 0 at t = 0, 0.2 at t = 4000, 0.4 from 8000 on
    for step, expected in [(0, 0.0), (4000, 0.2), (8000, 0.4), (20000, 0.4)]:
        head.iteration.fill_(step)
        assert float(head.current_margin()) == pytest.approx(expected, abs=1e-6)


def test_settings_read_back_every_init_argument_but_the_sizes():
    """What a checkpoint's recorded head is compared with (amlit.checkpoint_fit): the dropout of its nn.Dropout too."""
    from amlit.heads import CenterLoss

    assert CenterLoss(8, 4, loss_weight=0.01, dropout=0.75).settings() == {
        "loss_weight": 0.01,
        "alpha": 0.5,
        "dropout": 0.75,
    }
    assert AMSoftmax(8, 4, margin=0.4, margin_ramp=5e-5).settings() == {
        "margin": 0.4,
        "scale": 30.0,
        "conditional_margin": False,
        "feature_normalization": True,
        "margin_ramp": 5e-5,
    }
