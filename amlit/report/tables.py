"""Table 1 and Table 2 of the paper from runs: ours beside the paper's number and the difference, in percent.

A paper number is put beside a run's only where the run was measured as the paper was (``Column.protocols``: the
6,000 LFW pairs scored with AM-Softmax's flip-sum feature, all 10 trials of the official BLUFR list under the
toolkit's EvalROC rule, 1M MegaFace distractors, as ``results.json`` records them: its counts and its run config's
data settings); elsewhere the paper's number and the difference stay blank and the ``not_compared`` column (a note
under the markdown table) says why. What results.json does not record counts as measured otherwise.
"""

from __future__ import annotations

import math

import pandas as pd

from amlit.keys import eval_key
from amlit.report.paper import (
    CITATION,
    DATA_SETTING,
    TABLE1,
    TABLE1_BY_KEY,
    TABLE1_COLUMNS,
    TABLE2,
    TABLE2_COLUMNS,
    TABLE2_ROW,
    Column,
    Protocol,
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


def measured_otherwise(run: Run, protocol: Protocol) -> str | None:
    """Why ``run`` was not measured as the paper was under ``protocol`` (None when it was): a count that differs, a
    data setting that differs, or either not recorded (an older results.json, a run config without the setting)."""
    setting = protocol.key.startswith(DATA_SETTING)
    recorded = run.data_setting(protocol.key.removeprefix(DATA_SETTING)) if setting else run.metrics.get(protocol.key)
    expected = protocol.expected if setting else f"{protocol.expected:,}"
    if recorded is None:
        where = f"{protocol.key} of its run config" if setting else protocol.key
        return f"results.json does not record the {protocol.what} ({where}); the paper's: {expected}"
    if setting and str(recorded) != protocol.expected:
        return f"{protocol.what} {recorded} ({protocol.key}), the paper's {expected}"
    if not setting and int(recorded) != protocol.expected:
        return f"{int(recorded):,} {protocol.what}, the paper's {expected}"
    return None


def _not_compared(run: Run, columns: tuple[Column, ...]) -> dict[str, tuple[str, ...]]:
    """Column name -> why its paper number is left out (one reason per protocol not met), for the columns ``run``
    has a value in."""
    found = {
        column.name: tuple(reason for p in column.protocols if (reason := measured_otherwise(run, p)) is not None)
        for column in columns
        if column.key in run.metrics
    }
    return {name: reasons for name, reasons in found.items() if reasons}


def _note(columns: tuple[Column, ...], reasons: dict[str, tuple[str, ...]]) -> str:
    """One clause per set of reasons: ``"BLUFR VR@FAR=0.01%, ...: 15,660 impostor pairs ..., the paper's 44,003,474
    and 5 BLUFR trials, the paper's 10"``."""
    by_reason: dict[tuple[str, ...], list[str]] = {}
    for column in columns:
        if column.name in reasons:
            by_reason.setdefault(reasons[column.name], []).append(column.title)
    return "; ".join(f"{', '.join(titles)}: {' and '.join(why)}" for why, titles in by_reason.items())


def _compare(values: dict, column: Column, ours: float, paper: float | None) -> None:
    """Adds ``<name>``, ``<name>_paper`` and ``<name>_delta`` (ours - paper), percent; NaN where unknown."""
    paper = math.nan if paper is None else paper
    values[column.name] = ours
    values[f"{column.name}_paper"] = paper
    values[f"{column.name}_delta"] = ours - paper


def _identity(run: Run) -> dict:
    row = paper_row(run.head)
    head, margin, scale = describe_head(run.head)
    # The paper's MegaFace columns are at 1M distractors; a run tested on fewer (demo data, a devkit subset) is not
    # comparable to them, and the table says so beside every row.
    distractors = run.metrics.get(eval_key("test", "megaface", "num_distractors"))
    return {
        "run": run.name,
        "paper_row": _paper_label(row),
        "head": head,
        "m": margin,
        "s": scale,
        "megaface_distractors": "" if distractors is None else int(distractors),
    }


def table1(runs: list[Run]) -> pd.DataFrame:
    """One row per run (ordered as the paper's rows, runs of other heads last): run, paper_row, head, m, s and per
    Table 1 column ``<name>``, ``<name>_paper``, ``<name>_delta`` in percent."""
    rows = []
    for run in sorted(runs, key=lambda r: _ROW_ORDER.get(paper_row(r.head) or "", len(_ROW_ORDER))):
        values = _identity(run)
        paper = TABLE1_BY_KEY.get(paper_row(run.head) or "")
        reasons = _not_compared(run, TABLE1_COLUMNS)
        for index, column in enumerate(TABLE1_COLUMNS):
            published = paper.values[index] if paper and column.name not in reasons else None
            _compare(values, column, _measured(run, column), published)
        values["not_compared"] = _note(TABLE1_COLUMNS, reasons) if paper else ""
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
        reasons = _not_compared(run, TABLE2_COLUMNS)
        for index, column in enumerate(TABLE2_COLUMNS):
            _compare(
                values, column, _measured(run, column), paper[index] if paper and column.name not in reasons else None
            )
        values["not_compared"] = _note(TABLE2_COLUMNS, reasons) if paper else ""
        rows.append(values)
    return pd.DataFrame(rows)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown(table: pd.DataFrame, columns: tuple[Column, ...], title: str) -> str:
    """A markdown table: the identity columns, then per metric "ours / paper / delta"; numbers in percent. Below it,
    per run, the columns whose paper number is left out and why (``not_compared``)."""
    fixed = [c for c in table.columns if not any(c.startswith(m.name) for m in columns) and c != "not_compared"]
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
    lines += [
        "",
        f"Percent. Paper: {CITATION}. BLUFR: mean - std over 10 trials; MegaFace: the paper's at 1,000,000 "
        "distractors, ours at megaface_distractors; Δ = ours - paper.",
    ]
    notes = [f"- {r['run']}: {r['not_compared']}" for r in table.to_dict("records") if r.get("not_compared")]
    if notes:
        lines += ["", "No paper number or Δ where a run was measured differently from the paper:", *notes]
    return "\n".join(lines) + "\n"
