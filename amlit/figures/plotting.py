"""What the figure commands share: their numbers printed as a table (matplotlib: ``amlit.eval.plots.pyplot``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def print_table(title: str, columns: Sequence[str], rows: Mapping[str, Sequence[float]], fmt: str = ".4f") -> None:
    """Print ``rows`` (name -> one number per column, formatted with ``fmt``) under ``columns``, aligned."""
    width = max(len(name) for name in rows)
    cells = [max(len(c), 9) for c in columns]
    print(title)
    print(" " * width + "  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, cells, strict=True)))
    for name, values in rows.items():
        numbers = "  ".join(f"{v:>{w}{fmt}}" for v, w in zip(values, cells, strict=True))
        print(f"{name:<{width}}  {numbers}")
