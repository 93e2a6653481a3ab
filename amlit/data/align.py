"""Five-point face alignment: raw images + landmark file -> aligned crops (SphereFace 112x96 / insightface 112x112).

Pipeline of SphereFace (wy1iu/sphereface ``preprocess/code/face_align_demo.m``): MTCNN gives five
landmarks per image (left eye, right eye, nose tip, left and right mouth corner, *image* left/right); a
non-reflective similarity transform maps them onto a fixed template by least squares (MATLAB ``cp2tform``);
the image is warped into the template's frame (bilinear, outside = black). Images without landmarks (faces MTCNN
missed) are dropped, as SphereFace does.

Coordinate convention: **0-based pixel centres**, as the public Python ports (clcarwin/sphereface_pytorch
``lfw_eval.py``, insightface ``face_preprocess.py`` / ``face_align.py``) use with ``cv2.warpAffine``. MATLAB is
1-based: it maps 1-based landmarks onto the template read as 1-based output coordinates, whereas the ports feed
the same numbers to 0-based OpenCV, so the crops differ by about 1 px from the MATLAB ones. That is harmless for
accuracy as long as training and test images are aligned the same way (align both with amlit).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd

from amlit.data.images import (
    CROP_X,
    INSIGHTFACE_SIZE,
    accepted_extensions,
    decode_image,
    file_sha256,
    orientation_tag,
    read_image_size,
    scan_images,
    write_image_atomically,
)
from amlit.data.landmarks import LandmarkFormat, read_landmarks
from amlit.errors import BadDataError, ConfigError, MissingDataError
from amlit.outputs import check_output
from amlit.progress import progress_bar


@dataclass(frozen=True)
class AlignTemplate:
    """Where the five landmarks must land in the output crop."""

    points: tuple[tuple[float, float], ...]  # (5, 2) x, y in 0-based output pixels; order as the landmarks
    size: tuple[int, int]  # output (height, width)

    def array(self) -> np.ndarray:
        return np.asarray(self.points, dtype=np.float64)


_SPHEREFACE_POINTS = (
    (30.2946, 51.6963),  # left eye
    (65.5318, 51.5014),  # right eye
    (48.0252, 71.7366),  # nose tip
    (33.5493, 92.3655),  # left mouth corner
    (62.7299, 92.2041),  # right mouth corner
)

TEMPLATES: dict[str, AlignTemplate] = {
    # wy1iu/sphereface face_align_demo.m (also happynear's AM-Softmax / MegaFace crops): 112x96 (HxW).
    "sphereface_112x96": AlignTemplate(_SPHEREFACE_POINTS, (112, 96)),
    # insightface: the same points shifted right by 8 px (``src[:, 0] += 8.0``; ``arcface_dst``), 112x112.
    "insightface_112x112": AlignTemplate(tuple((x + 8.0, y) for x, y in _SPHEREFACE_POINTS), (112, 112)),
}

REPORT_NAME = "align_report.csv"
INFO_NAME = "alignment.json"


def get_template(name: str) -> AlignTemplate:
    if name not in TEMPLATES:
        raise ConfigError(f"unknown alignment template {name!r}: choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def template_at(name: str, image_size: tuple[int, int]) -> AlignTemplate | None:
    """Template ``name`` as it lands in crops of ``image_size`` (H, W): itself at its own size, insightface's
    112x112 one cut by 8 px a side to 112x96 (= SphereFace's points: amlit serves such crops so); None otherwise."""
    template = get_template(name)
    if tuple(template.size) == tuple(image_size):
        return template
    if tuple(template.size) == INSIGHTFACE_SIZE and tuple(image_size) == (
        INSIGHTFACE_SIZE[0],
        INSIGHTFACE_SIZE[1] - 2 * CROP_X,
    ):
        return AlignTemplate(tuple((x - CROP_X, y) for x, y in template.points), tuple(image_size))
    return None


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares non-reflective similarity mapping ``source`` (N, 2) points onto ``target`` (N, 2).

    Minimizes ``sum_i |target_i - (s R source_i + t)|^2`` over scale ``s >= 0``, rotation ``R`` and shift ``t``
    (Umeyama 1991; MATLAB ``cp2tform(..., 'nonreflective similarity')``, skimage ``SimilarityTransform``). In 2-D
    the model is linear in ``c = s e^{i angle}``: with points as complex numbers and centred at their means,
    ``c = sum(conj(src) tgt) / sum(|src|^2)`` is the closed-form optimum. MATLAB's ``'similarity'`` also tries a
    mirrored fit and keeps it only if its residual is smaller, which does not happen for correctly ordered
    points; a mirror would swap the left and right eye, so it is deliberately not allowed here.

    Returns the (2, 3) float64 matrix ``[[a, -b, tx], [b, a, ty]]`` for ``cv2.warpAffine``.
    ``cv2.estimateAffinePartial2D`` is not used: with ``LMEDS`` it fits a subset of points, not all five by
    least squares (it differed by up to 10 in a matrix entry on noisy points).
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"expected two (N, 2) point arrays with N >= 2, got {source.shape} and {target.shape}")
    src = source[:, 0] + 1j * source[:, 1]  # (N,) complex
    tgt = target[:, 0] + 1j * target[:, 1]
    src_mean, tgt_mean = src.mean(), tgt.mean()
    spread = np.sum(np.abs(src - src_mean) ** 2)
    if spread == 0:
        raise ValueError("all source points coincide: no similarity transform is defined")
    scale_rotation = np.sum(np.conj(src - src_mean) * (tgt - tgt_mean)) / spread  # a + ib
    shift = tgt_mean - scale_rotation * src_mean
    a, b = scale_rotation.real, scale_rotation.imag
    return np.array([[a, -b, shift.real], [b, a, shift.imag]])


def align_face(image: np.ndarray, landmarks: np.ndarray, template: AlignTemplate) -> np.ndarray:
    """Warp ``image`` (H, W[, C]) so that ``landmarks`` (5, 2; x, y, 0-based) land on ``template``.

    Bilinear interpolation, pixels from outside the image are 0 (as ``imtransform`` and the insightface code).
    Returns an array of the template's size, (height, width[, C]).
    """
    matrix = similarity_transform(landmarks, template.array())
    height, width = template.size
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


# ---------------------------------------------------------------------------------------------------------------
# Plausibility of landmarks
# Limits of the checks below, set on the 13,233 faces of the public lfw_landmark.txt (MTCNN on the 250x250 LFW
# originals), which all pass: normalized fit residual <= 0.35, in-plane angle within +-28 degrees, eye distance /
# eye-to-mouth distance 0.25 .. 1.52, nose at 0.02 .. 1.15 of the way from the eyes to the mouth.
MAX_FIT_RESIDUAL = 0.5  # RMS distance to the template after the best similarity fit, in template eye distances
MAX_ANGLE_DEGREES = 90.0  # in-plane rotation of the face: beyond this it is upside down
EYE_TO_MOUTH_RATIO = (0.2, 2.5)  # eye distance / eye-to-mouth distance (the 112x96 template: 0.87)
NOSE_POSITION = (-0.5, 1.5)  # the nose's position along the eyes-to-mouth axis (0 = between the eyes, 1 = mouth)


def outside_image(points: np.ndarray, image_size: tuple[int, int]) -> str | None:
    """Why ``points`` (5, 2; x, y, 0-based pixel centres) cannot belong to an image of ``image_size`` (H, W), or None.

    A point may lie at most half a pixel beyond the outer pixel centres. Landmarks made for a larger copy of the
    image (``lfw_landmark.txt`` is for the 250x250 originals) typically fall outside a smaller one.
    """
    height, width = image_size
    x, y = points[:, 0], points[:, 1]
    if x.min() >= -0.5 and y.min() >= -0.5 and x.max() <= width - 0.5 and y.max() <= height - 0.5:
        return None
    return (
        f"landmarks outside the {height}x{width} (HxW) image (x {x.min():.1f}..{x.max():.1f}, y {y.min():.1f}.."
        f"{y.max():.1f}): the landmark file is for images of another size"
    )


def template_fit(points: np.ndarray, template: np.ndarray) -> tuple[float, float]:
    """(residual, angle) of the best similarity fit of ``points`` (5, 2) onto ``template`` (5, 2): the RMS distance
    left, in template eye distances (so the same for any template's scale and shift), and the rotation in degrees
    that uprights the face."""
    points = np.asarray(points, dtype=np.float64)
    matrix = similarity_transform(points, template)
    fitted = points @ matrix[:, :2].T + matrix[:, 2]
    template_eyes = float(np.linalg.norm(template[1] - template[0]))
    residual = float(np.sqrt(((fitted - template) ** 2).sum(axis=1).mean())) / template_eyes
    return residual, float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))


def implausible_face(points: np.ndarray, template: np.ndarray) -> str | None:
    """Why five points ``points`` (5, 2) cannot be a face's left eye, right eye, nose, left and right mouth corner
    (image left/right), or None: fitted to ``template`` (5, 2) by a similarity, they must land near it (a swapped
    left/right or shuffled order cannot be fitted without a mirror), the face must not be upside down, the eyes
    must be above the nose above the mouth, and the eye distance must be in proportion to the eye-to-mouth one."""
    points = np.asarray(points, dtype=np.float64)
    eye_distance = float(np.linalg.norm(points[1] - points[0]))
    eyes, mouth = (points[0] + points[1]) / 2, (points[3] + points[4]) / 2
    axis = mouth - eyes  # (2,) eyes -> mouth
    axis_length = float(np.linalg.norm(axis))
    if eye_distance == 0 or axis_length == 0:
        return "degenerate landmarks (the eyes, or the eyes and the mouth, coincide)"
    residual, angle = template_fit(points, template)
    ratio = eye_distance / axis_length
    nose = float((points[2] - eyes) @ axis) / axis_length**2
    if residual > MAX_FIT_RESIDUAL:
        return f"the five points do not fit the face template (residual {residual:.2f} eye distances): wrong order?"
    if abs(angle) > MAX_ANGLE_DEGREES:
        return f"the face would be rotated by {angle:.0f} degrees (upside down): wrong point order or y axis?"
    if not EYE_TO_MOUTH_RATIO[0] <= ratio <= EYE_TO_MOUTH_RATIO[1]:
        return f"eye distance / eye-to-mouth distance is {ratio:.2f}, outside {EYE_TO_MOUTH_RATIO}"
    if not NOSE_POSITION[0] <= nose <= NOSE_POSITION[1]:
        return f"the nose is not between the eyes and the mouth (at {nose:.2f} of the way)"
    return None


# More than this share of a crop sampled from outside its image (black) refuses the crop. Measured on the real
# lfw_landmark.txt: as given, at most 0.4% of a crop; each face moved until its landmarks touch one image edge,
# 16-40% (such half-framed faces are kept by the reference pipelines, and refusing them would thin out e.g. MegaFace
# distractors); touching a corner, 53-68%. Beyond half, the crop is more padding than picture.
MAX_OUTSIDE_SHARE = 0.5


def outside_share(points: np.ndarray, template: AlignTemplate, image_size: tuple[int, int]) -> float:
    """Share (0..1) of the crop that ``align_face`` would sample from outside an image of ``image_size`` (H, W):
    the crop's rectangle mapped back into the image is a rotated rectangle; the part of it off the image is black."""
    inverse = cv2.invertAffineTransform(similarity_transform(points, template.array()))
    height, width = template.size
    crop = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    in_image = crop @ inverse[:, :2].T + inverse[:, 2]  # (4, 2) the crop's corners in image coordinates
    image_height, image_width = image_size
    if in_image.min() >= -0.5 and (in_image <= [image_width - 0.5, image_height - 0.5]).all():
        return 0.0  # the usual case, without the polygon clipping
    image = np.array(
        [[-0.5, -0.5], [image_width - 0.5, -0.5], [image_width - 0.5, image_height - 0.5], [-0.5, image_height - 0.5]]
    )
    overlap, _ = cv2.intersectConvexConvex(in_image.astype(np.float32), image.astype(np.float32))
    return float(np.clip(1.0 - overlap / cv2.contourArea(in_image.astype(np.float32)), 0.0, 1.0))


def crop_outside_image(points: np.ndarray, template: AlignTemplate, image_size: tuple[int, int]) -> str | None:
    """Why the crop at ``points`` would be mostly black (more than ``MAX_OUTSIDE_SHARE`` of it off the image), or
    None."""
    share = outside_share(points, template, image_size)
    if share <= MAX_OUTSIDE_SHARE:
        return None
    return (
        f"{share:.0%} of the crop would lie outside the {image_size[0]}x{image_size[1]} (HxW) image (black): the face "
        "is cut off by the image border, or the landmark file is for images of another size"
    )


def landmark_problem(
    points: np.ndarray, template: AlignTemplate, image_size: tuple[int, int] | None
) -> tuple[str, str] | None:
    """(report status, reason) why ``points`` cannot be aligned from an image of ``image_size`` (H, W; None when
    not known yet: only the face itself is checked), or None. The checks shared by ``amlit data align`` and the
    on-the-fly alignment of ``amlit embed``/``verify``."""
    if reason := implausible_face(points, template.array()):
        return "implausible_landmarks", reason
    if image_size is None:
        return None
    if reason := outside_image(points, image_size):
        return "landmarks_outside_image", reason
    if reason := crop_outside_image(points, template, image_size):
        return "crop_outside_image", reason
    return None


# A whole set's landmarks are compared with its image sizes only from this many images on (fewer prove nothing).
MIN_IMAGES_FOR_SCALE_CHECK = 10


def landmarks_for_smaller_images(points: list[np.ndarray], sizes: list[tuple[int, int]]) -> str | None:
    """Why the landmarks ``points`` ((5, 2) each) of a set of images of ``sizes`` (H, W each) look made for smaller
    copies of the images (e.g. a detector run on half-size copies, coordinates not scaled back), or None.

    Such points stay inside their image and form a plausible face, so no check of one image can tell; but then every
    face of the set lies in the top-left quarter of its image. A real set's faces do not: in the real
    lfw_landmark.txt each face reaches at least 54% of the width or height (halved, at most 40%).
    """
    if len(points) < MIN_IMAGES_FOR_SCALE_CHECK:
        return None
    reach = max(
        max(face[:, 0].max() / width, face[:, 1].max() / height)
        for face, (height, width) in zip(points, sizes, strict=True)
    )
    if reach >= 0.5:
        return None
    return (
        f"the landmarks of all {len(points)} images lie in the top-left quarter of their images (none reaches beyond "
        f"{reach:.1%} of the width or height): the landmark file is likely for copies at half the size or smaller "
        "(e.g. a face detector run on downscaled images, coordinates not scaled back); scale its coordinates to "
        "these images"
    )


# The median fit residual of a landmark file's faces (``template_fit``) above which its points are in another order.
# Measured on the real lfw_landmark.txt: 0.085 as given (99% of faces <= 0.2, each <= 0.35); the same file written
# as all x then all y (MTCNN's (10, N) points, the .lst order) and read as x, y pairs: 0.48, each face >= 0.30, yet
# 73% of those faces pass the per-face checks (MAX_FIT_RESIDUAL leaves room for odd real faces); the template itself
# so misread fits no better than 0.32 wherever it lies in its image. A median needs a few faces to mean anything:
# one odd real face must not refuse a pair.
MAX_MEDIAN_FIT_RESIDUAL = 0.25
MIN_IMAGES_FOR_ORDER_CHECK = 3
ORDER_CHECK_SAMPLE = 1000  # faces fitted (30 us each): a file in another order is so throughout


def landmarks_in_another_order(points: list[np.ndarray]) -> str | None:
    """Why the landmarks ``points`` ((5, 2) each, x1 y1 ... x5 y5 as read; the first ``ORDER_CHECK_SAMPLE``) of a set
    of images look written in another order (all x then all y, as MTCNN returns them), or None. Many faces misread
    so still pass ``implausible_face`` one by one and would be aligned from the wrong places; the set's median fit
    shows it."""
    points = points[:ORDER_CHECK_SAMPLE]
    if len(points) < MIN_IMAGES_FOR_ORDER_CHECK:
        return None
    reference = TEMPLATES["sphereface_112x96"].array()  # the residual ignores the template's scale and shift
    median = float(np.median([template_fit(face, reference)[0] for face in points]))
    if median <= MAX_MEDIAN_FIT_RESIDUAL:
        return None
    return (
        f"the five points of its first {len(points)} faces fit the face template badly (median residual "
        f"{median:.2f} eye distances; real landmark files: about 0.1): the coordinates are likely in another order, "
        "e.g. x1..x5 "
        "y1..y5 (MTCNN's output) or y before x, where x1 y1 ... x5 y5 is expected; write them as x1 y1 x2 y2 ... "
        "x5 y5 (or use --landmark_format=lst for insightface .lst files)"
    )


# Image headers read for orientation tags: enough to show a set of phone photos, quick on a million images.
ORIENTATION_CHECK_SAMPLE = 256
_ORIENTATIONS = {2: "mirrored", 3: "rotated 180 degrees", 4: "mirrored upside down", 5: "mirrored, rotated 90 degrees",
                 6: "rotated 90 degrees", 7: "mirrored, rotated 270 degrees", 8: "rotated 270 degrees"}  # fmt: skip


def orientation_warning(paths: list[Path]) -> str | None:
    """A warning when images to align from landmarks carry an orientation tag (phone photos: EXIF), or None.

    amlit aligns the pixels as stored (as MATLAB's imread, PIL and the public landmark files); a detector that
    applied the tag first (``cv2.imread`` does by default) gives landmarks of the rotated image, which still lie
    inside a square image and look like a face, so the crops would be of the wrong place without any other sign."""
    tagged = [(path, tag) for path in paths[:ORIENTATION_CHECK_SAMPLE] if (tag := orientation_tag(path)) != 1]
    if not tagged:
        return None
    path, tag = tagged[0]
    return (
        f"{len(tagged)} of the first {min(len(paths), ORIENTATION_CHECK_SAMPLE)} images carry an orientation tag "
        f"(EXIF), e.g. {path} ({tag}: {_ORIENTATIONS[tag]}); amlit aligns their pixels as stored, so their landmarks "
        "must be for the stored image (as MATLAB imread, PIL or dlib read it): landmarks from a detector that "
        "rotated the image first (cv2.imread does by default) give crops of the wrong place; if yours did, save "
        "the images upright (orientation 1) and detect on those"
    )


# ---------------------------------------------------------------------------------------------------------------
# Whole trees


def _relative_to_root(image: str, root: Path, landmarks: Path) -> str:
    """Landmark-file paths are relative to the raw root; absolute ones (insightface .lst) must lie under it."""
    if os.path.isabs(image):
        try:
            return Path(image).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise BadDataError(
                f"{landmarks}: image path {image} is not under raw_root {root}: pass the folder the paths start in"
            ) from None
    return Path(image).as_posix().removeprefix("./")


def _output_name(relative: str) -> str:
    return relative if relative.lower().endswith((".jpg", ".jpeg")) else str(Path(relative).with_suffix(".jpg"))


@dataclass(frozen=True)
class _Job:
    source: str  # absolute input path
    target: str  # absolute output path
    relative: str  # input path relative to raw_root (for reports)
    landmarks: np.ndarray  # (5, 2)
    size_known: bool  # whether the landmarks were checked against the image size when planning


def _align_one(job: _Job, template: AlignTemplate, jpeg_quality: int) -> tuple[str, str, str]:
    """Align one file; returns (relative path, report status or '' on success, reason)."""
    try:
        image = decode_image(Path(job.source).read_bytes())
    except OSError as error:
        return job.relative, "bad_image", f"cannot be read ({error.strerror})"
    except BadDataError as error:
        return job.relative, "bad_image", str(error)
    if not job.size_known and (problem := landmark_problem(job.landmarks, template, image.shape[:2])):
        return job.relative, *problem
    write_image_atomically(Path(job.target), align_face(image, job.landmarks, template), jpeg_quality)
    return job.relative, "", ""


def _run_jobs(
    jobs: list[_Job], template: AlignTemplate, jpeg_quality: int, workers: int
) -> Iterator[tuple[str, str, str]]:
    """Results of ``_align_one`` for every job, in completion order.

    Worker *threads*, not processes: decoding, warping, encoding and file I/O all run in OpenCV/OS code that
    releases the GIL, so threads scale like processes here, start instantly, and avoid ``fork`` after other
    threads exist (a forked pool deadlocked intermittently once OpenCV's and tqdm's threads were running).
    """
    if workers <= 1 or len(jobs) < 2:
        for job in jobs:
            yield _align_one(job, template, jpeg_quality)
        return
    work = partial(_align_one, template=template, jpeg_quality=jpeg_quality)
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallel over images, not inside each small warp (avoids oversubscription)
    try:
        # Leaving the ``with`` (also on an error or an early stop) terminates the pool.
        with ThreadPool(workers) as pool:
            yield from pool.imap_unordered(work, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
    finally:
        cv2.setNumThreads(opencv_threads)


def _check_alignment_info(output: Path, info: dict) -> None:
    """Refuse to resume into a folder aligned with another template or from another landmark file: finished crops
    are kept on a rerun, so the tree would mix crop geometries, or crops of the old landmarks (even of images the
    new file leaves out) under a record naming the new file."""
    info_path = output / INFO_NAME
    if info_path.is_file():
        previous = json.loads(info_path.read_text(encoding="utf-8"))
        if previous.get("template") != info["template"]:
            raise ConfigError(
                f"{output} holds faces aligned with template {previous.get('template')!r} ({info_path}), not "
                f"{info['template']!r}: choose another output folder or the same template"
            )
        if "landmarks_sha256" not in previous:
            # Written before the landmark file was recorded by content: nothing to compare with.
            warnings.warn(
                f"{info_path} does not record which landmark file the crops in {output} come from; resuming "
                f"with {info['landmarks']} (delete {output} to align everything afresh from it)",
                stacklevel=3,
            )
        elif previous["landmarks_sha256"] != info["landmarks_sha256"]:
            raise ConfigError(
                f"{output} holds faces aligned from another landmark file ({previous.get('landmarks')}, sha256 "
                f"{previous['landmarks_sha256'][:12]}...; recorded in {info_path}) than {info['landmarks']} (sha256 "
                f"{info['landmarks_sha256'][:12]}...): its crops would be kept; delete {output} to realign it, or "
                "choose another output folder"
            )
    output.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _image_sizes(paths: list[Path], workers: int) -> list[tuple[int, int] | None]:
    """Header sizes of many files (I/O bound: threads)."""
    if workers <= 1 or len(paths) < 64:
        return [read_image_size(path) for path in paths]
    with ThreadPool(workers) as pool:
        return pool.map(read_image_size, paths, chunksize=256)


def _plan(
    table: pd.DataFrame, raw_root: Path, landmarks: Path, output: Path, template: AlignTemplate, workers: int
) -> tuple[list[_Job], list[tuple], int]:
    """Match landmark rows to the images on disk and check them before anything is written: (jobs still to do,
    report rows (path, status, reason) of the files that will not be aligned, number already aligned earlier).

    Every landmark set is checked (``landmark_problem``) for a plausible face and against its image's size read
    from the file header (points and crop inside the image; formats whose header does not say are checked after
    decoding). When most images fail these checks, the faces' points are in another order
    (``landmarks_in_another_order``) or all faces sit in the top-left quarter of their images
    (``landmarks_for_smaller_images``), the landmark file does not belong to these images: refuse, naming the cause.
    """
    table = table.assign(path=[_relative_to_root(p, raw_root, landmarks) for p in table["path"]])
    listing = scan_images(raw_root)
    has_image = table["path"].isin(set(listing.images))
    other_file = table["path"].isin(set(listing.other_files))
    if len(table) and not has_image.any():
        found = listing.images[:1] or listing.other_files[:1]
        raise BadDataError(
            f"none of the {len(table)} paths in {landmarks} names an image under {raw_root} (e.g. "
            f"{table['path'][0]!r}; found there: {found[0] if found else 'nothing'!r}): the paths must be relative "
            f"to raw_root and name image files ({accepted_extensions()})"
        )
    report = [
        (p, "missing_image", "listed in the landmark file but not under raw_root")
        for p in table["path"][~has_image & ~other_file]
    ]
    report += [
        (p, "unsupported_format", f"not an image extension (accepted: {accepted_extensions()})")
        for p in table["path"][other_file]
    ]
    listed_paths = set(table["path"])
    report += [
        (p, "no_landmarks", "no landmarks (e.g. no face detected)") for p in listing.images if p not in listed_paths
    ]
    table = table[has_image].reset_index(drop=True)

    sizes = _image_sizes([raw_root / p for p in table["path"]], workers)
    problems = [  # (status, reason) per row, "" where fine
        landmark_problem(points, template, size) or ("", "")
        for points, size in zip(table["landmarks"], sizes, strict=True)
    ]
    fine = [
        (points, size)
        for points, size, (status, _) in zip(table["landmarks"], sizes, problems, strict=True)
        if not status and size is not None
    ]
    if reason := landmarks_in_another_order(list(table["landmarks"])) or landmarks_for_smaller_images(
        [points for points, _ in fine], [size for _, size in fine]
    ):
        raise BadDataError(f"{landmarks} does not fit the images under {raw_root}: {reason}; nothing was aligned")
    if warning := orientation_warning([raw_root / p for p in table["path"]]):
        warnings.warn(warning, stacklevel=3)
    failing = [(path, status, reason) for path, (status, reason) in zip(table["path"], problems, strict=True) if status]
    if len(failing) and 2 * len(failing) > len(table):
        by_status = pd.Series([status for _, status, _ in failing]).value_counts()
        raise BadDataError(
            f"{len(failing)} of the {len(table)} images listed in {landmarks} fail the landmark checks ("
            + ", ".join(f"{count} {status.replace('_', ' ')}" for status, count in by_status.items())
            + f"), e.g. {raw_root / failing[0][0]}: {failing[0][2]}. The landmark file does not belong to these "
            "images (another image size or version of the set?); nothing was aligned"
        )
    report += failing
    keep = np.array([not status for status, _ in problems], dtype=bool)
    size_known = np.array([size is not None for size in sizes], dtype=bool)[keep]
    table = table[keep].reset_index(drop=True)

    table["output"] = [_output_name(p) for p in table["path"]]
    clash = table["output"].duplicated(keep="first")
    report += [
        (p, "name_clash", f"another image is also written as {o}")
        for p, o in zip(table["path"][clash], table["output"][clash], strict=True)
    ]
    done = np.array([(output / o).is_file() for o in table["output"]], dtype=bool)
    todo = ~clash.to_numpy() & ~done
    jobs = [
        _Job(str(raw_root / row.path), str(output / row.output), row.path, row.landmarks, bool(known))
        for row, known in zip(table[todo].itertuples(), size_known[todo], strict=True)
    ]
    return jobs, report, int((done & ~clash.to_numpy()).sum())


REPORT_STATUSES = (
    "no_landmarks",
    "missing_image",
    "unsupported_format",
    "bad_image",
    "implausible_landmarks",
    "landmarks_outside_image",
    "crop_outside_image",
    "name_clash",
)


def align_tree(
    raw_root: Path,
    landmarks: Path,
    output: Path,
    template: str = "sphereface_112x96",
    landmark_format: LandmarkFormat = "auto",
    workers: int | None = None,
    jpeg_quality: int = 95,
    on_bad: Literal["skip", "fail"] = "skip",
) -> dict[str, int]:
    """Align every image of ``raw_root`` that has landmarks into ``output`` (same relative paths, as .jpg).

    Before anything is written, every landmark set is checked: it must be a plausible face (eyes above nose above
    mouth, left/right in order, in proportion) and lie inside its image (the size is read from the file header),
    and at most half its crop may lie off the image. Failing files are left out and listed; when most files fail, or
    every face lies in the top-left quarter of its image, the landmark file does not belong to these images and
    nothing is aligned (e.g. ``lfw_landmark.txt``, made for the 250x250 LFW originals, given 150x150 copies, or
    landmarks of half-size copies).

    Resumable: images whose output exists are skipped (outputs are written to a temporary name and renamed,
    so an existing file is always complete). Images without landmarks are skipped, as SphereFace drops faces
    MTCNN missed. Every skipped file is listed with the reason in ``<output>/align_report.csv``; the template
    and the landmark file (path and sha256) are recorded in ``<output>/alignment.json``, and a rerun with another
    template or landmark file is refused.

    Args:
        raw_root: folder of the original images, e.g. ``CASIA-WebFace/`` holding ``<7-digit id>/<nnn>.jpg``.
        landmarks: five-point landmark file with paths relative to ``raw_root`` (or absolute, under it).
        output: folder for the aligned tree (created; must not be ``raw_root`` or inside it).
        template: ``sphereface_112x96`` (SphereFace / AM-Softmax) or ``insightface_112x112``.
        landmark_format: ``lfw`` (path + x1 y1 .. x5 y5), ``casia`` (path, class id, x1 y1 .. x5 y5), ``lst``
            (insightface: aligned, path, label, bbox, 5 x's, 5 y's), or ``auto`` (from the field count).
        workers: worker threads (default: all CPU cores; 0 or 1 = no pool).
        jpeg_quality: JPEG quality of the written crops (1-100; insightface packs with 95).
        on_bad: ``skip`` files that cannot be aligned (listed in the report) or ``fail`` on the first one.

    Returns:
        Counts: ``aligned``, ``already_done`` and one per report status (``no_landmarks``, ``missing_image``,
        ``unsupported_format``, ``bad_image``, ``implausible_landmarks``, ``landmarks_outside_image``,
        ``crop_outside_image``, ``name_clash``).
    """
    raw_root, landmarks, output = Path(raw_root), Path(landmarks), Path(output)
    align_template = get_template(template)
    if not 1 <= jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if on_bad not in ("skip", "fail"):
        raise ConfigError(f"on_bad must be 'skip' or 'fail', got {on_bad!r}")
    if not raw_root.is_dir():
        raise MissingDataError(f"raw image folder {raw_root} does not exist: pass the root of the original images")
    if output.resolve() == raw_root.resolve() or output.resolve().is_relative_to(raw_root.resolve()):
        raise ConfigError(f"output {output} must not be raw_root {raw_root} or inside it: choose a separate folder")
    check_output(output, "--output", folder=True)
    workers = (os.cpu_count() or 1) if workers is None else workers

    table = read_landmarks(landmarks, landmark_format)
    jobs, report, already_done = _plan(table, raw_root, landmarks, output, align_template, workers)
    if on_bad == "fail" and (bad := [row for row in report if row[1] in _DAMAGE]):
        path, status, reason = bad[0]
        raise BadDataError(f"cannot align {raw_root / path}: {reason}; fix or remove the file, or pass --on_bad=skip")
    _check_alignment_info(
        output,
        {
            "template": template,
            **_template_info(align_template),
            "landmarks": str(landmarks),
            "landmarks_sha256": file_sha256(landmarks),
        },
    )

    aligned = 0
    # closing(): on an on_bad="fail" stop the generator exits its Pool block at once, ending the workers.
    with closing(_run_jobs(jobs, align_template, jpeg_quality, workers)) as results:
        for relative, status, reason in progress_bar(results, total=len(jobs), desc="aligning", unit="img"):
            if not status:
                aligned += 1
            elif on_bad == "fail":
                raise BadDataError(
                    f"cannot align {raw_root / relative}: {reason}; fix or remove the file, or pass --on_bad=skip"
                )
            else:
                report.append((relative, status, reason))

    report_frame = pd.DataFrame(report, columns=["path", "status", "reason"]).sort_values(["status", "path"])
    report_frame.to_csv(output / REPORT_NAME, index=False)
    counts = {"aligned": aligned, "already_done": already_done}
    counts |= {status: int((report_frame["status"] == status).sum()) for status in REPORT_STATUSES}
    misfit = counts["landmarks_outside_image"] + counts["crop_outside_image"]
    print(
        f"{output}: "
        + ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in counts.items() if value or key == "aligned")
        + f"; skipped files are listed in {output / REPORT_NAME}"
        # Only images whose size the header does not give get here unchecked by _plan's refusal.
        + (
            f"; {landmarks} is likely for images of another size"
            if 2 * misfit > aligned + already_done + misfit
            else ""
        )
    )
    if not aligned and not already_done:
        raise BadDataError(f"no image of {raw_root} could be aligned; the reasons are in {output / REPORT_NAME}")
    return counts


# Report statuses that are damage (on_bad decides) rather than a file simply not taking part.
_DAMAGE = ("bad_image", "implausible_landmarks", "landmarks_outside_image", "crop_outside_image", "unsupported_format")


def _template_info(template: AlignTemplate) -> dict:
    return {"size_hw": list(template.size), "points_xy": [list(p) for p in template.points], "coordinates": "0-based"}
