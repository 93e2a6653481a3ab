"""Five-point landmark files: the formats public face-alignment pipelines ship their landmarks in.

Points are (x, y) in **0-based pixel coordinates of the original image**, in the order left eye, right eye, nose tip,
left mouth corner, right mouth corner (image left/right).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from amlit.errors import BadDataError, ConfigError, MissingDataError
from amlit.listfiles import read_utf8_lines

LandmarkFormat = Literal["auto", "lfw", "casia", "lst"]
# Fields per line of each format; ``lst`` lines with 3 (no bbox) or 7 (bbox only) fields carry no landmarks.
_FIELD_COUNTS = {"lfw": (11,), "casia": (12,), "lst": (3, 7, 17)}
_FORMAT_HELP = (
    "lfw: 'path x1 y1 ... x5 y5' (clcarwin lfw_landmark.txt); casia: 'path<TAB>classid<TAB>x1<TAB>y1 ... y5' "
    "(clcarwin casia_landmark.txt); lst: 'aligned<TAB>path<TAB>label<TAB>bx1 by1 bx2 by2<TAB>x1..x5<TAB>y1..y5' "
    "(insightface .lst)"
)


def _split(line: str) -> list[str]:
    # The formats are TAB separated; plain spaces are accepted where no TAB occurs (paths have no spaces then).
    return line.split("\t") if "\t" in line else line.split()


def _detect_format(path: Path, number: int, fields: list[str]) -> str:
    for name, counts in _FIELD_COUNTS.items():
        if len(fields) in counts and (name != "lst" or fields[0] in ("0", "1")):
            return name
    raise BadDataError(
        f"{path}:{number}: cannot tell the landmark format from a line with {len(fields)} fields; "
        f"expected one of: {_FORMAT_HELP}; or pass landmark_format"
    )


def _parse_line(fields: list[str], fmt: str) -> tuple[str, list[str] | None, str]:
    """(image path, 10 coordinate strings in x1 y1 ... x5 y5 order or None, what the coordinates should be)."""
    if fmt == "lfw":
        return fields[0], fields[1:11], "10 numbers x1 y1 ... x5 y5"
    if fmt == "casia":
        return fields[0], fields[2:12], "an integer class id then 10 numbers x1 y1 ... x5 y5"
    # insightface .lst: aligned, path, label, [4 bbox ints, [5 x's, 5 y's]]
    if len(fields) < 17:
        return fields[1], None, ""
    interleaved = [fields[7 + k // 2] if k % 2 == 0 else fields[12 + k // 2] for k in range(10)]  # x1 y1 ... x5 y5
    return fields[1], interleaved, "4 bbox numbers, then 5 x's and 5 y's"


def read_landmarks(path: str | Path, landmark_format: LandmarkFormat = "auto") -> pd.DataFrame:
    """Read a five-point landmark file into a table with columns ``path`` (str, as written in the file) and
    ``landmarks`` ((5, 2) float64 array of x, y per point in the order left eye, right eye, nose, left and right
    mouth corner).

    Formats: ``lfw`` = ``path x1 y1 ... x5 y5`` (clcarwin ``lfw_landmark.txt``), ``casia`` =
    ``path<TAB>classid<TAB>x1<TAB>y1 ... y5`` (clcarwin ``casia_landmark.txt``), ``lst`` = insightface
    ``aligned<TAB>path<TAB>label[<TAB>bbox x4[<TAB>5 x's<TAB>5 y's]]`` (lines without landmarks are left out).
    ``auto`` picks the format from the field count of the first line. Blank lines are ignored; any other line
    that does not fit raises ``BadDataError`` naming ``file:line``, as does an image listed twice.
    """
    path = Path(path)
    if landmark_format != "auto" and landmark_format not in _FIELD_COUNTS:
        raise ConfigError(f"unknown landmark format {landmark_format!r}: choose auto, {', '.join(_FIELD_COUNTS)}")
    if not path.is_file():
        raise MissingDataError(
            f"landmark file {path} does not exist: expected a text file, one image per line ({_FORMAT_HELP})"
        )
    fmt = None if landmark_format == "auto" else landmark_format
    paths: list[str] = []
    coordinates: list[list[float]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(read_utf8_lines(path), start=1):
        fields = _split(line.rstrip("\r\n"))
        if not fields or fields == [""]:
            continue
        fmt = fmt or _detect_format(path, number, fields)
        if len(fields) not in _FIELD_COUNTS[fmt]:
            expected = " or ".join(str(n) for n in _FIELD_COUNTS[fmt])
            raise BadDataError(
                f"{path}:{number}: expected {expected} fields for the {fmt!r} landmark format, got {len(fields)}: "
                f"{line.strip()[:120]!r}"
            )
        image, values, what = _parse_line(fields, fmt)
        if values is None:
            continue
        try:
            if fmt == "casia":
                int(fields[1])
            if fmt == "lst":
                [float(v) for v in fields[3:7]]
            numbers = [float(v) for v in values]
        except ValueError:
            raise BadDataError(f"{path}:{number}: expected {what} after the path, got {line.strip()[:120]!r}") from None
        if not np.all(np.isfinite(numbers)):
            raise BadDataError(f"{path}:{number}: landmark coordinates must be finite, got {line.strip()[:120]!r}")
        if image in first_line:
            raise BadDataError(f"{path}:{number}: {image} already has landmarks on line {first_line[image]}")
        first_line[image] = number
        paths.append(image)
        coordinates.append(numbers)
    points = np.asarray(coordinates, dtype=np.float64).reshape(-1, 5, 2)  # (N, 5, 2)
    return pd.DataFrame({"path": paths, "landmarks": list(points)})
