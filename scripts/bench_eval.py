"""Benchmark of the evaluation protocols on random features (a benchmark, not a test): prints wall times.

- LFW: 13,233 random 512-d features, the 6,000 pairs of the real ``pairs.txt`` (random pairs when absent), 10 folds.
- BLUFR: all 10 trials of the real ``blufr_lfw_config.mat`` on random features (skipped when absent).
- MegaFace: 3,530 probes of 80 identities against ``--distractors`` random 512-d distractors (default 1M).

Usage: ``PYTHONPATH=. python scripts/bench_eval.py --device=cuda [--distractors=1000000] [--skip=lfw,blufr]``
Targets on one H100: BLUFR 10 trials < 30 s, MegaFace 1M < 60 s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from amlit.eval.blufr import evaluate_blufr, read_blufr_config
from amlit.eval.megaface import evaluate_megaface
from amlit.eval.pairs import PairList, read_lfw_pairs
from amlit.eval.verification import pair_verification_metrics

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LFW_IMAGES = 13_233
DIM = 512
PROBES, PROBE_IDENTITIES = 3_530, 80


def unit_rows(rows: int, generator: torch.Generator, device: torch.device, chunk: int = 65_536) -> torch.Tensor:
    """(rows, DIM) random unit vectors, float32, generated in chunks (1M x 512 is 2 GB)."""
    out = torch.empty(rows, DIM, dtype=torch.float32, device=device)
    for start in range(0, rows, chunk):
        block = torch.randn(min(chunk, rows - start), DIM, generator=generator, device=device)
        out[start : start + len(block)] = torch.nn.functional.normalize(block, dim=1)
    return out


def timed(name: str, run: Callable[[], dict], device: torch.device) -> dict:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    scalars = {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}
    print(f"{name}: {seconds:.2f} s  {scalars}", flush=True)
    return result


def random_pairs(generator: np.random.Generator) -> PairList:
    left, right = generator.integers(0, LFW_IMAGES, 6_000), generator.integers(0, LFW_IMAGES, 6_000)
    return PairList(
        images=[f"img{i}" for i in range(LFW_IMAGES)],
        left=left,
        right=right,
        issame=np.arange(6_000) % 600 < 300,
        fold=np.arange(6_000) // 600,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--distractors", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=16_384, help="MegaFace distractors per step")
    parser.add_argument("--skip", default="", help="comma-separated: lfw, blufr, megaface")
    args = parser.parse_args()
    device, skip = torch.device(args.device), set(filter(None, args.skip.split(",")))
    generator = torch.Generator(device=device).manual_seed(0)
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )

    if "lfw" not in skip:
        pairs_path = SHARED_DATA / "lfw" / "pairs.txt"
        pairs = read_lfw_pairs(pairs_path) if pairs_path.is_file() else random_pairs(np.random.default_rng(0))
        features = unit_rows(LFW_IMAGES, generator, device)[: len(pairs.images)]  # rows in pairs.images order
        timed(
            f"LFW 10-fold ({len(pairs)} pairs, {'real' if pairs_path.is_file() else 'random'})",
            lambda: pair_verification_metrics(features, pairs),
            device,
        )

    config_path = SHARED_DATA / "blufr" / "blufr_lfw_config.mat"
    if "blufr" not in skip and config_path.is_file():
        config = read_blufr_config(config_path)
        features = unit_rows(len(config.image_list), generator, device)
        timed(
            f"BLUFR {config.num_trials} trials", lambda: evaluate_blufr((config.image_list, features), config), device
        )

    if "megaface" not in skip:
        labels = torch.arange(PROBES, device=device) % PROBE_IDENTITIES  # 80 identities of 44-45 images
        # Images of an identity share a centre (cosine ~0.2 between them, about the best of 1M random distractors),
        # so the metrics are neither 0 nor 1.
        centres = unit_rows(PROBE_IDENTITIES, generator, device)
        probes = torch.nn.functional.normalize(centres[labels] + 2 * unit_rows(PROBES, generator, device), dim=1)
        distractors = unit_rows(args.distractors, generator, device)
        result = timed(
            f"MegaFace {PROBES} probes x {args.distractors} distractors",
            lambda: evaluate_megaface(probes, labels, distractors, chunk=args.chunk, device=device),
            device,
        )
        print(f"  roc points {len(result['roc'].x)}, cmc {np.round(result['cmc'].y, 4).tolist()}")


if __name__ == "__main__":
    main()
