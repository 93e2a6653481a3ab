"""Identity-overlap removal between a training set and the test sets (pure functions on pandas tables).

AM-Softmax (Wang et al. 2018, Sec. 4.2) removes the 59 CASIA-WebFace identities that also appear in LFW (17) or
MegaFace set 1 / FaceScrub (42), leaving 10,516 classes; SphereFace removes 3 (10,572). The lists are files the
user passes: one 7-digit CASIA id per line, ``#`` starts a comment.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from amlit.errors import BadDataError
from amlit.listfiles import PathOrPaths, as_paths, read_entries

_ID_PATTERN = re.compile(r"^\d{7}$")


def read_id_list(path: str | Path) -> list[str]:
    """Read an exclusion list: one 7-digit identity id per line; blank lines and ``#`` comments are ignored, an id
    listed twice is kept once with a warning naming the line."""
    path = Path(path)
    missing = (
        f"identity exclusion list {path} does not exist: expected a text file with one 7-digit CASIA id "
        "per line (e.g. casia_remove_59_ids.txt)"
    )
    first_line: dict[str, int] = {}
    for number, entry in read_entries(path, missing):
        if not _ID_PATTERN.match(entry):
            raise BadDataError(f"{path}:{number}: expected a 7-digit identity id such as 0000045, got {entry!r}")
        if entry in first_line:
            warnings.warn(f"{path}:{number}: {entry} is listed again (first on line {first_line[entry]})", stacklevel=2)
            continue
        first_line[entry] = number
    return list(first_line)


def remove_identities(table: pd.DataFrame, ids: Iterable[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Drop every image of the listed identities from an image table with an ``identity`` column.

    Returns ``(kept, removed, absent)``: the remaining rows, the listed ids that were present (sorted) and the
    listed ids that the table does not contain (sorted; a mismatch worth reporting, not an error).
    """
    wanted = set(ids)
    present = set(table["identity"].unique())
    removed = sorted(wanted & present)
    absent = sorted(wanted - present)
    kept = table[~table["identity"].isin(wanted)].reset_index(drop=True)
    return kept, removed, absent


def assign_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Add a contiguous ``label`` column 0..C-1 in sorted identity order (the order of a sorted folder listing)."""
    identities = sorted(table["identity"].unique())
    label_of = {identity: label for label, identity in enumerate(identities)}
    return table.assign(label=table["identity"].map(label_of).astype("int64"))


def read_id_name_list(path: str | Path) -> pd.DataFrame:
    """Read a CASIA id -> name list (``webface_id_name_list.txt``: ``<7-digit id> <Name_With_Underscores>``)."""
    path = Path(path)
    missing = f"identity name list {path} does not exist: expected lines '<7-digit id> <Name>'"
    rows = []
    for number, entry in read_entries(path, missing):
        fields = entry.split()
        if len(fields) != 2 or not _ID_PATTERN.match(fields[0]):
            raise BadDataError(f"{path}:{number}: expected '<7-digit id> <Name>', got {entry!r}")
        rows.append(fields)
    return pd.DataFrame(rows, columns=["identity", "name"])


def match_names(id_names: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """Candidate overlaps: identities whose name equals one of ``names`` ignoring case and ``_``/space.

    This finds exactly the 42 CASIA ids of the FaceScrub set-1 list; for LFW, the paper's 17 were picked by hand
    from fuzzier matches (only 6 LFW names match exactly), so print candidates and review them.
    Returns the matching rows of ``id_names`` (identity, name), sorted by identity.
    """

    def key(name: str) -> str:
        return name.replace("_", " ").strip().casefold()

    wanted = {key(n) for n in names}
    hits = id_names[id_names["name"].map(key).isin(wanted)]
    return hits.sort_values("identity").reset_index(drop=True)


def read_names(path: str | Path) -> list[str]:
    """Identity names from a list file, one per line: the first TAB-separated field when the line has a TAB
    (``lfw-names.txt``: ``<name>\\t<count>``; FaceScrub's actor lists: ``<name>\\t<id>\\t<url>``), else the whole
    line, since names may contain spaces (``Aaron Eckhart``); a trailing image count after a space is dropped
    (``lfw-names.txt`` with its TABs turned into spaces)."""
    path = Path(path)
    missing = f"name list {path} does not exist: expected one identity name per line (first field)"
    names = []
    for _, entry in read_entries(path, missing):
        if "\t" in entry:
            names.append(entry.split("\t", 1)[0].strip())
            continue
        words = entry.split()
        names.append(" ".join(words[:-1] if len(words) > 1 and words[-1].isdigit() else words))
    return names


def find_overlaps(id_names: Path, names: PathOrPaths, output: Path | None = None) -> pd.DataFrame:
    """Print candidate overlap identities: CASIA ids whose name is in one of the ``names`` lists.

    Args:
        id_names: CASIA id -> name list (``webface_id_name_list.txt``: ``<7-digit id> <Name>`` per line).
        names: name lists of the test sets (``lfw-names.txt``, the 80 FaceScrub set-1 names, ...): one path or a
            list.
        output: if given, write the union of candidate ids here as an exclusion list (review it first: name
            matching misses spelling variants, see ``match_names``).

    Returns:
        The candidates, one row per (identity, name, list file).
    """
    names = as_paths(names)
    table = read_id_name_list(id_names)
    found = []
    for names_file in names:
        listed = read_names(names_file)
        hits = match_names(table, listed).assign(source=str(names_file))
        print(f"{names_file}: {len(hits)} CASIA identities match by name")
        if listed and hits.empty:
            # Even LFW's 5,749 names give 6 exact matches: none at all means the lines were not read as names.
            warnings.warn(
                f"{names_file}: none of its {len(listed)} names matches a CASIA name (e.g. read {listed[0]!r}): "
                "expected one name per line, or the name as the first TAB-separated field; check the file's format",
                stacklevel=2,
            )
        for row in hits.itertuples():
            print(f"  {row.identity} {row.name}")
        found.append(hits)
    candidates = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["identity", "name", "source"])
    if output is not None:
        ids = sorted(set(candidates["identity"]))
        lines = [f"# candidate overlaps by exact name match of {id_names} against {', '.join(map(str, names))}"]
        Path(output).write_text("\n".join([*lines, *ids]) + "\n", encoding="utf-8")
        print(f"wrote {len(ids)} ids to {output}")
    return candidates
