"""What using a trained model costs: ONNX export + parity check, and embedding throughput (PyTorch vs onnxruntime).

    PYTHONPATH=. python scripts/bench_inference.py [--images 512] [--batch 64] [--device cpu] [--folder /tmp]

Builds the paper's SphereFace-20 (512-d, 112x96; random weights: speed and parity do not depend on them) as an amlit
checkpoint with its inference record, exports it with ``amlit export onnx`` (prints the parity lines), then embeds
``--images`` generated faces (PNG files) with ``amlit embed`` from the checkpoint and from the export, and prints
seconds and images/s of each (the whole command: decoding, alignment-free crops, image + mirror per face).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from amlit.backbones import SphereFace
from amlit.checkpoint_io import SafeCheckpointIO
from amlit.cli import run_tool
from amlit.data.synthetic import random_identity, render_face
from amlit.inference.record import RECORD_KEY, backbone_record


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as temporary:
        folder = Path(temporary)
        backbone = SphereFace().eval()
        checkpoint = folder / "sphereface20.ckpt"
        state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
        record = backbone_record(backbone, alignment_template="sphereface_112x96")
        SafeCheckpointIO().save_checkpoint(
            {"pytorch-lightning_version": "-", "state_dict": state, RECORD_KEY: record}, checkpoint
        )
        print(f"SphereFace-20: {record['parameters']:,} parameters, torch {torch.__version__}")

        onnx = folder / "export" / "sphereface20.onnx"
        seconds = timed(lambda: run_tool(["export", "onnx", f"--checkpoint={checkpoint}", f"--output={onnx}"]))
        print(f"export + parity check: {seconds:.1f} s, {onnx.stat().st_size / 2**20:.1f} MiB")

        rng = np.random.default_rng(0)
        faces = folder / "faces"
        faces.mkdir()
        for k in range(args.images):
            cv2.imwrite(
                str(faces / f"{k:05d}.png"), cv2.cvtColor(render_face(random_identity(rng), rng), cv2.COLOR_RGB2BGR)
            )
        device = [f"--device={args.device}"] if args.device else []
        for name, model in (("PyTorch checkpoint", checkpoint), ("onnxruntime export", onnx)):
            output = folder / f"{name.split()[0]}.npz"
            command = [
                "embed",
                f"--model={model}",
                f"--images={faces}",
                f"--output={output}",
                f"--batch_size={args.batch}",
            ]
            seconds = timed(lambda command=command: run_tool([*command, *device]))
            print(f"amlit embed, {name}: {args.images} faces in {seconds:.1f} s = {args.images / seconds:.0f} img/s")


if __name__ == "__main__":
    main()
