"""``amlit report``: the paper's Table 1 and Table 2 and its Figure 6 from runs tested with ``amlit test``."""

from __future__ import annotations

from pathlib import Path

from amlit.errors import MissingDataError
from amlit.listfiles import PathOrPaths, as_paths
from amlit.outputs import check_output
from amlit.report.figures import megaface_figures
from amlit.report.paper import TABLE1_COLUMNS, TABLE2_COLUMNS
from amlit.report.runs import Missing, Run, collect_runs
from amlit.report.tables import markdown, table1, table2


def make_report(runs: PathOrPaths, output: Path = Path("report")) -> dict[str, Path]:
    """Write the paper's Table 1 and Table 2 (markdown, CSV) and Figure 6 (PNG) from runs tested by amlit test.

    Figure 6 overlays the MegaFace CMC and ROC of every run; a third plot, MegaFace rank-1 against the number of
    distractors.

    Each run is one row, with its head, m and s, every Table 1 column (LFW, BLUFR mean - std, MegaFace), the paper's
    number for the same head and setting beside it and the difference (runs of heads the paper did not train get
    no paper number). Numbers in percent.

    Args:
        runs: results.json files, run folders (every results.json below), or a sweep's trials.csv (or its folder):
            one, e.g. ``--runs=runs/table1``, or a list, ``--runs=[runs/a,runs/b]``.
        output: folder for table1.md/.csv, table2.md/.csv, figure6_cmc.png, figure6_roc.png and
            megaface_rank1_vs_distractors.png.

    Returns:
        What was written, by name.
    """
    runs = as_paths(runs)
    # Before reading the runs: an --output that is a file (or below one) gave a FileExistsError traceback at mkdir.
    check_output(output, "--output", folder=True)
    found = collect_runs(runs)
    tested = [run for run in found if isinstance(run, Run)]
    missing = [run for run in found if isinstance(run, Missing)]
    for run in missing:
        print(f"amlit report: left out {run.name}: {run.reason}")
    if not tested:
        raise MissingDataError(f"none of {', '.join(map(str, runs))} has a tested run to report (see above)")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    first, second = table1(tested), table2(tested)
    notes = [f"- left out {run.name}: {run.reason}" for run in missing]
    figures, figure_notes = megaface_figures(tested, output)
    notes += [f"- {note}" for note in figure_notes]
    suffix = ("\n" + "\n".join(notes) + "\n") if notes else ""
    written = {
        "table1.md": output / "table1.md",
        "table1.csv": output / "table1.csv",
        "table2.md": output / "table2.md",
        "table2.csv": output / "table2.csv",
    }
    table1_text = markdown(first, TABLE1_COLUMNS, "Table 1") + suffix
    table2_text = markdown(second, TABLE2_COLUMNS, "Table 2: overlap removal") + suffix
    written["table1.md"].write_text(table1_text)
    written["table2.md"].write_text(table2_text)
    first.to_csv(written["table1.csv"], index=False)
    second.to_csv(written["table2.csv"], index=False)
    written.update({path.name: path for path in figures})
    print(table1_text + "\n" + table2_text)
    print(f"wrote {', '.join(written)} to {output}")
    return written
