"""Training throughput benchmark (prints numbers, not a test): amlit's Lightning fit beside a plain PyTorch loop.

In one run, on the same generated images (random uint8 faces written as a tree, packed with ``amlit data pack``):

- ``lightning/packed``: the paper config (``configs/amsoftmax_casia.yaml``: its callbacks, the wandb (offline) and
  CSV loggers, ``FaceVerificationModule``, ``CasiaDataModule``) built by ``AmlitCLI`` exactly as ``amlit fit`` builds
  it, reading the packed shards through the resumable loader;
- ``lightning/resident``: the same with ``data.device_resident=always`` (images held in device memory);
- ``plain``: a hand-written loop with the same backbone, head, SGD settings, precision and batch, its batches
  gathered from device-resident images: the ceiling.

Reported per variant: images/s and step time (median, p90) over the steps after ``--warmup``, measured between
consecutive ends of optimizer steps (data loading, logging and callbacks included), peak device memory (CUDA) or
the process's peak RSS so far (CPU; the plain loop runs first), and MFU: the FLOPs of one training step counted
by ``torch.utils.flop_counter`` x steps/s over the device's peak (``--peak-tflops``; known for H100/H200 bf16).
And the Lightning/plain ratio. The backbone width, classes and batch are CPU-sized by default; on a GPU use the
paper's (``--width=1 --classes=10516 --batch=256 --precision=bf16-mixed``, what ``scripts/gpu_check.sh`` passes).

    PYTHONPATH=. .venv/bin/python scripts/bench_train.py                 # CPU, small: ~1-2 min on 2 cores
    PYTHONPATH=. .venv/bin/python scripts/bench_train.py --device=cuda --width=1 --classes=10516 --batch=256 \\
        --precision=bf16-mixed --steps=300 --json=out/train.json [--compile [--compile-mode=reduce-overhead]]

Targets (issue 14): CPU Lightning >= 95% of the plain loop; GPU >= 97%, >= 22k img/s bf16 eager, >= 30k compiled.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "configs" / "amsoftmax_casia.yaml"
# Dense bf16 peak of the GPUs the targets name (NVIDIA datasheets, SXM): 989 TFLOP/s.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def write_packed_faces(folder: Path, identities: int, per_identity: int, image_size: tuple[int, int]) -> Path:
    """Random images in an identity tree, packed by ``amlit.data.packed.pack``: the real training format.

    A complete pack of the same size already in ``folder`` is reused (``--data``: the GPU check's benchmark runs
    share one instead of writing and decoding 21k images each time); a half-written one is started again."""
    from amlit.data.packed import MANIFEST, pack

    packed = folder / f"faces-{identities}x{per_identity}-{image_size[0]}x{image_size[1]}"
    with contextlib.suppress(OSError, ValueError):
        if json.loads((packed / "packed" / MANIFEST).read_text())["complete"]:
            print(f"reusing the packed faces in {packed}", flush=True)
            return packed / "packed"
    shutil.rmtree(packed, ignore_errors=True)
    rng = np.random.default_rng(0)
    tree = packed / "tree"
    for identity in range(identities):
        (tree / f"{identity:07d}").mkdir(parents=True)
        for image in range(per_identity):
            pixels = rng.integers(0, 256, (*image_size, 3), dtype=np.uint8)
            cv2.imwrite(str(tree / f"{identity:07d}" / f"{image:03d}.png"), pixels)
    pack(tree, packed / "packed", image_size=image_size, workers=0)
    shutil.rmtree(tree)  # the pack holds every pixel
    return packed / "packed"


class StepClock:
    """Wall time between the ends of consecutive optimizer steps (synchronizing the device first)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    def tick(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter())

    def summary(self, warmup: int, batch: int) -> dict:
        steps = np.diff(self.times[warmup:])  # step i's time: end of step i-1 to end of step i
        if len(steps) == 0:
            raise SystemExit("not enough steps after the warm-up: raise --steps")
        median = float(statistics.median(steps))
        return {
            "steps_timed": len(steps),
            "img_per_s": batch * len(steps) / float(steps.sum()),
            "step_ms_median": 1e3 * median,
            "step_ms_p90": 1e3 * float(np.percentile(steps, 90)),
        }


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # the process's peak RSS so far


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def lightning_fit(
    args, packed: Path, resident: bool, device: torch.device, run_dir: Path, sync_audit: bool = False
) -> dict:
    """The paper config through AmlitCLI (as ``amlit fit`` builds it), with a step clock added. With
    ``sync_audit`` (CUDA), no clock: every host-device synchronization of the steps after the warm-up is reported
    by ``torch.cuda.set_sync_debug_mode`` and counted by the Python line that caused it."""
    import lightning as L
    import wandb

    from amlit.lightning_cli import AmlitCLI
    from amlit.loggers import SaveConfigToLoggers
    from amlit.module import FaceVerificationModule

    clock = StepClock(device)

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if not sync_audit:
                clock.tick()
            elif batch_idx + 1 == args.warmup:
                torch.cuda.set_sync_debug_mode("warn")  # from the next step on

    overrides = [
        f"--trainer.default_root_dir={run_dir}",
        f"--trainer.accelerator={device.type}",
        "--trainer.devices=1",
        f"--trainer.precision={args.precision}",
        f"--trainer.max_steps={args.steps}",
        "--trainer.enable_progress_bar=false",
        "--data.train=amlit.data.PackedShards",
        f"--data.train.root={packed}",
        "--data.lfw_root=null",
        "--data.lfw_pairs=null",
        "--data.blufr_config=null",
        "--data.megaface_probes=null",
        "--data.megaface_distractors=null",
        "--data.megaface_identities=null",
        "--data.exclude_id_lists=[]",
        f"--data.batch_size={args.batch}",
        f"--data.num_workers={args.workers}",
        f"--data.device_resident={'always' if resident else 'never'}",
        f"--model.backbone.init_args.width_multiplier={args.width}",
        f"--model.backbone.init_args.embedding_dim={args.embedding_dim}",
        f"--model.compile_backbone={str(args.compile).lower()}",
        f"--model.compile_head={str(args.compile_head).lower()}",
        f"--model.compile_mode={args.compile_mode}",
        f"--model.sgd_implementation={args.sgd or 'null'}",
    ]
    reset_peak(device)
    with warnings.catch_warnings(record=True) if sync_audit else contextlib.nullcontext() as caught:
        if sync_audit:
            warnings.simplefilter("always")  # every sync, not the first one of each line
        AmlitCLI(
            FaceVerificationModule,
            subclass_mode_data=True,
            save_config_callback=SaveConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            args=["fit", "--config", str(PAPER_CONFIG), *overrides],
            trainer_defaults={"callbacks": [Clock()]},  # added to the config's callbacks
        )
        if sync_audit:
            torch.cuda.set_sync_debug_mode("default")
    wandb.finish()  # the next variant starts its own offline run
    if sync_audit:
        syncs = collections.Counter(
            f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchronizing CUDA operation" in str(w.message)
        )
        steps = args.steps - args.warmup
        return {"steps": steps, "syncs_per_step": sum(syncs.values()) / steps, "sites": dict(syncs.most_common())}
    return clock.summary(args.warmup, args.batch) | {"peak_memory_gb": peak_memory_gb(device)}


def build_plain(args, num_classes: int, device: torch.device):
    """Backbone, head and SGD as FaceVerificationModule builds them (its parameter groups and settings)."""
    from amlit.backbones import SphereFace
    from amlit.heads import AMSoftmax
    from amlit.module import SGD_IMPLEMENTATIONS

    torch.manual_seed(0)
    backbone = SphereFace(depth=20, embedding_dim=args.embedding_dim, width_multiplier=args.width).to(device)
    backbone = backbone.to(memory_format=torch.channels_last)
    head = AMSoftmax(args.embedding_dim, num_classes, margin=0.35, scale=30.0).to(device)
    named = [*backbone.named_parameters(), *head.named_parameters()]
    biases = [p for name, p in named if name.endswith(".bias")]
    others = [p for name, p in named if not name.endswith(".bias")]
    optimizer = torch.optim.SGD(
        [{"params": others, "weight_decay": 5e-4}, {"params": biases, "lr": 0.2, "weight_decay": 0.0}],
        lr=0.1,
        momentum=0.9,
        **SGD_IMPLEMENTATIONS[args.sgd],
    )
    return backbone, head, optimizer


def autocast(args, device: torch.device):
    if args.precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if args.precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def plain_step(backbone, head, optimizer, images: torch.Tensor, labels: torch.Tensor, args, device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> mirror half, (x - 128) / 128, channels_last -> forward, loss, backward, SGD step."""
    x = (images.permute(0, 3, 1, 2).float() - 128.0) / 128.0
    flip = torch.rand(len(x), device=device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    with autocast(args, device):
        embeddings = backbone(x)
    loss = head(embeddings.float(), labels).loss  # the head in float32, like the module
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def plain_loop(args, packed: Path, device: torch.device) -> dict:
    from amlit.data.device_resident import ResidentImages, ResidentIndices
    from amlit.data.packed import PackedShards

    source = PackedShards(packed)
    table = source.image_table((112, 96))
    labels = table["identity"].astype("category").cat.codes.to_numpy()
    dataset = source.dataset(table["name"], labels, (112, 96))
    resident = ResidentImages(dataset, (112, 96), device)
    backbone, head, optimizer = build_plain(args, int(labels.max()) + 1, device)
    if args.compile:
        backbone.compile(mode=args.compile_mode)  # as model.compile_backbone does
    if args.compile_head:
        head.compile(mode=args.compile_mode)  # as model.compile_head does
    reset_peak(device)
    clock = StepClock(device)
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        indices = torch.randint(0, len(dataset), (args.batch,), generator=generator)
        images, targets = resident.gather(ResidentIndices(indices))
        plain_step(backbone, head, optimizer, images, targets, args, device)
        clock.tick()
    return clock.summary(args.warmup, args.batch) | {"peak_memory_gb": peak_memory_gb(device)}


def step_flops(args, num_classes: int, device: torch.device) -> int:
    """FLOPs of one training step (forward, backward) counted by torch.utils.flop_counter (eager)."""
    from torch.utils.flop_counter import FlopCounterMode

    backbone, head, optimizer = build_plain(args, num_classes, device)
    images = torch.randint(0, 256, (args.batch, 112, 96, 3), dtype=torch.uint8, device=device)
    labels = torch.randint(0, num_classes, (args.batch,), device=device)
    with FlopCounterMode(display=False) as counter:
        plain_step(backbone, head, optimizer, images, labels, args, device)
    return counter.get_total_flops()


def time_variants(args, packed: Path, device: torch.device, scratch: Path, peak: float | None) -> dict:
    """FLOPs of a step, then each variant not in ``--skip`` timed: {"flops_per_step": ..., variant: numbers}."""
    report: dict = {}
    skip = set(filter(None, args.skip.split(",")))
    flops = step_flops(args, args.classes, device)
    report["flops_per_step"] = flops
    print(f"one training step: {flops / 1e9:.1f} GFLOP ({flops / args.batch / 1e9:.2f} GFLOP per image)")
    variants = {  # the plain loop first: on the CPU the peak RSS is the process's so far
        "plain": lambda: plain_loop(args, packed, device),
        "lightning/packed": lambda: lightning_fit(args, packed, False, device, scratch / "run-packed"),
        "lightning/resident": lambda: lightning_fit(args, packed, True, device, scratch / "run-resident"),
    }
    for variant, run in variants.items():
        if variant.split("/")[-1] in skip:
            continue
        result = run()
        seconds = args.batch / result["img_per_s"]
        result["tflops"] = flops / seconds / 1e12
        result["mfu"] = result["tflops"] / peak if peak else None
        report[variant] = result
        mfu = f", MFU {100 * result['mfu']:.1f}%" if result["mfu"] is not None else ""
        print(
            f"{variant}: {result['img_per_s']:.1f} img/s, step {result['step_ms_median']:.1f} ms median, "
            f"{result['step_ms_p90']:.1f} ms p90, peak memory {result['peak_memory_gb']:.2f} GB, "
            f"{result['tflops'] * 1e3:.1f} GFLOP/s{mfu} ({load()})",
            flush=True,
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="32-true", help="32-true, bf16-mixed or 16-mixed")
    parser.add_argument("--width", type=float, default=0.125, help="SphereFace width multiplier (paper: 1)")
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=64, help="identities generated (paper: 10516)")
    parser.add_argument("--per-identity", type=int, default=8, help="images generated per identity")
    parser.add_argument("--batch", type=int, default=32, help="global batch (paper: 256)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--workers", type=int, default=1, help="loader workers of the packed variant")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone (model.compile_backbone)")
    parser.add_argument("--compile-head", action="store_true", help="torch.compile the head (model.compile_head)")
    parser.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile mode with --compile (model.compile_mode; reduce-overhead: CUDA graphs)",
    )
    parser.add_argument("--sgd", choices=["for_loop", "foreach", "fused"], help="model.sgd_implementation")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak for MFU (known: H100/H200 bf16)")
    parser.add_argument("--skip", default="", help="comma-separated: packed, resident, plain")
    parser.add_argument(
        "--sync-audit",
        action="store_true",
        help="CUDA only, instead of timing: count the host-device syncs per step of the Lightning fit "
        "(device-resident) after the warm-up, by the line that causes them (torch.cuda.set_sync_debug_mode)",
    )
    parser.add_argument(
        "--data", type=Path, help="keep the generated packed faces here and reuse them (default: a temporary folder)"
    )
    parser.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    os.environ.setdefault("WANDB_MODE", "offline")  # the paper config's wandb logger, offline
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if args.precision != "bf16-mixed" and args.peak_tflops is None:
        peak = None  # the known peaks are bf16 ones
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, {load()}")
    report: dict = {"device": name, "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}

    if args.sync_audit and device.type != "cuda":
        raise SystemExit("--sync-audit needs a CUDA device (torch.cuda.set_sync_debug_mode)")

    with tempfile.TemporaryDirectory(prefix="amlit-bench-train-") as scratch:
        packed = write_packed_faces(args.data or Path(scratch), args.classes, args.per_identity, (112, 96))
        if args.sync_audit:  # instead of the timings
            report["sync_audit"] = audit = lightning_fit(args, packed, True, device, Path(scratch) / "run", True)
            print(f"host-device syncs per step: {audit['syncs_per_step']:.2f}; by site: {audit['sites']}")
        else:
            report |= time_variants(args, packed, device, Path(scratch), peak)
    if "plain" in report:
        for variant in ("lightning/packed", "lightning/resident"):
            if variant in report:
                ratio = report[variant]["img_per_s"] / report["plain"]["img_per_s"]
                report[variant]["ratio_to_plain"] = ratio
                print(f"{variant} / plain: {100 * ratio:.1f}% of the plain loop's images/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
