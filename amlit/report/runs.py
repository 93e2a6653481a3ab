"""Finding the runs to report: ``results.json`` (and ``curves.json``) files written by ``amlit test``.

A path given to ``amlit report`` is one of
- a ``results.json`` file: one run;
- a sweep's ``trials.csv``, or a folder holding one: one run per trial, in trial order (``amlit sweep``); trials
  that failed or have no results are listed as missing, with the reason;
- any other folder: every ``results.json`` below it, in natural order (``trial-2`` before ``trial-10``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from amlit.errors import BadDataError, MissingDataError, listed
from amlit.eval.curves import CURVES_FILE, Curve, load_curves
from amlit.sweep.runner import FINISHED, TRIALS_FILE, read_trials

RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class Run:
    name: str
    results_file: Path
    metrics: dict[str, float]  # the flat {metric_key: number} part of results.json
    config: dict[str, Any]  # the resolved run config ({} when results.json has none)
    manifest: dict[str, Any]  # the training data manifest ({} when absent)
    curves: dict[str, Curve] = field(default_factory=dict)  # from curves.json beside it ({} when absent)

    @property
    def head(self) -> dict[str, Any]:
        return dict((self.config.get("model") or {}).get("head") or {})

    def data_setting(self, name: str) -> Any:
        """A setting of the run's data module (``data.init_args.<name>`` of the resolved config, e.g.
        ``pair_protocol``, ``far_rule``); None when results.json has no config or its data module has no such
        setting."""
        data = self.config.get("data")
        if not isinstance(data, dict):
            return None
        init_args = data.get("init_args") if "class_path" in data else data  # a data module given by class or not
        return (init_args or {}).get(name)


@dataclass(frozen=True)
class Missing:
    name: str
    reason: str


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def read_run(results_file: Path, name: str) -> Run:
    """One run from its ``results.json`` (and ``curves.json`` beside it, when there)."""
    try:
        document = json.loads(results_file.read_text())
    except (OSError, ValueError) as error:
        raise BadDataError(f"{results_file} is not a results file written by `amlit test` (JSON): {error}") from error
    if not isinstance(document, dict):
        raise BadDataError(f"{results_file}: expected a JSON object of metrics (written by `amlit test`)")
    if not any(str(key).startswith("test/") for key in document):
        # e.g. `amlit score --output`'s lfw/acc, ...: its row would be blank, without a word
        raise BadDataError(
            f"{results_file} holds no `amlit test` metrics (test/<set>/<metric>; it has {listed(list(document), 3)}): "
            "amlit report reads the results.json that amlit test writes, not the output of amlit score"
        )
    # A metric stored as text ("0.99", by hand or another tool) was dropped: its cell blank, without a word.
    text = [key for key, value in document.items() if str(key).startswith("test/") and isinstance(value, str)]
    if text:
        raise BadDataError(
            f"{results_file}: {listed(text, 3)} {'is' if len(text) == 1 else 'are'} text ({document[text[0]]!r}), "
            "not a number as `amlit test` writes; store the metrics as JSON numbers or run `amlit test` again"
        )
    metrics = {
        key: float(value)
        for key, value in document.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }
    sections = {name: document.get(name) or {} for name in ("config", "manifest")}
    damaged = [name for name, section in sections.items() if not isinstance(section, dict)]
    if damaged:  # e.g. a config stored as a string: reading the head from it gave an AttributeError traceback
        raise BadDataError(
            f"{results_file}: its {damaged[0]!r} is a {type(sections[damaged[0]]).__name__}, not the JSON object "
            "`amlit test` writes; run `amlit test` again to rewrite the file"
        )
    curves_file = results_file.with_name(CURVES_FILE)
    curves = load_curves(curves_file) if curves_file.is_file() else {}
    return Run(name, results_file, metrics, sections["config"], sections["manifest"], curves)


def _from_trials(trials_csv: Path) -> list[Run | Missing]:
    table = read_trials(trials_csv)
    found: list[Run | Missing] = []
    for row in table.sort_values("trial").to_dict("records"):
        name = f"trial-{int(row['trial'])}"
        run_dir = Path(str(row["run_dir"]))
        if not run_dir.is_dir():  # the sweep ran elsewhere: the trial folders sit beside trials.csv
            run_dir = trials_csv.parent / run_dir.name
        if row["status"] != FINISHED:
            found.append(
                Missing(name, f"{row['status']} (exit status {row.get('exit_code')}); see {run_dir}/output.log")
            )
            continue
        results = sorted(run_dir.rglob(RESULTS_FILE), key=_natural_key)
        if len(results) != 1:
            reason = (
                f"no {RESULTS_FILE} in {run_dir}: the trial ran `amlit fit` only; run `amlit test` on its last "
                "checkpoint, or use a sweep whose command is `python -m amlit.sweep.trial` (sweeps/table1.yaml)"
                if not results
                else f"{len(results)} {RESULTS_FILE} files in {run_dir}; pass the one to report"
            )
            found.append(Missing(name, reason))
            continue
        found.append(read_run(results[0], name))
    return found


def _run_name(results_file: Path, root: Path) -> str:
    """The run folder relative to ``root``, without the ``results`` folder ResultsWriter writes into."""
    folder = results_file.parent
    if folder.name == "results" and folder != root:
        folder = folder.parent
    relative = folder.relative_to(root) if folder.is_relative_to(root) else folder
    return str(relative) if str(relative) != "." else root.name


def collect_runs(paths: list[Path]) -> list[Run | Missing]:
    """Every run named by ``paths`` (see the module docstring), in the given order."""
    found: list[Run | Missing] = []
    for path in map(Path, paths):
        if path.is_file() and path.name == TRIALS_FILE:
            found += _from_trials(path)
        elif path.is_file():
            found.append(read_run(path, _run_name(path, path.parent.parent)))
        elif (path / TRIALS_FILE).is_file():
            found += _from_trials(path / TRIALS_FILE)
        elif path.is_dir():
            results = sorted(path.rglob(RESULTS_FILE), key=_natural_key)
            if not results:
                raise MissingDataError(f"no {RESULTS_FILE} below {path}: run `amlit test` on the trained checkpoints")
            found += [read_run(file, _run_name(file, path)) for file in results]
        else:
            raise MissingDataError(
                f"{path} does not exist; give results.json files, run folders or a sweep's trials.csv"
            )
    # One results.json reached twice ([runs, runs/a], or one path given twice) was two identical rows: keep the first.
    seen: set[Path] = set()
    unique: list[Run | Missing] = []
    for run in found:
        if isinstance(run, Run):
            if run.results_file.resolve() in seen:
                continue
            seen.add(run.results_file.resolve())
        unique.append(run)
    found = unique
    names = [run.name for run in found]
    duplicates = {name for name in names if names.count(name) > 1}
    # e.g. trial-0 of two sweeps: name those by their folder instead
    return [
        replace(run, name=str(run.results_file.parent)) if isinstance(run, Run) and run.name in duplicates else run
        for run in found
    ]
