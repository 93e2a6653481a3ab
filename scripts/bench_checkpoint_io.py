"""What the safe checkpoint writes and reads cost, against Lightning's own ``TorchCheckpointIO``.

    PYTHONPATH=. python scripts/bench_checkpoint_io.py [--millions 58] [--folder /tmp]

The checkpoint holds ``--millions`` float32 values, half weights and half SGD momentum (58 M = the paper's
SphereFace-20 + 10,516-class head with momentum, ~232 MB). Prints seconds (best of 3) for the checksum alone, a save
with each IO, a verified load and a plain ``torch.load``. Saves go to ``--folder`` (use the checkpoint disk).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from amlit.checkpoint_io import SafeCheckpointIO, checkpoint_digest


def best_of_3(action) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--millions", type=int, default=58)
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    half = args.millions // 2
    checkpoint = {
        "pytorch-lightning_version": "2.6.6",
        "state_dict": {f"w{i}": torch.randn(1_000_000) for i in range(half)},
        "optimizer_states": [{"state": {i: {"momentum_buffer": torch.randn(1_000_000)} for i in range(half)}}],
    }
    path = Path(args.folder or tempfile.mkdtemp()) / "bench_last.ckpt"
    print(f"checkpoint of {4 * 2 * half} MB in {path.parent}")
    print(f"checksum alone:                 {best_of_3(lambda: checkpoint_digest(checkpoint)):.2f} s")
    ios = {"Lightning TorchCheckpointIO": TorchCheckpointIO(), "amlit SafeCheckpointIO": SafeCheckpointIO()}
    for name, io in ios.items():
        print(f"save, {name + ':':<30}{best_of_3(lambda io=io: io.save_checkpoint(dict(checkpoint), path)):.2f} s")
    print(f"verified load (amlit):          {best_of_3(lambda: SafeCheckpointIO().load_checkpoint(path)):.2f} s")
    print(f"plain torch.load:               {best_of_3(lambda: torch.load(path, weights_only=True)):.2f} s")
    path.unlink()


if __name__ == "__main__":
    main()
