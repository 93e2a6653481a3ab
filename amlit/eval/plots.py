"""PNG plots of evaluation curves (ROC, CMC), one figure per curve kind with every eval set that has it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from amlit.eval.curves import Curve


def plot_curves(curves: Mapping[str, Curve], output_dir: str | Path) -> list[Path]:
    """Write ``<stage>_<curve>.png`` per (stage, curve name), overlaying the eval sets (keys
    ``<stage>/<set>/<curve>``). Returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on cluster nodes
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[tuple[str, Curve]]] = defaultdict(list)
    for key, curve in curves.items():
        stage, eval_set, name = key.split("/", 2)
        groups[(stage, name)].append((eval_set, curve))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (stage, name), members in sorted(groups.items()):
        figure, axes = plt.subplots(figsize=(5.5, 4.5), dpi=120)
        for eval_set, curve in members:
            x, y = (curve.x[curve.x > 0], curve.y[curve.x > 0]) if curve.log_x else (curve.x, curve.y)  # log axis
            axes.plot(x, y, label=eval_set, drawstyle="steps-post")
        first = members[0][1]
        if first.log_x:
            axes.set_xscale("log")
        axes.set_xlabel(first.x_label)
        axes.set_ylabel(first.y_label)
        axes.set_title(f"{stage}: {name}")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(loc="lower right")
        figure.tight_layout()
        path = output_dir / f"{stage}_{name.replace('@', '_at_').replace('=', '')}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
