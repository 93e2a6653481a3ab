"""Figure 2 of the AM-Softmax paper: the target logit psi(theta) of each loss, from the heads' own functions.

The curves of happynear/AMSoftmax ``draw/draw_psi_curve.m``: Softmax cos(theta); A-Softmax (m=2, lambda=0),
(m=4, lambda=0) and (m=4, lambda=5); AM-Softmax cos(theta) - 0.35; theta in degrees 0..180. Optionally ArcFace and
the combined margin beside them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from amlit.eval.plots import pyplot
from amlit.figures.plotting import check_figure_output, print_table
from amlit.heads import a_softmax_target, am_softmax_logits, arcface_target, combined_margin_target

PRINTED_DEGREES = (0, 30, 45, 60, 90, 120, 150, 180)


def _am_softmax(cosine: torch.Tensor, margin: float) -> torch.Tensor:
    """The target logit of ``am_softmax_logits`` at scale 1, for cosines (N, 1) that are all targets."""
    return am_softmax_logits(cosine, torch.zeros(len(cosine), dtype=torch.long), margin, 1.0)


def psi_curves(with_angular: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """theta in degrees 0..180 (step 1) and psi(theta) (181,) float64 per curve name."""
    degrees = torch.arange(0, 181, dtype=torch.float64)
    cosine = torch.cos(torch.deg2rad(degrees))[:, None]  # (181, 1)
    curves = {
        "Softmax": lambda c: c,
        "A-Softmax (m=2, lambda=0)": partial(a_softmax_target, margin=2, lam=0.0),
        "A-Softmax (m=4, lambda=0)": partial(a_softmax_target, margin=4, lam=0.0),
        "A-Softmax (m=4, lambda=5)": partial(a_softmax_target, margin=4, lam=5.0),
        "AM-Softmax (m=0.35)": partial(_am_softmax, margin=0.35),
    }
    if with_angular:
        curves["ArcFace (m=0.5)"] = partial(arcface_target, margin=0.5)
        curves["Combined (1, 0.3, 0.2)"] = partial(
            combined_margin_target, multiplicative=1.0, angular=0.3, cosine_margin=0.2
        )
    return degrees, {name: psi(cosine).squeeze(1) for name, psi in curves.items()}


def figure_psi(output: Path = Path("figures/figure2_psi.png"), with_angular: bool = False) -> dict[str, list[float]]:
    """Figure 2: the target logit psi(theta) of Softmax, A-Softmax and AM-Softmax, from amlit's heads.

    A-Softmax at (m=2, lambda=0), (m=4, lambda=0), (m=4, lambda=5), AM-Softmax at m=0.35; writes the PNG and prints
    psi at a few angles.

    Args:
        output: PNG file to write.
        with_angular: also draw ArcFace (m=0.5) and the combined margin (1, 0.3, 0.2).

    Returns:
        psi at the printed angles (0, 30, 45, 60, 90, 120, 150, 180 degrees) per curve.
    """
    check_figure_output(output)
    degrees, curves = psi_curves(with_angular)
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for name, psi in curves.items():
        axes.plot(degrees.numpy(), psi.numpy(), label=name, linewidth=2)
    axes.set_xlabel("angle theta (degrees)")
    axes.set_ylabel("target logit psi(theta)")
    axes.set_xlim(0, 180)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title("Figure 2: psi(theta)")
    figure.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)
    printed = {name: [float(psi[d]) for d in PRINTED_DEGREES] for name, psi in curves.items()}
    print_table("psi(theta) at theta (degrees)", [str(d) for d in PRINTED_DEGREES], printed)
    print(f"wrote {output}")
    return printed
