"""``amlit`` command line: LightningCLI subcommands fit / validate / test / predict, plus tool commands.

The typed ``__init__`` signatures of the model and data classes are the configuration schema; ``num_classes`` is
linked from the data module (computed after overlap removal) to the model.

Tool commands (``amlit data ...``, ...) are plain typed functions that live beside what they work on; jsonargparse
builds their parsers from the signatures and docstrings, so registering one is one line in ``tool_commands``.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI on import otherwise

from collections.abc import Callable
from pathlib import Path

import yaml
from jsonargparse import CLI, ArgumentError
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from amlit.checkpoint_io import SafeCheckpointIO, load_verified
from amlit.compat import silence_framework_deprecations, silence_lightning_adverts, worker_error_message
from amlit.data.sampling import check_global_batch
from amlit.errors import ConfigError, UserInputError
from amlit.loggers import SaveConfigToLoggers
from amlit.module import FaceVerificationModule
from amlit.resume import resolve_ckpt_path
from amlit.run_lock import RunLock

# Flipping and normalizing on the device is deliberate (batches stay uint8 until they are on the device:
# a quarter of the host-to-device traffic and no float work in the loader workers).
warnings.filterwarnings("ignore", message="You have overridden `on_after_batch_transfer`")


class AmlitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        # One setting for the crop size: the backbone is built for the data's (H, W).
        parser.link_arguments("data.init_args.image_size", "model.backbone.init_args.input_size", apply_on="parse")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs) -> LightningArgumentParser:
        """Private LightningCLI hook (tests/test_compat.py): the only place where a subcommand method's argument
        (``verbose``, added after ``add_arguments_to_parser`` runs) can get another default."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in ("validate", "test"):
            # Lightning prints every epoch-level metric once per dataloader (LFW, BLUFR, MegaFace: three copies);
            # amlit.callbacks.ResultsWriter prints one table instead. `--verbose=true` brings Lightning's back.
            parser.set_defaults(verbose=False)
        return parser

    def _parse_ckpt_path(self) -> None:
        """LightningCLI (2.6) reads a ``ckpt_path`` file with a bare ``torch.load`` (a damaged or code-carrying file
        gives a traceback, or torch's advice to pass weights_only=False) and replaces the model settings of the
        config by the checkpoint's, silently dropping e.g. ``--model.learning_rate`` on resume. Here the file is
        checked first (``load_verified``: one message, exit 2); ``fit`` keeps the user's settings, which the module
        applies to the restored optimizer (``FaceVerificationModule.on_train_start``); ``validate``/``test``/
        ``predict`` still take the checkpoint's (it must match the weights). ``--ckpt_path last`` is resolved and
        checked in ``before_fit``. (Overrides a private LightningCLI hook: tests/test_faults.py notices a change.)"""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            load_verified(ckpt_path)
            if subcommand == "fit":
                return
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        place_outputs(self.config[self.subcommand] if self.subcommand else self.config)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The configured trainer, writing and reading checkpoints with ``SafeCheckpointIO`` unless
        ``trainer.plugins`` names another ``CheckpointIO``."""
        plugins = (self.config_init[self.subcommand].get("trainer") or {}).get("plugins")
        return super().instantiate_trainer(plugins=with_safe_checkpoint_io(plugins), **kwargs)

    def before_fit(self) -> None:
        """Checks that need the built trainer but must run before Lightning starts any other process."""
        check_devices_split_the_batch(self.trainer, self.datamodule)
        self._resolve_ckpt_path()
        if self.trainer.global_rank == 0:  # one lock per run, taken before the DDP ranks start
            self.trainer.callbacks.append(RunLock.acquire(run_folders(self.trainer)))

    def _resolve_ckpt_path(self) -> None:
        config = self.config_init[self.subcommand]
        config["ckpt_path"] = resolve_ckpt_path(self.trainer, config.get("ckpt_path"), self.subcommand == "fit")

    before_validate = before_test = before_predict = _resolve_ckpt_path


# Output settings that, left unset, are placed in the run folder (trainer.default_root_dir): a config names its run
# folder once, and a sweep trial, a second experiment or a test run elsewhere is one --trainer.default_root_dir away.
# Keyed by the init argument's name in the loggers and callbacks (CSV/wandb loggers, ModelCheckpoint,
# amlit.callbacks.EmbeddingWriter and ResultsWriter).
RUN_FOLDER_OUTPUTS = {"save_dir": "", "dirpath": "checkpoints", "output": "embeddings.npz", "output_dir": "results"}


def place_outputs(config) -> None:
    """Fill the unset output settings of the loggers and callbacks of a parsed run ``config`` (a jsonargparse
    Namespace with ``trainer``) with their place in ``trainer.default_root_dir`` (``RUN_FOLDER_OUTPUTS``)."""
    trainer = config.get("trainer")
    if trainer is None:
        return
    root = Path(trainer.get("default_root_dir") or ".")
    loggers = trainer.get("logger")
    components = [*(loggers if isinstance(loggers, list) else [loggers]), *(trainer.get("callbacks") or [])]
    for component in components:
        init_args = component.get("init_args") if hasattr(component, "get") else None
        if init_args is None:
            continue
        for key, place in RUN_FOLDER_OUTPUTS.items():
            if key in init_args and init_args[key] is None:
                init_args[key] = str(root / place) if place else str(root)


def with_safe_checkpoint_io(plugins) -> list:
    """``trainer.plugins`` plus ``SafeCheckpointIO``, unless a ``CheckpointIO`` is among them already."""
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list | tuple) else [plugins]
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(SafeCheckpointIO())
    return plugins


def check_devices_split_the_batch(trainer: Trainer, datamodule) -> None:
    """The global ``data.batch_size`` must split evenly over all processes; found here, it is reported once."""
    batch_size = getattr(datamodule, "batch_size", None)
    if isinstance(batch_size, int):
        check_global_batch(batch_size, trainer.num_devices * trainer.num_nodes)


def run_folders(trainer: Trainer) -> list[Path]:
    """The folders a ``fit`` writes into: ``default_root_dir``, each checkpoint folder and each logger's folder."""
    folders = [trainer.default_root_dir]
    folders += [c.dirpath for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
    folders += [logger.save_dir for logger in trainer.loggers if logger.save_dir]
    return [Path(folder) for folder in folders]


def run_cli(args: list[str] | None = None) -> AmlitCLI:
    """Build and run the CLI; ``args`` replaces ``sys.argv[1:]`` (in-process use, e.g. tests)."""
    return AmlitCLI(
        FaceVerificationModule,
        subclass_mode_data=True,
        save_config_callback=SaveConfigToLoggers,  # config.yaml + config and data manifest to the loggers
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # the module owns the paper's SGD + step schedule
        parser_kwargs={"exit_on_error": False},  # main() prints the error alone, not ~55 lines of usage before it
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
    from amlit.inference.embed import embed
    from amlit.inference.onnx_export import export_onnx
    from amlit.inference.verify import verify
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
            "onnx": export_onnx,
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
        "embed": embed,
        "verify": verify,
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
    for it, so schedulers see it."""
    args = sys.argv[1:]
    configure_console()
    try:
        if args and args[0] in tool_commands():
            run_tool(args)
        else:
            check_config_files(args)
            run_cli()  # LightningCLI reads sys.argv itself (and warns when given both)
    except SIGTERMException:
        sys.exit(128 + signal.SIGTERM)
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


if __name__ == "__main__":
    main()
