"""Benchmark ``amlit data align``: generate CASIA-like 250x250 JPEGs with known landmarks, align them, print img/s.

Usage: PYTHONPATH=. python scripts/bench_align.py [--images=2000] [--workers=0,1,2] [--root=/tmp/amlit-bench-align]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from amlit.data.align import TEMPLATES, align_tree
from amlit.data.synthetic import random_identity, render_face


def make_raw_tree(root: Path, images: int, seed: int = 0) -> Path:
    """``root/raw/<7-digit id>/<nnn>.jpg`` (250x250, JPEG q90, 20 per identity) + ``root/landmarks.txt`` (casia)."""
    rng = np.random.default_rng(seed)
    lines = []
    identity = None
    for index in range(images):
        if index % 20 == 0:
            identity = random_identity(rng)
        face = render_face(identity, rng)  # (112, 96, 3) RGB, landmarks at identity.landmarks
        scale, angle = rng.uniform(1.6, 2.2), rng.uniform(-0.4, 0.4)
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = np.array([125.0, 125.0]) + rng.uniform(-10, 10, 2) - rotation @ np.array([48.0, 72.0])
        matrix = np.hstack([rotation, shift[:, None]])
        image = cv2.warpAffine(face, matrix, (250, 250), borderMode=cv2.BORDER_REFLECT)
        image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
        relative = f"{1_000_000 + index // 20:07d}/{index % 20 + 1:03d}.jpg"
        (root / "raw" / relative).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "raw" / relative), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        points = identity.landmarks @ matrix[:, :2].T + matrix[:, 2]
        lines.append("\t".join([relative, relative[:7], *(f"{v:.2f}" for v in points.ravel())]))
    (root / "landmarks.txt").write_text("\n".join(lines) + "\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--root", type=Path, default=Path("/tmp/amlit-bench-align"))
    parser.add_argument("--template", default="sphereface_112x96", choices=sorted(TEMPLATES))
    args = parser.parse_args()
    if not (args.root / "landmarks.txt").is_file() or len(list((args.root / "raw").rglob("*.jpg"))) != args.images:
        shutil.rmtree(args.root, ignore_errors=True)
        make_raw_tree(args.root, args.images)
    for workers in (int(w) for w in args.workers.split(",")):
        output = args.root / f"aligned-{workers}"
        shutil.rmtree(output, ignore_errors=True)
        start = time.perf_counter()
        counts = align_tree(args.root / "raw", args.root / "landmarks.txt", output, args.template, workers=workers)
        seconds = time.perf_counter() - start
        rate = counts["aligned"] / seconds
        print(f"workers={workers}: {counts['aligned']} images in {seconds:.2f} s = {rate:.0f} img/s")
        start = time.perf_counter()
        align_tree(args.root / "raw", args.root / "landmarks.txt", output, args.template, workers=workers)
        print(f"workers={workers}: resume check of a finished tree {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
