"""The training side of the ``amlit`` command line: LightningCLI subcommands fit / validate / test / predict.

The typed ``__init__`` signatures of the model and data classes are the configuration schema; ``num_classes`` is
linked from the data module (computed after overlap removal) to the model. ``amlit.cli.main`` imports this module
only for these subcommands, so the tool commands (``amlit data ...``, ``amlit score ...``) start without Lightning.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from amlit.checkpoint_io import SafeCheckpointIO, load_verified
from amlit.compat import forget_init_args_on_class_change
from amlit.data.sampling import check_global_batch
from amlit.errors import ConfigError, UserInputError
from amlit.heads import MarginHead
from amlit.launcher import check_launch_matches, check_master_port_free
from amlit.loggers import SaveConfigToLoggers
from amlit.module import FaceVerificationModule
from amlit.outputs import check_output
from amlit.resume import resolve_ckpt_path
from amlit.run_lock import RunLock

# Flipping and normalizing on the device is deliberate (batches stay uint8 until they are on the device:
# a quarter of the host-to-device traffic and no float work in the loader workers).
warnings.filterwarnings("ignore", message="You have overridden `on_after_batch_transfer`")


def _is_head(class_path: str) -> bool:
    """Whether ``class_path`` names a margin head: their settings of the same name mean different things (a cosine
    margin, an angle in radians, an integer), so none is carried over from one head class to another."""
    module, _, name = class_path.rpartition(".")
    try:
        return issubclass(getattr(importlib.import_module(module), name), MarginHead)
    except (ImportError, AttributeError, TypeError, ValueError):
        return False


forget_init_args_on_class_change(_is_head)


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
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = (config.get("trainer") or {}).get("default_root_dir")
        if root is not None:  # before the data is indexed and the model built, not at the first checkpoint
            check_output(root, "--trainer.default_root_dir", folder=True)
        place_outputs(config)
        trainer = config.get("trainer") or {}
        # srun/torchrun ranks that the trainer does not expect: stop every rank before the data is indexed.
        check_launch_matches(trainer.get("devices", "auto"), trainer.get("num_nodes", 1))

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The configured trainer, writing and reading checkpoints with ``SafeCheckpointIO`` unless
        ``trainer.plugins`` names another ``CheckpointIO``."""
        plugins = (self.config_init[self.subcommand].get("trainer") or {}).get("plugins")
        try:
            trainer = super().instantiate_trainer(plugins=with_safe_checkpoint_io(plugins), **kwargs)
        except UserInputError:
            raise
        except (MisconfigurationException, TypeError, ValueError) as error:  # e.g. accelerator=gpu on a CPU machine
            config = self.config[self.subcommand].get("trainer") or {}
            asked = ", ".join(f"trainer.{key}={config.get(key)}" for key in ("accelerator", "devices", "strategy"))
            raise ConfigError(
                f"the trainer cannot run as configured here ({asked}): {' '.join(str(error).split()).rstrip('.')}. Set "
                "them to what this machine has (trainer.accelerator=auto and trainer.devices=1 run anywhere)"
            ) from None
        check_launch_matches(trainer.num_devices, trainer.num_nodes)  # trainer.devices=auto resolved
        check_master_port_free(trainer)  # before Lightning starts the other processes
        if not trainer.loggers:  # --trainer.logger=false on a config with a LearningRateMonitor, which would refuse
            monitors = [c for c in trainer.callbacks if isinstance(c, LearningRateMonitor)]
            if monitors:
                trainer.callbacks = [c for c in trainer.callbacks if c not in monitors]
                rank_zero_info("trainer.logger=false: the LearningRateMonitor, with nothing to log to, is left out")
        return trainer

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
