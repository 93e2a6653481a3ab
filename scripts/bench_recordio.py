"""Benchmark: indexing an insightface .rec from headers, and reading + decoding + cropping its images.

Writes a synthetic faces_webface_112x112-like .rec (real 112x112 JPEGs at quality 95, cycled) to a temporary folder,
times ``RecordIO.image_table()`` warm (page cache) and cold (the file's pages dropped with posix_fadvise), and the
Dataset's per-image read, and extrapolates to the real file's 490,623 images (10,572 classes).

    PYTHONPATH=. .venv/bin/python scripts/bench_recordio.py --images 50000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from amlit.data import RecordIO
from amlit.data.recordio import write_insightface_rec
from amlit.data.synthetic import random_identity, render_face

REAL_IMAGES = 490_623  # faces_webface_112x112 (third-party configs; unverified)


def make_samples(images: int, classes: int) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    rng = np.random.default_rng(0)
    jpegs = []
    for k in range(64):
        face = render_face(random_identity(np.random.default_rng(k)), rng, (112, 112))
        jpegs.append(cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    per_class = np.sort(rng.integers(0, classes, images))
    return [(int(c), jpegs[i % len(jpegs)]) for i, c in enumerate(per_class)], jpegs


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--decode", type=int, default=3_000, help="images to read+decode+crop")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the 'class numbers' identity warning
    with tempfile.TemporaryDirectory() as tmp:
        samples, jpegs = make_samples(args.images, args.classes)
        classes = sorted({c for c, _ in samples})
        remap = {c: i for i, c in enumerate(classes)}
        samples = [(remap[c], j) for c, j in samples]
        start = time.perf_counter()
        folder = write_insightface_rec(Path(tmp) / "rec", samples)
        size = (folder / "train.rec").stat().st_size
        print(
            f"wrote {len(samples):,} images ({size / 1e6:.0f} MB, mean JPEG {np.mean([len(j) for j in jpegs]):.0f} B)"
            f" in {time.perf_counter() - start:.1f} s"
        )
        scale = REAL_IMAGES / len(samples)
        for label in ("cold", "warm"):
            if label == "cold":
                drop_cache(folder / "train.rec")
            start = time.perf_counter()
            table = RecordIO(folder).image_table((112, 96))
            seconds = time.perf_counter() - start
            print(
                f"image_table ({label} cache): {seconds:.2f} s for {len(table):,} images "
                f"-> ~{seconds * scale:.1f} s for {REAL_IMAGES:,}"
            )
        source = RecordIO(folder)
        source.image_table((112, 96))
        dataset = source.dataset(table["name"], np.zeros(len(table), int), (112, 96))
        order = np.random.default_rng(1).permutation(len(dataset))[: args.decode]
        start = time.perf_counter()
        for i in order:
            dataset[int(i)]
        seconds = time.perf_counter() - start
        print(f"read+decode+crop (random order, warm, 1 process): {args.decode / seconds:,.0f} images/s")


if __name__ == "__main__":
    main()
