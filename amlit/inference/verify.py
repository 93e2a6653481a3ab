"""``amlit verify``: two faces (or a file of pairs) -> cosine, and the same/different decision at a chosen FAR with
the threshold ``amlit test`` calibrated for the model (``amlit.inference.calibration``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from amlit.data.landmarks import LandmarkFormat
from amlit.errors import BadDataError, ConfigError, MissingDataError
from amlit.eval.pairs import lfw_image_path, read_lfw_pairs
from amlit.inference.faces import FaceList, alignment_template, check_landmark_set, face_landmarks
from amlit.listfiles import read_entries
from amlit.outputs import check_output


def _lfw_pair(fields: list[str]) -> tuple[str, str] | None:
    """The two images of an LFW pairs line, ``Name i j`` (same person) or ``Name1 i Name2 j``; None for others."""
    if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
        return lfw_image_path(fields[0], int(fields[1])), lfw_image_path(fields[0], int(fields[2]))
    if len(fields) == 4 and fields[1].isdigit() and fields[3].isdigit():
        return lfw_image_path(fields[0], int(fields[1])), lfw_image_path(fields[2], int(fields[3]))
    return None


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    """(left images, right images) of a pairs file: LFW's ``pairs.txt`` (header ``<folds> <n>``, names as
    ``Name/Name_0001.jpg``), LFW's View 1 ``pairsDevTrain.txt``/``pairsDevTest.txt`` (header ``<n>``) or its lines
    without a header, or one pair per line ``left right`` (whitespace or TAB separated, ``#`` comments)."""
    entries = list(read_entries(path, f"pairs file not found: {path}"))
    if not entries:
        raise BadDataError(f"{path} holds no pair")
    first = entries[0][1].split()
    if len(first) == 2 and all(field.isdigit() for field in first):  # LFW's header '10 300'
        pairs = read_lfw_pairs(path)
        return [pairs.images[i] for i in pairs.left], [pairs.images[i] for i in pairs.right]
    if len(first) == 1 and first[0].isdigit():  # View 1's header: the number of pairs of each kind
        entries = entries[1:]
    left, right = [], []
    for number, entry in entries:
        fields = entry.split("\t") if "\t" in entry else entry.split()
        pair = (fields[0], fields[1]) if len(fields) == 2 else _lfw_pair(fields)
        if pair is None:
            raise BadDataError(
                f"{path}:{number}: expected two image paths 'left right' (or an LFW pairs line 'Name i j' / "
                f"'Name1 i Name2 j'), got {entry!r}"
            )
        left.append(pair[0])
        right.append(pair[1])
    return left, right


def pair_cosines(features: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cosine of each pair of L2-normalized features (N, D), in float64 as ``amlit.eval.verification.pair_scores``."""
    return (features[left].astype(np.float64) * features[right].astype(np.float64)).sum(axis=1)


def verify(
    model: Path,
    image1: Path | None = None,
    image2: Path | None = None,
    pairs: Path | None = None,
    root: Path | None = None,
    far: float = 1e-3,
    calibration: Path | None = None,
    test_set: str | None = None,
    landmarks: Path | None = None,
    landmark_format: LandmarkFormat = "auto",
    template: str | None = None,
    output: Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
    workers: int | None = None,
) -> dict:
    """Compare two faces (--image1, --image2) or every pair of a file (--pairs): cosine and same/different at --far.

    The threshold is the one amlit test calibrated for this model at that FAR (the cosine at which round(FAR x N)
    of N impostor pairs of a test set pass), from --calibration, the model card inside an ONNX export, or a
    model_card.json beside the model; a model without one is refused, never given a made-up threshold.

    Args:
        model: an amlit checkpoint (.ckpt) or an `amlit export onnx` file (.onnx).
        image1: first face (with image2).
        image2: second face.
        pairs: instead of two images, a pairs file: LFW pairs.txt, or one 'left right' pair of paths per line.
        root: folder the paths of --pairs (and of --landmarks) are relative to (default: the pairs file's folder,
            or the current folder for --image1/--image2).
        far: false accept rate to decide at (a FAR the calibration has, e.g. 1e-3).
        calibration: the model_card.json that amlit test (or amlit export onnx) wrote for this model.
        test_set: take the threshold of this test set (default: the one with the most impostor pairs at --far).
        landmarks: five-point landmark file: the images are raw and are aligned with the model's template.
        landmark_format: auto, lfw, casia or lst.
        template: only for models that do not record their alignment template (see amlit embed).
        output: CSV file for the per-pair results (left, right, cosine, same).
        batch_size: faces per forward pass.
        device: torch device for checkpoints (default: cuda when available).
        workers: image decoding threads (default: all CPU cores).

    Returns:
        For two images: cosine, same, threshold; for a pairs file: the counts.
    """
    from amlit.inference.calibration import choose_threshold
    from amlit.inference.embed import embedded_batches
    from amlit.inference.models import load_model

    if (pairs is None) == (image1 is None or image2 is None) or (pairs is not None and (image1 or image2)):
        raise ConfigError("give either --image1 and --image2, or --pairs")
    if batch_size < 1:  # as amlit embed: 0 or less would be taken as "all faces in one batch"
        raise ConfigError(f"--batch_size must be >= 1, got {batch_size}")
    if output is not None:
        inputs = {"--pairs": pairs, "--image1": image1, "--image2": image2, "--model": model}
        check_output(output, "--output", inputs={**inputs, "--calibration": calibration, "--landmarks": landmarks})
    if pairs is not None:
        left, right = read_pairs(Path(pairs))
        base = Path(root) if root is not None else Path(pairs).parent
    else:
        left, right = [str(image1)], [str(image2)]
        base = Path(root) if root is not None else Path.cwd()
        for image in (image1, image2):
            if not (base / image).is_file():
                raise MissingDataError(f"image not found: {base / image}")
    names = sorted(set(left) | set(right))
    faces = FaceList(base, names, face_landmarks(landmarks, base, landmark_format))
    check_landmark_set(faces, landmarks)
    loaded = load_model(model, device)
    threshold = choose_threshold(loaded, far, calibration, test_set)  # before any work: refuse early
    face_template = alignment_template(loaded.contract, loaded.source, template) if landmarks is not None else None

    features = np.full((len(names), loaded.record["embedding_dim"]), np.nan, dtype=np.float32)
    reasons: dict[int, str] = {}
    workers = (os.cpu_count() or 1) if workers is None else workers
    for kept, batch_features, bad in embedded_batches(
        loaded, faces, range(len(names)), face_template, batch_size, workers
    ):
        features[kept] = batch_features
        reasons.update(bad)
    position = {name: index for index, name in enumerate(names)}
    left_rows = np.array([position[name] for name in left])
    right_rows = np.array([position[name] for name in right])
    cosines = pair_cosines(features, left_rows, right_rows)
    same = cosines >= threshold.value  # NaN (a bad image) is never accepted
    print(threshold.describe())
    if pairs is None:
        if reasons:
            raise BadDataError(f"cannot verify: {next(iter(reasons.values()))}")
        verdict = "same person" if same[0] else "different people"
        print(f"cosine {cosines[0]:.6f} -> {verdict} (accepted when cosine >= {threshold.value:.6f})")
        return {"cosine": float(cosines[0]), "same": bool(same[0]), "threshold": threshold.value}

    scored = ~np.isnan(cosines)
    rows = [
        [a, b, f"{cosine:.8f}" if ok else "", ("same" if accepted else "different") if ok else "not scored", problem]
        for a, b, cosine, ok, accepted, problem in zip(
            left,
            right,
            cosines,
            scored,
            same,
            [reasons.get(position[a]) or reasons.get(position[b]) or "" for a, b in zip(left, right, strict=True)],
            strict=True,
        )
    ]
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", newline="", encoding="utf-8") as file:
            csv.writer(file).writerows([["left", "right", "cosine", "decision", "problem"], *rows])
    else:
        for a, b, cosine, decision, _ in rows:
            print(f"{cosine or '-'}\t{decision}\t{a}\t{b}")
    counts = {"pairs": len(left), "scored": int(scored.sum()), "same": int(same.sum())}
    if not counts["scored"]:  # a run that decided nothing must not end as a success (scripts check the status)
        where = f" (every pair's problem is in {output})" if output is not None else ""
        raise BadDataError(
            f"none of the {len(left)} pairs of {pairs} could be scored: {len(reasons)} images could not be embedded, "
            f"e.g. {next(iter(reasons.values()))}{where}"
        )
    unscored = f"; {len(left) - counts['scored']} not scored ({len(reasons)} images could not be embedded)"
    print(
        f"{counts['scored']} of {counts['pairs']} pairs scored, {counts['same']} accepted as the same person"
        + (unscored if reasons else "")
        + (f"; per-pair results in {output}" if output is not None else "")
    )
    return counts
