"""What the figure commands share: their numbers printed as a table (matplotlib: ``amlit.eval.plots.pyplot``), the
check of their ``--output``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from amlit.errors import ConfigError
from amlit.outputs import check_output


def check_figure_output(output: str | Path) -> Path:
    """``output`` as a ``Path``, checked before any work: writable (``check_output``) and named with an image
    format matplotlib writes (without one it appends ``.png``, so the file written is not the one named)."""
    path = check_output(output, "--output")
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()  # {"png": "Portable Network Graphics", ...}
    if path.suffix[1:].lower() not in formats:
        raise ConfigError(
            f"--output={path}: expected an image file name ending in .png (or {', '.join(f'.{f}' for f in formats)}); "
            "give such a name"
        )
    return path


def print_table(title: str, columns: Sequence[str], rows: Mapping[str, Sequence[float]], fmt: str = ".4f") -> None:
    """Print ``rows`` (name -> one number per column, formatted with ``fmt``) under ``columns``, aligned."""
    width = max(len(name) for name in rows)
    cells = [max(len(c), 9) for c in columns]
    print(title)
    print(" " * width + "  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, cells, strict=True)))
    for name, values in rows.items():
        numbers = "  ".join(f"{v:>{w}{fmt}}" for v, w in zip(values, cells, strict=True))
        print(f"{name:<{width}}  {numbers}")
