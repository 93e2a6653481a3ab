"""Images for the toy experiment (Figure 4): Fashion-MNIST from its IDX files, or generated 28x28 shapes.

IDX (LeCun's MNIST format, also Fashion-MNIST's, https://github.com/zalandoresearch/fashion-mnist): big-endian;
two zero bytes, a type byte (0x08 = unsigned byte), a dimension count n, n int32 sizes, then the values. Files
``train-images-idx3-ubyte`` (N, 28, 28), ``train-labels-idx1-ubyte`` (N,), and ``t10k-*`` for the test split,
optionally gzipped (``.gz``).

Without them, ``generated_shapes`` draws 10 classes of 28x28 gray shapes (circle, ring, square, frame, triangle,
plus, cross, bars, stripes, diamond) with random size, rotation, position, stroke, brightness, blur and noise:
embedded data of Fashion-MNIST's form (10 classes, 28x28, uint8), so the experiment runs anywhere.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import cv2
import numpy as np

from amlit.errors import BadDataError, MissingDataError

IDX_UNSIGNED_BYTE = 0x08
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NUM_CLASSES = 10
SIZE = 28


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (optionally .gz) -> uint8 array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise BadDataError(f"{path}: cannot read it as an IDX file: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BadDataError(f"{path} is not an IDX file: it must start with two zero bytes, a type byte and a rank")
    kind, rank = data[2], data[3]
    if kind != IDX_UNSIGNED_BYTE:
        raise BadDataError(f"{path}: IDX type byte 0x{kind:02x}; expected 0x08 (unsigned byte), as Fashion-MNIST's")
    header = 4 + 4 * rank
    if len(data) < header:
        raise BadDataError(f"{path}: truncated IDX header ({len(data)} bytes for rank {rank})")
    shape = struct.unpack(f">{rank}i", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise BadDataError(f"{path}: {len(data)} bytes; its header {shape} says {expected} (truncated or padded)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise MissingDataError(f"{folder / name}[.gz] not found; expected Fashion-MNIST's four IDX files in {folder}")


def read_fashion_mnist(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"|"test": (images (N, 28, 28) uint8, labels (N,) int64)} from Fashion-MNIST's IDX files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingDataError(f"{folder} is not a folder; expected one holding Fashion-MNIST's IDX files")
    splits = {}
    for split, (image_name, label_name) in FASHION_FILES.items():
        images, labels = read_idx(_find(folder, image_name)), read_idx(_find(folder, label_name))
        if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
            raise BadDataError(f"{folder}/{image_name}: images of shape {images.shape}; expected (N, 28, 28)")
        if labels.ndim != 1 or len(labels) != len(images):
            raise BadDataError(f"{folder}/{label_name}: {labels.shape} labels for {len(images)} images")
        if labels.max(initial=0) >= NUM_CLASSES:
            raise BadDataError(f"{folder}/{label_name}: label {labels.max()}; expected 0..9")
        splits[split] = (images, labels.astype(np.int64))
    return splits


def _draw(canvas: np.ndarray, label: int, stroke: int) -> None:
    """Class ``label``'s shape, white on black, centered on a 56x56 canvas (drawn at 2x, then shrunk)."""
    c, r = 28, 18
    if label == 0:
        cv2.circle(canvas, (c, c), r, 255, -1)
    elif label == 1:
        cv2.circle(canvas, (c, c), r, 255, stroke)
    elif label == 2:
        cv2.rectangle(canvas, (c - r, c - r), (c + r, c + r), 255, -1)
    elif label == 3:
        cv2.rectangle(canvas, (c - r, c - r), (c + r, c + r), 255, stroke)
    elif label == 4:
        cv2.fillPoly(canvas, [np.array([(c, c - r), (c - r, c + r), (c + r, c + r)], np.int32)], 255)
    elif label == 5:
        cv2.line(canvas, (c, c - r), (c, c + r), 255, stroke)
        cv2.line(canvas, (c - r, c), (c + r, c), 255, stroke)
    elif label == 6:
        cv2.line(canvas, (c - r, c - r), (c + r, c + r), 255, stroke)
        cv2.line(canvas, (c - r, c + r), (c + r, c - r), 255, stroke)
    elif label == 7:
        for y in (c - r + 4, c, c + r - 4):
            cv2.line(canvas, (c - r, y), (c + r, y), 255, stroke)
    elif label == 8:
        for x in (c - r + 4, c, c + r - 4):
            cv2.line(canvas, (x, c - r), (x, c + r), 255, stroke)
    else:
        cv2.fillPoly(canvas, [np.array([(c, c - r), (c - r, c), (c, c + r), (c + r, c)], np.int32)], 255)


def generated_shapes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (count, 28, 28) uint8 with balanced labels (count,) int64, deterministic from ``seed``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % NUM_CLASSES
    rng.shuffle(labels)
    images = np.empty((count, SIZE, SIZE), dtype=np.uint8)
    for index, label in enumerate(labels):
        canvas = np.zeros((56, 56), dtype=np.uint8)
        _draw(canvas, int(label), stroke=int(rng.integers(3, 8)))
        angle, scale = rng.uniform(-12, 12), rng.uniform(0.8, 1.1)
        matrix = cv2.getRotationMatrix2D((28, 28), angle, scale)
        matrix[:, 2] += rng.uniform(-4, 4, size=2)
        canvas = cv2.warpAffine(canvas, matrix, (56, 56))
        small = cv2.resize(canvas, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
        small = cv2.GaussianBlur(small, (3, 3), rng.uniform(0.1, 1.0)) * rng.uniform(0.5, 1.0)
        small += rng.normal(0, rng.uniform(3, 10), size=small.shape)  # sensor noise of varying strength
        images[index] = np.clip(small, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)
