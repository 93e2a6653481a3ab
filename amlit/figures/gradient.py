"""Figure 5 of the AM-Softmax paper: the norm of the loss gradient w.r.t. the feature against the feature norm, for
the softmax loss on normalized weights with and without feature normalization (Sec. 3.2.3, Eq. 7).

Computed by autograd through amlit's own heads: without feature normalization ``AMSoftmax(margin=0,
feature_normalization=False)`` (logits |f| cos(theta_j) = W_j . f with |W_j| = 1), with it ``AMSoftmax(margin=0,
scale=s)`` (logits s cos(theta_j)). As in the paper, the feature direction is the mean of a target class weight and
its nearest other class weight, so both logits are equal there; at |f| = s the two losses have equal logits, and the
curves cross (the paper: "that is why the intersection of these two curves is at 30"). With feature normalization
the gradient falls as s / |f| (y = x / a => dy/dx = 1 / a): small-norm features get large gradients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from amlit.errors import BadDataError, ConfigError
from amlit.eval.plots import pyplot
from amlit.figures.plotting import check_figure_output, print_table
from amlit.heads import AMSoftmax

PRINTED_NORMS = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)


def class_weights(checkpoint: Path | None, num_classes: int, embedding_dim: int, seed: int) -> torch.Tensor:
    """(C, D) float64 class weights: ``head.weight`` of a trained amlit checkpoint, or seeded Gaussian ones."""
    if checkpoint is None:
        if num_classes < 2 or embedding_dim < 1:
            raise ConfigError(
                f"--num_classes={num_classes}, --embedding_dim={embedding_dim}: expected num_classes >= 2 and "
                "embedding_dim >= 1 (the paper's: 10516 classes, 512)"
            )
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(num_classes, embedding_dim, generator=generator, dtype=torch.float64)
    from amlit.checkpoint_io import load_verified

    # missing, damaged, code-carrying files, a folder, a config: one message each (torch.load: a traceback)
    state = load_verified(checkpoint, remedy="--checkpoint takes a .ckpt that amlit fit wrote")
    weight = state["state_dict"].get("head.weight")
    if weight is None or weight.ndim != 2 or len(weight) < 2:
        raise BadDataError(
            f"{checkpoint}: expected an amlit checkpoint with a (num_classes >= 2, D) head.weight in its state_dict"
        )
    return weight.double()


def gradient_norms(weight: torch.Tensor, norms: np.ndarray, scale: float, target: int = 0) -> dict[str, np.ndarray]:
    """|d loss / d f| at f = r * u for each r in ``norms``, u the unit mean of W_target/|W_target| and its nearest
    other class weight; per curve name. Float64 throughout."""
    unit = weight / weight.norm(dim=1, keepdim=True)  # (C, D)
    cosines = unit @ unit[target]
    cosines[target] = -2.0
    nearest = int(cosines.argmax())
    direction = unit[target] + unit[nearest]
    direction = direction / direction.norm()
    heads = {
        "without feature normalization": AMSoftmax(weight.shape[1], len(weight), 0.0, feature_normalization=False),
        f"with feature normalization (s={scale:g})": AMSoftmax(weight.shape[1], len(weight), 0.0, scale=scale),
    }
    labels = torch.full((len(norms),), target, dtype=torch.long)
    result = {}
    for name, head in heads.items():
        head = head.double()
        with torch.no_grad():
            head.weight.copy_(weight)
        features = (torch.as_tensor(norms, dtype=torch.float64)[:, None] * direction).requires_grad_(True)
        # The mean loss over the rows: each row's gradient is its own loss's gradient / len(norms).
        (head(features, labels).loss * len(norms)).backward()
        result[name] = features.grad.norm(dim=1).numpy()
    return result


def crossing(norms: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """The feature norm where the two curves cross (log-linear interpolation), NaN when they do not."""
    difference = np.log(first) - np.log(second)
    changes = np.flatnonzero(np.sign(difference[:-1]) != np.sign(difference[1:]))
    if not len(changes):
        return float("nan")
    i = changes[0]
    t = difference[i] / (difference[i] - difference[i + 1])
    return float(np.exp(np.log(norms[i]) + t * (np.log(norms[i + 1]) - np.log(norms[i]))))


def figure_gradient(
    output: Path = Path("figures/figure5_gradient.png"),
    scale: float = 30.0,
    checkpoint: Path | None = None,
    num_classes: int = 100,
    embedding_dim: int = 512,
    seed: int = 0,
) -> dict[str, float]:
    """Figure 5: the loss gradient's norm against the feature norm, with and without feature normalization.

    Softmax loss on normalized class weights; writes the PNG, prints the norms and where the curves cross.

    Args:
        output: PNG file to write.
        scale: s of the normalized loss (the paper: 30).
        checkpoint: an amlit checkpoint whose trained class weights to use (the paper used a converged network's);
            without one, ``num_classes`` seeded Gaussian weights of ``embedding_dim``.
        num_classes, embedding_dim, seed: the generated weights.

    Returns:
        ``crossing`` (feature norm where the curves cross) and the gradient norms at the printed feature norms.
    """
    check_figure_output(output)
    weight = class_weights(checkpoint, num_classes, embedding_dim, seed)
    norms = np.union1d(np.logspace(-1, 3, 401), PRINTED_NORMS)  # 0.1 .. 1000, the printed norms exactly
    curves = gradient_norms(weight, norms, scale)
    (name_raw, raw), (name_fn, normalized) = curves.items()
    where = crossing(norms, raw, normalized)
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    for name, values in curves.items():
        axes.plot(norms, values, label=name, linewidth=2)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.axvline(where, color="gray", linestyle=":", linewidth=1)
    axes.set_xlabel("feature norm |f|")
    axes.set_ylabel("gradient norm |dL/df|")
    axes.set_title(f"Figure 5: curves cross at |f| = {where:.1f}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)
    picked = [int(np.searchsorted(norms, r)) for r in PRINTED_NORMS]
    print_table(
        "gradient norm |dL/df| at feature norm |f|",
        [f"{norms[i]:g}" for i in picked],
        {name: values[picked] for name, values in curves.items()},
        fmt=".4g",
    )
    print(f"the curves cross at |f| = {where:.2f} (s = {scale:g}); wrote {output}")
    return {"crossing": where} | {
        f"{name}@{norms[i]:g}": float(values[i])
        for name, values in ((name_raw, raw), (name_fn, normalized))
        for i in picked
    }
