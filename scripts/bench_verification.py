"""Benchmark the pair-verification extras at LFW size: reading a verification .bin, decoding its images, the ROC
measures, and both 10-fold protocols. Prints wall times; run from the repository root:

    PYTHONPATH=. python scripts/bench_verification.py [--pairs 6000] [--dim 512]
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from amlit.data.verification_bin import EncodedImages, read_verification_bin
from amlit.eval.verification import pair_verification_metrics, roc_metrics


def timed(label: str, function, repeat: int = 1):
    start = time.perf_counter()
    for _ in range(repeat):
        result = function()
    seconds = (time.perf_counter() - start) / repeat
    print(f"{label:<58} {seconds * 1000:9.1f} ms")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    num_images = 2 * args.pairs

    # A .bin with LFW's shape: 2 x pairs JPEG-encoded 112x112 crops (quality 95, as insightface's packers).
    base = cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (9, 9), 3)
    jpegs = [
        cv2.imencode(".jpg", np.roll(base, i % 50, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
        for i in range(num_images)
    ]
    issame = [bool(i % 2) for i in range(args.pairs)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lfw.bin"
        path.write_bytes(pickle.dumps((jpegs, issame), protocol=pickle.HIGHEST_PROTOCOL))
        print(f"{num_images} images, {path.stat().st_size / 2**20:.1f} MiB .bin; 1 CPU thread")
        data, _ = timed("read_verification_bin (restricted unpickler)", lambda: read_verification_bin(path))
        timed("  for comparison: plain pickle.load of this (trusted) file", lambda: pickle.loads(path.read_bytes()))
        images = EncodedImages(data.encoded, (112, 96), str(path))
        _, decode = timed(
            f"decode + crop to 112x96, all {num_images} images", lambda: [images[i] for i in range(len(images))]
        )
        print(f"{'  decode throughput':<58} {num_images / decode:9.0f} img/s")

    pairs = data.pairs
    genuine = torch.as_tensor(pairs.issame)
    features = torch.nn.functional.normalize(torch.randn(num_images, args.dim), dim=1)
    features[1::2][genuine] += 0.12 * features[0::2][genuine]  # some signal, so the ROC is not trivial
    features = torch.nn.functional.normalize(features, dim=1)
    scores = (features[0::2] * features[1::2]).sum(1).double()
    timed(f"roc_metrics on {args.pairs} scores (auc, eer, tar@far, roc)", lambda: roc_metrics(scores, genuine), 5)
    metrics, _ = timed(
        "pair_verification_metrics, protocol=amsoftmax", lambda: pair_verification_metrics(features, pairs)
    )
    raw = torch.randn(num_images, 2 * args.dim) + 1.0  # [f(image), f(mirror)]
    timed(
        f"pair_verification_metrics, protocol=sphereface ({2 * args.dim}-d concat)",
        lambda: pair_verification_metrics(raw, pairs, protocol="sphereface"),
    )
    print(
        f"(amsoftmax run: acc {metrics['acc']:.4f}, auc {metrics['auc']:.4f}, "
        f"tar@far=1e-3 {metrics['tar@far=1e-3']:.4f})"
    )


if __name__ == "__main__":
    main()
