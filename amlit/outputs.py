"""Where a command will write, checked before it does any work: an output path under a file, in a folder that
cannot be created or written (``/proc``, a read-only mount), or naming a folder where a file is wanted is one
``StorageError`` naming the option (the CLI prints it as one line, exit status 2) instead of a traceback after
minutes of scoring or embedding. Nothing is created: the test writes and removes one hidden file in the nearest
folder that exists.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from amlit.errors import StorageError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``.`` for a relative path whose first part is missing)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:  # e.g. no permission to look inside a parent: the write test below says so
            return candidate
    return Path(".")


def check_output(path: str | Path, option: str, folder: bool = False) -> Path:
    """Check that ``path`` can be written: a file (``folder=False``; its folder is created later by the command) or
    a folder (created later, if missing). Raises ``StorageError`` naming ``option`` (e.g. ``--output``) and what is
    in the way; returns ``path`` as a ``Path``."""
    path = Path(path)
    problem = f"cannot write {option}={path}"
    if not folder and path.is_dir():
        raise StorageError(f"{problem}: it is a folder; give a file name")
    existing = _nearest_existing(path if folder else path.parent)
    if not existing.is_dir():
        what = "it" if existing == path else str(existing)
        raise StorageError(f"{problem}: {what} is a file, not a folder; choose another path")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".amlit-write-test-"):
            pass
    except OSError as error:
        raise StorageError(
            f"{problem}: the folder {existing} cannot be written ({error.strerror}); choose another path"
        ) from None
    return path
