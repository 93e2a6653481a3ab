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

Scores are cosine similarities: features are assumed L2-normalized, so a score is a dot product (computed in
float64, like MATLAB's doubles). The toolkit's demo first learns a PCA on each trial's training set; like
happynear's version used by AM-Softmax, no PCA is applied here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amlit import keys
from amlit.errors import BadDataError, MissingDataError
from amlit.eval.far import (
    FarRule,
    accept_rate,
    calibration_impostors_needed,
    calibration_metrics,
    operating_points,
    tar_at_far,
    top_impostors_needed,
)

VR_FARS = (1e-4, 1e-3)  # verification FAR points reported (toolkit default 1e-3; AM-Softmax also 1e-4)
DIR_FAR = 1e-2  # open-set identification FAR point reported, at rank 1
DIR_RANK = 1
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
    image_list = [str(np.asarray(cell).ravel()[0]) for cell in np.asarray(mat["imageList"], dtype=object).ravel()]
    labels = np.asarray(mat["labels"], dtype=np.int64).ravel()
    if len(labels) != len(image_list):
        raise BadDataError(f"{path}: {len(image_list)} images in imageList but {len(labels)} labels; expected equal")
    cells = {name: _index_cell(mat, name, path) for name in ("trainIndex", "testIndex", "galIndex", "probIndex")}
    if len({len(cell) for cell in cells.values()}) != 1:
        raise BadDataError(f"{path}: trainIndex/testIndex/galIndex/probIndex have different numbers of trials")
    for name, cell in cells.items():
        for indexes in cell:
            if len(indexes) and (indexes.min() < 0 or indexes.max() >= len(image_list)):
                raise BadDataError(f"{path}: {name} holds indexes outside 1..{len(image_list)}")
    return BlufrConfig(
        image_list=image_list,
        labels=labels,
        train_index=cells["trainIndex"],
        test_index=cells["testIndex"],
        gallery_index=cells["galIndex"],
        probe_index=cells["probIndex"],
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


def count_pairs(labels: torch.Tensor) -> tuple[int, int]:
    """(#genuine, #impostor) pairs i > j among ``labels`` (N,)."""
    n = len(labels)
    sizes = torch.unique(labels.cpu(), return_counts=True)[1].long()
    genuine = int((sizes * (sizes - 1) // 2).sum())
    return genuine, n * (n - 1) // 2 - genuine


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
    genuine, top, _ = verification_scores(features, labels, k, chunk)
    return torch.tensor([tar_at_far(genuine, top, num_impostors, far, far_rule) for far in far_points])


def verification_scores(
    features: torch.Tensor, labels: torch.Tensor, num_top_impostors: int, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(all genuine scores (G,), the ``num_top_impostors`` largest impostor scores (K,) descending, N_impostor) of
    the strict lower triangle of the cosine matrix of ``features`` (N, D), L2-normalized, with labels (N,).

    Never builds the N x N matrix: rows are scored in chunks of ``chunk`` against the rows before them, on the
    features' device. All genuine scores are kept (~0.2 M for a BLUFR trial); of the impostor scores only a running
    top-k.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    device = features.device
    features = features.double()
    labels = torch.as_tensor(labels, device=device)
    _, num_impostors = count_pairs(labels)
    if num_impostors == 0:
        raise ValueError("the ROC threshold needs at least one impostor score")
    k = max(1, num_top_impostors)
    genuine_parts = []
    top = torch.empty(0, dtype=torch.float64, device=device)  # (<= k,) largest impostor scores so far
    for start in range(0, len(features), chunk):
        stop = min(start + chunk, len(features))
        block = features[start:stop] @ features[:stop].T  # (c, stop): rows start..stop-1 against rows 0..stop-1
        rows = torch.arange(start, stop, device=device)[:, None]
        lower = torch.arange(stop, device=device)[None, :] < rows  # (c, stop) strict lower triangle
        same = labels[start:stop, None] == labels[None, :stop]
        genuine_parts.append(block[lower & same])
        impostor = block[lower & ~same]  # (m,)
        if len(impostor) == 0:
            continue
        if len(top) == k:  # only scores above the current k-th largest can change the top-k values
            impostor = impostor[impostor > top[-1]]
        merged = torch.cat([top, impostor])
        top = torch.topk(merged, min(k, len(merged)), sorted=True).values
    genuine = torch.cat(genuine_parts) if genuine_parts else torch.empty(0, dtype=torch.float64)
    if len(genuine) == 0:
        raise ValueError("the ROC needs at least one genuine score")
    return genuine, top, num_impostors


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
    """
    device = gallery_features.device
    gallery = gallery_features.double()
    probes = probe_features.double().to(device)
    gallery_labels = torch.as_tensor(gallery_labels, device=device)
    probe_labels = torch.as_tensor(probe_labels, device=device)
    impostor_parts, mate_parts, rank_parts = [], [], []
    for start in range(0, len(probes), chunk):
        scores = gallery @ probes[start : start + chunk].T  # (G, c)
        match = gallery_labels[:, None] == probe_labels[None, start : start + chunk]  # (G, c)
        genuine = match.any(dim=0)  # (c,)
        impostor_parts.append(scores[:, ~genuine].max(dim=0).values if (~genuine).any() else scores.new_empty(0))
        scores, match = scores[:, genuine], match[:, genuine]  # (G, c_gen)
        mate = torch.where(match, scores, torch.full_like(scores, -math.inf)).max(dim=0).values  # (c_gen,)
        is_mate = match & (scores == mate[None, :])
        mate_index = (is_mate.long().cumsum(dim=0) == 0).sum(dim=0)  # first best-scoring match, (c_gen,)
        before = torch.arange(len(gallery), device=device)[:, None] < mate_index[None, :]
        rank_parts.append(1 + ((scores > mate) | ((scores == mate) & before)).sum(dim=0))
        mate_parts.append(mate)
    impostor = torch.cat(impostor_parts).sort(descending=True).values.cpu()
    mates, ranks = torch.cat(mate_parts).cpu(), torch.cat(rank_parts).cpu()
    if len(impostor) == 0:
        raise ValueError("open-set identification needs at least one impostor probe (label not in the gallery)")
    if len(mates) == 0:
        raise ValueError("open-set identification needs at least one genuine probe (label in the gallery)")
    points = operating_points(impostor, len(impostor), far, far_rule)
    return accept_rate(mates, points, also=ranks <= rank)


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
        raise BadDataError(
            f"{len(missing)} of the {len(needed)} BLUFR test images have no feature (e.g. {', '.join(missing[:5])}); "
            "embed every image of the BLUFR image list (LFW, matched by file name) and pass all the features"
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
    genuine, top, _ = verification_scores(features[test.to(to)], labels[test], max(needed), chunk)
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
    ``vr@far=1e-3`` and ``dir@far=1e-2,rank=1``; the BLUFR figure to report is ``..._mean_minus_std``. Also the
    calibrated thresholds (``summarize_calibration``)."""
    if config.num_trials == 0:
        raise BadDataError("the BLUFR config has no trials")
    features = align_features(features_by_name, config)
    trials = [blufr_trial(features, config, t, chunk, far_rule) for t in range(config.num_trials)]
    calibration = [{k: v for k, v in trial.items() if _is_calibration(k)} for trial in trials]
    rates = [{k: v for k, v in trial.items() if not _is_calibration(k)} for trial in trials]
    return summarize_trials(rates) | summarize_calibration(calibration)


def _is_calibration(key: str) -> bool:
    return key == keys.NUM_IMPOSTORS or key.startswith(keys.THRESHOLD_PREFIX)


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
