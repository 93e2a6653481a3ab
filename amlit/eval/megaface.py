"""MegaFace challenge 1 (Kemelmacher-Shlizerman et al., CVPR 2016, arXiv:1512.00596) scored by amlit on the device.

Protocol (the devkit's ``run_experiment.py`` with the identity JB model = L2 distance on
L2-normalized features, which ranks exactly like the cosine score s used here, since ||a - b||² = 2 - 2 s):

- Identification. For each probe identity with images I, each gallery image g in I is added in turn to the
  distractor set D and every other image p in I \\ {g} is a probe: one trial per ordered pair (p, g) of distinct
  same-identity images (3,530 FaceScrub images of 80 identities -> ~155k trials). The rank of the trial is
  ``1 + #{d in D : s(p, d) >= s(p, g)}``: **a distractor that ties the mate counts against the probe** (the
  pessimistic convention). CMC(r) = fraction of trials with rank <= r, i.e.
  ``s(p, g) > r-th largest s(p, d)``, so a running per-probe top-r of distractor scores is all that is kept.
  Rank-1 identification rate = CMC(1) (the devkit's ``cmc[1][0]``).
- Verification. Genuine scores: every unordered pair of distinct same-identity probe images; impostor scores: every
  probe x distractor pair (3,530 x 1M = 3.5e9, never stored). TAR at the FAR target by ``far_rule`` (the rules of
  ``amlit.eval.far``: ``evalroc`` by default, ``at_most`` as the insightface maintainer reads the devkit's ROC,
  ``interpolated`` as happynear's ``Megaface/draw_curve.m``); with 1M distractors 1e-6 * N_imp = 3,530 is an integer
  and the three differ only by genuine scores between two adjacent impostor scores. Only the floor(FAR * N_imp) + 2
  largest impostor scores are needed (a running top-k over distractor chunks, exact).
  The ROC curve returned (``roc_curve``) has the operating points j / N_imp (accepting scores above the (j+1)-th
  largest impostor score) for j < k + 2, log-spaced ones up to the largest impostor scores kept, and above those
  points read from a histogram of a random subset of the impostor scores (bins of width 2 / ``roc_bins`` in cosine).

Scores are float32 products (the cost) on ``device`` (CUDA when available), distractors streamed in chunks of
``chunk`` rows: the P x N matrix never exists. Every score a metric reads is recomputed in float64
(``amlit.eval.exact``): the results are those of float64 arithmetic on the features as given.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amlit import keys
from amlit.errors import BadDataError, ConfigError, MissingDataError, listed
from amlit.eval.curves import Curve
from amlit.eval.exact import (
    RunningTop,
    RunningTopPerRow,
    entries_at_or_above,
    full_precision_matmul,
    pair_dots,
    rounding_bound,
)
from amlit.eval.far import (
    FarRule,
    calibration_impostors_needed,
    calibration_metrics,
    calibration_ranks,
    check_far,
    deciding_ranks,
    tar_at_far,
    top_impostors_needed,
)
from amlit.eval.label_pairs import genuine_pairs
from amlit.listfiles import read_entries
from amlit.progress import progress_bar

MEGAFACE_FAR = 1e-6  # the verification point reported for challenge 1
MAX_RANK = 10  # CMC ranks kept (running top-10 of distractor scores per probe)
# The devkit's distractor set sizes (templatelists/megaface_features_list.json_<size>_<set>): rank-1 is reported at
# each, the way MegaFace's papers plot identification against the number of distractors.
DISTRACTOR_COUNTS = (10, 100, 1_000, 10_000, 100_000, 1_000_000)
# A distractor this close to a probe is the probe's own image (a copy among the distractors): one image embedded
# twice by one model agrees to ~1e-6 in cosine (~2e-5 under bf16), two photos of one face stay far below.
SAME_IMAGE_COSINE = 0.9999


@dataclass(frozen=True)
class DistractorScan:
    """What one pass over the distractors keeps: all that identification, verification and the ROC need."""

    top_per_probe: torch.Tensor  # (P, max_rank) largest distractor scores of each probe, descending; -inf padded
    best_at_count: dict[int, torch.Tensor]  # n -> (P,) each probe's best score among the first n scanned
    top_impostors: torch.Tensor  # (K,) largest probe x distractor scores, descending (K <= N_imp)
    sampled_histogram: torch.Tensor  # (roc_bins,) counts of the scores of the first distractors scanned
    sampled_impostors: int  # how many scores the histogram holds
    num_impostors: int  # P * N


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def histogram_bins(scores: torch.Tensor, roc_bins: int) -> torch.Tensor:
    """Bin index of each cosine score in ``roc_bins`` equal bins over [-1, 1] (bin b = [-1 + 2b/B, -1 + 2(b+1)/B)),
    clamped so that rounding outside [-1, 1] stays in the end bins. Same shape as ``scores``, int32 (half the memory
    of int64; truncation equals floor here because the clamp sends every negative value to bin 0)."""
    return scores.add(1).mul_(roc_bins / 2).int().clamp_(0, roc_bins - 1)


def _pieces(num_distractors: int, counts: Sequence[int], chunk: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``chunk`` distractors that cover 0..N and end on every one of ``counts``."""
    ends = [*counts, num_distractors]
    return [(a, min(a + chunk, n)) for low, n in itertools.pairwise([0, *ends]) for a in range(low, n, chunk)]


def scan_distractors(
    probe_features: torch.Tensor,
    distractor_features: torch.Tensor,
    num_top_impostors: int,
    exact_top: int = 0,
    exact_ranks: Sequence[int] = (),
    max_rank: int = MAX_RANK,
    counts: Sequence[int] = (),
    seed: int = 0,
    roc_bins: int = 2000,
    roc_sample_scores: int = 2**25,
    chunk: int = 16384,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> DistractorScan:
    """One chunked pass: probe_features (P, D) against distractor_features (N, D), both L2-normalized; scores in
    float32, the ones that decide recomputed in float64 (``amlit.eval.exact``), so every value returned that a
    metric reads is the float64 score.

    Distractors are visited in the order of one seeded permutation (``numpy.random.default_rng(seed)``) when
    ``counts`` (each < N) are given, so that the first n visited are a random subset of n, nested for growing n;
    else in their own order. Per chunk of c distractors: scores (P, c) = one float32 product, and only the entries
    that can be among a probe's ``max_rank`` largest or among the ``num_top_impostors`` largest of all (few, after
    the first chunks) are kept, with their (probe, distractor); the first ones visited, up to about
    ``roc_sample_scores`` scores, also go into the ROC's histogram. Memory: O(P * c) on the device, whatever N is.
    Exact in float64: ``top_per_probe``, ``best_at_count``, the first ``exact_top`` values of ``top_impostors`` and
    those at ``exact_ranks`` (0-based); its other values are the float32 ones.
    """
    if chunk < 1 or max_rank < 1 or num_top_impostors < 1 or roc_bins < 1:
        raise ConfigError(
            f"chunk, max_rank, num_top_impostors and roc_bins must be >= 1, got {chunk}, {max_rank}, "
            f"{num_top_impostors}, {roc_bins}"
        )
    device = torch.device(device) if device is not None else default_device()
    probes = probe_features.to(device)
    num_probes, num_distractors = len(probes), len(distractor_features)
    counts = sorted({int(n) for n in counts if 0 < int(n) < num_distractors})
    order = torch.from_numpy(np.random.default_rng(seed).permutation(num_distractors)) if counts else None
    margin = rounding_bound(probes, distractor_features)

    def rescore(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return pair_dots(probes, distractor_features, rows, cols)

    approximate = probes.float()
    buffer = torch.empty(num_probes * min(chunk, num_distractors), device=device)  # reused: no page faults
    pieces = _pieces(num_distractors, counts, chunk)
    order_here = order.to(device) if order is not None else None  # distractor index of each scanned column
    sampled = min(num_distractors, math.ceil(roc_sample_scores / max(num_probes, 1)))  # distractors in the histogram
    # A guessed first cut for the global top (RunningTop.guess_cut) is checked at the end; rarely, a second pass.
    for guess in (True, False):
        per_probe = RunningTopPerRow(num_probes, max_rank, margin, device)
        top = RunningTop(num_top_impostors, margin, device)
        histogram = torch.zeros(roc_bins, dtype=torch.int64, device=device)
        best_at_count = {}
        with full_precision_matmul():
            for start, stop in progress_bar(pieces, desc="MegaFace distractors", disable=not progress, leave=False):
                index = order[start:stop] if order is not None else slice(start, stop)
                block = distractor_features[index].to(device, torch.float32, non_blocking=True)  # (c, D)
                scores = torch.mm(approximate, block.T, out=buffer[: num_probes * len(block)].view(num_probes, -1))
                if start < sampled:
                    bins = histogram_bins(scores[:, : sampled - start], roc_bins)
                    histogram += torch.bincount(bins.reshape(-1), minlength=roc_bins)
                if not top.has_cut and guess:
                    top.guess_cut(scores.reshape(-1)[:: max(1, scores.numel() // 2**22)], num_probes * num_distractors)
                if not top.has_cut:
                    top.raise_cut(scores)
                if not torch.isfinite(per_probe.cut[0]):  # every row gets its cut at once
                    per_probe.raise_cut(scores)
                rows, cols, values = entries_at_or_above(scores, torch.minimum(per_probe.cut, top.cut))
                cols = cols + start if order_here is None else order_here[cols + start]
                mine, theirs = values >= per_probe.cut[rows], values >= top.cut
                per_probe.add(values[mine], rows[mine], cols[mine])
                top.add(values[theirs], rows[theirs], cols[theirs])
                if stop in counts:
                    best_at_count[stop] = per_probe.exact(rescore, 1)[:, 0]
        if top.complete:
            break
    return DistractorScan(
        top_per_probe=per_probe.exact(rescore),
        best_at_count=best_at_count,
        top_impostors=top.exact(rescore, exact_ranks, prefix=exact_top),
        sampled_histogram=histogram,
        sampled_impostors=num_probes * sampled,
        num_impostors=num_probes * num_distractors,
    )


def identification_rates(
    genuine: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, best: torch.Tensor
) -> torch.Tensor:
    """Identification rate of every trial at each rank: the scores (G,) of the same-identity pairs (rows, cols),
    each pair two trials (probe = row, gallery = column, and the other way round), against each probe's largest
    distractor scores ``best`` (P, R) -> (R,) float64. Trial (p, g) succeeds at rank r iff ``s(p, g) >
    best[p, r-1]`` (a distractor that ties the mate counts against it)."""
    successes = (genuine[:, None] > best[rows]).sum(dim=0) + (genuine[:, None] > best[cols]).sum(dim=0)  # (R,)
    return successes.double() / (2 * len(genuine))


def roc_curve(genuine: torch.Tensor, scan: DistractorScan, exact_points: int, middle_points: int = 200) -> Curve:
    """ROC (FAR ascending, log x) of accepting scores above a threshold.

    Three parts: every operating point j / N_imp for j < ``exact_points`` (threshold: the (j+1)-th largest impostor
    score, exact); ``middle_points`` log-spaced points j up to the last kept impostor score (float32 thresholds);
    then the histogram's bin edges, their FAR estimated from the histogram's share of the scores (a random subset of
    the distractors when not all were sampled; with 2^25 sampled scores FAR is within ~0.5% from 1e-3 up)."""
    top = scan.top_impostors.double().cpu()
    exact = np.arange(min(exact_points, len(top)))
    middle = np.unique(np.geomspace(max(len(exact), 1), len(top), middle_points).astype(np.int64) - 1)
    points = np.union1d(exact, middle[middle >= len(exact)])
    ordered = genuine.double().cpu().sort().values
    accepted = len(ordered) - torch.searchsorted(ordered, top[points], right=True).numpy()
    point_far, point_tar = points / scan.num_impostors, accepted / len(ordered)
    # Bin edge e_b = -1 + 2b/B: accepting bins >= b gives FAR = share of the sampled impostors in bins >= b; the
    # genuine scores go through the same binning so both rates describe the same decision.
    bins = len(scan.sampled_histogram)
    impostors_at_or_above = scan.sampled_histogram.flip(0).cumsum(0).flip(0).cpu().numpy()  # (B,)
    genuine_bins = torch.bincount(histogram_bins(ordered, bins), minlength=bins)
    genuine_at_or_above = genuine_bins.flip(0).cumsum(0).flip(0).numpy()
    binned_far = impostors_at_or_above / scan.sampled_impostors
    binned_tar = genuine_at_or_above / len(ordered)
    beyond = binned_far > (point_far[-1] if len(points) else 0)
    far = np.concatenate([point_far, binned_far[beyond][::-1]])
    tar = np.concatenate([point_tar, binned_tar[beyond][::-1]])
    return Curve(far, tar, x_label="false accept rate", y_label="true accept rate", log_x=True)


def _warn_of_probe_copies(best: torch.Tensor, probe_names: Sequence[str] | None) -> None:
    """Warn when probes' best distractor scores (P,) say that the distractors hold the probes' own images."""
    copies = torch.nonzero(best >= SAME_IMAGE_COSINE).flatten().tolist()
    if not copies:
        return
    examples = listed([probe_names[i] if probe_names is not None else f"probe {i}" for i in copies], 3)
    warnings.warn(
        f"{len(copies)} of the {len(best)} probes have a distractor at cosine >= {SAME_IMAGE_COSINE} (e.g. "
        f"{examples}): the distractors hold copies of those probe images, so each of them finds itself before its "
        "mates and rank-1 and TAR are too low; MegaFace's distractors must not contain the probe images (are "
        "--probes and --distractors the same features?)",
        stacklevel=3,
    )


def evaluate_megaface(
    probe_features: torch.Tensor,
    probe_labels: torch.Tensor | Sequence[int],
    distractor_features: torch.Tensor,
    far: float = MEGAFACE_FAR,
    far_rule: FarRule = "evalroc",
    max_rank: int = MAX_RANK,
    roc_bins: int = 2000,
    chunk: int = 16384,
    device: torch.device | str | None = None,
    progress: bool = True,
    distractor_counts: Sequence[int] = DISTRACTOR_COUNTS,
    distractor_seed: int = 0,
    probe_names: Sequence[str] | None = None,
) -> dict[str, float | Curve]:
    """MegaFace challenge 1 on L2-normalized features: probes (P, D) with identity labels (P,), distractors (N, D)
    (any N, e.g. the devkit's 10 .. 1,000,000; kept where they are and streamed to ``device`` in chunks).

    Returns ``rank1`` (identification rate at rank 1), ``tar@far=<far>`` (``amlit.keys.far_key``, e.g.
    ``tar@far=1e-6``), ``cmc`` (Curve, ranks 1..max_rank), ``roc`` (Curve, log FAR), and the counts
    ``num_probes``, ``num_distractors``, ``num_identification_trials``, ``num_genuine_pairs``; and rank-1 against
    the number of distractors (nested random subsets, ``distractor_seed``): ``rank1@distractors=<n>``
    (``amlit.keys.distractors_key``) for each n of ``distractor_counts`` below N, and the Curve
    ``rank1_vs_distractors`` (those n and N), read along the same single pass. Also the calibrated
    ``threshold@far=<FAR>`` with ``num_impostors`` (``amlit.eval.far.calibration_metrics``). Every score a metric
    reads is the float64 one (``scan_distractors``), so the metrics are those of float64 arithmetic.

    Probes with a distractor at cosine >= ``SAME_IMAGE_COSINE`` (their own image among the distractors: each such
    probe fails every trial) are reported in a warning, by ``probe_names`` when given; read from the scan's top
    scores, at no extra cost.
    """
    if probe_features.ndim != 2 or distractor_features.ndim != 2:
        raise BadDataError(
            f"features must be (N, D) matrices, got probes {tuple(probe_features.shape)} and distractors "
            f"{tuple(distractor_features.shape)}"
        )
    if probe_features.shape[1] != distractor_features.shape[1]:
        raise BadDataError(
            f"probe features are {probe_features.shape[1]}-d but distractor features {distractor_features.shape[1]}-d;"
            " embed both with the same model"
        )
    if len(distractor_features) == 0:
        raise BadDataError("MegaFace needs at least one distractor feature; got none")
    check_far(far, far_rule)
    device = torch.device(device) if device is not None else default_device()
    probes = probe_features.to(device)
    labels = torch.as_tensor(probe_labels, device=device)
    if labels.shape != (len(probes),):
        raise BadDataError(f"got {len(labels)} probe labels for {len(probes)} probe features; expected one each")
    rows, cols = genuine_pairs(labels)  # (G,) each: the same-identity pairs i > j
    if len(rows) == 0:
        raise BadDataError("MegaFace identification needs an identity with at least two probe images; none has")
    num_impostors = len(probes) * len(distractor_features)
    roc_exact = top_impostors_needed(far, num_impostors, "interpolated")  # exact ROC points, as many as any rule reads
    scan = scan_distractors(
        probes,
        distractor_features,
        # Every rule's and the ROC's, and the calibrated thresholds' (FAR 1e-3 at 1M distractors: 3.5M kept).
        num_top_impostors=max(roc_exact, calibration_impostors_needed(num_impostors)),
        exact_top=roc_exact,
        exact_ranks=[*deciding_ranks(far, num_impostors, far_rule), *calibration_ranks(num_impostors)],
        max_rank=max_rank,
        counts=distractor_counts,
        seed=distractor_seed,
        roc_bins=roc_bins,
        chunk=chunk,
        device=device,
        progress=progress,
    )
    _warn_of_probe_copies(scan.top_per_probe[:, 0], probe_names)
    genuine = pair_dots(probes, probes, rows, cols)  # (G,) float64
    cmc = identification_rates(genuine, rows, cols, scan.top_per_probe).cpu().numpy()
    by_count = {
        n: float(identification_rates(genuine, rows, cols, best[:, None])[0]) for n, best in scan.best_at_count.items()
    }
    by_count[len(distractor_features)] = float(cmc[0])  # all of them: the CMC's rank 1
    shown = {keys.distractors_key(n): rate for n, rate in by_count.items() if n in set(distractor_counts)}
    return {
        **shown,
        "rank1_vs_distractors": Curve(
            np.array(sorted(by_count), dtype=np.float64),
            np.array([by_count[n] for n in sorted(by_count)]),
            x_label="distractors",
            y_label="rank-1 identification rate",
            log_x=True,
        ),
        "rank1": float(cmc[0]),
        keys.far_key(far): tar_at_far(genuine, scan.top_impostors, num_impostors, far, far_rule),
        "cmc": Curve(np.arange(1, max_rank + 1, dtype=np.float64), cmc, x_label="rank", y_label="identification rate"),
        "roc": roc_curve(genuine, scan, roc_exact),
        "num_probes": float(len(probes)),
        "num_distractors": float(len(distractor_features)),
        "num_identification_trials": float(2 * len(genuine)),
        "num_genuine_pairs": float(len(genuine)),
        **calibration_metrics(scan.top_impostors, num_impostors),
    }


# ---------------------------------------------------------------------------------------------------------------
# Devkit files: feature files, JSON image lists, probe identities
#
# Feature file (devkit ``scripts/matio.py``; insightface ``gen_megaface.py write_bin``): an OpenCV Mat in binary,
# little-endian: int32 rows (= D), int32 cols (= 1), int32 stride (= 4 bytes), int32 type (= 5, CV_32F), then D
# float32 -> 16 + 4 D bytes. The feature of list entry ``P`` lives at ``<root>/P<ending>`` (e.g.
# ``Adam_Brody/Adam_Brody_420.png_amlit.bin``). Lists are JSON objects with a ``"path"`` array
# (``templatelists/facescrub_features_list.json``, ``megaface_features_list.json_<size>_<set>``).

HEADER = struct.Struct("<4i")  # rows, cols, stride, type
CV_32F = 5
_IO_THREADS = 8  # reading a million small files is latency-bound, not CPU-bound


def read_feature_file(path: str | Path) -> np.ndarray:
    """One devkit feature file -> (D,) float32."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingDataError(
            f"feature file not found: {path}; expected <root>/<list path><ending> for every list entry "
            "(check --*_root and --ending)"
        ) from None
    if len(data) < HEADER.size:
        raise BadDataError(f"{path} has {len(data)} bytes; a devkit feature file starts with a 16-byte header")
    rows, cols, stride, kind = HEADER.unpack_from(data)
    if rows < 1 or cols != 1 or stride != 4 or kind != CV_32F:
        raise BadDataError(
            f"{path}: header (rows, cols, stride, type) = ({rows}, {cols}, {stride}, {kind}); expected (D, 1, 4, 5), "
            "a float32 column vector written by the MegaFace devkit's matio / insightface gen_megaface.py"
        )
    if len(data) != HEADER.size + 4 * rows:
        raise BadDataError(
            f"{path} has {len(data)} bytes; its header says {rows} float32 values, so expected {HEADER.size + 4 * rows}"
        )
    return np.frombuffer(data, dtype="<f4", offset=HEADER.size).astype(np.float32)


def write_feature_file(path: str | Path, feature: np.ndarray) -> None:
    """Write one (D,) feature as a devkit feature file (parent folders created)."""
    values = np.asarray(feature, dtype="<f4").reshape(-1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HEADER.pack(len(values), 1, 4, CV_32F) + values.tobytes())


def read_image_list(path: str | Path) -> list[str]:
    """The ``"path"`` array of a devkit JSON list."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"MegaFace list not found: {path}; expected a devkit templatelists/*.json* file with a 'path' array"
        )
    try:
        paths = json.loads(path.read_text())["path"]
    except (ValueError, KeyError, TypeError) as error:
        raise BadDataError(f"{path} is not a devkit list (JSON object with a 'path' array of image paths)") from error
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadDataError(f"{path}: 'path' must be an array of image path strings")
    return paths


def feature_path(root: str | Path, image: str, ending: str) -> Path:
    """``<root>/<image><ending>``, the devkit's naming (the ending is appended to the full image file name)."""
    return Path(root) / f"{image}{ending}"


def read_features(
    images: Sequence[str], root: str | Path, ending: str, progress: bool = True, description: str = "features"
) -> np.ndarray:
    """Features of ``images`` (list paths) from a devkit feature tree -> (N, D) float32, in list order."""
    paths = [feature_path(root, image, ending) for image in images]
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        reads = pool.map(read_feature_file, paths)
        features = list(progress_bar(reads, total=len(paths), desc=description, disable=not progress))
    if not features:
        raise BadDataError(f"no features to read under {root}: the list is empty")
    dims = {len(f) for f in features}
    if len(dims) != 1:
        raise BadDataError(f"feature files under {root} have different dimensions {sorted(dims)}; expected one")
    return np.stack(features)


def write_features(
    images: Sequence[str], features: np.ndarray, root: str | Path, ending: str, progress: bool = True
) -> None:
    """Write a devkit feature tree: one file ``<root>/<image><ending>`` per row of ``features`` (N, D)."""
    if len(images) != len(features):
        raise BadDataError(f"got {len(images)} image names for {len(features)} features; expected one each")
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        paths = [feature_path(root, image, ending) for image in images]
        jobs = pool.map(write_feature_file, paths, features)
        for _ in progress_bar(jobs, total=len(images), desc="writing feature files", disable=not progress):
            pass


def identity_of(image: str) -> str:
    """FaceScrub identity of a probe path ``<Name>/<Name>_<n>.png`` (folder; else the file name before ``_<n>``)."""
    parts = image.replace("\\", "/").split("/")
    if len(parts) > 1:
        return parts[-2]
    stem = parts[-1].rsplit("_", 1)
    if len(stem) != 2:
        raise BadDataError(f"cannot tell the identity of probe image {image!r}; expected <Name>/<Name>_<n>.png")
    return stem[0]


def identity_labels(images: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(labels (N,) int64, identity names) with label i = ``names[i]``; names sorted."""
    identities = [identity_of(image) for image in images]
    names = sorted(set(identities))
    index = {name: label for label, name in enumerate(names)}
    return np.array([index[identity] for identity in identities], dtype=np.int64), names


def read_identity_names(path: str | Path) -> list[str]:
    """One identity per line (``#`` comments allowed), e.g. ``facescrub_set1_names_80.txt``."""
    path = Path(path)
    missing = f"identity list not found: {path}; expected one FaceScrub name per line (facescrub_set1_names_80.txt)"
    return [entry for _, entry in read_entries(path, missing)]


def select_identities(names: list[str], identities_file: str | Path) -> np.ndarray:
    """Row mask of the probes whose identity is listed; every listed identity must have a probe."""
    wanted = read_identity_names(identities_file)
    present = {identity_of(name) for name in names}
    missing = [name for name in wanted if name not in present]
    if missing:
        raise BadDataError(
            f"{len(missing)} identities of {identities_file} have no probe image (e.g. {', '.join(missing[:5])}); "
            "embed the full FaceScrub probe set"
        )
    wanted_set = set(wanted)
    return np.array([identity_of(name) in wanted_set for name in names], dtype=bool)
