"""Cost of the margin diagnostics next to the margin head they describe, at the paper's sizes.

    PYTHONPATH=. python scripts/bench_diagnostics.py [--device cuda] [--batch 256] [--classes 10516]

Prints milliseconds per call of: the AM-Softmax head forward + backward, and ``margin_diagnostics`` (which the
module runs only on logging steps, every ``log_every_n_steps``). The backbone, which dominates a step, is left out.
"""

from __future__ import annotations

import argparse
import time

import torch

from amlit.diagnostics import margin_diagnostics
from amlit.heads import AMSoftmax


def per_call_ms(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10_516)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    head = AMSoftmax(args.dim, args.classes).to(device)
    embeddings = torch.randn(args.batch, args.dim, device=device, requires_grad=True)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)

    def head_step() -> None:
        head(embeddings, labels).loss.backward()

    cosine = head(embeddings, labels).cosine.detach()
    head_ms = per_call_ms(head_step, device, args.repeats)
    diag_ms = per_call_ms(
        lambda: margin_diagnostics(cosine, labels, head.margin, embeddings, head.weight), device, args.repeats
    )
    print(f"device={device} batch={args.batch} classes={args.classes} dim={args.dim} threads={torch.get_num_threads()}")
    print(f"head forward+backward: {head_ms:8.3f} ms")
    print(f"margin_diagnostics:    {diag_ms:8.3f} ms  ({diag_ms / head_ms:.1%} of the head; run once per logging step)")


if __name__ == "__main__":
    main()
