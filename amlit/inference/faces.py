"""Faces to embed: an image folder or list, read as aligned crops or aligned on the fly from five-point landmarks
with the template the model was trained with; served as uint8 (B, H, W, 3) RGB batches, bad images set aside.

No torch here: the ONNX path of ``amlit embed``/``verify`` runs on numpy and onnxruntime alone.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np

from amlit.data.align import (
    TEMPLATES,
    AlignTemplate,
    align_face,
    landmark_problem,
    landmarks_for_smaller_images,
    landmarks_in_another_order,
    orientation_warning,
)
from amlit.data.images import (
    accepted_extensions,
    decode_face,
    decode_image,
    image_format,
    read_image_size,
    scan_images,
)
from amlit.data.landmarks import LandmarkFormat, read_landmarks
from amlit.errors import BadDataError, ConfigError, MissingDataError, listed
from amlit.inference.record import InputContract, template_record
from amlit.listfiles import read_entries


@dataclass(frozen=True)
class FaceList:
    """Images to embed: ``names`` as listed (relative to ``root``, or absolute), with five points per image when the
    images are raw (``landmarks``: ``landmark_key`` -> (5, 2) x, y), None when they are aligned crops."""

    root: Path
    names: list[str]
    landmarks: dict[str, np.ndarray] | None = None

    def path(self, name: str) -> Path:
        return Path(name) if os.path.isabs(name) else self.root / name

    def points(self, name: str) -> np.ndarray | None:
        """The five points of image ``name`` in the landmark file, None when it has none."""
        return self.landmarks.get(landmark_key(name, self.root)) if self.landmarks is not None else None


def _clean(name: str) -> str:
    return Path(name).as_posix().removeprefix("./")


def landmark_key(name: str, root: Path) -> str:
    """How an image is named in either list, a landmark file or the images: relative to ``root``, as ``amlit data
    align`` reads them, also where one of them gives the path absolute under ``root`` (insightface ``.lst`` files
    often do); other absolute paths as they are."""
    if not os.path.isabs(name):
        return _clean(name)
    path = Path(os.path.normpath(name))
    for base in (root.absolute(), root.resolve()):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.as_posix()


def _is_image(path: Path) -> bool:
    """Whether the file's first bytes are those of an image format amlit reads (``image_format``)."""
    with open(path, "rb") as file:
        return image_format(file.read(32)) is not None


def list_faces(
    images: str | Path,
    root: str | Path | None = None,
    landmarks: str | Path | None = None,
    landmark_format: LandmarkFormat = "auto",
) -> FaceList:
    """``images``: a folder (every image below it, names relative to it), one image file (named relative to
    ``root``, by default its folder) or a text file with one image path per line (``#`` comments; relative to
    ``root``, by default the list's folder). ``landmarks``: a five-point file (``amlit.data.landmarks`` formats)
    with paths relative to the same root: the images are raw and get aligned."""
    images = Path(images)
    if images.is_dir():
        base = images
        listing = scan_images(images)
        names = listing.images
        if listing.other_files:  # e.g. a phone's .heic photos beside its .jpg ones: their faces would be missing
            warnings.warn(
                f"{len(listing.other_files)} files under {images} are left out, not being of an image type amlit "
                f"reads ({accepted_extensions()}): {listed(listing.other_files, 3)}; convert the images among them "
                "(e.g. to .png) to embed them",
                stacklevel=2,
            )
    elif images.is_file() and _is_image(images):  # read as a list, its bytes were "not UTF-8 text"
        base = Path(root) if root is not None else images.parent
        names = [landmark_key(str(images.absolute()), base)]
    elif images.is_file():
        base = Path(root) if root is not None else images.parent
        names = [_clean(entry) for _, entry in read_entries(images, "")]
    else:
        raise MissingDataError(f"images not found: {images}; pass a folder of images or a file listing one per line")
    if not names:
        raise BadDataError(f"{images} names no image (expected image files, or a list with one path per line)")
    duplicated = [name for name, count in Counter(names).items() if count > 1]
    if duplicated:
        raise BadDataError(f"{images} lists {duplicated[0]} more than once: each image needs one feature")
    faces = FaceList(base, names, face_landmarks(landmarks, base, landmark_format))
    check_landmark_set(faces, landmarks)
    return faces


# Image headers read to compare the landmarks with the image sizes: enough to tell, quick on a million images.
SCALE_CHECK_SAMPLE = 256


def check_landmark_set(faces: FaceList, landmarks: str | Path | None) -> None:
    """Refuse a landmark file whose points are in another order (``landmarks_in_another_order``) or made for smaller
    copies of the images (``landmarks_for_smaller_images``), judged on the first ``SCALE_CHECK_SAMPLE`` listed
    images that have landmarks: their faces would be aligned from the wrong places."""
    if faces.landmarks is None:
        return
    sample = [name for name in faces.names if faces.points(name) is not None][:SCALE_CHECK_SAMPLE]
    points, sizes = [], []
    for name in sample:
        if (size := read_image_size(faces.path(name))) is not None:
            points.append(faces.points(name))
            sizes.append(size)
    sample_points = [faces.points(name) for name in sample]
    if reason := landmarks_in_another_order(sample_points) or landmarks_for_smaller_images(points, sizes):
        raise BadDataError(f"{landmarks} does not fit the images under {faces.root}: {reason}")
    if warning := orientation_warning([faces.path(name) for name in sample]):
        warnings.warn(warning, stacklevel=3)


def face_landmarks(landmarks: str | Path | None, root: Path, landmark_format: LandmarkFormat = "auto") -> dict | None:
    """``landmark_key`` (under ``root``) -> (5, 2) x, y from a landmark file (``amlit.data.landmarks`` formats); None
    without one."""
    if landmarks is None:
        return None
    table = read_landmarks(landmarks, landmark_format)
    return dict(zip((landmark_key(path, root) for path in table["path"]), table["landmarks"], strict=True))


def alignment_template(contract: InputContract, source: str, template: str | None) -> AlignTemplate:
    """The template raw faces are aligned with: the model's; ``template`` (a ``TEMPLATES`` name) only supplies it
    for a model that does not record one, and must agree with a recorded one."""
    if template is not None:
        record = template_record(template, contract.image_size)
        if record is None:
            known = ", ".join(TEMPLATES)
            raise ConfigError(
                f"--template={template} does not give {contract.image_size[0]}x{contract.image_size[1]} crops, the "
                f"input of {source} (known templates: {known})"
            )
        chosen = AlignTemplate(tuple((float(x), float(y)) for x, y in record["points"]), contract.image_size)
        if contract.template is not None and not np.allclose(chosen.array(), contract.template.array(), atol=1e-6):
            raise ConfigError(
                f"{source} was trained on faces aligned with {contract.template_name}, not {template}: leave out "
                "--template (the model's own template is used)"
            )
        return chosen
    if contract.template is None:
        raise ConfigError(
            f"{source} does not record the alignment template it was trained with, so raw faces cannot be aligned "
            f"for it without guessing: pass --template=<the template of its training crops> ({', '.join(TEMPLATES)}), "
            "or give aligned crops (no --landmarks)"
        )
    return contract.template


def load_face(faces: FaceList, name: str, size: tuple[int, int], template: AlignTemplate | None) -> np.ndarray:
    """One face as (H, W, 3) uint8 RGB at ``size``: an aligned crop as stored (an insightface 112x112 crop is cut to
    112x96 for a 112x96 model, as everywhere in amlit), or the raw image aligned with ``template`` at its landmarks.
    Raises ``BadDataError`` with the reason for anything that cannot give such a face."""
    path = faces.path(name)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadDataError(f"cannot read {path}: {error.strerror}") from None
    if faces.landmarks is None:
        # The model's input size is fixed: the way out is aligning the face, not a training setting.
        advice = "give aligned crops of the model's input size, or raw images with --landmarks to align them"
        return decode_face(data, size, str(path), advice)
    points = faces.points(name)
    if points is None:
        raise BadDataError(f"{path}: no landmarks for it in the landmark file")
    try:
        image = decode_image(data)
    except BadDataError as error:
        raise BadDataError(f"{path}: {error}") from None
    if problem := landmark_problem(points, template, image.shape[:2]):
        raise BadDataError(f"{path}: {problem[1]}")
    return cv2.cvtColor(align_face(image, points, template), cv2.COLOR_BGR2RGB)


@contextmanager
def _pool(workers: int):
    """Decoding threads (OpenCV releases the GIL), each OpenCV call on one thread (no oversubscription)."""
    if workers <= 1:
        yield None
        return
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ThreadPool(workers) as pool:
            yield pool
    finally:
        cv2.setNumThreads(threads)


def face_batches(
    faces: FaceList,
    indices: Sequence[int],
    size: tuple[int, int],
    template: AlignTemplate | None,
    batch_size: int,
    workers: int,
) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, str]]]]:
    """For the faces ``indices`` (into ``faces.names``), in order: (indices embedded, uint8 batch (b, H, W, 3),
    [(index, reason)] of the bad images met) per batch of at most ``batch_size`` good faces."""

    def load(index: int) -> tuple[int, np.ndarray | None, str]:
        try:
            return index, load_face(faces, faces.names[index], size, template), ""
        except BadDataError as error:
            return index, None, str(error)

    with _pool(workers) as pool:
        results = map(load, indices) if pool is None else pool.imap(load, indices, chunksize=8)
        kept: list[int] = []
        images: list[np.ndarray] = []
        bad: list[tuple[int, str]] = []
        for index, image, reason in results:
            if image is None:
                bad.append((index, reason))
            else:
                kept.append(index)
                images.append(image)
            if len(images) == batch_size:
                yield kept, np.stack(images), bad
                kept, images, bad = [], [], []
        if images or bad:
            empty = np.empty((0, *size, 3), dtype=np.uint8)
            yield kept, np.stack(images) if images else empty, bad
