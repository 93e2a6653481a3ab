"""``amlit sweep``: run a grid or random wandb sweep locally, one subprocess per trial, without a wandb server.

For air-gapped clusters (``wandb sweep`` / ``wandb agent`` need a server). Each trial runs the command the wandb
agent would run, in its own output folder; ``<output>/trials.csv`` gets one row per finished trial as it goes, so a
crash loses nothing and a re-run skips the trials that finished (when the sweep's parameters, command and extra
arguments are still those they ran with). The command exits non-zero when a trial failed, after the others ran.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from amlit.data.images import write_atomically
from amlit.errors import BadDataError, ConfigError, UserInputError, listed
from amlit.progress import progress_bar
from amlit.sweep.command import render_command
from amlit.sweep.overrides import overridden_parameters
from amlit.sweep.params import expand_grid, sample_random
from amlit.sweep.schema import DEFAULT_COMMAND, load_sweep

TRIALS_FILE = "trials.csv"
FINISHED = "finished"
SWEEP_COMMAND = "sweep_command"  # trials.csv column: what every trial runs apart from its parameters
CLI_SUBCOMMANDS = ("fit", "validate", "test", "predict")


class TrialsFailedError(UserInputError, RuntimeError):
    """Trials of a sweep failed (the others ran; all rows are in ``trials.csv``): the command exits non-zero."""

    def __init__(self, message: str, table: pd.DataFrame) -> None:
        super().__init__(message)
        self.table = table  # every row, as run_sweep returns it when all trials finish


# ---- keeping trials apart: every output of a run goes under trainer.default_root_dir -----------------------------
def isolate_trial_outputs(argv: list[str], trial_dir: Path) -> list[str]:
    """``argv`` with the trial's run folder set to ``trial_dir``: the configs leave every output setting (logs,
    checkpoints, embeddings, results) unset, so the CLI places them all in ``trainer.default_root_dir``
    (``amlit.cli.place_outputs``). Appended last, it wins over a root folder named by a config or a parameter."""
    return [*argv, f"--trainer.default_root_dir={trial_dir}"]


def trial_dir(output: Path, index: int) -> Path:
    """The run folder of trial ``index`` of the sweep in ``output``."""
    return output / f"trial-{index}"


def _comparable(argv: Sequence[str], run_dir: str | None) -> list[str]:
    """A trial's argv without what a rerun of the same sweep may spell differently: the interpreter at the program's
    place (another venv) and the trial's run folder (``--output`` given relative, absolute, or with a trailing
    slash). For rows of trials.csv written before it recorded ``sweep_command``."""
    program = 1 if argv and argv[0].endswith("/env") else 0
    comparable = [
        "<python>" if place == program and Path(item).name.startswith("python") else item
        for place, item in enumerate(argv)
    ]
    if isinstance(run_dir, str) and run_dir:  # a row without it reads as NaN
        comparable = [item.replace(run_dir, "<trial>") for item in comparable]
    return comparable


def _use_this_python(argv: list[str]) -> list[str]:
    """Run ``python`` / ``amlit`` items with this interpreter, so trials work inside the venv without activating it."""
    resolved: list[str] = []
    for index, item in enumerate(argv):
        is_program = index == 0 or (index == 1 and argv[0].endswith("/env"))
        if item in ("python", "python3") and is_program:
            resolved.append(sys.executable)
        elif item == "amlit" and is_program:
            resolved += [sys.executable, "-m", "amlit"]
        else:
            resolved.append(item)
    return resolved


def _trial_argv(
    config: Mapping[str, Any], parameters: Mapping[str, Any], run_dir: Path, extra_args: list[str]
) -> list[str]:
    """The argv of one trial: the agent's command for ``parameters``, run in ``run_dir``, then ``extra_args``."""
    if "${args_json_file}" in [str(item) for item in config.get("command") or DEFAULT_COMMAND]:
        run_dir.mkdir(parents=True, exist_ok=True)  # the agent writes the parameters there
    argv = render_command(
        config.get("command"),
        parameters,
        program=config.get("program"),
        args_json_file=run_dir / "args.json",
        interpreter=sys.executable,
    )
    return isolate_trial_outputs(_use_this_python(argv), run_dir) + list(extra_args)


def read_trials(trials_csv: Path, columns: Sequence[str] = ("trial", "status", "run_dir")) -> pd.DataFrame:
    """A sweep's trials.csv, one row per trial that ran, with at least ``columns``. A file that is not one (cut short
    by a copy, edited by hand, another CSV) is refused in one line: its rows decide which trials are skipped and
    what is reported."""
    advice = "restore it, or delete it (the sweep then runs every trial again)"
    try:
        table = pd.read_csv(trials_csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadDataError(f"{trials_csv} is not a readable sweep trials.csv ({first_line}); {advice}") from error
    missing = sorted(set(columns) - set(table.columns))
    if missing:
        raise BadDataError(f"{trials_csv} is not a sweep's trials.csv: it has no column {listed(missing)}; {advice}")
    numbers = pd.to_numeric(table["trial"], errors="coerce")
    damaged = table.index[numbers.isna() | (numbers % 1 != 0) | (numbers < 0) | table[list(columns)].isna().any(axis=1)]
    if len(damaged):
        lines = listed(damaged + 2)  # the header is line 1
        raise BadDataError(
            f"{trials_csv} is damaged: line {lines} is cut short or lacks a value (each row needs a trial number and "
            f"{listed(columns[1:])}); {advice}"
        )
    if numbers.duplicated().any():
        twice = listed(sorted(set(numbers[numbers.duplicated()].astype(int))))
        raise BadDataError(f"{trials_csv} is damaged: trial {twice} is listed more than once; {advice}")
    return table.assign(trial=numbers.astype(int))


# ---- one sweep per output folder: a rerun continues it only with the settings its finished trials ran with --------
def sweep_command(config: Mapping[str, Any], extra_args: Sequence[str]) -> str:
    """What every trial of the sweep runs apart from its parameters, as JSON: the file's command (and program) and
    the extra arguments. Paths of the interpreter and the output folder are left out: a rerun from another venv or
    with the folder spelt differently still continues the sweep."""
    command = [str(item) for item in (config.get("command") or DEFAULT_COMMAND)]
    return json.dumps({"command": command, "program": config.get("program"), "extra_args": list(extra_args)})


def _command_changes(old: str, new: str, file: Path) -> list[str]:
    was, now = json.loads(old), json.loads(new)
    changes = []
    if (was["command"], was["program"]) != (now["command"], now["program"]):
        program = [f"program {was['program']!r} -> {now['program']!r}"] * (was["program"] != now["program"])
        commands = [f"{' '.join(was['command'])} -> {' '.join(now['command'])}"] * (was["command"] != now["command"])
        changes.append(f"the command of {file} changed: {'; '.join([*commands, *program])}")
    if was["extra_args"] != now["extra_args"]:
        changes.append(f"--extra_args changed: {was['extra_args']} -> {now['extra_args']}")
    return changes


def check_same_sweep(
    rows: Mapping[int, Mapping[str, Any]],
    planned: Sequence[tuple[int, dict[str, Any]]],
    current: str,
    trial_argv,
    file: Path,
    trials_csv: Path,
) -> None:
    """Refuse to continue a sweep folder whose recorded trials ran other settings than the sweep now gives: a finished
    trial would be skipped and its result ranked beside trials of the new settings. Checked before anything runs.

    ``rows``: trials.csv's rows by trial; ``current``: ``sweep_command`` now; ``trial_argv(index, parameters)``: the
    argv a trial runs now, compared with the recorded one for rows written before trials.csv recorded
    ``sweep_command``."""
    advice = f"the sweep changed: pass another --output (or delete {trials_csv.parent}), or rerun it as it was"
    for index, parameters in planned:
        previous = rows.get(index)
        params_json = json.dumps(parameters, sort_keys=True)
        if previous is not None and previous["params"] != params_json:
            raise ConfigError(
                f"{trials_csv}: trial {index} was run with {previous['params']}, but {file} now gives {params_json}; "
                + advice
            )
    for index, previous in sorted(rows.items()):
        if previous["status"] != FINISHED:
            continue  # a failed trial is run again with the current settings, replacing its row
        recorded = previous.get(SWEEP_COMMAND)
        if isinstance(recorded, str):
            changes = _command_changes(recorded, current, file) if recorded != current else []
        elif index in dict(planned):  # a row of an older amlit: compare the whole command it ran
            argv = trial_argv(index, dict(planned)[index])
            same = _comparable(shlex.split(previous["command"]), previous.get("run_dir")) == _comparable(
                argv, str(trial_dir(trials_csv.parent, index))
            )
            changes = [] if same else [f"it ran `{previous['command']}`, the sweep now runs `{shlex.join(argv)}`"]
        else:
            changes = []
        if changes:
            raise ConfigError(
                f"{trials_csv}: trial {index} finished with other settings than this run would use "
                f"({'; '.join(changes)}), so its result would be ranked beside trials of the new ones; " + advice
            )


# ---- checks before anything runs -----------------------------------------------------------------------------------
def amlit_cli_args(argv: Sequence[str]) -> tuple[int, list[str]] | None:
    """Where the amlit CLI starts in a trial's argv and the arguments it parses: ``... -m amlit <subcommand> ...``,
    or ``... -m amlit.sweep.trial ...`` (which runs ``fit`` with them, then ``test``); None for any other program."""
    for position, (flag, module) in enumerate(itertools.pairwise(argv)):
        if flag != "-m":
            continue
        rest = list(argv[position + 2 :])
        if module == "amlit" and rest[:1] and rest[0] in CLI_SUBCOMMANDS:
            return position, rest
        if module == "amlit.sweep.trial":
            return position, ["fit", *rest]
    return None


def check_trial_parses(argv: list[str], env: Mapping[str, str], file: Path, index: int) -> None:
    """Parse one trial's amlit command with the CLI (``--print_config``: parsed, nothing built or run, ~5 s) so that
    a misspelt parameter or a value of the wrong type stops the sweep before the first trial, not in every trial.
    The parameter names are the same in every trial, so one trial is enough for them."""
    found = amlit_cli_args(argv)
    if found is None:
        return  # another program: its arguments are its own
    position, cli_args = found
    probe = [*argv[:position], "-m", "amlit", *cli_args, "--print_config"]
    result = subprocess.run(probe, capture_output=True, text=True, env=dict(env), check=False)
    if result.returncode != 0:
        said = "\n".join(line.removeprefix("amlit: error: ") for line in result.stderr.strip().splitlines()[-8:])
        raise ConfigError(
            f"{file}: trial {index}'s command does not parse with the amlit CLI, so its trials would fail; nothing "
            f"was run. The CLI said:\n{said}\nThe command: {shlex.join(argv)}"
        )


def check_no_overridden_parameters(planned: Sequence[tuple[int, dict[str, Any]]], trial_argv, file: Path) -> None:
    """Refuse a sweep in which an argument after the swept ones (a later ``--config``, an ``--extra_args``) sets a
    swept parameter: every trial would train the later value while trials.csv and ``amlit report`` rank the trials
    by their swept ones. Read from each trial's argv (no process runs), so a value that only some trials give is
    caught too."""
    for index, parameters in planned:
        found = amlit_cli_args(trial_argv(index, parameters))
        problems = overridden_parameters(found[1], parameters) if found is not None else []
        if problems:
            raise ConfigError(
                f"{file}: in trial {index}, {'; '.join(problems)}, so the trials would not run the values trials.csv "
                "records for them; nothing was run. Put the swept arguments (${args}) last in the sweep's command, "
                "or leave the setting out of --extra_args and of the later config"
            )


# ---- results -----------------------------------------------------------------------------------------------------
def read_final_metric(run_dir: Path, metric: str) -> float:
    """Last logged value of ``metric`` in the newest CSVLogger ``metrics.csv`` under ``run_dir`` that logged it (NaN
    if none): a trial that trains and then tests (``amlit.sweep.trial``) leaves the test's log newest."""
    files = sorted(run_dir.rglob("metrics.csv"), key=lambda path: path.stat().st_mtime, reverse=True)
    for file in files:
        table = pd.read_csv(file)
        values = table[metric].dropna() if metric in table.columns else []
        if len(values):
            return float(values.iloc[-1])
    return math.nan


def _plan(config: Mapping[str, Any], file: Path, max_trials: int | None, seed: int) -> list[dict[str, Any]]:
    method, parameters = config["method"], config["parameters"]
    caps = [cap for cap in (max_trials, config.get("run_cap")) if cap is not None]
    if method == "bayes":
        raise ConfigError(
            f"{file}: method 'bayes' needs a W&B server to propose trials from the finished ones. Run it with "
            f"`wandb sweep {file}` (prints a sweep id) and then `wandb agent <entity>/<project>/<sweep id>` on each "
            "machine (self-hosted server: set WANDB_BASE_URL). Offline, use method: grid or random."
        )
    if method == "random":
        if not caps:
            raise ConfigError(
                f"{file}: a random sweep never ends by itself; set run_cap in the file or pass --max_trials=N"
            )
        return sample_random(parameters, min(caps), seed)
    trials = expand_grid(parameters)
    return trials[: min(caps)] if caps else trials


def _summary(table: pd.DataFrame, metric: str, goal: str, parameters: Sequence[str]) -> str:
    if table.empty:
        return "no trials"
    # finished trials first, then by the metric (best first); ties keep the trial order
    failed = table["status"] != FINISHED
    ranked = table.assign(_failed=failed).sort_values(
        ["_failed", metric], ascending=[True, goal == "minimize"], kind="stable", na_position="last"
    )
    columns = ["trial", *parameters, "status", metric, "run_dir"]
    return ranked[columns].to_string(index=False)


def run_sweep(
    file: Path,
    output: Path | None = None,
    max_trials: int | None = None,
    dry_run: bool = False,
    extra_args: str | list[str] | None = None,
    seed: int = 0,
    trials: list[int] | None = None,
) -> pd.DataFrame:
    """Run a grid or random wandb sweep locally: each trial is a subprocess of the command the wandb agent runs.

    Bayesian sweeps need a W&B server (``wandb sweep FILE`` then ``wandb agent SWEEP_ID``). ``WANDB_MODE`` is left
    as the environment has it (offline runs can be uploaded later with ``wandb sync``).

    Args:
        file: wandb sweep YAML (e.g. sweeps/demo_grid.yaml); method grid or random.
        output: folder for trials.csv and one trial-<k> folder per trial (default runs/sweeps/<file name>).
        max_trials: run at most this many trials (needed for random sweeps without run_cap).
        dry_run: print the commands without running them.
        extra_args: arguments appended to every trial's command, after the swept ones: one
            (--extra_args=--trainer.max_steps=100) or more (--extra_args+=A --extra_args+=B).
        seed: seed of the random sampler (random sweeps).
        trials: run only these trial numbers (0-based), e.g. one SLURM array task's (scripts/slurm/table1_array.sbatch).

    Returns:
        One row per trial: trial, the parameters, status, exit_code, the metric, run_dir, seconds, params, command,
        sweep_command.

    Raises:
        ConfigError: before anything runs, when ``output`` holds trials of other parameters, another command or other
            extra_args, when a later argument overrides a swept parameter, or when a trial's amlit command does not
            parse (e.g. a misspelt parameter name).
        BadDataError: before anything runs, when ``output``'s trials.csv is damaged.
        TrialsFailedError: after all trials ran and the summary was printed, when any of them failed (its
            ``table`` is the return value).
    """
    file = Path(file)
    config = load_sweep(file)
    metric = config.get("metric", {}).get("name", "")
    goal = config.get("metric", {}).get("goal", "minimize")
    output = Path(output) if output is not None else Path("runs") / "sweeps" / file.stem
    planned = list(enumerate(_plan(config, file, max_trials, seed)))
    if trials is not None:
        outside = sorted(set(trials) - {index for index, _ in planned})
        if outside:
            raise ConfigError(f"{file} has trials 0..{len(planned) - 1}; there is no trial {outside[0]}")
        planned = [(index, parameters) for index, parameters in planned if index in set(trials)]
    names = sorted(config["parameters"])

    trials_csv = output / TRIALS_FILE
    recorded = ("trial", "status", "run_dir", "params", "command")  # what a rerun compares
    done = read_trials(trials_csv, recorded) if trials_csv.is_file() else pd.DataFrame()
    rows = {int(row["trial"]): row for row in done.to_dict("records")}
    env = dict(os.environ)
    env.setdefault("WANDB_RUN_GROUP", config.get("name", file.stem))
    extra_args = [extra_args] if isinstance(extra_args, str) else list(extra_args or [])  # one, or a list
    current = sweep_command(config, extra_args)

    def trial_argv(index: int, parameters: dict[str, Any]) -> list[str]:
        return _trial_argv(config, parameters, trial_dir(output, index), extra_args)

    check_same_sweep(rows, planned, current, trial_argv, file, trials_csv)
    to_run = [(index, p) for index, p in planned if rows.get(index, {}).get("status") != FINISHED]
    check_no_overridden_parameters(to_run, trial_argv, file)
    if to_run and not dry_run:
        check_trial_parses(trial_argv(*to_run[0]), env, file, to_run[0][0])

    progress = progress_bar(to_run, desc=f"sweep {file.name}", unit="trial", disable=dry_run)
    for index, parameters in progress:
        params_json = json.dumps(parameters, sort_keys=True)
        run_dir = trial_dir(output, index)
        argv = trial_argv(index, parameters)
        if dry_run:
            print(f"trial {index}: {shlex.join(argv)}")
            continue
        tqdm.write(f"trial {index}: {params_json} -> {run_dir}/output.log")
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(run_dir / "output.log", "w", encoding="utf-8") as log:
            exit_code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
        value = read_final_metric(run_dir, metric) if metric else math.nan
        if exit_code != 0:
            tail = (run_dir / "output.log").read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            shown = "; last lines of its log:\n" + "\n".join(tail) if tail else " and wrote nothing to its log"
            tqdm.write(f"trial {index} failed with exit status {exit_code}{shown}")
        rows[index] = {
            "trial": index,
            **parameters,
            "status": FINISHED if exit_code == 0 else "failed",
            "exit_code": exit_code,
            metric or "metric": value,
            "run_dir": str(run_dir),
            "seconds": round(time.monotonic() - started, 1),
            "params": params_json,
            "command": shlex.join(argv),
            SWEEP_COMMAND: current,
        }
        # a crash mid-write never leaves a truncated trials.csv
        write_atomically(trials_csv, pd.DataFrame([rows[k] for k in sorted(rows)]).to_csv(index=False).encode())

    table = pd.DataFrame([rows[k] for k in sorted(rows)])
    if dry_run:
        return table
    failed = [rows[index] for index, _ in planned if rows[index]["status"] != FINISHED]
    failures = f" ({len(failed)} failed: see {listed(row['run_dir'] + '/output.log' for row in failed)})" * bool(failed)
    print(f"\n{file.name}: {len(table)} trials{failures}, sorted by {metric} ({goal}); all rows in {trials_csv}")
    print(_summary(table, metric or "metric", goal, names))
    if failed:
        logs = listed(
            f"trial {row['trial']} (exit status {row['exit_code']}): {row['run_dir']}/output.log" for row in failed
        )
        raise TrialsFailedError(
            f"{len(failed)} of {len(planned)} trials of {file} failed: {logs}. Every row is in {trials_csv}; the "
            "same command again runs only the failed trials",
            table,
        )
    return table
