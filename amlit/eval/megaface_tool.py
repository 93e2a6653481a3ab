"""``amlit score megaface`` and ``amlit export megaface``: MegaFace challenge 1 from amlit embeddings or devkit
feature trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from amlit.errors import BadDataError, ConfigError
from amlit.eval.curves import Curve
from amlit.eval.embeddings import read_embeddings
from amlit.eval.megaface import MEGAFACE_FAR, Interpolation, evaluate_megaface
from amlit.eval.megaface_files import (
    identity_labels,
    identity_of,
    read_features,
    read_identity_names,
    read_image_list,
    write_features,
)

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
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        example = names[int(np.flatnonzero(bad)[0])]
        raise BadDataError(f"{source}: {int(bad.sum())} {what} features are not finite (e.g. {example!r}); embed them")
    # Cosine = dot product of unit vectors; the devkit's L2 distance also assumes this (happynear/FaceVerification#64).
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    if (norms == 0).any():
        raise BadDataError(f"{source}: some {what} features are all zeros; they cannot be normalized")
    return names, features / norms


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


def _jsonable(value: float | Curve) -> object:
    if isinstance(value, Curve):
        return {"x": value.x.tolist(), "y": value.y.tolist(), "x_label": value.x_label, "y_label": value.y_label}
    return value


def score(
    probes: str,
    distractors: str,
    probe_root: str | None = None,
    distractor_root: str | None = None,
    ending: str = DEFAULT_ENDING,
    identities: str | None = None,
    output: str | None = None,
    far: float = MEGAFACE_FAR,
    interpolation: Interpolation = "linear",
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
        interpolation: TAR at the FAR target: linear (happynear draw_curve.m) or at_most (insightface).
        chunk: distractors scored per step.
        device: torch device (default cuda when available, else cpu).

    Returns:
        The scalar metrics (also printed).
    """
    probe_names, probe_features = load_features(probes, probe_root, ending, "probe")
    if identities is not None:
        keep = select_identities(probe_names, identities)
        probe_names = [name for name, kept in zip(probe_names, keep, strict=True) if kept]
        probe_features = probe_features[keep]
    labels, identity_names = identity_labels(probe_names)
    _, distractor_features = load_features(distractors, distractor_root, ending, "distractor")
    print(
        f"MegaFace: {len(probe_names)} probes of {len(identity_names)} identities, "
        f"{len(distractor_features)} distractors"
    )
    metrics = evaluate_megaface(
        torch.from_numpy(probe_features),
        torch.from_numpy(labels),
        torch.from_numpy(distractor_features),
        far=far,
        interpolation=interpolation,
        chunk=chunk,
        device=device,
    )
    scalars = {key: value for key, value in metrics.items() if not isinstance(value, Curve)}
    for key, value in scalars.items():
        print(f"{key}: {value:.6g}")
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        settings = {"probes": probes, "distractors": distractors, "far": far, "interpolation": interpolation}
        results = {**{key: _jsonable(value) for key, value in metrics.items()}, "settings": settings}
        Path(output).write_text(json.dumps(results, indent=1))
        print(f"wrote {output}")
    return scalars


def export(embeddings: str, output_root: str, ending: str = DEFAULT_ENDING, image_list: str | None = None) -> int:
    """Write devkit feature files from an amlit embeddings .npz, for the official MegaFace devkit.

    Args:
        embeddings: amlit embeddings .npz (names relative to the embedded root, e.g. Adam_Brody/Adam_Brody_420.png).
        output_root: folder of the feature tree; one file <output_root>/<name><ending> per image.
        ending: feature file ending (pass the same to the devkit's run_experiment.py).
        image_list: optional devkit list: write exactly its images (each must be in the .npz).

    Returns:
        The number of files written.
    """
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
    write_features(names, features, output_root, ending)
    print(f"wrote {len(names)} feature files under {output_root} (ending {ending!r})")
    return len(names)
