"""``amlit`` command line: LightningCLI subcommands fit / validate / test / predict, plus tool commands.

The typed ``__init__`` signatures of the model and data classes are the configuration schema; ``num_classes`` is
linked from the data module (computed after overlap removal) to the model.

Tool commands (``amlit data ...``, ...) are plain typed functions that live beside what they work on; jsonargparse
builds their parsers from the signatures and docstrings, so registering one is one line in ``tool_commands``.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI on import otherwise

from collections.abc import Callable

from jsonargparse import CLI
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from amlit.compat import silence_framework_deprecations, silence_lightning_adverts, worker_error_message
from amlit.errors import UserInputError
from amlit.loggers import SaveConfigToLoggers
from amlit.module import FaceVerificationModule

# Flipping and normalizing on the device is deliberate (batches stay uint8 until they are on the device:
# a quarter of the host-to-device traffic and no float work in the loader workers).
warnings.filterwarnings("ignore", message="You have overridden `on_after_batch_transfer`")


class AmlitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        # One setting for the crop size: the backbone is built for the data's (H, W).
        parser.link_arguments("data.init_args.image_size", "model.backbone.init_args.input_size", apply_on="parse")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in ("validate", "test"):
            # Lightning prints every epoch-level metric once per dataloader (LFW, BLUFR, MegaFace: three copies);
            # amlit.callbacks.ResultsWriter prints one table instead. `--verbose=true` brings Lightning's back.
            parser.set_defaults(verbose=False)
        return parser


def run_cli(args: list[str] | None = None) -> AmlitCLI:
    """Build and run the CLI; ``args`` replaces ``sys.argv[1:]`` (in-process use, e.g. tests)."""
    return AmlitCLI(
        FaceVerificationModule,
        subclass_mode_data=True,
        save_config_callback=SaveConfigToLoggers,  # config.yaml + config and data manifest to the loggers
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # the module owns the paper's SGD + step schedule
        args=args,
    )


def tool_commands() -> dict[str, Callable | dict[str, Callable]]:
    """Subcommand name -> typed function (or a group of them); these run without Lightning's trainer."""
    from amlit.convert.caffe import convert_caffe
    from amlit.data.align import align_tree
    from amlit.data.overlap import find_overlaps
    from amlit.data.packed import pack
    from amlit.data.recordio_source import rec_export, rec_info
    from amlit.eval.score import export_megaface, score_blufr, score_lfw, score_megaface
    from amlit.figures.gradient import figure_gradient
    from amlit.figures.psi import figure_psi
    from amlit.figures.toy import figure_toy
    from amlit.report import make_report
    from amlit.sweep import run_sweep

    return {
        "data": {
            "align": align_tree,
            "overlaps": find_overlaps,
            "pack": pack,
            "rec-info": rec_info,
            "rec-export": rec_export,
        },
        "score": {
            "lfw": score_lfw,
            "blufr": score_blufr,
            "megaface": score_megaface,
        },
        "export": {
            "megaface": export_megaface,
        },
        "sweep": run_sweep,
        "report": make_report,
        "figure": {
            "psi": figure_psi,
            "gradient": figure_gradient,
            "toy": figure_toy,
        },
        "convert": {
            "caffe": convert_caffe,
        },
    }


def run_tool(args: list[str]) -> object:
    """Run a tool command, e.g. ``["data", "overlaps", ...]``; returns what the function returns."""
    return CLI(tool_commands(), args=args, prog="amlit", as_positional=False)


def find_user_error(error: BaseException | None) -> UserInputError | None:
    """The ``UserInputError`` behind ``error``, if any (jsonargparse wraps errors raised while instantiating)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


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


def main() -> None:
    """Entry point of the ``amlit`` console script: user errors (also those raised in DataLoader workers) print one
    message and exit with status 2; a run stopped by SIGTERM (after its checkpoint) exits with 143, the shell's code
    for it, so schedulers see it."""
    args = sys.argv[1:]
    configure_console()
    try:
        if args and args[0] in tool_commands():
            run_tool(args)
        else:
            run_cli()  # LightningCLI reads sys.argv itself (and warns when given both)
    except SIGTERMException:
        sys.exit(128 + signal.SIGTERM)
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"amlit: error: {worker_error_message(user_error)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
