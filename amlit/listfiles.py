"""Plain-text list files (identity ids, names, image lists): one entry per line, ``#`` starts a comment.

Neutral ground for ``amlit.data`` and ``amlit.eval``, which both read such lists (exclusion lists, FaceScrub names).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from amlit.errors import MissingDataError


def read_entries(path: str | Path, missing_message: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its ``#`` comment, stripped) for each non-blank line of a UTF-8 file
    (a byte-order mark, as Windows editors write, is dropped).

    Raises ``MissingDataError(missing_message)`` when ``path`` is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(missing_message)
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            yield number, entry


# A setting that takes files: one path, or a list of them. A single ``--data.exclude_id_lists=ids.txt`` on a list
# type alone is read by jsonargparse as a file of paths, one per line (the 59 ids became 59 missing "lists"). Plain
# str, not Path, in the union: with Path in it, jsonargparse writes a list into config.yaml as the string
# "[PosixPath(...)]" (and ``+=`` repeated the first item).
PathOrPaths = str | Sequence[str]


def as_paths(value: str | Path | Sequence[str | Path]) -> list[Path]:
    """``value`` as a list of paths: one path (``str`` or ``Path``) is a list of one, not a sequence of characters."""
    return [Path(value)] if isinstance(value, str | Path) else [Path(item) for item in value]
