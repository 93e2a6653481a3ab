"""``amlit`` command line: LightningCLI subcommands fit / validate / test / predict, plus tool commands.

The LightningCLI side lives in ``amlit.lightning_cli`` (the typed ``__init__`` signatures of the model and data classes
are the configuration schema). Tool commands (``amlit data ...``, ``amlit score ...``) are plain typed functions that
live beside what they work on; jsonargparse builds their parsers from the signatures and docstrings, so registering
one is one line in its group of ``TOOL_GROUPS``. ``main`` sends a tool command to its group before anything imports
Lightning (~5 s of imports a tool such as ``amlit score lfw`` does not need; tests/test_cli_imports.py).
"""

from __future__ import annotations

import inspect
import itertools
import os
import signal
import sys
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI on import otherwise

from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from jsonargparse import CLI, ArgumentError

from amlit.compat import silence_framework_deprecations, silence_lightning_adverts, worker_error_message
from amlit.errors import ConfigError, UserInputError, cause_of

# The LightningCLI side, imported from amlit.lightning_cli on first use (``from amlit.cli import run_cli`` works).
_LIGHTNING_NAMES = (
    "AmlitCLI",
    "RUN_FOLDER_OUTPUTS",
    "check_devices_split_the_batch",
    "place_outputs",
    "run_cli",
    "run_folders",
    "with_safe_checkpoint_io",
)


def __getattr__(name: str):
    if name in _LIGHTNING_NAMES:
        from amlit import lightning_cli

        return getattr(lightning_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _data_tools() -> dict[str, Callable]:
    from amlit.data.align import align_tree
    from amlit.data.overlap import find_overlaps
    from amlit.data.packed import pack
    from amlit.data.recordio_source import rec_export, rec_info

    return {
        "align": align_tree,
        "overlaps": find_overlaps,
        "pack": pack,
        "rec-info": rec_info,
        "rec-export": rec_export,
    }


def _score_tools() -> dict[str, Callable]:
    from amlit.eval.score import score_blufr, score_lfw, score_megaface

    return {"lfw": score_lfw, "blufr": score_blufr, "megaface": score_megaface}


def _export_tools() -> dict[str, Callable]:
    from amlit.eval.score import export_megaface
    from amlit.inference.onnx_export import export_onnx

    return {"megaface": export_megaface, "onnx": export_onnx}


def _sweep_tool() -> Callable:
    from amlit.sweep import run_sweep

    return run_sweep


def _report_tool() -> Callable:
    from amlit.report import make_report

    return make_report


def _figure_tools() -> dict[str, Callable]:
    from amlit.figures.gradient import figure_gradient
    from amlit.figures.psi import figure_psi
    from amlit.figures.toy import figure_toy

    return {"psi": figure_psi, "gradient": figure_gradient, "toy": figure_toy}


def _convert_tools() -> dict[str, Callable]:
    from amlit.convert.caffe import convert_caffe

    return {"caffe": convert_caffe}


def _embed_tool() -> Callable:
    from amlit.inference.embed import embed

    return embed


def _verify_tool() -> Callable:
    from amlit.inference.verify import verify

    return verify


# Subcommand -> what builds its function (or group of functions); only the chosen one is imported.
TOOL_GROUPS: dict[str, Callable[[], Callable | dict[str, Callable]]] = {
    "data": _data_tools,
    "score": _score_tools,
    "export": _export_tools,
    "sweep": _sweep_tool,
    "report": _report_tool,
    "figure": _figure_tools,
    "convert": _convert_tools,
    "embed": _embed_tool,
    "verify": _verify_tool,
}


def tool_commands(groups: Sequence[str] | None = None) -> dict[str, Callable | dict[str, Callable]]:
    """Subcommand name -> typed function (or a group of them) of ``groups`` (all by default); these run without
    Lightning's trainer."""
    return {name: TOOL_GROUPS[name]() for name in (TOOL_GROUPS if groups is None else groups)}


# Lightning's own subcommands (LightningCLI describes them in terms of a Trainer, not of amlit's runs)
TRAINER_COMMANDS = {
    "fit": "Train a model from a config (configs/*.yaml); --ckpt_path last resumes the run.",
    "validate": "Score a checkpoint on the held-out training identities (the validation pairs of fit).",
    "test": "Run the config's test protocols (LFW, BLUFR, MegaFace, .bin sets) on a checkpoint.",
    "predict": "Write the embeddings of the config's test images from a checkpoint.",
}


def overview() -> str:
    """``amlit --help``: every command with the first sentence of its description (each has its own --help)."""
    lines = [
        "usage: amlit <command> [<subcommand>] [options]   (`amlit <command> --help` lists its options)",
        "",
        "Train and evaluate face-verification models with the AM-Softmax loss (Wang et al. 2018, CosFace).",
        "",
        "training and evaluation runs (LightningCLI: --config configs/<name>.yaml, dotted overrides):",
        *(f"  {name:<18}{summary}" for name, summary in TRAINER_COMMANDS.items()),
        "",
        "tools (no trainer):",
    ]
    for name, tool in tool_commands().items():
        for sub, function in tool.items() if isinstance(tool, dict) else [("", tool)]:
            first = (inspect.getdoc(function) or "").split("\n\n")[0].replace("\n", " ").replace("``", "")
            lines.append(f"  {f'{name} {sub}'.strip():<18}{first}")
    return "\n".join(lines)


def run_tool(args: list[str]) -> object:
    """Run a tool command, e.g. ``["data", "overlaps", ...]``; returns what the function returns."""
    return CLI(tool_commands(args[:1]), args=args, prog="amlit", as_positional=False)


def find_user_error(error: BaseException | None) -> UserInputError | None:
    """The ``UserInputError`` behind ``error``, if any (jsonargparse wraps errors raised while instantiating)."""
    return cause_of(error, UserInputError)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """One line per warning, without the source line Python prints under it by default."""
    return f"amlit: warning: {message}\n" if category is UserWarning else f"{category.__name__}: {message}\n"


def configure_console() -> None:
    """How the command line talks: warnings as one line each, no framework adverts or framework-internal deprecation
    notices, and Lightning's progress bars refresh every 100 batches when the output is a log file rather than a
    terminal (each refresh is a new line there; amlit's own bars: ``amlit.progress``)."""
    warnings.formatwarning = _format_warning
    silence_lightning_adverts()
    silence_framework_deprecations()
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MINITERS", "100")  # read by Lightning's TQDMProgressBar when it is created


def check_config_files(args: list[str]) -> None:
    """Parse every ``--config``/``-c`` YAML file of ``args`` once up front, so that a syntax error names its file
    and line (jsonargparse reports it without the file name)."""
    paths = [value for flag, value in itertools.pairwise(args) if flag in ("--config", "-c")]
    paths += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    for path in map(Path, paths):
        if not path.is_file():
            continue  # jsonargparse says so itself
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f" line {where.line + 1}, column {where.column + 1}:" if where is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"{path}:{line} YAML syntax error: {problem}") from None


def main() -> None:
    """Entry point of the ``amlit`` console script: user errors (also those raised in DataLoader workers) print one
    message and exit with status 2; a run stopped by SIGTERM (after its checkpoint) exits with 143, the shell's code
    for it, so schedulers see it; Ctrl-C prints one line (with what the command kept for a rerun) and exits with
    130, the shell's code for SIGINT."""
    args = sys.argv[1:]
    configure_console()
    if not args or args[0] in ("-h", "--help"):
        print(overview(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    try:
        if args and args[0] in TOOL_GROUPS:
            run_tool(args)
        else:
            check_config_files(args)
            _run_lightning_cli()
    except KeyboardInterrupt as interrupt:  # Ctrl-C: one line, with what the command kept (its note), no traceback
        kept = "; ".join(getattr(interrupt, "__notes__", []))
        print(f"amlit: interrupted{': ' + kept if kept else ''}", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except ArgumentError as error:  # a config key, type or value jsonargparse refused
        command = " ".join(["amlit", *args[:1]])
        print(f"amlit: error: {error}\n(`{command} --help` lists the options)", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"amlit: error: {worker_error_message(user_error)}", file=sys.stderr)
        sys.exit(2)


def _run_lightning_cli() -> None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from amlit.lightning_cli import run_cli

    try:
        run_cli()  # LightningCLI reads sys.argv itself (and warns when given both)
    except SIGTERMException:
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    main()
