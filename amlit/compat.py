"""What amlit relies on inside its frameworks (Lightning, PyTorch, wandb) beyond their public API, in one place.

Each entry is small and says what it depends on; tests/test_compat.py fails when the framework changes underneath.
Besides the functions below, private Lightning hooks are overridden where they live (their tests are in
tests/test_compat.py too): ``LightningCLI._parse_ckpt_path`` (``amlit.cli.AmlitCLI``: checkpoints checked before
LightningCLI reads them), ``LightningCLI._prepare_subcommand_parser`` (``verbose`` defaults to false for
validate/test), and Lightning's SLURM SIGUSR1 handler, taken with ``signal.getsignal`` and run between steps
(``amlit.preemption``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

# Lightning prints advertisements for its cloud products ("💡 Tip: ... try installing [litlogger] ...") through its
# rank-zero logger while setting up loggers and checkpoints; they are not about the user's run.
LIGHTNING_RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"
_ADVERT_PREFIX = "💡 Tip:"


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_ADVERT_PREFIX)


def silence_lightning_adverts() -> None:
    """Drop Lightning's product tips from its rank-zero log (idempotent)."""
    logger = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)
    if not any(isinstance(f, _DropAdverts) for f in logger.filters):
        logger.addFilter(_DropAdverts())


# Lightning 2.6 calls torch.utils._pytree's LeafSpec in a way torch 2.13 deprecates: a FutureWarning on every run
# that no amlit user can act on.
_FRAMEWORK_DEPRECATIONS = (r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",)


def silence_framework_deprecations() -> None:
    """Hide deprecation notices raised inside the frameworks about their own calls (not about amlit's)."""
    for pattern in _FRAMEWORK_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)


# ---- Lightning ---------------------------------------------------------------------------------------------------
def rank_zero_warn(message: str) -> None:
    """Lightning's ``rank_zero_warn`` (a warning on global rank 0 only) without importing Lightning, for code that
    also runs in tool commands (``amlit data pack`` lists a tree with ``ImageFolder``). It is lightning_utilities'
    function, which Lightning re-exports; where Lightning has not set the process rank yet, it is set as Lightning
    sets it on import (the rank from the environment, else 0), and the Trainer sets the real one later."""
    import os

    from lightning_utilities.core import rank_zero

    if getattr(rank_zero.rank_zero_only, "rank", None) is None:
        rank = next((os.environ[key] for key in _RANK_VARIABLES if key in os.environ), "0")
        rank_zero.rank_zero_only.rank = int(rank)
    rank_zero.rank_zero_warn(message, stacklevel=5)


# lightning.fabric.utilities.rank_zero._get_rank: SLURM_PROCID can be set without SLURM running the processes,
# so LOCAL_RANK is read before it.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_logging_step(trainer) -> bool:
    """Whether Lightning sends this training step's metrics to the loggers (every ``log_every_n_steps``): its logger
    connector's ``should_update_logs``. True when that cannot be read (log more rather than less)."""
    try:
        return bool(trainer._logger_connector.should_update_logs)
    except (AttributeError, RuntimeError, NotImplementedError):
        return True


def save_last_checkpoint(saver, trainer) -> None:
    """Have ``ModelCheckpoint`` write its ``last.ckpt`` now, with its own file name and bookkeeping (Lightning has
    no public call for it; ``ModelCheckpoint._save_last_checkpoint``)."""
    saver._save_last_checkpoint(trainer, saver._monitor_candidates(trainer))


def stop_at_end_of_step(trainer) -> None:
    """Have Lightning stop ``fit`` with its ``SIGTERMException`` at the end of the current training batch, as its
    own SIGTERM handler does (that handler only sets ``_SignalConnector.received_sigterm``, read by the training
    loop after each batch, plus a broadcast under DDP that ``amlit.callbacks.CheckpointOnSigterm`` avoids)."""
    trainer._signal_connector.received_sigterm = True


def saved_run_config(trainer) -> dict | None:
    """The resolved run config, as LightningCLI's ``SaveConfigCallback`` holds it (None outside the CLI)."""
    import yaml
    from lightning.pytorch.cli import SaveConfigCallback

    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback):
            return yaml.safe_load(callback.parser.dump(callback.config, skip_none=False, skip_check=True))
    return None


# ---- jsonargparse ------------------------------------------------------------------------------------------------
def forget_init_args_on_class_change(applies_to: Callable[[str], bool]) -> None:
    """When a subclass argument gets another ``class_path`` (``--model.head=amlit.heads.ArcFace``, or a later
    ``--config`` naming another head), jsonargparse keeps the old class's ``init_args`` that the new class also
    accepts: AM-Softmax's cosine margin 0.35 and scale 30 became ArcFace's angular margin (radians) and scale instead
    of its 0.5 and 64. For the classes ``applies_to`` accepts (by import path), every old setting is dropped: the new
    class gets its own defaults and what is given for it. Wraps ``jsonargparse._typehints.
    discard_init_args_on_class_path_change`` (the function that drops the settings the new class does not accept;
    idempotent)."""
    from jsonargparse import _typehints

    original = getattr(_typehints, "discard_init_args_on_class_path_change", None)
    if original is None or getattr(original, "amlit_wrapped", False):
        return  # another jsonargparse than constraints.txt pins: the CLI still runs (tests/test_cli.py says so)

    def discard(parser_or_action, prev_val, value):
        original(parser_or_action, prev_val, value)
        if not prev_val or "init_args" not in prev_val or prev_val["class_path"] == value["class_path"]:
            return
        if applies_to(value["class_path"]):
            init_args = prev_val["init_args"]
            for key in list(init_args.keys() if isinstance(init_args, dict) else vars(init_args)):
                init_args.pop(key)

    discard.amlit_wrapped = True
    _typehints.discard_init_args_on_class_path_change = discard


# ---- wandb -----------------------------------------------------------------------------------------------------
def wandb_settings():
    """wandb's resolved settings (server URL, API key from the environment or settings files), or None when the
    internal it lives in has moved (``wandb.sdk.wandb_setup.singleton().settings``)."""
    try:
        from wandb.sdk import wandb_setup

        return wandb_setup.singleton().settings
    except Exception:
        return None


def wandb_netrc_has_key(host: str) -> bool:
    """Whether a netrc entry holds a key for ``host``, looked up as ``wandb.init`` does
    (``wandb.sdk.lib.wbauth.read_netrc_auth``); False when unreadable or moved."""
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth

        return read_netrc_auth(host=host) is not None
    except Exception:
        return False


# ---- PyTorch -----------------------------------------------------------------------------------------------------
def assert_on_device(condition, message: str) -> None:
    """Fail with ``message`` when the 0-d bool tensor ``condition`` is false, checked by the device itself, without a
    host synchronization (``torch._assert_async``; there is no public equivalent)."""
    import torch

    torch._assert_async(condition, message)


def worker_error_message(error: BaseException) -> str:
    """The original message of an exception re-raised from a DataLoader worker.

    PyTorch re-raises a worker's exception in the main process as ``type(error)(text)`` where ``text`` is
    ``"Caught <Type> in DataLoader worker process N.\\nOriginal Traceback ...\\n<module>.<Type>: <message>"``
    (``torch.utils.data._utils.ExceptionWrapper.reraise``); this returns ``<message>``, or ``str(error)`` for any
    other exception.
    """
    text = str(error)
    if not text.startswith("Caught ") or "\nOriginal Traceback" not in text:
        return text
    marker = f"{type(error).__module__}.{type(error).__qualname__}: "
    position = text.rfind(marker)
    return text[position + len(marker) :].rstrip("\n") if position >= 0 else text
