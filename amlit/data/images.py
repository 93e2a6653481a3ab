"""Image bytes, in one place: decoding to uint8 arrays, integrity checks, atomic writes and walking image trees.

Everything that turns a file (or an encoded buffer) into pixels, or pixels into a file, goes through here, so every
path of amlit (training trees, alignment, packing, RecordIO, verification ``.bin`` sets) accepts and refuses the
same inputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd

from amlit.errors import BadDataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
BadDataPolicy = Literal["skip", "fail"]  # what a data source does with a damaged image
STORED_SIZE = (112, 112)  # insightface crops (H, W)
CROP_X = 8  # 112x112 -> 112x96: the insightface template is SphereFace's + 8 px in x


def read_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Decode an aligned face crop to (H, W, 3) uint8 RGB; gray images become 3-channel.

    Raises ``ValueError`` naming the file when it cannot be decoded or is not ``size`` = (H, W): the data must
    be aligned to the network's input size beforehand (resizing here would silently change the alignment).
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, gray is replicated to 3 channels
    if image is None:
        raise BadDataError(f"cannot decode image {path}: the file is missing, truncated or not an image")
    if image.shape[:2] != tuple(size):
        raise BadDataError(
            f"image {path} is {image.shape[0]}x{image.shape[1]} (HxW) but the data is configured for "
            f"{size[0]}x{size[1]}: align the faces to that size first, or set data.image_size"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_image(data: bytes) -> np.ndarray:
    """Decode an encoded image to (H, W, 3) uint8 BGR; gray images become 3-channel.

    EXIF orientation is ignored: landmarks refer to the stored pixel grid (what MATLAB's ``imread`` returns).
    Raises ``ValueError`` with the reason for undecodable data and truncated JPEGs.
    """
    if data[:2] == b"\xff\xd8" and not _jpeg_is_complete(data):
        raise ValueError("truncated JPEG (no end-of-image marker after the image data)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if len(buffer) else None
    if image is None:
        raise ValueError("not a decodable image")
    return image


def _jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG stream reaches its end-of-image marker after the first scan starts.

    libjpeg (OpenCV) decodes a truncated JPEG with only a warning and fills the missing rows with gray, so a
    cut-off download would silently become a training image. Walk the marker segments up to the first
    start-of-scan (each carries its length), then look for EOI (FF D9) in the rest: inside scan data FF is only
    followed by 00 (stuffing) or a restart/scan marker, so the only FF D9 there is the real end. Bytes after EOI
    are allowed (some writers pad).
    """
    position = 2  # after SOI (FF D8)
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:
            return False  # EOI before any scan
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length field
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data follows the header
            return data.find(b"\xff\xd9", position + 2 + length) >= 0
        position += 2 + length
    return False


def decode_face(encoded: bytes, size: tuple[int, int], where: str) -> np.ndarray:
    """Decode a stored face to (H, W, 3) uint8 RGB at ``size``: 112x112 is kept, or center-cropped to 112x96.

    An image already stored at ``size`` is kept as is; anything else raises ``BadDataError`` naming ``where``.
    """
    image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)  # BGR; gray -> 3 channels
    if image is None:
        raise BadDataError(f"{where}: cannot decode the image ({len(encoded)} bytes): the stored image is damaged")
    height, width = image.shape[:2]
    if (height, width) == STORED_SIZE and tuple(size) == (112, 96):
        image = image[:, CROP_X : width - CROP_X]  # (112, 112, 3) -> (112, 96, 3)
    elif (height, width) != tuple(size):
        raise BadDataError(
            f"{where}: image is {height}x{width} (HxW); expected insightface's 112x112 (served as 112x112 or cropped "
            f"to 112x96) or {size[0]}x{size[1]}: this file holds differently aligned faces"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def looks_complete(path: str) -> bool:
    """Cheap integrity check without decoding: a JPEG ends with EOI (FF D9), a PNG with its IEND chunk.

    Catches the common damage (truncated downloads/copies, empty files) in two small reads per file.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(8)
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - 12))
            tail = file.read()
    except OSError:
        return False
    if head.startswith(b"\xff\xd8"):
        return tail.rstrip(b"\x00\r\n").endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG"):
        return tail.endswith(b"IEND\xaeB`\x82")
    return size > 0  # other formats (bmp): decoding will tell


def write_json_atomically(path: Path, content: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def write_image_atomically(path: Path, image: np.ndarray, jpeg_quality: int) -> None:
    """Encode ``image`` (BGR) as JPEG and move it into place in one rename, so that an interrupted run never
    leaves a partial file under the final name (a later run would take it for done). The temporary name does
    not end in an image extension, so tree scans ignore leftovers."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(encoded.tobytes())
    os.replace(temporary, path)


def scan_images(root: Path) -> list[str]:
    """Relative POSIX paths of all image files under ``root`` (any depth), sorted; hidden entries skipped."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        relative = Path(folder).relative_to(root)
        found += [
            (relative / name).as_posix()
            for name in files
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
        ]
    return sorted(found)


def scan_identity_tree(root: Path, check_files: bool = True) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Scan ``<root>/<identity>/<image>``: (table of identity/name, empty identity folders, damaged files)."""
    rows, empty, damaged = [], [], []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        images = sorted(f.name for f in os.scandir(entry.path) if f.name.lower().endswith(IMAGE_EXTENSIONS))
        if not images:
            empty.append(entry.path)
        for image in images:
            name = f"{entry.name}/{image}"
            if check_files and not looks_complete(os.path.join(root, name)):
                damaged.append(name)
            else:
                rows.append((entry.name, name))
    return pd.DataFrame(rows, columns=["identity", "name"]), empty, damaged
