"""What amlit relies on inside its frameworks (Lightning, PyTorch) beyond their public API, in one place.

Each entry is small and says what it depends on; tests/test_compat.py fails when the framework changes underneath.
"""

from __future__ import annotations

import logging
import warnings

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
