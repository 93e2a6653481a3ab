"""BLUFR on LFW (Liao, Lei, Yi, Li, IJCB 2014): verification at low FAR and open-set identification.

Exactly as the official MATLAB toolkit v1.0 (``code/EvalROC.m``, ``code/OpenSetROC.m``, ``code/demo_pca.m``):

- Verification (EvalROC on the square score matrix of a trial's test set): the strict lower triangle of the matrix
  gives the pairs; genuine = same label, impostor = different. ``falseAlarms = round(FAR * Nimp)`` (MATLAB round:
  half away from zero). The threshold is the ``falseAlarms``-th largest impostor score (1-based); for
  ``falseAlarms == 0`` it is ``(imp(1) + min(gen > imp(1))) / 2`` (``imp(1) + sqrt(eps)`` when no genuine score
  exceeds ``imp(1)``); for ``falseAlarms == Nimp`` it is ``min(imp(end), min(gen)) - sqrt(eps)``.
  VR = mean(gen >= threshold). This is the ``evalroc`` rule of ``amlit.eval.far`` (the default of every protocol);
  ``far_rule`` picks another one.
- Open-set identification (OpenSetROC on gallery x probe scores): a probe is genuine iff its label is in the gallery.
  The threshold comes from the impostor probes' maximum gallery scores as above. A genuine probe's score is its best
  mate score; its rank is the 1-based position of that mate in the stable descending sort of the probe's gallery
  scores. DIR(rank r, FAR) = mean over genuine probes of [mate score >= threshold and rank <= r].
- Report per measure the mean, the sample standard deviation (ddof=1, MATLAB ``std``) and mean - std over the 10
  trials (the toolkit README: "report the (mu-sigma) performance, not the average").

Scores are cosine similarities: features are assumed L2-normalized, so a score is a dot product, exact in float64
like MATLAB's doubles: the products run in float32 and the scores that decide are recomputed in float64
(``amlit.eval.exact``), which gives the float64 counts at about the cost of the float32 products. The toolkit's
demo first learns a PCA on each trial's training set; like happynear's version used by AM-Softmax, no PCA is
applied here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amlit import keys
from amlit.errors import BadDataError, MissingDataError
from amlit.eval.embeddings import unmatched_hint
from amlit.eval.exact import RunningTop, entries_at_or_above, full_precision_matmul, pair_dots, rounding_bound
from amlit.eval.far import (
    FarRule,
    accept_rate,
    calibration_impostors_needed,
    calibration_metrics,
    calibration_ranks,
    deciding_ranks,
    operating_points,
    tar_at_far,
    top_impostors_needed,
)
from amlit.eval.label_pairs import count_pairs, genuine_pairs

VR_FARS = (1e-4, 1e-3)  # verification FAR points reported (toolkit default 1e-3; AM-Softmax also 1e-4)
DIR_FAR = 1e-2  # open-set identification FAR point reported, at rank 1
DIR_RANK = 1
# The official blufr_lfw_config.mat has 10 trials, and published BLUFR numbers (the AM-Softmax paper's included) are
# mean - std over those 10 (the toolkit README); over another number of trials the std, and so the figure, differs.
OFFICIAL_TRIALS = 10
_CONFIG_VARIABLES = ("imageList", "labels", "trainIndex", "testIndex", "galIndex", "probIndex")


@dataclass(frozen=True, eq=False)
class BlufrConfig:
    """The BLUFR protocol: image names, labels and, per trial, 0-based indexes into ``image_list``."""

    image_list: list[str]  # (N,) file names in the config's order (not sorted), e.g. "Aaron_Eckhart_0001.jpg"
    labels: np.ndarray  # (N,) int64 subject labels (1..5749 for LFW)
    train_index: list[np.ndarray]  # per trial, (n_train,) int64
    test_index: list[np.ndarray]  # per trial, (n_test,) int64; = gallery ∪ probe
    gallery_index: list[np.ndarray]  # per trial, (n_gallery,) int64
    probe_index: list[np.ndarray]  # per trial, (n_probe,) int64

    @property
    def num_trials(self) -> int:
        return len(self.test_index)


def _index_cell(mat: dict, name: str, path: Path) -> list[np.ndarray]:
    """A MATLAB cell of 1-based index column vectors -> list of 0-based int64 arrays."""
    try:
        return [np.asarray(cell, dtype=np.int64).ravel() - 1 for cell in np.asarray(mat[name], dtype=object).ravel()]
    except (TypeError, ValueError) as error:
        raise BadDataError(
            f"{path}: variable {name!r} is not a cell of index vectors ({error}); "
            "use the official blufr_lfw_config.mat from the BLUFR toolkit (config/lfw/)"
        ) from error


def read_blufr_config(path: str | Path) -> BlufrConfig:
    """Read the official ``blufr_lfw_config.mat`` (variables imageList, labels, trainIndex, testIndex, galIndex,
    probIndex; indexes 1-based in the file, 0-based in the result)."""
    import scipy.io

    path = Path(path)
    if path.is_dir():  # e.g. the toolkit's config/lfw folder: "not found" would send the user looking elsewhere
        raise BadDataError(f"{path} is a folder; expected the BLUFR config file (e.g. {path}/blufr_lfw_config.mat)")
    if not path.is_file():
        raise MissingDataError(
            f"BLUFR config not found: {path}. Expected the official blufr_lfw_config.mat "
            "(BLUFR toolkit, config/lfw/blufr_lfw_config.mat); download it and pass its path."
        )
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for a file that is not a MAT-file
        raise BadDataError(
            f"{path} is not a readable MATLAB .mat file ({error}); expected the official blufr_lfw_config.mat"
        ) from error
    missing = [name for name in _CONFIG_VARIABLES if name not in mat]
    if missing:
        raise BadDataError(
            f"{path} lacks the variable(s) {', '.join(missing)}; expected the official blufr_lfw_config.mat "
            f"with {', '.join(_CONFIG_VARIABLES)}"
        )
    # Another .mat with these names (an empty name cell, labels as strings) gave an IndexError/ValueError traceback.
    try:
        image_list = [str(np.asarray(cell).ravel()[0]) for cell in np.asarray(mat["imageList"], dtype=object).ravel()]
    except IndexError as error:
        raise BadDataError(
            f"{path}: variable 'imageList' has an empty entry ({error}); expected a cell of image file names, as in "
            "the official blufr_lfw_config.mat from the BLUFR toolkit (config/lfw/)"
        ) from error
    try:
        labels = np.asarray(mat["labels"], dtype=np.int64).ravel()
    except (TypeError, ValueError) as error:
        raise BadDataError(
            f"{path}: variable 'labels' is not a vector of integer subject labels ({error}); use the official "
            "blufr_lfw_config.mat from the BLUFR toolkit (config/lfw/)"
        ) from error
    if len(labels) != len(image_list):
        raise BadDataError(f"{path}: {len(image_list)} images in imageList but {len(labels)} labels; expected equal")
    cells = {name: _index_cell(mat, name, path) for name in ("trainIndex", "testIndex", "galIndex", "probIndex")}
    if len({len(cell) for cell in cells.values()}) != 1:
        raise BadDataError(f"{path}: trainIndex/testIndex/galIndex/probIndex have different numbers of trials")
    for name, cell in cells.items():
        for indexes in cell:
            if len(indexes) and (indexes.min() < 0 or indexes.max() >= len(image_list)):
                raise BadDataError(f"{path}: {name} holds indexes outside 1..{len(image_list)}")
    splits = zip(cells["testIndex"], cells["galIndex"], cells["probIndex"], strict=True)
    for trial, (test, gallery, probe) in enumerate(splits):
        # Each trial's test set splits into a gallery and probes, some of them of gallery subjects (genuine) and
        # some not (impostors): otherwise open-set identification is undefined (e.g. galIndex/probIndex swapped).
        problem = (
            "galIndex and probIndex overlap"
            if np.intersect1d(gallery, probe).size
            else "galIndex and probIndex together are not testIndex"
            if not np.array_equal(np.union1d(gallery, probe), np.unique(test))
            else "no probe is of a gallery subject"
            if not np.isin(labels[probe], labels[gallery]).any()
            else "every probe is of a gallery subject (no impostor probe)"
            if np.isin(labels[probe], labels[gallery]).all()
            else None
        )
        if problem:
            raise BadDataError(
                f"{path}: trial {trial + 1}: {problem}; expected the official blufr_lfw_config.mat (BLUFR toolkit, "
                "config/lfw/), whose every trial splits testIndex into a gallery and genuine and impostor probes"
            )
    return BlufrConfig(
        image_list=image_list,
        labels=labels,
        train_index=cells["trainIndex"],
        test_index=cells["testIndex"],
        gallery_index=cells["galIndex"],
        probe_index=cells["probIndex"],
    )


def warn_if_unofficial_trials(config: BlufrConfig, path: str | Path) -> None:
    """Warn when ``config`` has another number of trials than the official ``OFFICIAL_TRIALS``. Not refused:
    small configs are made for tests and demos. But the std, and so mean - std, depends on how many trials there
    are: the numbers are not comparable with published (10-trial) BLUFR figures."""
    if config.num_trials != OFFICIAL_TRIALS:
        warnings.warn(
            f"{path} has {config.num_trials} trials, the official blufr_lfw_config.mat has {OFFICIAL_TRIALS}: "
            f"these are not the BLUFR protocol's numbers (mean - std over {OFFICIAL_TRIALS} trials), do not compare "
            "them with published BLUFR figures",
            stacklevel=3,
        )


def write_blufr_config(path: str | Path, config: BlufrConfig) -> None:
    """Write ``config`` as a BLUFR-toolkit ``.mat`` (the variables and 1-based indexes ``read_blufr_config`` reads)."""
    import scipy.io

    def cell(arrays: list[np.ndarray]) -> np.ndarray:
        out = np.empty((len(arrays), 1), dtype=object)
        for row, indexes in enumerate(arrays):
            out[row, 0] = (np.asarray(indexes, dtype=np.float64) + 1)[:, None]  # MATLAB: double column vectors
        return out

    names = np.empty((len(config.image_list), 1), dtype=object)
    names[:, 0] = config.image_list
    variables = {
        "imageList": names,
        "labels": np.asarray(config.labels, dtype=np.uint16)[:, None],
        "trainIndex": cell(config.train_index),
        "testIndex": cell(config.test_index),
        "galIndex": cell(config.gallery_index),
        "probIndex": cell(config.probe_index),
    }
    scipy.io.savemat(str(path), variables)


def sample_blufr_protocol(
    image_list: Sequence[str], labels: Sequence[int], num_trials: int = 10, seed: int = 0
) -> BlufrConfig:
    """A BLUFR-style protocol for another image set, with LFW's BLUFR proportions (blufr_lfw_config.mat): per trial,
    26% of the subjects (1,500 of 5,749) are set aside for training; all images of the others are the test set;
    23.5% of the test subjects with >= 2 images (1,000 of 4,249) get one gallery image each, their other images
    are genuine probes and the test subjects outside the gallery are impostor probes. Used for the demo data."""
    labels = np.asarray(labels, dtype=np.int64)
    subjects = np.unique(labels)
    rng = np.random.default_rng(seed)
    trials: dict[str, list[np.ndarray]] = {"train": [], "test": [], "gallery": [], "probe": []}
    for _ in range(num_trials):
        train_subjects = rng.choice(subjects, max(1, round(0.26 * len(subjects))), replace=False)
        is_train = np.isin(labels, train_subjects)
        test_subjects = np.setdiff1d(subjects, train_subjects)
        counts = {s: int((labels == s).sum()) for s in test_subjects}
        candidates = np.array([s for s in test_subjects if counts[s] >= 2])
        gallery_subjects = rng.choice(candidates, max(1, round(0.235 * len(test_subjects))), replace=False)
        gallery = np.array([rng.choice(np.flatnonzero(labels == s)) for s in np.sort(gallery_subjects)])
        test = np.flatnonzero(~is_train)
        trials["train"].append(np.flatnonzero(is_train))
        trials["test"].append(test)
        trials["gallery"].append(gallery)
        trials["probe"].append(np.setdiff1d(test, gallery))
    return BlufrConfig(
        image_list=list(image_list),
        labels=labels,
        train_index=trials["train"],
        test_index=trials["test"],
        gallery_index=trials["gallery"],
        probe_index=trials["probe"],
    )


def verification_rates(
    scores: torch.Tensor, labels: torch.Tensor, far_points: Sequence[float], far_rule: FarRule = "evalroc"
) -> torch.Tensor:
    """EvalROC on a square score matrix: scores (N, N), labels (N,) -> VR at each FAR point (F,) float64.

    Dense: for small sets. For a BLUFR test set use :func:`blufr_verification`, which works from features in chunks.
    """
    scores = scores.double()
    labels = torch.as_tensor(labels, device=scores.device)
    lower = torch.tril(torch.ones_like(scores, dtype=torch.bool), diagonal=-1)
    same = labels[:, None] == labels[None, :]
    genuine = scores[lower & same]
    impostor = scores[lower & ~same].sort(descending=True).values
    if len(impostor) == 0:
        raise ValueError("the ROC threshold needs at least one impostor score")
    return torch.tensor([tar_at_far(genuine, impostor, len(impostor), far, far_rule) for far in far_points])


def blufr_verification(
    features: torch.Tensor,
    labels: torch.Tensor,
    far_points: Sequence[float],
    chunk: int = 2048,
    far_rule: FarRule = "evalroc",
) -> torch.Tensor:
    """EvalROC on the cosine scores of ``features`` (N, D), L2-normalized, labels (N,) -> VR per FAR (F,) float64,
    from :func:`verification_scores` (chunked, never the N x N matrix)."""
    _, num_impostors = count_pairs(torch.as_tensor(labels))
    if num_impostors == 0:
        raise ValueError("the ROC threshold needs at least one impostor score")
    k = max(top_impostors_needed(far, num_impostors, far_rule) for far in far_points)
    ranks = [rank for far in far_points for rank in deciding_ranks(far, num_impostors, far_rule)]
    genuine, top, _ = verification_scores(features, labels, k, chunk, exact_ranks=ranks)
    return torch.tensor(
        [tar_at_far(genuine, top, num_impostors, far, far_rule) for far in far_points], dtype=torch.float64
    )


def verification_scores(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_top_impostors: int,
    chunk: int = 2048,
    exact_ranks: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(all genuine scores (G,), the ``num_top_impostors`` largest impostor scores (K,) descending, N_impostor) of
    the strict lower triangle of the cosine matrix of ``features`` (N, D), L2-normalized, with labels (N,); float64.

    Never builds the N x N matrix: rows are scored in float32 in chunks of ``chunk`` against the rows before them,
    on the features' device. Of the impostor scores only those that can be among the K largest are kept
    (``amlit.eval.exact.RunningTop``). Exact as float64 (``amlit.eval.exact``): the top impostor scores at
    ``exact_ranks`` (0-based; all of them by default), and every genuine score within the float32 error of one of
    those, so each comparison of a genuine score with them has its float64 answer; the other values are the float32
    scores (within ``rounding_bound``, ~3e-5 at most for 512-d unit features).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    device = features.device
    labels = torch.as_tensor(labels, device=device)
    _, num_impostors = count_pairs(labels)
    if num_impostors == 0:
        raise ValueError("the ROC threshold needs at least one impostor score")
    genuine_rows, genuine_cols = genuine_pairs(labels)  # (G,) each, i > j, sorted by i
    if len(genuine_rows) == 0:
        raise ValueError("the ROC needs at least one genuine score")
    margin = rounding_bound(features)
    pairs = (labels, genuine_rows, genuine_cols, num_impostors)
    genuine, top = _scan_pairs(features, *pairs, num_top_impostors, margin, chunk, guess=True)
    if not top.complete:  # the guessed cut was too high (a rare score distribution): again without guessing
        genuine, top = _scan_pairs(features, *pairs, num_top_impostors, margin, chunk, guess=False)

    def rescore(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return pair_dots(features, features, rows, cols)

    top_scores = top.exact(rescore, exact_ranks)
    genuine = genuine.double()
    deciding = top_scores if exact_ranks is None else top_scores[[r for r in exact_ranks if r < len(top_scores)]]
    near = _within(genuine, deciding, 2 * margin)
    genuine[near] = rescore(genuine_rows[near], genuine_cols[near])
    return genuine, top_scores, num_impostors


def _scan_pairs(
    features: torch.Tensor,
    labels: torch.Tensor,
    genuine_rows: torch.Tensor,
    genuine_cols: torch.Tensor,
    num_impostors: int,
    num_top_impostors: int,
    margin: float,
    chunk: int,
    guess: bool,
) -> tuple[torch.Tensor, RunningTop]:
    """One pass over the strict lower triangle in float32: (float32 genuine scores in ``genuine_pairs`` order,
    the ``RunningTop`` of the impostor scores). With ``guess`` the first cut is guessed from a sample of the first
    block (``RunningTop.guess_cut``: check ``complete``), else it is that block's own k-th largest score."""
    device = features.device
    approximate = features.float()
    top = RunningTop(max(1, num_top_impostors), margin, device)
    genuine = torch.empty(len(genuine_rows), dtype=torch.float32, device=device)
    upper = torch.ones(chunk, chunk, dtype=torch.bool, device=device).triu_()  # (c, c) j >= i of a diagonal block
    buffer = torch.empty(min(chunk, len(features)) * len(features), device=device)  # reused: no page faults
    with full_precision_matmul():
        # Blocks of rows from the last ones up: the first block is the largest, its k-th largest a high first cut.
        for stop in range(len(features), 0, -chunk):
            start = max(0, stop - chunk)
            block = buffer[: (stop - start) * stop].view(stop - start, stop)  # rows start..stop-1 vs 0..stop-1
            torch.mm(approximate[start:stop], approximate[:stop].T, out=block)
            first, last = torch.searchsorted(genuine_rows, torch.tensor([start, stop], device=device)).tolist()
            rows, cols = genuine_rows[first:last] - start, genuine_cols[first:last]
            genuine[first:last] = block[rows, cols]
            # What remains finite is the strict lower triangle's impostor pairs.
            block[rows, cols] = -math.inf
            block[:, start:].masked_fill_(upper[: stop - start, : stop - start], -math.inf)
            if not top.has_cut and guess:
                top.guess_cut(block[::32], num_impostors)  # a sample of 1 row in 32 is plenty
            if not top.has_cut:  # no (guessed) cut yet: from this block
                top.raise_cut(block)
            rows, cols, values = entries_at_or_above(block, top.cut.expand(stop - start))  # few, once a cut is set
            if not top.has_cut:
                finite = values > -math.inf
                rows, cols, values = rows[finite], cols[finite], values[finite]
            top.add(values, rows + start, cols)
    return genuine, top


def _within(values: torch.Tensor, points: torch.Tensor, distance: float) -> torch.Tensor:
    """(V,) bool: which ``values`` lie within ``distance`` of one of ``points`` (any order)."""
    if len(points) == 0:
        return torch.zeros(len(values), dtype=torch.bool, device=values.device)
    points = points.sort().values
    position = torch.searchsorted(points, values).clamp(1, len(points)) - 1  # the nearest point at or below...
    below = (values - points[position]).abs() <= distance
    above = (points[(position + 1).clamp(max=len(points) - 1)] - values).abs() <= distance  # ...and the next one
    return below | above


def open_set_identification(
    gallery_features: torch.Tensor,
    gallery_labels: torch.Tensor,
    probe_features: torch.Tensor,
    probe_labels: torch.Tensor,
    far: float,
    rank: int = 1,
    chunk: int = 4096,
    far_rule: FarRule = "evalroc",
) -> float:
    """OpenSetROC: detection and identification rate at ``rank`` and ``far`` (threshold by ``far_rule``).

    gallery_features (G, D), probe_features (P, D), L2-normalized; labels (G,), (P,). Probes are scored in chunks.
    Ties in the rank follow MATLAB's stable ``sort(..., 'descend')``: gallery entries scoring exactly the mate's score
    rank before it only if they come earlier in the gallery; the mate is the first best-scoring same-label entry.

    Exact in float64 from float32 products (``amlit.eval.exact``): a genuine probe's gallery entries within the
    float32 error of its float32 mate score (the mate itself, a tie, an entry float32 cannot order against it) are
    rescored in float64 and decide its mate and rank; the entries outside are certainly above or below. The impostor
    probes whose best score can be among those that set the threshold are rescored in float64, and so is every mate.
    """
    device = gallery_features.device
    probe_features = probe_features.to(device)
    gallery_labels = torch.as_tensor(gallery_labels, device=device)
    probe_labels = torch.as_tensor(probe_labels, device=device)
    margin = 2 * rounding_bound(gallery_features, probe_features)  # two float32 scores closer than this: a rival
    # Each probe's matching gallery entries: (probe, gallery row) pairs, sorted by probe.
    match_probes, match_rows = _matches(gallery_labels, probe_labels)
    is_genuine = torch.zeros(len(probe_labels), dtype=torch.bool, device=device)
    is_genuine[match_probes] = True
    genuine_probes, impostor_probes = is_genuine.nonzero().flatten(), (~is_genuine).nonzero().flatten()
    if len(impostor_probes) == 0:
        raise ValueError("open-set identification needs at least one impostor probe (label not in the gallery)")
    if len(genuine_probes) == 0:
        raise ValueError("open-set identification needs at least one genuine probe (label in the gallery)")
    gallery = gallery_features.float()
    maxima, mates, mate_rows, above, rival_pairs = [], [], [], [], []
    with full_precision_matmul():
        for start in range(0, len(probe_features), chunk):
            stop = min(start + chunk, len(probe_features))
            scores = gallery @ probe_features[start:stop].float().T  # (G, c)
            genuine = is_genuine[start:stop]
            maxima.append(scores.amax(dim=0)[~genuine])
            # Float32 mate of each genuine probe: its first best-scoring match.
            first, last = torch.searchsorted(match_probes, torch.tensor([start, stop], device=device)).tolist()
            probes, rows = match_probes[first:last] - start, match_rows[first:last]
            values = scores[rows, probes]
            mate = torch.full((stop - start,), -math.inf, device=device).scatter_reduce_(0, probes, values, "amax")
            best = values == mate[probes]
            row = torch.full((stop - start,), len(gallery), device=device).scatter_reduce_(
                0, probes[best], rows[best], "amin"
            )
            certainly_above = (scores > (mate + margin)[None, :]).sum(dim=0, dtype=torch.int32)  # (c,)
            close = (scores >= (mate - margin)[None, :]).sum(dim=0, dtype=torch.int32) - certainly_above
            rivalled = (genuine & (close > 1)).nonzero().flatten()  # the mate and at least one rival
            if len(rivalled):
                near = scores[:, rivalled]
                near = (near >= mate[rivalled] - margin) & (near <= mate[rivalled] + margin)
                near_rows, columns = near.nonzero(as_tuple=True)
                rival_pairs.append((near_rows, start + rivalled[columns]))
            mate_rows.append(row[genuine])
            above.append(certainly_above[genuine])
    maxima = torch.cat(maxima)

    # Threshold: the impostor probes whose best score can be among those it reads, rescored in float64.
    kth = torch.topk(maxima, top_impostors_needed(far, len(maxima), far_rule)).values[-1]
    candidates = impostor_probes[maxima >= kth - margin]
    top = (gallery_features.double() @ probe_features[candidates].double().T).amax(dim=0).sort(descending=True)
    points = operating_points(top.values, len(maxima), far, far_rule)

    mates = pair_dots(gallery_features, probe_features, torch.cat(mate_rows), genuine_probes)
    ranks = 1 + torch.cat(above).long()
    if rival_pairs:
        rows, probes = (torch.cat(part) for part in zip(*rival_pairs, strict=True))
        slot = torch.searchsorted(genuine_probes, probes)  # the probe's place among the genuine ones
        exact_mates, exact_ranks = _settle_rivals(
            pair_dots(gallery_features, probe_features, rows, probes),
            rows,
            slot,
            gallery_labels[rows] == probe_labels[probes],
            len(genuine_probes),
        )
        settled = torch.unique(slot)
        mates[settled] = exact_mates[settled]
        ranks[settled] += exact_ranks[settled]
    return accept_rate(mates, points, also=ranks <= rank)


def _matches(gallery_labels: torch.Tensor, probe_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probes, gallery rows) of every pair with equal labels, sorted by probe, then gallery row."""
    order = torch.argsort(gallery_labels, stable=True)
    ordered = gallery_labels[order]
    low = torch.searchsorted(ordered, probe_labels, right=False)
    counts = torch.searchsorted(ordered, probe_labels, right=True) - low  # (P,) matches per probe
    probes = torch.repeat_interleave(torch.arange(len(probe_labels), device=probe_labels.device), counts)
    offset = torch.arange(len(probes), device=probes.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    return probes, order[low[probes] + offset]


def _settle_rivals(
    scores: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor, is_match: torch.Tensor, num_probes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mate score and rank offset of probes from their close gallery entries (R,) in float64: ``scores``, gallery
    ``rows``, the probe ``slots`` they belong to, and whether the entry has the probe's label. The mate is the first
    best-scoring match; the offset counts the close entries above it, and those equal to it earlier in the gallery
    (MATLAB's stable descending sort). Returns (num_probes,) mate scores and (num_probes,) offsets."""
    mates = torch.full((num_probes,), -math.inf, dtype=torch.float64, device=scores.device)
    mates.scatter_reduce_(0, slots[is_match], scores[is_match], "amax")
    best = is_match & (scores == mates[slots])
    mate_rows = torch.full((num_probes,), len(rows) + 2**62, dtype=torch.long, device=scores.device)
    mate_rows.scatter_reduce_(0, slots[best], rows[best], "amin")
    before = (scores > mates[slots]) | ((scores == mates[slots]) & (rows < mate_rows[slots]))
    offsets = torch.zeros(num_probes, dtype=torch.long, device=scores.device).index_add_(0, slots, before.long())
    return mates, offsets


def _file_name(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def align_features(
    features_by_name: Mapping[str, torch.Tensor] | tuple[Sequence[str], torch.Tensor], config: BlufrConfig
) -> torch.Tensor:
    """Features in ``config.image_list`` order, (N, D), NaN rows for images no trial tests.

    Names are matched by file name (folders dropped: ``Aaron_Eckhart/Aaron_Eckhart_0001.jpg`` matches
    ``Aaron_Eckhart_0001.jpg``). Every image of a trial's test set must have a feature.
    """
    if isinstance(features_by_name, Mapping):
        names = list(features_by_name)
        features = torch.stack([torch.as_tensor(features_by_name[name]) for name in names]) if names else None
    else:
        names, features = list(features_by_name[0]), features_by_name[1]
    if features is None or len(names) != len(features):
        raise BadDataError(f"got {len(names)} image names for {0 if features is None else len(features)} features")
    row_of: dict[str, int] = {}
    for row, name in enumerate(names):
        key = _file_name(name)
        if key in row_of:
            raise BadDataError(f"image {key!r} has two features ({names[row_of[key]]!r} and {name!r}); expected one")
        row_of[key] = row
    needed = np.unique(np.concatenate(config.test_index)) if config.num_trials else np.empty(0, dtype=np.int64)
    missing = [config.image_list[i] for i in needed.tolist() if config.image_list[i] not in row_of]
    if missing:
        hint = f" ({unmatched_hint(names, missing)})" if len(missing) == len(needed) else ""
        raise BadDataError(
            f"{len(missing)} of the {len(needed)} BLUFR test images have no feature (e.g. {', '.join(missing[:5])})"
            f"{hint}; embed every image of the BLUFR image list (LFW, matched by file name) and pass all the features"
        )
    aligned = torch.full((len(config.image_list), features.shape[1]), math.nan, dtype=features.dtype)
    aligned = aligned.to(features.device)
    index = torch.as_tensor(needed, dtype=torch.long, device=features.device)
    rows = torch.as_tensor([row_of[config.image_list[i]] for i in needed.tolist()], dtype=torch.long)
    aligned[index] = features[rows.to(features.device)]
    return aligned


def blufr_trial(
    features: torch.Tensor, config: BlufrConfig, trial: int, chunk: int = 2048, far_rule: FarRule = "evalroc"
) -> dict[str, float]:
    """One trial (0-based) on features (N, D) in ``config.image_list`` order: VR@FAR 1e-4 and 1e-3, DIR@1e-2 rank 1,
    and the calibrated verification thresholds with the trial's ``num_impostors`` (``calibration_metrics``)."""
    labels = torch.as_tensor(config.labels)
    test = torch.as_tensor(config.test_index[trial])
    gallery = torch.as_tensor(config.gallery_index[trial])
    probe = torch.as_tensor(config.probe_index[trial])
    to = features.device
    _, num_impostors = count_pairs(labels[test])
    needed = [top_impostors_needed(far, num_impostors, far_rule) for far in VR_FARS]
    needed.append(calibration_impostors_needed(num_impostors))
    # Exact float64 values where they are read: the thresholds of the VR FARs and of the calibrated ones.
    ranks = [rank for far in VR_FARS for rank in deciding_ranks(far, num_impostors, far_rule)]
    ranks += calibration_ranks(num_impostors)
    genuine, top, _ = verification_scores(features[test.to(to)], labels[test], max(needed), chunk, exact_ranks=ranks)
    result = {f"vr@far={keys.far_name(far)}": tar_at_far(genuine, top, num_impostors, far, far_rule) for far in VR_FARS}
    result[f"dir@far={keys.far_name(DIR_FAR)},rank={DIR_RANK}"] = open_set_identification(
        features[gallery.to(to)],
        labels[gallery],
        features[probe.to(to)],
        labels[probe],
        DIR_FAR,
        DIR_RANK,
        far_rule=far_rule,
    )
    return result | calibration_metrics(top, num_impostors)  # this trial's thresholds (summarize_calibration)


def summarize_trials(trials: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per measure: ``_mean``, ``_std`` (ddof=1, MATLAB std; 0 for one trial) and ``_mean_minus_std``."""
    summary = {}
    for key in trials[0]:
        values = np.array([trial[key] for trial in trials], dtype=np.float64)
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary.update({f"{key}_mean": mean, f"{key}_std": std, f"{key}_mean_minus_std": mean - std})
    return summary


def evaluate_blufr(
    features_by_name: Mapping[str, torch.Tensor] | tuple[Sequence[str], torch.Tensor],
    config: BlufrConfig,
    chunk: int = 2048,
    far_rule: FarRule = "evalroc",
) -> dict[str, float]:
    """All trials of ``config`` on L2-normalized features given with their image names (a name -> (D,) mapping, or
    (names, (M, D) tensor)). Returns mean, std (ddof=1) and mean - std over the trials of ``vr@far=1e-4``,
    ``vr@far=1e-3`` and ``dir@far=1e-2,rank=1``; the BLUFR figure to report is ``..._mean_minus_std``. Also
    ``num_trials``, the number of trials those are over (the official config's ``OFFICIAL_TRIALS``, 10: a figure
    over another number is not the protocol's), and the calibrated thresholds (``summarize_calibration``)."""
    if config.num_trials == 0:
        raise BadDataError("the BLUFR config has no trials")
    features = align_features(features_by_name, config)
    trials = [blufr_trial(features, config, t, chunk, far_rule) for t in range(config.num_trials)]
    calibration = [{k: v for k, v in trial.items() if keys.is_calibration(k)} for trial in trials]
    rates = [{k: v for k, v in trial.items() if not keys.is_calibration(k)} for trial in trials]
    trial_count = {keys.NUM_TRIALS: float(config.num_trials)}
    return summarize_trials(rates) | trial_count | summarize_calibration(calibration)


def summarize_calibration(trials: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Thresholds over the trials: ``threshold@far=<FAR>`` = their mean and ``..._std`` (ddof=1) for each FAR that
    every trial resolves; ``num_impostors`` = the smallest trial's impostor count (each threshold rests on at least
    that many impostor pairs of its trial)."""
    summary = {keys.NUM_IMPOSTORS: min(trial[keys.NUM_IMPOSTORS] for trial in trials)}
    for key in trials[0]:
        if key != keys.NUM_IMPOSTORS and all(key in trial for trial in trials):
            values = np.array([trial[key] for trial in trials], dtype=np.float64)
            summary[key] = float(values.mean())
            summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary
