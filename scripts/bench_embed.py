"""Benchmark of embedding extraction (prints numbers, not a test): the network ``amlit embed`` and ``amlit test`` run
(``EmbeddingNet``: uint8 faces in, f(x) + f(mirror(x)) L2-normalized out) in float32 and in bfloat16 autocast, at
several batch sizes, on random weights and random faces (speed does not depend on them).

Per precision and batch size: images/s (faces, each also run mirrored), step time median and p90, peak device
memory; and how far bf16 moves the features from float32 ones (smallest cosine between the two features of a face).

    PYTHONPATH=. .venv/bin/python scripts/bench_embed.py [--device=cuda] [--batches=256,1024,4096] [--json=out.json]
    PYTHONPATH=. .venv/bin/python scripts/bench_embed.py --width=0.25 --batches=64 --steps=5   # a quick CPU run

Target (issue 14): >= 45k images/s on one H100/H200 with the paper network (SphereFace-20, 112x96, 512-d).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from amlit.backbones import SphereFace
from amlit.inference.network import EmbeddingNet

PRECISIONS = {"32": None, "bf16": torch.bfloat16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(net: EmbeddingNet, faces: torch.Tensor, precision: str, steps: int, warmup: int) -> tuple[dict, torch.Tensor]:
    """Times ``steps`` forward passes over ``faces`` (B, H, W, 3) uint8 after ``warmup`` ones."""
    device = faces.device
    dtype = PRECISIONS[precision]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        for step in range(warmup + steps):
            synchronize(device)
            start = time.perf_counter()
            features = net(faces)
            synchronize(device)
            if step >= warmup:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    record = {
        "images_per_s": len(faces) / median,
        "step_ms_median": 1000 * median,
        "step_ms_p90": 1000 * sorted(times)[int(0.9 * (len(times) - 1))],
        "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    return record, features.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="256,1024,4096", help="comma-separated batch sizes (faces)")
    parser.add_argument("--precisions", default="32,bf16")
    parser.add_argument("--width", type=float, default=1.0, help="SphereFace-20 width multiplier (1 = the paper's)")
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    backbone = SphereFace(depth=20, embedding_dim=args.embedding_dim, width_multiplier=args.width)
    net = EmbeddingNet(backbone.to(device), 127.5, 128.0).eval()  # as amlit embed builds it
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, width {args.width}, load {os.getloadavg()[0]:.1f}")
    report: dict = {"device": name, "torch": torch.__version__, "width": args.width, "runs": []}
    for batch in (int(b) for b in args.batches.split(",")):
        faces = torch.randint(0, 256, (batch, 112, 96, 3), dtype=torch.uint8, device=device)
        features = {}
        for precision in args.precisions.split(","):
            record, features[precision] = run(net, faces, precision, args.steps, args.warmup)
            record |= {"batch": batch, "precision": precision}
            if precision != "32" and "32" in features:
                record["min_cosine_to_fp32"] = float((features[precision] * features["32"]).sum(dim=1).min())
            report["runs"].append(record)
            extra = f", min cosine to fp32 {record['min_cosine_to_fp32']:.5f}" if "min_cosine_to_fp32" in record else ""
            memory = f", peak {record['peak_memory_gb']:.2f} GB" if record["peak_memory_gb"] is not None else ""
            speed = f"{record['images_per_s']:9.0f} img/s (step {record['step_ms_median']:.1f} ms median"
            print(
                f"batch {batch:5d} {precision:>4}: {speed}, {record['step_ms_p90']:.1f} p90){memory}{extra}", flush=True
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
