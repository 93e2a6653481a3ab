"""Compare two Lightning checkpoints numerically: model weights, optimizer state and training position.

    python scripts/slurm/compare_checkpoints.py REFERENCE.ckpt OTHER.ckpt [--atol 0]

Prints the largest absolute difference over all model weights (``state_dict``) and over all optimizer tensors
(momentum buffers), and both checkpoints' ``global_step``/``epoch``; exits 1 when the tensor names or shapes differ,
the steps differ, or a difference exceeds ``--atol`` (0: bit-identical). scripts/slurm/check_local.sh uses it to
show that a preempted and resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import torch


def tensors(tree: object, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted path, tensor) for every tensor in nested dicts/lists, in a stable order."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from tensors(tree[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list | tuple):
        for index, item in enumerate(tree):
            yield from tensors(item, f"{prefix}.{index}" if prefix else str(index))


def max_abs_difference(reference: object, other: object) -> float:
    """Largest |a - b| over all tensors of two trees (float64); raises ValueError when names or shapes differ."""
    left, right = dict(tensors(reference)), dict(tensors(other))
    if left.keys() != right.keys():
        raise ValueError(f"different tensors: only in one of them: {sorted(left.keys() ^ right.keys())[:10]}")
    largest = 0.0
    for name, tensor in left.items():
        if tensor.shape != right[name].shape:
            raise ValueError(f"{name}: shape {tuple(tensor.shape)} vs {tuple(right[name].shape)}")
        if tensor.numel():
            difference = (tensor.double() - right[name].double()).abs().max().item()
            largest = max(largest, difference)
    return largest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("other", type=Path)
    parser.add_argument("--atol", type=float, default=0.0, help="largest allowed difference (default 0: identical)")
    args = parser.parse_args(argv)
    reference, other = (
        torch.load(path, map_location="cpu", weights_only=True) for path in (args.reference, args.other)
    )
    try:
        weights = max_abs_difference(reference["state_dict"], other["state_dict"])
        optimizer = max_abs_difference(reference["optimizer_states"], other["optimizer_states"])
    except ValueError as error:
        print(f"checkpoints differ in structure: {error}")
        return 1
    position = [(checkpoint["global_step"], checkpoint["epoch"]) for checkpoint in (reference, other)]
    print(
        f"global_step/epoch {position[0]} vs {position[1]}; "
        f"max |weight difference| {weights:.3g} over {len(reference['state_dict'])} tensors; "
        f"max |optimizer-state difference| {optimizer:.3g}"
    )
    return 0 if position[0] == position[1] and max(weights, optimizer) <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
