"""MegaFace devkit files: feature files, JSON image lists, probe identities (data_facts §5).

Feature file (devkit ``scripts/matio.py``; insightface ``gen_megaface.py write_bin``): an OpenCV Mat in binary,
little-endian: int32 rows (= D), int32 cols (= 1), int32 stride (= 4 bytes), int32 type (= 5, CV_32F), then D
float32 -> 16 + 4 D bytes. The feature of list entry ``P`` lives at ``<root>/P<ending>`` (e.g.
``Adam_Brody/Adam_Brody_420.png_amlit.bin``). Lists are JSON objects with a ``"path"`` array
(``templatelists/facescrub_features_list.json``, ``megaface_features_list.json_<size>_<set>``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from amlit.data.overlap import _entries
from amlit.errors import BadDataError, MissingDataError

HEADER = struct.Struct("<4i")  # rows, cols, stride, type
CV_32F = 5
_IO_THREADS = 8  # reading a million small files is latency-bound, not CPU-bound


def read_feature_file(path: str | Path) -> np.ndarray:
    """One devkit feature file -> (D,) float32."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingDataError(
            f"feature file not found: {path}; expected <root>/<list path><ending> for every list entry "
            "(check --*_root and --ending)"
        ) from None
    if len(data) < HEADER.size:
        raise BadDataError(f"{path} has {len(data)} bytes; a devkit feature file starts with a 16-byte header")
    rows, cols, stride, kind = HEADER.unpack_from(data)
    if rows < 1 or cols != 1 or stride != 4 or kind != CV_32F:
        raise BadDataError(
            f"{path}: header (rows, cols, stride, type) = ({rows}, {cols}, {stride}, {kind}); expected (D, 1, 4, 5), "
            "a float32 column vector written by the MegaFace devkit's matio / insightface gen_megaface.py"
        )
    if len(data) != HEADER.size + 4 * rows:
        raise BadDataError(
            f"{path} has {len(data)} bytes; its header says {rows} float32 values, so expected {HEADER.size + 4 * rows}"
        )
    return np.frombuffer(data, dtype="<f4", offset=HEADER.size).astype(np.float32)


def write_feature_file(path: str | Path, feature: np.ndarray) -> None:
    """Write one (D,) feature as a devkit feature file (parent folders created)."""
    values = np.asarray(feature, dtype="<f4").reshape(-1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HEADER.pack(len(values), 1, 4, CV_32F) + values.tobytes())


def read_image_list(path: str | Path) -> list[str]:
    """The ``"path"`` array of a devkit JSON list."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"MegaFace list not found: {path}; expected a devkit templatelists/*.json* file with a 'path' array"
        )
    try:
        paths = json.loads(path.read_text())["path"]
    except (ValueError, KeyError, TypeError) as error:
        raise BadDataError(f"{path} is not a devkit list (JSON object with a 'path' array of image paths)") from error
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadDataError(f"{path}: 'path' must be an array of image path strings")
    return paths


def feature_path(root: str | Path, image: str, ending: str) -> Path:
    """``<root>/<image><ending>``, the devkit's naming (the ending is appended to the full image file name)."""
    return Path(root) / f"{image}{ending}"


def read_features(
    images: Sequence[str], root: str | Path, ending: str, progress: bool = True, description: str = "features"
) -> np.ndarray:
    """Features of ``images`` (list paths) from a devkit feature tree -> (N, D) float32, in list order."""
    paths = [feature_path(root, image, ending) for image in images]
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        reads = pool.map(read_feature_file, paths)
        features = list(tqdm(reads, total=len(paths), desc=description, disable=not progress))
    if not features:
        raise BadDataError(f"no features to read under {root}: the list is empty")
    dims = {len(f) for f in features}
    if len(dims) != 1:
        raise BadDataError(f"feature files under {root} have different dimensions {sorted(dims)}; expected one")
    return np.stack(features)


def write_features(
    images: Sequence[str], features: np.ndarray, root: str | Path, ending: str, progress: bool = True
) -> None:
    """Write a devkit feature tree: one file ``<root>/<image><ending>`` per row of ``features`` (N, D)."""
    if len(images) != len(features):
        raise BadDataError(f"got {len(images)} image names for {len(features)} features; expected one each")
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        paths = [feature_path(root, image, ending) for image in images]
        jobs = pool.map(write_feature_file, paths, features)
        for _ in tqdm(jobs, total=len(images), desc="writing feature files", disable=not progress):
            pass


def identity_of(image: str) -> str:
    """FaceScrub identity of a probe path ``<Name>/<Name>_<n>.png`` (folder; else the file name before ``_<n>``)."""
    parts = image.replace("\\", "/").split("/")
    if len(parts) > 1:
        return parts[-2]
    stem = parts[-1].rsplit("_", 1)
    if len(stem) != 2:
        raise BadDataError(f"cannot tell the identity of probe image {image!r}; expected <Name>/<Name>_<n>.png")
    return stem[0]


def identity_labels(images: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(labels (N,) int64, identity names) with label i = ``names[i]``; names sorted."""
    identities = [identity_of(image) for image in images]
    names = sorted(set(identities))
    index = {name: label for label, name in enumerate(names)}
    return np.array([index[identity] for identity in identities], dtype=np.int64), names


def read_identity_names(path: str | Path) -> list[str]:
    """One identity per line (``#`` comments allowed), e.g. ``facescrub_set1_names_80.txt``."""
    path = Path(path)
    missing = f"identity list not found: {path}; expected one FaceScrub name per line (facescrub_set1_names_80.txt)"
    return [entry for _, entry in _entries(path, missing)]
