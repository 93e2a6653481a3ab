"""Benchmark of the training-data paths (not a test): images/s delivered by a DataLoader in uint8 batches of 256.

Paths: JPEG tree decode only (``ImageFolder``), JPEG + albumentations (``TrainAugment``), and packed shards
(``PackedShards``), each at 0, 1 and 2 loader workers. Every process is held to one thread, so "per core" is the
rate divided by max(1, workers). The pack is read from the page cache (it is read once before timing), as it is
during training when the pack fits in memory.

    PYTHONPATH=. python scripts/bench_data.py                   # generate 10,000 112x96 JPEGs in a temp folder
    PYTHONPATH=. python scripts/bench_data.py --root TREE       # an existing aligned tree <identity>/<image>.jpg
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from amlit.data import ImageFolder, PackedShards
from amlit.data.packed import pack
from amlit.data.synthetic import random_identity, render_face
from amlit.data.transforms import TrainAugment

BATCH = 256


def generate_tree(root: Path, num_images: int, identities: int = 100) -> Path:
    """``num_images`` 112x96 JPEGs (quality 90) of ``identities`` generated faces, each with its own noise/shift."""
    rng = np.random.default_rng(0)
    bases = [render_face(random_identity(rng), rng) for _ in range(identities)]
    for k in tqdm(range(num_images), desc="writing JPEGs", unit="img"):
        identity = k % identities
        image = np.roll(bases[identity], rng.integers(-4, 5, 2), axis=(0, 1)).astype(np.int16)
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        folder = root / f"{identity:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(folder / f"{k:06d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
    return root


def _one_thread(_: int = 0) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def images_per_second(dataset, workers: int, max_images: int) -> float:
    """Loader throughput after the first batch (worker start-up excluded), over at most ``max_images``."""
    loader = DataLoader(
        dataset, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=workers, worker_init_fn=_one_thread
    )
    batches = iter(loader)
    next(batches)
    count, start = 0, time.perf_counter()
    for images, _ in batches:
        count += len(images)
        if count >= max_images:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="existing aligned 112x96 tree (default: generate one)")
    parser.add_argument("--images", type=int, default=10_000, help="images to generate")
    parser.add_argument("--max-images", type=int, default=8_000, help="images timed per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    _one_thread()
    scratch = Path(tempfile.mkdtemp(prefix="amlit-bench-"))
    try:
        root = args.root or generate_tree(scratch / "tree", args.images)
        start = time.perf_counter()
        pack(root, scratch / "packed", workers=2)
        folder = ImageFolder(root)
        table = folder.image_table((112, 96))
        print(f"pack: {len(table)} images in {time.perf_counter() - start:.1f} s with 2 workers (fork server included)")
        packed = PackedShards(scratch / "packed")
        packed.image_table((112, 96))
        names, labels, size = table["name"], np.zeros(len(table), np.int64), (112, 96)
        augment = TrainAugment(affine_p=1.0, brightness_contrast_p=0.5, grayscale_p=0.2, jpeg_p=0.5, seed=0)
        paths = {
            "JPEG decode": folder.dataset(names, labels, size),
            "JPEG + TrainAugment(affine, b/c, gray, jpeg)": ImageFolder(root, augment=augment).dataset(
                names, labels, size
            ),
            "packed shards": packed.dataset(names, labels, size),
        }
        for path in sorted((scratch / "packed").glob("shard-*.u8")):
            path.read_bytes()  # into the page cache
        print(f"\n| path | {' | '.join(f'{w} workers' for w in args.workers)} | per core at {max(args.workers)} |")
        print("| --- |" + " --- |" * (len(args.workers) + 1))
        for name, dataset in paths.items():
            rates = [images_per_second(dataset, workers, args.max_images) for workers in args.workers]
            per_core = rates[-1] / max(1, args.workers[-1])
            print(f"| {name} | {' | '.join(f'{r:,.0f}' for r in rates)} | {per_core:,.0f} |", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
