"""Plain-text list files (identity ids, names, image lists): one entry per line, ``#`` starts a comment.

Neutral ground for ``amlit.data`` and ``amlit.eval``, which both read such lists (exclusion lists, FaceScrub names).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from amlit.errors import BadDataError, MissingDataError


def read_utf8_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark, as Windows editors write, is dropped).

    A file in another encoding is a ``BadDataError`` naming the file and the line of the first byte that is not
    UTF-8 (Python's own error, a traceback, named neither); UTF-16, which Windows Notepad saves as "Unicode", is
    recognized by its byte-order mark and named.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        found = "UTF-16 (Windows 'Unicode')" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "another encoding"
        raise BadDataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}; the file looks "
            f"like {found}): save it as UTF-8, e.g. iconv -f <its encoding> -t UTF-8"
        ) from None


def read_entries(path: str | Path, missing_message: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its ``#`` comment, stripped) for each non-blank line of a UTF-8 file
    (``read_utf8_lines``).

    Raises ``MissingDataError(missing_message)`` when ``path`` is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(missing_message)
    for number, line in enumerate(read_utf8_lines(path), start=1):
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
