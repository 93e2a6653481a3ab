"""Margin heads: embedding (B, D) + labels (B,) -> cross-entropy loss over ``num_classes`` class weights.

AM-Softmax (the paper's loss) and the baselines of its Table 1: Softmax (with optional dropout), Center loss,
NormFace (= AM-Softmax with margin 0), A-Softmax (SphereFace), AM-Softmax without feature normalization; and the
angular margins compared against it since: ArcFace and insightface's combined margin.
Each loss is a small pure function on the cosine matrix plus a thin ``nn.Module`` that owns the class weights
(layout (num_classes, embedding_dim) as in ``F.linear``). The cosine and the loss are computed in float32 even
under bf16/fp16 autocast: ``scale * cos`` with scale 30 and a 10k-way log-softmax lose too much precision (and
overflow in fp16) otherwise.
"""

from __future__ import annotations

import inspect
import math
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from amlit.compat import assert_on_device
from amlit.errors import ConfigError


class HeadOutput(NamedTuple):
    loss: torch.Tensor  # () mean cross-entropy over the batch
    cosine: torch.Tensor  # (B, C) cos(theta_j) in float32, without margin: for accuracy and diagnostics


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Fail with a readable message when a label is outside [0, num_classes).

    On CUDA this is an asynchronous device-side assert, so it costs no host synchronisation per step.
    """
    if labels.dtype != torch.long:
        raise TypeError(f"labels must be int64 (torch.long), got {labels.dtype}")
    in_range = (labels.min() >= 0) & (labels.max() < num_classes)
    message = f"labels must lie in [0, {num_classes}); check the data's class count against model num_classes"
    if labels.is_cuda:
        assert_on_device(in_range, message)
    elif not bool(in_range):
        raise ValueError(f"{message} (got min {int(labels.min())}, max {int(labels.max())})")


def normalized_cosine(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """cos(theta_j) = <f/|f|, W_j/|W_j|>: (B, D) x (C, D) -> (B, C), computed in float32."""
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        return F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(weight.float(), dim=1))


def am_softmax_logits(
    cosine: torch.Tensor,
    labels: torch.Tensor,
    margin: float | torch.Tensor,
    scale: float,
    conditional_margin: bool = False,
) -> torch.Tensor:
    """AM-Softmax logits, Wang et al. 2018, Eq. 6: ``s*cos(theta_j)`` for j != y and ``s*(cos(theta_y) - m)``.

    Args:
        cosine: (B, C) cosines between normalized features and normalized class weights.
        labels: (B,) target classes.
        conditional_margin: the original Caffe ``LabelSpecificAdd`` layer subtracts the margin only where
            ``cos(theta_y) > margin``; the paper's Eq. 6 always subtracts it (default).
    Returns:
        (B, C) logits for cross-entropy.
    """
    index = labels[:, None]  # (B, 1)
    target = cosine.gather(1, index)  # (B, 1) cos(theta_y)
    shifted = target - margin
    if conditional_margin:
        shifted = torch.where(target > margin, shifted, target)
    return scale * cosine.scatter(1, index, shifted)


class MarginHead(nn.Module):
    """Class weights (num_classes, embedding_dim) and the fp32 cosine layer shared by all margin losses."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        # Caffe xavier filler of the AM-Softmax fc6 layer: U(-sqrt(3/fan_in), +sqrt(3/fan_in)).
        bound = math.sqrt(3.0 / embedding_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def logits(self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, C) float32 logits from the float32 embeddings (B, D) and their cosines (B, C) to the classes."""
        raise NotImplementedError

    def regularizer(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | float:
        """A loss term added to the cross-entropy (Center loss); none by default."""
        return 0.0

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        if embeddings.shape[-1] != self.embedding_dim:
            raise ValueError(f"head expects embeddings of size {self.embedding_dim}, got {tuple(embeddings.shape)}")
        check_labels(labels, self.num_classes)
        cosine = normalized_cosine(embeddings, self.weight)  # (B, C) float32
        with torch.autocast(device_type=cosine.device.type, enabled=False):
            features = embeddings.float()
            loss = F.cross_entropy(self.logits(features, cosine, labels), labels)
            loss = loss + self.regularizer(features, labels)
        return HeadOutput(loss=loss, cosine=cosine)

    def settings(self) -> dict[str, bool | int | float | str | None]:
        """The ``__init__`` arguments besides the two sizes, read back from the attributes of the same name (those
        without a plain one are left out): what a checkpoint's recorded head is compared with on loading
        (``amlit.checkpoint_fit``)."""
        plain = (bool, int, float, str, type(None))
        names = [
            name
            for name, parameter in inspect.signature(type(self).__init__).parameters.items()
            if name not in ("self", "embedding_dim", "num_classes")
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]
        return {name: getattr(self, name) for name in names if isinstance(getattr(self, name, ()), plain)}

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}"


class AMSoftmax(MarginHead):
    """Additive Margin Softmax (AM-Softmax / CosFace), Wang et al. 2018, Eq. 6.

    Args:
        embedding_dim: feature size D (given by the module from the backbone).
        num_classes: number of training identities C (linked from the data module).
        margin: additive cosine margin m, 0 <= m < 1 (paper: 0.35). ``margin=0`` is NormFace.
        scale: fixed scale s > 0 (paper: 30).
        conditional_margin: subtract the margin only where cos(theta_y) > margin, as the original Caffe layer.
        feature_normalization: ``False`` is Table 1's "AM-Softmax w/o FN": each sample's feature norm |f| takes
            the place of ``scale`` (logits |f| cos(theta_j) and |f| (cos(theta_y) - m); ``scale`` is unused).
        margin_ramp: 0 (default) keeps the margin fixed from the first step, as the paper's Sec. 3.1 does. A value
            r > 0 grows it as the original "w/o FN" prototxt (happynear/AMSoftmax
            ``prototxt/face_train_test_wo_fn.prototxt``, Caffe ``LabelSpecificAdd`` with ``bias_base: 0,
            bias_gamma: -5e-05, bias_power: 1, bias_min: -0.4``): at training forward t = 0, 1, ... the margin is
            min(margin, r * t), i.e. 0 -> 0.4 over 8,000 iterations with r = 5e-5. The step counter is a buffer
            (``iteration``), saved in checkpoints, so a resumed run continues the ramp; it counts forward passes,
            as Caffe's layer does (with gradient accumulation: micro-batches).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        margin: float = 0.35,
        scale: float = 30.0,
        conditional_margin: bool = False,
        feature_normalization: bool = True,
        margin_ramp: float = 0.0,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        if not 0.0 <= margin < 1.0:
            raise ConfigError(f"AM-Softmax margin must satisfy 0 <= margin < 1, got {margin} (paper: 0.35)")
        if not 0.0 < scale < math.inf:
            raise ConfigError(f"AM-Softmax scale must be > 0 and finite, got {scale} (paper: 30)")
        if not 0.0 <= margin_ramp < 1.0:
            raise ConfigError(
                f"AM-Softmax margin_ramp must satisfy 0 <= margin_ramp < 1 (margin added per training step), got "
                f"{margin_ramp} (the original w/o FN prototxt: 5e-05)"
            )
        self.margin = float(margin)
        self.scale = float(scale)
        self.conditional_margin = conditional_margin
        self.feature_normalization = feature_normalization
        self.margin_ramp = float(margin_ramp)
        if self.margin_ramp:
            # Only with a ramp, so that checkpoints of fixed-margin heads keep their keys.
            self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def current_margin(self) -> torch.Tensor | float:
        """The margin of this step: ``margin``, or with a ramp min(margin, margin_ramp * t) at training forward
        t = 0, 1, ... (a () float32 tensor on the weight's device: no host synchronisation per step)."""
        if not self.margin_ramp:
            return self.margin
        return (self.margin_ramp * self.iteration.float()).clamp_max(self.margin)

    def logits(self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        margin = self.current_margin()
        if self.margin_ramp and self.training:
            self.iteration += 1
        if self.feature_normalization:
            return am_softmax_logits(cosine, labels, margin, self.scale, self.conditional_margin)
        norm = embeddings.norm(dim=1, keepdim=True)  # (B, 1) replaces s, with its gradient
        return norm * am_softmax_logits(cosine, labels, margin, 1.0, self.conditional_margin)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, margin={self.margin}, scale={self.scale}, "
            f"conditional_margin={self.conditional_margin}, feature_normalization={self.feature_normalization}, "
            f"margin_ramp={self.margin_ramp}"
        )


class Softmax(MarginHead):
    """The plain softmax baseline of Table 1 (Eq. 1): logits W f + b, no normalization, optional dropout on f.

    Args:
        embedding_dim, num_classes: as ``AMSoftmax``.
        dropout: probability of dropping feature elements before the classifier (Table 1's "Softmax+75%
            dropout" uses 0.75).
    """

    def __init__(self, embedding_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__(embedding_dim, num_classes)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must satisfy 0 <= dropout < 1, got {dropout}")
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.dropout = nn.Dropout(dropout)

    def logits(self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.linear(self.dropout(embeddings), self.weight.float(), self.bias.float())

    def settings(self) -> dict[str, bool | int | float | str | None]:
        return {**super().settings(), "dropout": self.dropout.p}  # the argument lives in its nn.Dropout


def center_loss(embeddings: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Center loss (Wen et al. 2016, Eq. 2, as Caffe's CenterLossLayer): sum_i |x_i - c_{y_i}|^2 / (2 B)."""
    return (embeddings - centers[labels]).pow(2).sum() / (2 * embeddings.shape[0])


def update_centers(centers: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor, alpha: float) -> None:
    """In place, Wen et al. 2016 Eq. 4: c_j -= alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)."""
    counts = torch.bincount(labels, minlength=centers.shape[0]).to(centers.dtype)  # (C,) n_j
    # In the centers' dtype: the head's float32 features under bf16-true/16-true/64-true weights.
    moves = (centers[labels] - embeddings).to(centers.dtype)
    differences = torch.zeros_like(centers).index_add_(0, labels, moves)  # (C, D)
    centers -= alpha * differences / (1.0 + counts[:, None])


class CenterLoss(Softmax):
    """Softmax + Center loss (Wen et al. 2016), a Table 1 baseline: CE(W f + b) + ``loss_weight`` * center loss.

    The class centers (num_classes, D) are a buffer moved by their own update rule (rate ``alpha``), not by SGD;
    they are saved in checkpoints. (The paper trained this baseline on ResNet-28, Table 1's note.)

    Args:
        loss_weight: lambda of the center term (Wen et al.: 0.003).
        alpha: learning rate of the centers (Wen et al.: 0.5).
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, loss_weight: float = 0.003, alpha: float = 0.5, dropout: float = 0.0
    ) -> None:
        super().__init__(embedding_dim, num_classes, dropout)
        if not (0 <= loss_weight < math.inf and 0 < alpha <= 1):  # a NaN fails both comparisons
            raise ConfigError(f"need loss_weight >= 0 and 0 < alpha <= 1, got {loss_weight} and {alpha}")
        self.loss_weight = float(loss_weight)
        self.alpha = float(alpha)
        self.register_buffer("centers", torch.zeros(num_classes, embedding_dim))

    def regularizer(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.loss_weight * center_loss(embeddings, self.centers, labels)
        if self.training:
            with torch.no_grad():
                update_centers(self.centers, embeddings.detach(), labels, self.alpha)
        return loss


def sphereface_psi(cosine: torch.Tensor, margin: int) -> torch.Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi/m, (k+1) pi/m] (A-Softmax, Eq. 3 with lambda=0).

    cos(m theta) is the Chebyshev polynomial T_m(cos theta), as SphereFace's Caffe layer computes it (no acos in
    the gradient path); k counts the multiples of pi/m below theta.
    """
    chebyshev = {
        1: lambda c: c,
        2: lambda c: 2 * c**2 - 1,
        3: lambda c: 4 * c**3 - 3 * c,
        4: lambda c: 8 * c**4 - 8 * c**2 + 1,
    }
    theta = torch.acos(cosine.detach().clamp(-1.0, 1.0))
    k = torch.floor(theta * margin / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
    return sign * chebyshev[margin](cosine) - 2.0 * k


def a_softmax_target(target: torch.Tensor, margin: int, lam: torch.Tensor | float) -> torch.Tensor:
    """A-Softmax's target cosine (lambda cos(theta_y) + psi(theta_y)) / (1 + lambda) (SphereFace's annealed blend;
    the paper's Fig. 2 draws lambda = 0 and 5)."""
    return (lam * target + sphereface_psi(target, margin)) / (1.0 + lam)


class ASoftmax(MarginHead):
    """A-Softmax (SphereFace, Liu et al. 2017), Eq. 2-3: normalized weights, raw feature norm, multiplicative
    angular margin; the target logit |f| (lambda cos(theta_y) + psi(theta_y)) / (1 + lambda).

    lambda anneals as SphereFace's MarginInnerProduct layer: max(lambda_min, base (1 + gamma t)^-power) at training
    forward t = 0, 1, ...; the counter is a buffer, so a resumed run continues the schedule.

    Args:
        margin: integer m in 1..4 (SphereFace: 4).
        lambda_base, lambda_gamma, lambda_power, lambda_min: the schedule (SphereFace: 1000, 0.12, 1, 5).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        margin: int = 4,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 0.12,
        lambda_power: float = 1.0,
        lambda_min: float = 5.0,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        if margin not in (1, 2, 3, 4):
            raise ConfigError(f"A-Softmax margin must be an integer in 1..4, got {margin} (SphereFace: 4)")
        schedule = dict(
            lambda_base=lambda_base, lambda_gamma=lambda_gamma, lambda_power=lambda_power, lambda_min=lambda_min
        )
        bad = {name: value for name, value in schedule.items() if not 0.0 <= value < math.inf}
        if bad:  # lambda weighs cos against psi as (lambda cos + psi) / (1 + lambda): negative ones divide by ~0
            raise ConfigError(f"A-Softmax lambda schedule settings must be >= 0 and finite, got {bad}")
        self.margin = int(margin)
        self.lambda_base, self.lambda_gamma, self.lambda_power = lambda_base, lambda_gamma, lambda_power
        self.lambda_min = lambda_min
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> torch.Tensor:
        """() float32 on the weight's device: computed there, so no host synchronisation per step."""
        step = self.iteration.float()
        annealed = self.lambda_base * (1.0 + self.lambda_gamma * step) ** (-self.lambda_power)
        return annealed.clamp_min(self.lambda_min)

    def logits(self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lam = self.current_lambda()
        if self.training:
            self.iteration += 1
        index = labels[:, None]
        blended = a_softmax_target(cosine.gather(1, index), self.margin, lam)  # (B, 1)
        return embeddings.norm(dim=1, keepdim=True) * cosine.scatter(1, index, blended)


# ---- Angular margins (beyond the paper's Table 1: the heads users compare AM-Softmax against today) ------------
_SINE_FLOOR = 1e-12  # sin^2 floor: finite gradients where cos(theta) is exactly +-1 (torch.where backprops both sides)
_ACOS_LIMIT = 1.0 - 1e-6  # acos'(x) = -1/sqrt(1 - x^2) is infinite at +-1; clamped, theta >= 1.4e-3 rad


def arcface_target(target: torch.Tensor, margin: float, easy_margin: bool = False) -> torch.Tensor:
    """ArcFace's target logit (Deng et al., CVPR 2019, Eq. 3): cos(theta_y + m), from cos(theta_y) (B, 1) -> (B, 1).

    Where theta_y + m would pass pi, cos(theta + m) rises again (no longer a margin); insightface replaces it
    there, and so does this function, exactly as insightface does (``recognition/arcface_torch/losses.py`` at
    commit eca1d9a, class ``ArcFace``, ``easy_margin = False``, and its mxnet ``train.py`` before it):

    - default: ``cos(theta + m)`` where ``cos(theta) > cos(pi - m)`` (theta < pi - m), else
      ``cos(theta) - m * sin(pi - m)`` (= cos(theta) - m sin(m); lower than -1 at theta = pi - m, so the logit
      keeps decreasing, with a jump there);
    - ``easy_margin``: ``cos(theta + m)`` where ``cos(theta) > 0``, else ``cos(theta)`` (no margin past 90 deg).

    cos(theta + m) is computed as cos(theta) cos(m) - sin(theta) sin(m) with sin(theta) = sqrt(1 - cos^2), as
    insightface does (no acos in the gradient path).
    """
    sine = (1.0 - target * target).clamp_min(_SINE_FLOOR).sqrt()
    shifted = target * math.cos(margin) - sine * math.sin(margin)  # cos(theta + m)
    if easy_margin:
        return torch.where(target > 0, shifted, target)
    return torch.where(target > math.cos(math.pi - margin), shifted, target - math.sin(math.pi - margin) * margin)


def combined_margin_target(
    target: torch.Tensor, multiplicative: float, angular: float, cosine_margin: float
) -> torch.Tensor:
    """insightface's combined margin cos(m1 theta_y + m2) - m3, from cos(theta_y) (B, 1) -> (B, 1).

    m1 = 1, m3 = 0 is ArcFace's margin; m1 = 1, m2 = 0 is AM-Softmax's; m2 = m3 = 0 with integer m1 is A-Softmax's
    psi at lambda = 0. Where m1 theta + m2 passes pi the cosine turns back up; this continues it the way
    A-Softmax does (Liu et al. 2017, Eq. 3, ``amlit.heads.sphereface_psi``): with phi = m1 theta + m2 and
    k = floor(phi / pi), psi = (-1)^k cos(phi) - 2k - m3, which equals insightface's form for phi <= pi and stays
    continuous and decreasing up to theta = pi. (insightface's mxnet combined margin leaves it non-monotonic
    there; its ArcFace has its own rule, ``arcface_target``, which this one does not reproduce past pi - m.)
    """
    theta = torch.acos(target.clamp(-_ACOS_LIMIT, _ACOS_LIMIT))
    phi = multiplicative * theta + angular
    k = torch.floor(phi.detach() / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
    return sign * torch.cos(phi) - 2.0 * k - cosine_margin


def target_margin_logits(cosine: torch.Tensor, labels: torch.Tensor, target_logit, scale: float) -> torch.Tensor:
    """``scale * cos(theta_j)`` for j != y and ``scale * target_logit(cos(theta_y))``: (B, C) -> (B, C)."""
    index = labels[:, None]  # (B, 1)
    return scale * cosine.scatter(1, index, target_logit(cosine.gather(1, index)))


def _check_scale(scale: float, name: str) -> None:
    if not 0.0 < scale < math.inf:
        raise ConfigError(f"{name} scale must be > 0 and finite, got {scale} (insightface: 64)")


class ArcFace(MarginHead):
    """ArcFace, additive angular margin (Deng et al., CVPR 2019): normalized features and weights, logits
    ``s * cos(theta_j)`` and ``s * cos(theta_y + m)`` for the target, with insightface's rule past pi - m
    (``arcface_target``).

    Args:
        embedding_dim, num_classes: as ``AMSoftmax``.
        margin: angular margin m in radians, 0 <= m < pi/2 (ArcFace: 0.5).
        scale: s > 0 (ArcFace: 64).
        easy_margin: insightface's ``easy_margin``: no margin where cos(theta_y) <= 0.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, margin: float = 0.5, scale: float = 64.0, easy_margin: bool = False
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        if not 0.0 <= margin < math.pi / 2:
            raise ConfigError(f"ArcFace margin must satisfy 0 <= margin < pi/2 (radians), got {margin} (ArcFace: 0.5)")
        _check_scale(scale, "ArcFace")
        self.margin, self.scale, self.easy_margin = float(margin), float(scale), easy_margin

    def logits(self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = partial(arcface_target, margin=self.margin, easy_margin=self.easy_margin)
        return target_margin_logits(cosine, labels, target, self.scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}, scale={self.scale}, easy_margin={self.easy_margin}"


class CombinedMargin(MarginHead):
    """insightface's combined margin: normalized features and weights, target logit ``s * (cos(m1 theta_y + m2) -
    m3)`` (``combined_margin_target``), other logits ``s * cos(theta_j)``.

    Args:
        embedding_dim, num_classes: as ``AMSoftmax``.
        multiplicative_margin: m1 >= 1 (SphereFace-like; 1 = none).
        angular_margin: m2 in radians, 0 <= m2 < pi/2 (ArcFace-like).
        cosine_margin: m3, 0 <= m3 < 1 (AM-Softmax-like).
        scale: s > 0. Defaults m1, m2, m3, s = 1.0, 0.3, 0.2, 64: insightface's combined-margin setting.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        multiplicative_margin: float = 1.0,
        angular_margin: float = 0.3,
        cosine_margin: float = 0.2,
        scale: float = 64.0,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        if not multiplicative_margin >= 1.0:
            raise ConfigError(f"combined margin: multiplicative_margin (m1) must be >= 1, got {multiplicative_margin}")
        if not 0.0 <= angular_margin < math.pi / 2:
            raise ConfigError(f"combined margin: angular_margin (m2) must satisfy 0 <= m2 < pi/2, got {angular_margin}")
        if not 0.0 <= cosine_margin < 1.0:
            raise ConfigError(f"combined margin: cosine_margin (m3) must satisfy 0 <= m3 < 1, got {cosine_margin}")
        _check_scale(scale, "combined margin")
        self.multiplicative_margin = float(multiplicative_margin)
        self.angular_margin = float(angular_margin)
        self.cosine_margin = float(cosine_margin)
        self.scale = float(scale)

    def logits(self, embeddings: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = partial(
            combined_margin_target,
            multiplicative=self.multiplicative_margin,
            angular=self.angular_margin,
            cosine_margin=self.cosine_margin,
        )
        return target_margin_logits(cosine, labels, target, self.scale)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, multiplicative_margin={self.multiplicative_margin}, "
            f"angular_margin={self.angular_margin}, cosine_margin={self.cosine_margin}, scale={self.scale}"
        )
