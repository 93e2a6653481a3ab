"""Table 1 and Table 2 of the paper from runs: ours beside the paper's number and the difference, in percent."""

from __future__ import annotations

import math

import pandas as pd

from amlit.report.paper import (
    CITATION,
    TABLE1,
    TABLE1_BY_KEY,
    TABLE1_COLUMNS,
    TABLE2,
    TABLE2_COLUMNS,
    TABLE2_ROW,
    Column,
    describe_head,
    paper_row,
)
from amlit.report.runs import Run

_ROW_ORDER = {row.key: index for index, row in enumerate(TABLE1)}


def _paper_label(key: str | None) -> str:
    if key is None:
        return ""
    row = TABLE1_BY_KEY[key]
    return row.loss if row.margin in ("-", "~1.5") else f"{row.loss} m={row.margin}"


def _measured(run: Run, column: Column) -> float:
    value = run.metrics.get(column.key)
    return 100.0 * value if value is not None else math.nan


def _compare(values: dict, column: Column, ours: float, paper: float | None) -> None:
    """Adds ``<name>``, ``<name>_paper`` and ``<name>_delta`` (ours - paper), percent; NaN where unknown."""
    paper = math.nan if paper is None else paper
    values[column.name] = ours
    values[f"{column.name}_paper"] = paper
    values[f"{column.name}_delta"] = ours - paper


def _identity(run: Run) -> dict:
    row = paper_row(run.head)
    head, margin, scale = describe_head(run.head)
    return {"run": run.name, "paper_row": _paper_label(row), "head": head, "m": margin, "s": scale}


def table1(runs: list[Run]) -> pd.DataFrame:
    """One row per run (ordered as the paper's rows, runs of other heads last): run, paper_row, head, m, s and per
    Table 1 column ``<name>``, ``<name>_paper``, ``<name>_delta`` in percent."""
    rows = []
    for run in sorted(runs, key=lambda r: _ROW_ORDER.get(paper_row(r.head) or "", len(_ROW_ORDER))):
        values = _identity(run)
        paper = TABLE1_BY_KEY.get(paper_row(run.head) or "")
        for index, column in enumerate(TABLE1_COLUMNS):
            _compare(values, column, _measured(run, column), paper.values[index] if paper else None)
        rows.append(values)
    return pd.DataFrame(rows)


def overlap_removal(run: Run) -> bool | None:
    """Whether the run's training data had identities removed (its manifest); None without a manifest."""
    if "removed_identities" not in run.manifest:
        return None
    return bool(run.manifest["removed_identities"])


def table2(runs: list[Run]) -> pd.DataFrame:
    """One row per run: run, head, m, s, overlap_removal (yes/no and the count), classes, and MegaFace Rank1 / VR
    with the paper's Table 2 value beside (only for AM-Softmax m = 0.35, s = 30: the paper's Table 2 model)."""
    rows = []
    for run in runs:
        values = _identity(run)
        removed = overlap_removal(run)
        count = len(run.manifest.get("removed_identities") or [])
        values["overlap_removal"] = {None: "?", True: f"yes ({count} ids)", False: "no"}[removed]
        values["classes"] = run.manifest.get("num_classes", "")
        paper = TABLE2.get(removed) if paper_row(run.head) == TABLE2_ROW and removed is not None else None
        for index, column in enumerate(TABLE2_COLUMNS):
            _compare(values, column, _measured(run, column), paper[index] if paper else None)
        rows.append(values)
    return pd.DataFrame(rows)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown(table: pd.DataFrame, columns: tuple[Column, ...], title: str) -> str:
    """A markdown table: the identity columns, then per metric "ours / paper / delta"; numbers in percent."""
    fixed = [c for c in table.columns if not any(c.startswith(m.name) for m in columns)]
    header = [*fixed]
    for column in columns:
        header += [column.title, "paper", "Δ"]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for record in table.to_dict("records"):
        cells = [_cell(record[c]) for c in fixed]
        for column in columns:
            delta = record[f"{column.name}_delta"]
            cells += [
                _cell(record[column.name]),
                _cell(record[f"{column.name}_paper"]),
                "" if math.isnan(delta) else f"{delta:+.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Percent. Paper: {CITATION}. BLUFR: mean - std over 10 trials; Δ = ours - paper."]
    return "\n".join(lines) + "\n"
