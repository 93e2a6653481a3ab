"""PNG plots of evaluation curves (ROC, CMC): every curve of a kind overlaid in one figure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from amlit.eval.curves import Curve


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only: no display on cluster nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overlay_curves(
    curves: Sequence[tuple[str, Curve]],
    title: str,
    path: Path,
    figsize: tuple[float, float] = (5.5, 4.5),
    legend_fontsize: float | None = None,
) -> Path:
    """One PNG at ``path`` with every (label, curve); the x axis logarithmic when the curves ask for it. Curves of
    at most 12 points (CMC ranks, distractor counts) show their measured points; longer ones (ROC) are drawn as
    steps."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=figsize, dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, curve) in enumerate(curves):
        x, y = (curve.x[curve.x > 0], curve.y[curve.x > 0]) if curve.log_x else (curve.x, curve.y)  # log axis
        # past the colour cycle (10 colours; Table 1 has 15 rows) line style and marker tell runs of one colour apart
        cycle = index // len(colours) % 4
        short = len(x) <= 12
        axes.plot(
            x,
            y,
            label=label,
            color=colours[index % len(colours)],
            linestyle=("-", "--", ":", "-.")[cycle],
            marker="os^D"[cycle] if short else None,
            markersize=3,
            drawstyle="default" if short else "steps-post",
        )
    first = curves[0][1]
    if first.log_x:
        axes.set_xscale("log")
    axes.set_xlabel(first.x_label)
    axes.set_ylabel(first.y_label)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=legend_fontsize, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_curves(curves: Mapping[str, Curve], output_dir: str | Path) -> list[Path]:
    """Write ``<stage>_<curve>.png`` per (stage, curve name), overlaying the eval sets (keys
    ``<stage>/<set>/<curve>``). Returns the written paths."""
    groups: dict[tuple[str, str], list[tuple[str, Curve]]] = defaultdict(list)
    for key, curve in curves.items():
        stage, eval_set, name = key.split("/", 2)
        groups[(stage, name)].append((eval_set, curve))
    written = []
    for (stage, name), members in sorted(groups.items()):
        path = Path(output_dir) / f"{stage}_{name.replace('@', '_at_').replace('=', '')}.png"
        written.append(overlay_curves(members, f"{stage}: {name}", path))
    return written
