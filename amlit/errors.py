"""Errors caused by the user's input (paths, files, settings), not by a bug.

``amlit`` prints these as one clear message (what, where, what to do) instead of a traceback.
They subclass the matching built-in exception, so callers can still catch ``FileNotFoundError``/``ValueError``.
"""


def cause_of(error: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` in the chain of ``error``: itself, then its ``__cause__`` (or ``__context__``), and so on;
    None when there is none. Frameworks wrap what amlit raises (jsonargparse while instantiating, torch's writer)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def listed(items, limit: int = 5) -> str:
    """``"a, b, c and 4 more"``: the first ``limit`` items of a list for a message, and how many are left out."""
    items = [str(item) for item in items]
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


class UserInputError(Exception):
    """Base class: the message alone tells the user what is wrong and what to do."""


class MissingDataError(UserInputError, FileNotFoundError):
    """A configured data path does not exist."""


class BadDataError(UserInputError, ValueError):
    """A data file or folder exists but does not have the expected form."""


class ConfigError(UserInputError, ValueError):
    """A setting is out of range or inconsistent with another."""


class StorageError(UserInputError, OSError):
    """Writing to a configured folder failed (disk full, quota, read-only); what was there before is kept."""
