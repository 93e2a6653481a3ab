"""What the figure commands share: matplotlib without a display, and the numbers printed as a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only: no display on cluster nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def print_table(title: str, columns: Sequence[str], rows: Mapping[str, Sequence[float]], fmt: str = ".4f") -> None:
    """Print ``rows`` (name -> one number per column, formatted with ``fmt``) under ``columns``, aligned."""
    width = max(len(name) for name in rows)
    cells = [max(len(c), 9) for c in columns]
    print(title)
    print(" " * width + "  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, cells, strict=True)))
    for name, values in rows.items():
        numbers = "  ".join(f"{v:>{w}{fmt}}" for v, w in zip(values, cells, strict=True))
        print(f"{name:<{width}}  {numbers}")
