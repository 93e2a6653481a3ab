"""Score an embeddings file (``amlit predict``'s ``.npz``, or features made elsewhere) with a protocol.

``amlit score lfw|blufr|megaface`` and ``amlit export megaface``: the protocols of ``amlit test``, starting from
features, so results can be recomputed without the model and features of other tools can be compared under amlit's
protocols (``score megaface`` and ``export megaface`` also read and write the MegaFace devkit's feature files).
The file holds ``names`` (image paths, str) and ``features`` (N, D) float32, L2-normalized (flip-sum).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from amlit.errors import BadDataError, ConfigError
from amlit.eval import embeddings
from amlit.eval.blufr import evaluate_blufr, read_blufr_config
from amlit.eval.curves import Curve
from amlit.eval.megaface import (
    MEGAFACE_FAR,
    Interpolation,
    evaluate_megaface,
    identity_labels,
    read_features,
    read_image_list,
    select_identities,
    write_features,
)
from amlit.eval.pairs import read_lfw_pairs
from amlit.eval.verification import pair_verification_metrics


def read_embeddings(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """``(names, features (N, D) float32 tensor)`` of an embeddings ``.npz``."""
    names, features = embeddings.read_embeddings(path)
    return names, torch.from_numpy(features)


def select_features(names: list[str], features: torch.Tensor, wanted: list[str], source: Path) -> torch.Tensor:
    """Rows of ``features`` for ``wanted`` image paths, matched by path, else by file name; NaN rows if absent."""
    by_path = {name: row for row, name in enumerate(names)}
    by_file = {Path(name).name: row for row, name in enumerate(names)}
    rows = [by_path.get(name, by_file.get(Path(name).name, -1)) for name in wanted]
    found = torch.tensor(rows) >= 0
    if not found.any():
        raise BadDataError(f"{source}: none of the protocol's images (e.g. {wanted[0]}) is among the embedded names")
    out = torch.full((len(wanted), features.shape[1]), float("nan"))
    out[found] = features[torch.tensor(rows)[found]]
    return out


def _report(metrics: dict[str, float | Curve], prefix: str, output: Path | None) -> dict[str, float]:
    scalars = {f"{prefix}/{key}": float(value) for key, value in metrics.items() if not isinstance(value, Curve)}
    for key, value in scalars.items():
        print(f"{key}: {value:.6f}")
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(scalars, indent=2) + "\n")
    return scalars


def score_lfw(embeddings: Path, pairs: Path, output: Path | None = None) -> dict[str, float]:
    """LFW 10-fold verification of an embeddings file (pairs with a missing image are left out and counted).

    Args:
        embeddings: ``.npz`` with ``names`` and ``features`` (``amlit predict`` writes one).
        pairs: LFW-format ``pairs.txt``.
        output: optional JSON file for the metrics.
    """
    names, features = read_embeddings(embeddings)
    pair_list = read_lfw_pairs(pairs)
    selected = select_features(names, features, pair_list.images, Path(embeddings))
    return _report(pair_verification_metrics(selected, pair_list), "lfw", output)


def score_blufr(embeddings: Path, blufr_config: Path, output: Path | None = None) -> dict[str, float]:
    """BLUFR (10 trials; VR@FAR=0.01%/0.1%, DIR@FAR=1% rank 1; mean, std, mean - std) of an embeddings file.

    Args:
        embeddings: ``.npz`` with ``names`` and ``features``; images are matched to the BLUFR list by file name.
        blufr_config: the BLUFR toolkit's ``blufr_lfw_config.mat``.
        output: optional JSON file for the metrics.
    """
    names, features = read_embeddings(embeddings)
    return _report(evaluate_blufr((names, features), read_blufr_config(blufr_config)), "blufr", output)


# ---- MegaFace: amlit embeddings or devkit feature trees ---------------------------------------------------------
DEFAULT_ENDING = "_amlit.bin"


def load_features(source: str | Path, root: str | Path | None, ending: str, what: str) -> tuple[list[str], np.ndarray]:
    """(image names, (N, D) float32 L2-normalized) from an amlit ``.npz`` or a devkit list + feature root."""
    source = Path(source)
    if source.suffix == ".npz":
        names, features = embeddings.read_embeddings(source)
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


def _jsonable(value: float | Curve) -> object:
    if isinstance(value, Curve):
        return {"x": value.x.tolist(), "y": value.y.tolist(), "x_label": value.x_label, "y_label": value.y_label}
    return value


def score_megaface(
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
