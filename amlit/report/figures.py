"""Figure 6 of the paper (MegaFace CMC and ROC, every run overlaid) and rank-1 against the number of distractors."""

from __future__ import annotations

from pathlib import Path

from amlit.eval.curves import Curve
from amlit.report.paper import describe_head
from amlit.report.runs import Run

# curve key in curves.json -> (file name, title)
FIGURES = {
    "test/megaface/cmc": ("figure6_cmc.png", "MegaFace identification (CMC)"),
    "test/megaface/roc": ("figure6_roc.png", "MegaFace verification (ROC)"),
    "test/megaface/rank1_vs_distractors": ("megaface_rank1_vs_distractors.png", "MegaFace rank-1 vs distractors"),
}


def run_label(run: Run) -> str:
    head, margin, scale = describe_head(run.head)
    settings = [f"{name}={value}" for name, value in (("m", margin), ("s", scale)) if value != "-"]
    return f"{run.name}: {head}" + (f" ({', '.join(settings)})" if settings else "")


def overlay(curves: list[tuple[str, Curve]], title: str, path: Path) -> Path:
    """One PNG with every (label, curve); the x axis logarithmic when the curves ask for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5), dpi=120)
    for label, curve in curves:
        x, y = (curve.x[curve.x > 0], curve.y[curve.x > 0]) if curve.log_x else (curve.x, curve.y)
        marker = "o" if len(x) <= 12 else None  # CMC ranks and distractor counts: show the measured points
        axes.plot(x, y, label=label, marker=marker, markersize=3)
    first = curves[0][1]
    if first.log_x:
        axes.set_xscale("log")
    axes.set_xlabel(first.x_label)
    axes.set_ylabel(first.y_label)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def megaface_figures(runs: list[Run], output: Path) -> tuple[list[Path], list[str]]:
    """Writes each figure that at least one run has the curve for. Returns (written files, notes on what is not
    drawn and why)."""
    written, notes = [], []
    for key, (name, title) in FIGURES.items():
        curves = [(run_label(run), run.curves[key]) for run in runs if key in run.curves]
        without = [run.name for run in runs if key not in run.curves]
        if curves:
            written.append(overlay(curves, title, output / name))
        if without:
            notes.append(f"{name}: no {key} curve in {', '.join(without)} (no MegaFace set, or no curves.json)")
    return written, notes
