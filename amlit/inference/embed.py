"""``amlit embed``: a trained model + images -> an embeddings ``.npz`` (``names``, ``features``), the file every
``amlit score`` command reads (``amlit.eval.embeddings``).

Large sets are embedded in chunks of ``chunk`` images, each kept under ``<output>.partial/`` as soon as it is done:
running the same command again after an interruption embeds only the chunks not yet done (refused when the list,
the model, the settings or an image file's size or modification time changed since). The finished file is
written atomically; bad images are listed (with the reason) in ``<output stem>.bad.csv`` and left out.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from amlit.data.images import source_checksum, write_atomically, write_json_atomically
from amlit.data.landmarks import LandmarkFormat
from amlit.errors import BadDataError, ConfigError, listed
from amlit.inference.faces import FaceList, alignment_template, face_batches, list_faces
from amlit.inference.models import Precision
from amlit.outputs import check_output
from amlit.progress import progress_bar

STATE_NAME = "state.json"


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def embedded_batches(model, faces: FaceList, indices: Sequence[int], template, batch_size: int, workers: int):
    """(indices embedded, features (b, D) float32, [(index, reason)] bad) per batch, in ``indices`` order."""
    size = model.contract.image_size
    # A batch of bad images only (e.g. missing files after the last full batch) still has features of width D:
    # callers assign them to the rows kept.
    no_features = np.empty((0, model.record["embedding_dim"]), dtype=np.float32)
    for kept, batch, bad in face_batches(faces, indices, size, template, batch_size, workers):
        yield kept, model.embed(batch) if kept else no_features, bad


def _chunk_path(folder: Path, chunk: int) -> Path:
    return folder / f"chunk-{chunk:06d}.npz"


def _resume_state(partial: Path, state: dict, overwrite: bool, output: Path) -> None:
    """Keep the finished chunks of an interrupted run of the same command on the same files; refuse those of another
    one, or of image files that changed since (their chunks hold features of the old images)."""
    state_path = partial / STATE_NAME
    if state_path.is_file():
        previous = json.loads(state_path.read_text(encoding="utf-8"))
        if previous != state:
            if not overwrite:
                changed = [key for key in state if previous.get(key) != state[key]]
                if changed == ["files"]:  # the same names: files rewritten in place (other names change "images")
                    raise ConfigError(
                        f"{partial} holds a part-finished embedding of these images, but some image files changed "
                        "since (their size or modification time differs: replaced or rewritten), so its finished "
                        f"chunks may hold features of the old images: delete {partial} or pass --overwrite=true to "
                        f"embed {output} afresh"
                    )
                changed = [key for key in changed if key != "files"]  # implied by the others
                raise ConfigError(
                    f"{partial} holds a part-finished embedding of other inputs ({', '.join(changed)} differ): pass "
                    f"--overwrite=true to start {output} afresh, or run the command that made it"
                )
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    write_json_atomically(state_path, state)


def _kept_note(partial: Path, chunk: int) -> str:
    """What an interrupted run leaves for the next one, and how to use it."""
    finished = len(list(partial.glob("chunk-*.npz"))) if partial.is_dir() else 0
    if not finished:
        return "no chunk was finished, nothing to resume; run the command again to start over"
    chunks = f"{finished} finished chunk{'s' if finished > 1 else ''}"
    return f"kept {chunks} (--chunk={chunk} images each) in {partial}: run the same command again to embed the rest"


def _chunks_to_do(partial: Path, count: int, chunk: int) -> Iterator[tuple[int, range]]:
    for number, start in enumerate(range(0, count, chunk)):
        if not _chunk_path(partial, number).is_file():
            yield number, range(start, min(start + chunk, count))


def _collect(partial: Path, count: int, chunk: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """(rows (N,), features (N, D), bad [(row, reason)]) of every chunk, in list order."""
    rows, features, bad = [], [], []
    for number in range((count + chunk - 1) // chunk):
        with np.load(_chunk_path(partial, number), allow_pickle=False) as part:
            rows.append(part["rows"])
            if len(part["rows"]):
                features.append(part["features"])
            bad += list(zip(part["bad_rows"].tolist(), part["bad_reasons"].tolist(), strict=True))
    all_rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    return all_rows, (np.concatenate(features) if features else np.empty((0, 0), np.float32)), bad


def embed(
    model: Path,
    images: Path,
    output: Path,
    root: Path | None = None,
    landmarks: Path | None = None,
    landmark_format: LandmarkFormat = "auto",
    template: str | None = None,
    batch_size: int = 128,
    device: str | None = None,
    precision: Precision = "32",
    workers: int | None = None,
    chunk: int = 8192,
    overwrite: bool = False,
) -> dict[str, int]:
    """Embed images with a trained model into an embeddings .npz (names, features: flip-sum, L2-normalized).

    Args:
        model: an amlit checkpoint (.ckpt) or an `amlit export onnx` file (.onnx).
        images: a folder (every image below it; names relative to it), one image file, or a text file with one
            image path per line (relative to --root, by default the list's folder).
        output: the .npz to write.
        root: folder the paths of an image list (and of --landmarks) are relative to.
        landmarks: five-point landmark file (lfw, casia or insightface .lst format): the images are raw and are
            aligned on the fly with the template the model was trained with. Without it the images must be aligned
            crops at the model's input size.
        landmark_format: auto, lfw, casia or lst.
        template: only for models that do not record their alignment template: the one their training crops were
            aligned with (sphereface_112x96, insightface_112x112).
        batch_size: faces per forward pass (each also runs mirrored).
        device: torch device for checkpoints, e.g. cuda or cpu (default: cuda when available); onnxruntime uses CUDA
            when it has it.
        precision: 32, or bf16 (checkpoints only): the network in bfloat16 autocast, as `amlit test` with
            trainer.precision=bf16-mixed; for GPUs (on CPUs without bfloat16 units it is several times slower).
        workers: image decoding threads (default: all CPU cores).
        chunk: images per resumable unit: an interrupted run keeps the finished chunks under <output>.partial/.
        overwrite: replace an existing output, or the part-finished work of a different command.

    Returns:
        Counts: images, embedded, bad.
    """
    output = Path(output)
    if output.suffix != ".npz":
        raise ConfigError(f"--output must name an .npz file, got {output}")
    if batch_size < 1 or chunk < 1:
        raise ConfigError(f"batch_size and chunk must be >= 1, got {batch_size} and {chunk}")
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} exists: pass --overwrite=true to replace it, or choose another --output")
    check_output(output, "--output")
    partial = output.with_name(output.name + ".partial")
    try:
        from amlit.inference.models import load_model

        faces = list_faces(images, root, landmarks, landmark_format)
        loaded = load_model(model, device, precision)
        face_template = alignment_template(loaded.contract, loaded.source, template) if landmarks is not None else None
        state = {
            "weights_sha256": loaded.weights_sha256,
            "images": _sha256("\n".join(faces.names)),  # in order: chunk rows index this list
            "files": source_checksum(faces.root, faces.names),  # sizes and mtimes: catches images replaced in place
            "root": str(faces.root.resolve()),
            "landmarks": _sha256(Path(landmarks).read_text(encoding="utf-8")) if landmarks is not None else None,
            "template": [list(p) for p in face_template.points] if face_template is not None else None,
            "chunk": chunk,
            "precision": precision,
        }
        _resume_state(partial, state, overwrite, output)
        count = len(faces.names)
        todo = list(_chunks_to_do(partial, count, chunk))
        done = count - sum(len(indices) for _, indices in todo)
        workers = (os.cpu_count() or 1) if workers is None else workers
        with progress_bar(total=count, initial=done, desc="embedding", unit="img") as bar:
            for number, indices in todo:
                rows, features, bad = [], [], []
                for kept, batch_features, batch_bad in embedded_batches(
                    loaded, faces, indices, face_template, batch_size, workers
                ):
                    rows += kept
                    features += [batch_features] if kept else []
                    bad += batch_bad
                    bar.update(len(kept) + len(batch_bad))
                part = _npz_bytes(
                    rows=np.asarray(rows, dtype=np.int64),
                    features=np.concatenate(features) if features else np.empty((0, 0), np.float32),
                    bad_rows=np.asarray([row for row, _ in bad], dtype=np.int64),
                    bad_reasons=np.asarray([reason for _, reason in bad], dtype=str),
                )
                write_atomically(_chunk_path(partial, number), part)
    except KeyboardInterrupt as interrupt:  # Ctrl-C: `amlit` prints this note instead of a traceback
        interrupt.add_note(_kept_note(partial, chunk))
        raise

    rows, features, bad = _collect(partial, count, chunk)
    bad_list = output.with_name(f"{output.stem}.bad.csv")
    if bad:
        import pandas as pd

        frame = pd.DataFrame({"image": [faces.names[row] for row, _ in bad], "reason": [r for _, r in bad]})
        frame.to_csv(bad_list, index=False)
    elif bad_list.exists():
        bad_list.unlink()  # from an earlier run of this output
    if not len(rows):
        raise BadDataError(
            f"none of the {count} images could be embedded; the reasons are in {bad_list} (first: {bad[0][1]})"
        )
    names = np.asarray([faces.names[row] for row in rows], dtype=str)
    write_atomically(output, _npz_bytes(names=names, features=features.astype(np.float32)))
    shutil.rmtree(partial)
    message = f"wrote {len(rows)} embeddings of dimension {features.shape[1]} to {output}"
    if bad:
        message += f"; {len(bad)} bad images left out, listed in {bad_list} (e.g. {listed([r for _, r in bad], 2)})"
    print(message)
    return {"images": count, "embedded": len(rows), "bad": len(bad)}
