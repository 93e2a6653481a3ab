"""Benchmark of the evaluation protocols (prints numbers, not a test): each protocol beside its bare score products
and beside a plain numpy implementation of it, on the same realistic 512-d features, with their results compared.

- BLUFR: all 10 trials of the real ``blufr_lfw_config.mat`` (from ``--shared-data``, default ``$AMLIT_SHARED_DATA``
  or ../shared/data; skipped when absent). Features:
  one random direction per subject plus noise (genuine cosines ~0.14, impostors ~0 +- 0.044), so VR and DIR are
  neither 0 nor 1. Bare products: the float32 score products the protocol computes (each trial's lower triangle
  in the same row chunks, and gallery x probes), nothing else.
- MegaFace: 3,530 probes of 80 identities against ``--distractors`` random unit distractors (default 1M); bare
  products: probes x distractors in float32, chunk by chunk. Also ``amlit score megaface`` on the same features
  written to .npz files (a subprocess: wall time and peak memory, reading the files included).
- LFW: the 6,000 pairs of the real ``pairs.txt`` (random pairs when absent), 10 folds; and ``amlit score lfw``
  end to end in a subprocess (Python start-up and imports included).

numpy references: float32 products and ``np.partition`` top-k, the protocols' rules (BLUFR EvalROC / OpenSetROC,
MegaFace rank-1 and TAR@FAR) written out plainly; the MegaFace one rescores its few deciding scores in float64.
amlit's results are those of float64 arithmetic (``amlit.eval.exact``), so equal numbers are expected, except where
a float32 score of the BLUFR reference sits within ~1e-6 of a deciding one (counted as a mismatch, printed).

    PYTHONPATH=. .venv/bin/python scripts/bench_eval.py [--device=cuda] [--distractors=1000000] [--skip=lfw,megaface]
    PYTHONPATH=. .venv/bin/python scripts/bench_eval.py --json=out/eval.json   # every number also as JSON

Targets: on the CPU each protocol <= 1.5x its bare products; on one H100/H200 BLUFR 10 trials < 10 s, MegaFace 1M
< 30 s. The machine's load average is printed beside every measurement (the development machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from amlit.eval.blufr import evaluate_blufr, read_blufr_config
from amlit.eval.megaface import evaluate_megaface
from amlit.eval.pairs import PairList, read_lfw_pairs
from amlit.eval.verification import pair_verification_metrics

REPO = Path(__file__).resolve().parents[1]
# The real protocol files (LFW pairs.txt, the BLUFR config); scripts/gpu_prepare.sh copies them for a GPU machine.
SHARED_DATA = Path(os.environ.get("AMLIT_SHARED_DATA") or REPO.parent / "shared" / "data")
LFW_IMAGES = 13_233
DIM = 512
PROBES, PROBE_IDENTITIES = 3_530, 80
BLUFR_NOISE = 2.5  # noise norm relative to the subject direction: genuine cosine ~ 1 / (1 + 2.5^2)
SLACK = 1e-5  # numpy MegaFace reference: float32 scores this close to a probe's best are rescored in float64


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], object], device: torch.device) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    result = run()
    synchronize(device)
    return time.perf_counter() - start, result


def unit_rows(rows: int, generator: torch.Generator, device: torch.device, chunk: int = 65_536) -> torch.Tensor:
    """(rows, DIM) random unit vectors, float32, generated in chunks (1M x 512 is 2 GB)."""
    out = torch.empty(rows, DIM, dtype=torch.float32, device=device)
    for start in range(0, rows, chunk):
        block = torch.randn(min(chunk, rows - start), DIM, generator=generator, device=device)
        out[start : start + len(block)] = torch.nn.functional.normalize(block, dim=1)
    return out


def identity_features(labels: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """One random unit direction per label plus ``noise`` times a random unit vector, normalized: (N, DIM)."""
    device = labels.device
    _, index = torch.unique(labels, return_inverse=True)
    centres = unit_rows(int(index.max()) + 1, generator, device)
    return torch.nn.functional.normalize(centres[index] + noise * unit_rows(len(labels), generator, device), dim=1)


# ---- numpy references --------------------------------------------------------------------------------------------
def evalroc_accept(genuine: np.ndarray, impostor_desc: np.ndarray, num_impostors: int, far: float) -> np.ndarray:
    """BLUFR EvalROC: k = round(FAR * N) half away from zero; accept >= the k-th largest impostor (k = 0: >)."""
    product = far * num_impostors
    k = int(np.floor(product)) + (product - np.floor(product) >= 0.5)
    if k == 0:
        return genuine > impostor_desc[0]
    return genuine >= impostor_desc[k - 1] if k < num_impostors else np.ones_like(genuine, dtype=bool)


def numpy_verification(x: np.ndarray, labels: np.ndarray, fars, chunk: int = 2048) -> list[float]:
    sizes = np.unique(labels, return_counts=True)[1]
    num_impostors = len(x) * (len(x) - 1) // 2 - int((sizes * (sizes - 1) // 2).sum())
    k = max(int(np.floor(far * num_impostors)) + 1 for far in fars)
    genuine, top = [], np.empty(0, np.float32)
    for start in range(0, len(x), chunk):
        stop = min(start + chunk, len(x))
        block = x[start:stop] @ x[:stop].T
        lower = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
        same = labels[start:stop, None] == labels[None, :stop]
        genuine.append(block[lower & same])
        impostor = block[lower & ~same]
        merged = np.concatenate([top, impostor])
        top = np.partition(merged, len(merged) - k)[-k:] if len(merged) > k else merged
    genuine, top = np.concatenate(genuine), np.sort(top)[::-1]
    return [float(evalroc_accept(genuine, top, num_impostors, far).mean()) for far in fars]


def numpy_open_set(xg: np.ndarray, lg: np.ndarray, xp: np.ndarray, lp: np.ndarray, far: float, rank: int) -> float:
    scores = xg @ xp.T  # (G, P)
    match = lg[:, None] == lp[None, :]
    genuine = match.any(axis=0)
    impostor = np.sort(scores[:, ~genuine].max(axis=0))[::-1]
    scores, match = scores[:, genuine], match[:, genuine]
    mate_index = np.argmax(np.where(match, scores, -np.inf), axis=0)  # first best-scoring match
    mate = scores[mate_index, np.arange(scores.shape[1])]
    before = np.arange(len(xg))[:, None] < mate_index[None, :]
    ranks = 1 + ((scores > mate) | ((scores == mate) & before)).sum(axis=0)
    return float((evalroc_accept(mate, impostor, len(impostor), far) & (ranks <= rank)).mean())


def numpy_blufr(x: np.ndarray, config) -> dict[str, float]:
    trials = []
    for t in range(config.num_trials):
        test, gallery, probe = config.test_index[t], config.gallery_index[t], config.probe_index[t]
        labels = config.labels
        vr = numpy_verification(x[test], labels[test], (1e-4, 1e-3))
        dir_ = numpy_open_set(x[gallery], labels[gallery], x[probe], labels[probe], 1e-2, 1)
        trials.append([*vr, dir_])
    means = np.mean(trials, axis=0)
    return dict(zip(["vr@far=1e-4_mean", "vr@far=1e-3_mean", "dir@far=1e-2,rank=1_mean"], means.tolist(), strict=True))


def numpy_megaface(probes: np.ndarray, labels: np.ndarray, distractors: np.ndarray, far: float, chunk: int):
    """rank-1 (a distractor tying the mate counts against it) and TAR@FAR (EvalROC) over all probe x distractor
    impostor pairs, with float64 decisions: float32 products keep, for each probe, every distractor within
    ``SLACK`` of its best float32 score so far, and the k + 1000 largest impostor scores with their pairs; those are
    rescored in float64 (float32's error here is ~1e-6, far below the slack, and misorders far fewer than 1000
    scores); genuine scores in float64."""
    num_impostors = len(probes) * len(distractors)
    k = int(np.floor(far * num_impostors)) + 2
    keep = k + 1000
    best = np.full(len(probes), -np.inf, np.float32)
    near_rows, near_cols = [], []  # candidates for each probe's best distractor
    top_values, top_flat = np.empty(0, np.float32), np.empty(0, np.int64)  # flat = probe * N + distractor
    for start in range(0, len(distractors), chunk):
        scores = probes @ distractors[start : start + chunk].T  # (P, c) float32
        best = np.maximum(best, scores.max(axis=1))
        rows, cols = np.nonzero(scores >= (best - SLACK)[:, None])
        near_rows.append(rows)
        near_cols.append(cols + start)
        flat = scores.ravel()
        pick = np.argpartition(flat, len(flat) - keep)[-keep:] if len(flat) > keep else np.arange(len(flat))
        rows, cols = np.divmod(pick, scores.shape[1])
        top_values = np.concatenate([top_values, flat[pick]])
        top_flat = np.concatenate([top_flat, rows * len(distractors) + cols + start])
        if len(top_values) > keep:
            stay = np.argpartition(top_values, len(top_values) - keep)[-keep:]
            top_values, top_flat = top_values[stay], top_flat[stay]
    p64, d64 = probes.astype(np.float64), distractors.astype(np.float64)
    rows, cols = np.divmod(top_flat, len(distractors))
    top = np.sort(np.einsum("ij,ij->i", p64[rows], d64[cols]))[::-1]
    rows, cols = np.concatenate(near_rows), np.concatenate(near_cols)
    exact_best = np.full(len(probes), -np.inf)
    np.maximum.at(exact_best, rows, np.einsum("ij,ij->i", p64[rows], d64[cols]))  # each probe's best, float64
    probe_scores = p64 @ p64.T
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    rank1 = float((probe_scores > exact_best[:, None])[same].mean())
    i, j = np.tril_indices(len(labels), k=-1)
    genuine = probe_scores[i, j][labels[i] == labels[j]]
    tar = float(evalroc_accept(genuine, top, num_impostors, far).mean())
    return {"rank1": rank1, "tar@far=1e-6": tar}


# ---- bare products ----------------------------------------------------------------------------------------------
def blufr_products(features: torch.Tensor, config, chunk: int = 2048, probe_chunk: int = 4096) -> None:
    for t in range(config.num_trials):
        x = features[torch.as_tensor(config.test_index[t], device=features.device)]
        for start in range(0, len(x), chunk):
            x[start : start + chunk] @ x[: start + chunk].T
        gallery = features[torch.as_tensor(config.gallery_index[t], device=features.device)]
        probes = features[torch.as_tensor(config.probe_index[t], device=features.device)]
        for start in range(0, len(probes), probe_chunk):
            gallery @ probes[start : start + probe_chunk].T


def megaface_products(probes: torch.Tensor, distractors: torch.Tensor, chunk: int) -> None:
    out = torch.empty(len(probes) * chunk, device=probes.device)
    for start in range(0, len(distractors), chunk):
        block = distractors[start : start + chunk].to(probes.device, non_blocking=True)
        torch.mm(probes, block.T, out=out[: len(probes) * len(block)].view(len(probes), len(block)))


# ---- the benchmark -----------------------------------------------------------------------------------------------
def compare(name: str, ours: dict, reference: dict) -> dict:
    mismatches = {k: (ours[k], v) for k, v in reference.items() if abs(ours[k] - v) > 1e-12}
    print(f"  {name}: amlit vs numpy: " + ("same numbers" if not mismatches else f"DIFFERENT {mismatches}"))
    return {"same_numbers": not mismatches, "amlit": {k: ours[k] for k in reference}, "numpy": reference}


def run_protocol(name: str, protocol, products, reference, device: torch.device) -> dict:
    """Times the bare products, the protocol and the numpy reference, in this order, and prints one line each."""
    record = {"load_before": os.getloadavg()}
    product_s, _ = timed(products, device)
    print(f"{name}: bare float32 score products {product_s:.2f} s ({load()})", flush=True)
    protocol_s, result = timed(protocol, device)
    print(f"{name}: amlit {protocol_s:.2f} s = {protocol_s / product_s:.2f}x the bare products ({load()})", flush=True)
    record.update(products_s=product_s, amlit_s=protocol_s, ratio=protocol_s / product_s)
    if reference is not None:
        numpy_s, expected = timed(reference, torch.device("cpu"))
        print(f"{name}: numpy reference {numpy_s:.2f} s ({load()})", flush=True)
        record.update(numpy_s=numpy_s, **compare(name, result, expected))
    return record


# Runs amlit's CLI and prints the process's own peak RSS at exit. VmHWM belongs to the process's memory map, which
# exec replaces; ru_maxrss would also count the benchmark's own gigabytes, which the child shares until its exec.
PEAK_REPORTER = """
import atexit, re, runpy, sys
def report():
    status = open('/proc/self/status').read()
    print('PEAK_RSS_KB', re.search(r'VmHWM:\\s*(\\d+)', status).group(1), file=sys.stderr)
atexit.register(report)
sys.argv = ['amlit', *sys.argv[1:]]
runpy.run_module('amlit', run_name='__main__')
"""


def score_subprocess(args: list[str]) -> dict:
    """Wall time and peak memory (the child's own VmHWM) of an ``amlit`` tool command run as a new process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK_REPORTER, *args], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    peak_kb = int(done.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
    return {"wall_s": seconds, "max_rss_gb": peak_kb / 2**20, "stdout": done.stdout[-500:]}


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
    parser.add_argument("--skip", default="", help="comma-separated: lfw, blufr, megaface, numpy, cli")
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA, help="folder of lfw/pairs.txt, blufr/")
    parser.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = parser.parse_args()
    device, skip = torch.device(args.device), set(filter(None, args.skip.split(",")))
    generator = torch.Generator(device=device).manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {load()}")
    report: dict = {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads()}
    scratch = Path(tempfile.mkdtemp(prefix="amlit-bench-eval-"))

    if "lfw" not in skip:
        pairs_path = args.shared_data / "lfw" / "pairs.txt"
        pairs = read_lfw_pairs(pairs_path) if pairs_path.is_file() else random_pairs(np.random.default_rng(0))
        people = torch.as_tensor([hash(p.split("/")[0]) % 2**31 for p in pairs.images], device=device)
        features = identity_features(people, BLUFR_NOISE / 2, generator)
        seconds, metrics = timed(lambda: pair_verification_metrics(features, pairs), device)
        print(f"LFW 10-fold ({len(pairs)} pairs): protocol {seconds:.2f} s, acc {metrics['acc']:.4f} ({load()})")
        report["lfw"] = {"protocol_s": seconds, "acc": metrics["acc"]}
        if "cli" not in skip:
            npz = scratch / "lfw.npz"
            np.savez(npz, names=np.array(pairs.images), features=features.cpu().numpy())
            report["lfw"]["cli"] = score_subprocess(["score", "lfw", f"--embeddings={npz}", f"--pairs={pairs_path}"])
            print(f"  `amlit score lfw` end to end: {report['lfw']['cli']['wall_s']:.2f} s ({load()})")

    config_path = args.shared_data / "blufr" / "blufr_lfw_config.mat"
    if "blufr" not in skip and config_path.is_file():
        config = read_blufr_config(config_path)
        features = identity_features(torch.as_tensor(config.labels, device=device), BLUFR_NOISE, generator)
        x = features.cpu().numpy()
        report["blufr"] = run_protocol(
            f"BLUFR {config.num_trials} trials",
            lambda: evaluate_blufr((config.image_list, features), config),
            lambda: blufr_products(features, config),
            None if "numpy" in skip else (lambda: numpy_blufr(x, config)),
            device,
        )

    if "megaface" not in skip:
        labels = torch.arange(PROBES, device=device) % PROBE_IDENTITIES  # 80 identities of 44-45 images
        # Images of an identity share a centre (cosine ~0.2 between them, about the best of 1M random distractors),
        # so the metrics are neither 0 nor 1.
        centres = unit_rows(PROBE_IDENTITIES, generator, device)
        probes = torch.nn.functional.normalize(centres[labels] + 2 * unit_rows(PROBES, generator, device), dim=1)
        distractors = unit_rows(args.distractors, generator, "cpu" if device.type == "cpu" else device)
        p, lab, d = probes.cpu().numpy(), labels.cpu().numpy(), distractors.cpu().numpy()
        report["megaface"] = run_protocol(
            f"MegaFace {PROBES} probes x {args.distractors} distractors",
            lambda: evaluate_megaface(probes, labels, distractors, chunk=args.chunk, device=device, progress=False),
            lambda: megaface_products(probes, distractors, args.chunk),
            None if "numpy" in skip else (lambda: numpy_megaface(p, lab, d, 1e-6, args.chunk)),
            device,
        )
        if "cli" not in skip:
            np.savez(scratch / "probes.npz", names=np.array([f"id{i % 80}/{i}.png" for i in range(PROBES)]), features=p)
            np.savez(scratch / "distractors.npz", names=np.array([f"d/{i}.jpg" for i in range(len(d))]), features=d)
            del d, distractors
            report["megaface"]["cli"] = cli = score_subprocess(
                [
                    "score",
                    "megaface",
                    f"--probes={scratch / 'probes.npz'}",
                    f"--distractors={scratch / 'distractors.npz'}",
                    f"--device={device}",
                ]
            )
            print(f"  `amlit score megaface` end to end: {cli['wall_s']:.2f} s, peak {cli['max_rss_gb']:.2f} GB")

    for path in scratch.iterdir():
        path.unlink()
    scratch.rmdir()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
