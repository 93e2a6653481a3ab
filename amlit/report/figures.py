"""Figure 6 of the paper (MegaFace CMC and ROC, every run overlaid) and rank-1 against the number of distractors."""

from __future__ import annotations

from pathlib import Path

from amlit.eval.plots import overlay_curves
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


def megaface_figures(runs: list[Run], output: Path) -> tuple[list[Path], list[str]]:
    """Writes each figure that at least one run has the curve for. Returns (written files, notes on what is not
    drawn and why)."""
    written, notes = [], []
    for key, (name, title) in FIGURES.items():
        curves = [(run_label(run), run.curves[key]) for run in runs if key in run.curves]
        without = [run.name for run in runs if key not in run.curves]
        if curves:
            written.append(overlay_curves(curves, title, output / name, figsize=(7, 5), legend_fontsize=7))
        if without:
            notes.append(f"{name}: no {key} curve in {', '.join(without)} (no MegaFace set, or no curves.json)")
    return written, notes
