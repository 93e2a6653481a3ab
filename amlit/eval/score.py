"""Score an embeddings file (``amlit predict``'s ``.npz``, or features made elsewhere) with a protocol.

``amlit score lfw|blufr|megaface`` and ``amlit export megaface``: the protocols of ``amlit test``, starting from
features, so results can be recomputed without the model and features of other tools can be compared under amlit's
protocols (``score megaface`` and ``export megaface`` also read and write the MegaFace devkit's feature files).
The file holds ``names`` (image paths, str) and ``features`` (N, D) float32, L2-normalized (flip-sum); every
command loads it through ``amlit.eval.embeddings`` (one loader: bad rows refused by name, normalization stated).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from amlit.errors import BadDataError, ConfigError, listed
from amlit.eval.blufr import evaluate_blufr, read_blufr_config, warn_if_unofficial_trials
from amlit.eval.curves import Curve
from amlit.eval.embeddings import check_features, load_embeddings, read_embeddings, unmatched_hint
from amlit.eval.far import FarRule
from amlit.eval.megaface import (
    MEGAFACE_FAR,
    evaluate_megaface,
    identity_labels,
    read_features,
    read_image_list,
    select_identities,
    write_features,
)
from amlit.eval.pairs import lines_naming, read_lfw_pairs
from amlit.eval.verification import PairProtocol, pair_verification_metrics
from amlit.outputs import check_names_inside, check_output


def _check_output(output: str | Path | None, inputs: dict[str, str | Path | None]) -> None:
    """Before scoring: an --output that cannot be written, or that is one of the inputs, is refused now, not after
    the work."""
    if output is not None:
        check_output(output, "--output", inputs=inputs)


def _report(metrics: dict[str, float | Curve], prefix: str, output: Path | None) -> dict[str, float]:
    scalars = {f"{prefix}/{key}": float(value) for key, value in metrics.items() if not isinstance(value, Curve)}
    for key, value in scalars.items():
        print(f"{key}: {value:.6f}")
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(scalars, indent=2) + "\n")
    return scalars


def score_lfw(
    embeddings: Path,
    pairs: Path,
    output: Path | None = None,
    protocol: PairProtocol = "amsoftmax",
    far_rule: FarRule = "evalroc",
    allow_missing: bool = False,
) -> dict[str, float]:
    """LFW 10-fold verification (accuracy, AUC, EER, TAR@FAR) of an embeddings file.

    Args:
        embeddings: ``.npz`` with ``names`` and ``features`` (``amlit predict`` writes one); images are matched by
            path, else by file name.
        pairs: LFW-format ``pairs.txt``.
        output: optional JSON file for the metrics.
        protocol: ``amsoftmax`` (cosine of L2-normalized features, the paper's) or ``sphereface`` (SphereFace's
            evaluation.m: per held-out fold the mean feature of the other folds is subtracted before the cosine;
            the features are used as they are, e.g. [f(image), f(mirror)] concatenations).
        far_rule: which scores a FAR target accepts: ``evalroc`` (BLUFR's rule, every protocol's default),
            ``at_most`` or ``interpolated`` (``amlit.eval.far``).
        allow_missing: score the pairs whose images all have features when some have none (they are counted);
            by default a missing image is an error naming it.
    """
    _check_output(output, {"--embeddings": embeddings, "--pairs": pairs})
    data = load_embeddings(embeddings, normalize=protocol == "amsoftmax")
    pair_list = read_lfw_pairs(pairs)
    rows = data.rows_of(pair_list.images)
    missing = [image for image, row in zip(pair_list.images, rows, strict=True) if row < 0]
    if len(missing) == len(rows):
        raise BadDataError(
            f"{embeddings}: none of the images of {pairs} (e.g. {missing[0]}) is among its names; "
            f"{unmatched_hint(data.names, pair_list.images)}"
        )
    if missing:
        line, image = lines_naming(pairs, set(missing))[0]
        usable = int(((rows[pair_list.left] >= 0) & (rows[pair_list.right] >= 0)).sum())
        message = (
            f"{len(missing)} of the {len(rows)} images named by {pairs} have no feature in {embeddings} (first: "
            f"{image}, {pairs}:{line}); {usable} of the {len(pair_list)} pairs have both images"
        )
        if not allow_missing:
            raise BadDataError(f"{message}: embed the missing images, or pass --allow_missing=true to score those")
        scorable = pair_list.select((rows[pair_list.left] >= 0) & (rows[pair_list.right] >= 0))
        if len(set(scorable.fold.tolist())) < 2 or scorable.issame.all() or not scorable.issame.any():
            # No pair, one fold, or one class left: only num_pairs was printed, or an accuracy of 1.0 from matched
            # pairs alone, as if scored.
            classes = "matched" if scorable.issame.all() else "mismatched"
            left = (
                "none"
                if not len(scorable)
                else f"only {classes} pairs"
                if scorable.issame.all() or not scorable.issame.any()
                else "the pairs of one fold"
            )
            raise BadDataError(
                f"{message}: {left}, which 10-fold verification cannot score (it needs matched and mismatched pairs "
                "in at least 2 folds); embed the missing images"
            )
        warnings.warn(f"{message}; scoring those", stacklevel=2)
    selected = torch.full((len(rows), data.features.shape[1]), float("nan"))
    found = torch.from_numpy(rows >= 0)
    selected[found] = torch.from_numpy(data.features[rows[rows >= 0]])
    return _report(pair_verification_metrics(selected, pair_list, protocol, far_rule), "lfw", output)


def score_blufr(
    embeddings: Path, blufr_config: Path, output: Path | None = None, far_rule: FarRule = "evalroc"
) -> dict[str, float]:
    """BLUFR (10 trials; VR@FAR=0.01%/0.1%, DIR@FAR=1% rank 1; mean, std, mean - std) of an embeddings file.

    Prints and records ``blufr/num_trials``; a config with another number of trials than the official
    ``blufr_lfw_config.mat``'s 10 is scored with a warning: its mean - std is not the protocol's figure.

    Args:
        embeddings: ``.npz`` with ``names`` and ``features``; images are matched to the BLUFR list by file name.
        blufr_config: the BLUFR toolkit's ``blufr_lfw_config.mat``.
        output: optional JSON file for the metrics.
        far_rule: ``evalroc`` (the BLUFR toolkit's own rule, default), ``at_most`` or ``interpolated``.
    """
    _check_output(output, {"--embeddings": embeddings, "--blufr_config": blufr_config})
    data = load_embeddings(embeddings)
    config = read_blufr_config(blufr_config)
    print(f"BLUFR: {config.num_trials} trials ({blufr_config})")
    warn_if_unofficial_trials(config, blufr_config)
    metrics = evaluate_blufr((data.names, torch.from_numpy(data.features)), config, far_rule=far_rule)
    return _report(metrics, "blufr", output)


# ---- MegaFace: amlit embeddings or devkit feature trees ---------------------------------------------------------
DEFAULT_ENDING = "_amlit.bin"


def load_features(source: str | Path, root: str | Path | None, ending: str, what: str) -> tuple[list[str], np.ndarray]:
    """(image names, (N, D) float32 L2-normalized) from an amlit ``.npz`` or a devkit list + feature root."""
    source = Path(source)
    if source.suffix == ".npz":
        names, features = read_embeddings(source)
    else:
        if root is None:
            raise ConfigError(
                f"{what} {source} is a devkit list: also pass the root of its feature files (--{what}_root=DIR), "
                "or pass an amlit embeddings .npz instead"
            )
        names = read_image_list(source)
        features = read_features(names, root, ending, description=f"reading {what} features")
    # Cosine = dot product of unit vectors; the devkit's L2 distance also assumes this (happynear/FaceVerification#64).
    return names, check_features(names, features, source)


def _jsonable(value: float | Curve) -> object:
    if isinstance(value, Curve):
        return {"x": value.x.tolist(), "y": value.y.tolist(), "x_label": value.x_label, "y_label": value.y_label}
    return value


def _feature_source(source: str | Path, root: str | Path | None) -> tuple[Path, Path | None]:
    """Where features come from: the file (an .npz), or a devkit list with its feature root."""
    source = Path(source).resolve()
    return source, Path(root).resolve() if root is not None and source.suffix != ".npz" else None


def _warn_of_suspect_inputs(probe_names: list[str], distractor_names: list[str]) -> None:
    """Warn, before the scan, of probes and distractors that look mixed up: probe images among the distractors (by
    file name; copies under other names are caught by their scores, ``evaluate_megaface``), or the two swapped.
    One pass over the distractor names (~0.2 s per million), none over their features."""
    probe_files = {name.rsplit("/", 1)[-1] for name in probe_names}
    shared = [name for name in distractor_names if name.rsplit("/", 1)[-1] in probe_files]
    if shared:
        warnings.warn(
            f"{len(shared)} distractors have the file name of a probe image (e.g. {listed(shared, 3)}): if they are "
            "the probe images, those probes find themselves among the distractors; MegaFace's distractors must not "
            "contain the probe images",
            stacklevel=3,
        )
    if len(probe_names) > len(distractor_names):
        warnings.warn(
            f"more probes ({len(probe_names)}) than distractors ({len(distractor_names)}): MegaFace scores the "
            "FaceScrub probes (3,530 images of 80 identities) against up to 1M distractors; check that --probes and "
            "--distractors are not swapped (fine for the devkit's small distractor sets)",
            stacklevel=3,
        )


def score_megaface(
    probes: str,
    distractors: str,
    probe_root: str | None = None,
    distractor_root: str | None = None,
    ending: str = DEFAULT_ENDING,
    identities: str | None = None,
    output: str | None = None,
    far: float = MEGAFACE_FAR,
    far_rule: FarRule = "evalroc",
    chunk: int = 16384,
    device: str | None = None,
) -> dict[str, float]:
    """Score MegaFace challenge 1 (rank-1 identification and TAR@FAR=1e-6 against the distractors).

    Args:
        probes: FaceScrub probe features: an amlit embeddings .npz, or a devkit list (facescrub_features_list.json).
        distractors: distractor features: an amlit .npz, or a devkit list (megaface_features_list.json_1000000_1).
        probe_root: folder of the probe feature files when probes is a devkit list.
        distractor_root: folder of the distractor feature files when distractors is a devkit list.
        ending: feature file ending appended to each list path (devkit naming, e.g. _amlit.bin).
        identities: optional file of probe identities to keep, one per line (facescrub_set1_names_80.txt).
        output: optional results JSON (metrics and the cmc/roc curves).
        far: verification false accept rate.
        far_rule: which scores the FAR target accepts (amlit.eval.far): evalroc (BLUFR's EvalROC, the default of
            every protocol), at_most (largest TAR with FAR <= target; insightface), interpolated (happynear).
        chunk: distractors scored per step.
        device: torch device (default cuda when available, else cpu).

    Returns:
        The scalar metrics (also printed).
    """
    _check_output(output, {"--probes": probes, "--distractors": distractors, "--identities": identities})
    probe_names, probe_features = load_features(probes, probe_root, ending, "probe")
    if identities is not None:
        keep = select_identities(probe_names, identities)
        probe_names = [name for name, kept in zip(probe_names, keep, strict=True) if kept]
        probe_features = probe_features[keep]
    labels, identity_names = identity_labels(probe_names)
    if len(identity_names) == 1:
        # Probes under one common folder (aligned/<Name>_<n>.png) all took its name: every pair was scored as genuine.
        raise BadDataError(
            f"{probes}: all {len(probe_names)} probes are of one identity, {identity_names[0]!r} (an image's identity "
            f"is its folder, e.g. {probe_names[0]}); MegaFace's probes are FaceScrub identities (80 in set 1): name "
            "them <Name>/<Name>_<n>.png, or <Name>_<n>.png without a folder (or are --probes and --distractors "
            "swapped?)"
        )
    if _feature_source(probes, probe_root) == _feature_source(distractors, distractor_root):
        raise ConfigError(
            f"--probes and --distractors are the same features ({probes}): every probe would find itself among the "
            "distractors (rank-1 and TAR 0); pass the FaceScrub probe features as --probes and the MegaFace "
            "distractor features as --distractors"
        )
    distractor_names, distractor_features = load_features(distractors, distractor_root, ending, "distractor")
    _warn_of_suspect_inputs(probe_names, distractor_names)
    print(
        f"MegaFace: {len(probe_names)} probes of {len(identity_names)} identities, "
        f"{len(distractor_features)} distractors"
    )
    impostors = len(probe_names) * len(distractor_features)
    # e.g. the devkit's 10 .. 10k distractor sets at 1e-6: the number alone does not say so (FAR 0 is exact)
    if far > 0 and far * impostors < 1:
        warnings.warn(
            f"{impostors} impostor pairs cannot measure FAR {far:g} (it needs at least {math.ceil(1 / far)}): the "
            f"tar@far={far:g} printed is the TAR at zero false accepts; compare it only at the same distractor count",
            stacklevel=2,
        )
    metrics = evaluate_megaface(
        torch.from_numpy(probe_features),
        torch.from_numpy(labels),
        torch.from_numpy(distractor_features),
        far=far,
        far_rule=far_rule,
        chunk=chunk,
        device=device,
        probe_names=probe_names,
    )
    scalars = {key: value for key, value in metrics.items() if not isinstance(value, Curve)}
    for key, value in scalars.items():
        print(f"{key}: {value:.6g}")
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        settings = {"probes": probes, "distractors": distractors, "far": far, "far_rule": far_rule}
        results = {**{key: _jsonable(value) for key, value in metrics.items()}, "settings": settings}
        Path(output).write_text(json.dumps(results, indent=1))
        print(f"wrote {output}")
    return scalars


def export_megaface(
    embeddings: str, output_root: str, ending: str = DEFAULT_ENDING, image_list: str | None = None
) -> int:
    """Write devkit feature files from an amlit embeddings .npz, for the official MegaFace devkit.

    Args:
        embeddings: amlit embeddings .npz (names relative to the embedded root, e.g. Adam_Brody/Adam_Brody_420.png).
        output_root: folder of the feature tree; one file <output_root>/<name><ending> per image.
        ending: feature file ending (pass the same to the devkit's run_experiment.py).
        image_list: optional devkit list: write exactly its images (each must be in the .npz).

    Returns:
        The number of files written.
    """
    check_output(output_root, "--output_root", folder=True)
    names, features = load_features(embeddings, None, ending, "embedding")
    if image_list is not None:
        row_of = {name: row for row, name in enumerate(names)}
        wanted = read_image_list(image_list)
        missing = [name for name in wanted if name not in row_of]
        if missing:
            raise BadDataError(
                f"{len(missing)} images of {image_list} are not in {embeddings} (e.g. {', '.join(missing[:3])}); "
                "embed the images of the list with the devkit's relative paths as names"
            )
        names, features = wanted, features[[row_of[name] for name in wanted]]
    windows = [name for name in names if "\\" in name]
    if windows:  # written as is, Adam\Adam_1.png became one file of that name at the root, not found by the devkit
        raise BadDataError(
            f"{embeddings}: {len(windows)} image names separate folders with '\\' (e.g. {windows[0]}); the devkit's "
            "lists and feature trees use '/': save the names with '/' (name.replace('\\', '/')); nothing was written"
        )
    check_names_inside(names, output_root, image_list or embeddings, "image name")
    write_features(names, features, output_root, ending)
    print(f"wrote {len(names)} feature files under {output_root} (ending {ending!r})")
    return len(names)
