"""Score an embeddings file (``amlit predict``'s ``.npz``, or features made elsewhere) with a protocol.

``amlit score lfw|blufr --embeddings=FILE.npz ...`` (``score megaface``: ``megaface_tool.py``): the protocols of
``amlit test``, starting from features, so
results can be recomputed without the model and features of other tools can be compared under amlit's protocols.
The file holds ``names`` (image paths, str) and ``features`` (N, D) float32, L2-normalized (flip-sum).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from amlit.data.pairs import read_lfw_pairs
from amlit.errors import BadDataError
from amlit.eval import embeddings
from amlit.eval.blufr import evaluate_blufr, read_blufr_config
from amlit.eval.curves import Curve
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
