"""Where a command will write, checked before it does any work: an output path under a file, in a folder that
cannot be created or written (``/proc``, a read-only mount), or naming a folder where a file is wanted is one
``StorageError`` naming the option (the CLI prints it as one line, exit status 2) instead of a traceback after
minutes of scoring or embedding. Nothing is created: the test writes and removes one hidden file in the nearest
folder that exists.
"""

from __future__ import annotations

import ntpath
import posixpath
import tempfile
from collections.abc import Iterable
from pathlib import Path

from amlit.errors import BadDataError, StorageError, listed


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``.`` for a relative path whose first part is missing)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:  # e.g. no permission to look inside a parent: the write test below says so
            return candidate
    return Path(".")


def check_output(
    path: str | Path, option: str, folder: bool = False, inputs: dict[str, str | Path | None] | None = None
) -> Path:
    """Check that ``path`` can be written: a file (``folder=False``; its folder is created later by the command) or
    a folder (created later, if missing), and is none of the command's ``inputs`` ({option: path}, e.g.
    ``{"--embeddings": ...}``), which writing it would destroy. Raises ``StorageError`` naming ``option`` (e.g.
    ``--output``) and what is in the way; returns ``path`` as a ``Path``."""
    path = Path(path)
    problem = f"cannot write {option}={path}"
    try:
        if not folder and path.is_dir():
            raise StorageError(f"{problem}: it is a folder; give a file name")
        for name, source in (inputs or {}).items():
            if source is not None and path.is_file() and Path(source).is_file() and path.samefile(source):
                raise StorageError(f"{problem}: it is the {name} file, which it would overwrite; choose another path")
        existing = _nearest_existing(path if folder else path.parent)
        if not existing.is_dir():
            what = "it" if existing == path else str(existing)
            raise StorageError(f"{problem}: {what} is a file, not a folder; choose another path")
    except StorageError:  # an OSError too: not to be wrapped again below
        raise
    except OSError as error:  # looking at the path failed: no permission to search a parent, a name too long, ...
        raise StorageError(f"{problem}: {error.strerror or error}; choose another path") from None
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".amlit-write-test-"):
            pass
    except OSError as error:
        raise StorageError(
            f"{problem}: the folder {existing} cannot be written ({error.strerror}); choose another path"
        ) from None
    return path


def _leaves_root(name: str) -> bool:
    """Whether the relative path ``name`` (from a user's file) would not name something strictly inside a folder:
    absolute (``/x``, ``C:\\x``, ``\\\\server``), empty or the folder itself, or climbing out with ``..``."""
    posix = name.replace("\\", "/")
    if posixpath.isabs(posix) or ntpath.splitdrive(name)[0]:
        return True
    normal = posixpath.normpath(posix)
    return normal in (".", "..") or normal.startswith("../")


def check_names_inside(names: Iterable[str], root: str | Path, source: str | Path, what: str = "name") -> None:
    """Refuse, before anything is written, names read from ``source`` that would make ``<root>/<name>`` land
    outside ``root`` (absolute paths, ``..`` climbing out after normalization) or be ``root`` itself: one
    ``BadDataError`` naming the offending names."""
    bad = [name for name in dict.fromkeys(str(n) for n in names) if _leaves_root(name)]
    if bad:
        raise BadDataError(
            f"{source}: {len(bad)} {what}(s) would be written outside {root}: {listed(map(repr, bad))}; every {what} "
            f"must be a relative path that stays inside the output folder (no leading '/', no '..' climbing out); "
            "nothing was written"
        )
