"""Five-point face alignment: raw images + landmark file -> aligned crops (SphereFace 112x96 / insightface 112x112).

Pipeline of SphereFace (wy1iu/sphereface ``preprocess/code/face_align_demo.m``, data_facts §2.2): MTCNN gives five
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
from tqdm.auto import tqdm

from amlit.data.images import IMAGE_EXTENSIONS
from amlit.errors import BadDataError, ConfigError, MissingDataError


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

LandmarkFormat = Literal["auto", "lfw", "casia", "lst"]
# Fields per line of each format; ``lst`` lines with 3 (no bbox) or 7 (bbox only) fields carry no landmarks.
_FIELD_COUNTS = {"lfw": (11,), "casia": (12,), "lst": (3, 7, 17)}
_FORMAT_HELP = (
    "lfw: 'path x1 y1 ... x5 y5' (clcarwin lfw_landmark.txt); casia: 'path<TAB>classid<TAB>x1<TAB>y1 ... y5' "
    "(clcarwin casia_landmark.txt); lst: 'aligned<TAB>path<TAB>label<TAB>bx1 by1 bx2 by2<TAB>x1..x5<TAB>y1..y5' "
    "(insightface .lst)"
)
REPORT_NAME = "align_report.csv"
INFO_NAME = "alignment.json"


def get_template(name: str) -> AlignTemplate:
    if name not in TEMPLATES:
        raise ConfigError(f"unknown alignment template {name!r}: choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


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
# Landmark files


def _split(line: str) -> list[str]:
    # The formats are TAB separated; plain spaces are accepted where no TAB occurs (paths have no spaces then).
    return line.split("\t") if "\t" in line else line.split()


def _detect_format(path: Path, number: int, fields: list[str]) -> str:
    for name, counts in _FIELD_COUNTS.items():
        if len(fields) in counts and (name != "lst" or fields[0] in ("0", "1")):
            return name
    raise BadDataError(
        f"{path}:{number}: cannot tell the landmark format from a line with {len(fields)} fields; "
        f"expected one of: {_FORMAT_HELP}; or pass landmark_format"
    )


def _parse_line(fields: list[str], fmt: str) -> tuple[str, list[str] | None, str]:
    """(image path, 10 coordinate strings in x1 y1 ... x5 y5 order or None, what the coordinates should be)."""
    if fmt == "lfw":
        return fields[0], fields[1:11], "10 numbers x1 y1 ... x5 y5"
    if fmt == "casia":
        return fields[0], fields[2:12], "an integer class id then 10 numbers x1 y1 ... x5 y5"
    # insightface .lst: aligned, path, label, [4 bbox ints, [5 x's, 5 y's]]
    if len(fields) < 17:
        return fields[1], None, ""
    interleaved = [fields[7 + k // 2] if k % 2 == 0 else fields[12 + k // 2] for k in range(10)]  # x1 y1 ... x5 y5
    return fields[1], interleaved, "4 bbox numbers, then 5 x's and 5 y's"


def read_landmarks(path: str | Path, landmark_format: LandmarkFormat = "auto") -> pd.DataFrame:
    """Read a five-point landmark file into a table with columns ``path`` (str, as written in the file) and
    ``landmarks`` ((5, 2) float64 array of x, y per point in the order left eye, right eye, nose, left and right
    mouth corner).

    Formats (data_facts §2.2): ``lfw`` = ``path x1 y1 ... x5 y5`` (clcarwin ``lfw_landmark.txt``), ``casia`` =
    ``path<TAB>classid<TAB>x1<TAB>y1 ... y5`` (clcarwin ``casia_landmark.txt``), ``lst`` = insightface
    ``aligned<TAB>path<TAB>label[<TAB>bbox x4[<TAB>5 x's<TAB>5 y's]]`` (lines without landmarks are left out).
    ``auto`` picks the format from the field count of the first line. Blank lines are ignored; any other line
    that does not fit raises ``BadDataError`` naming ``file:line``, as does an image listed twice.
    """
    path = Path(path)
    if landmark_format != "auto" and landmark_format not in _FIELD_COUNTS:
        raise ConfigError(f"unknown landmark format {landmark_format!r}: choose auto, {', '.join(_FIELD_COUNTS)}")
    if not path.is_file():
        raise MissingDataError(
            f"landmark file {path} does not exist: expected a text file, one image per line ({_FORMAT_HELP})"
        )
    fmt = None if landmark_format == "auto" else landmark_format
    paths: list[str] = []
    coordinates: list[list[float]] = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = _split(line.rstrip("\r\n"))
            if not fields or fields == [""]:
                continue
            fmt = fmt or _detect_format(path, number, fields)
            if len(fields) not in _FIELD_COUNTS[fmt]:
                expected = " or ".join(str(n) for n in _FIELD_COUNTS[fmt])
                raise BadDataError(
                    f"{path}:{number}: expected {expected} fields for the {fmt!r} landmark format, got {len(fields)}: "
                    f"{line.strip()[:120]!r}"
                )
            image, values, what = _parse_line(fields, fmt)
            if values is None:
                continue
            try:
                if fmt == "casia":
                    int(fields[1])
                if fmt == "lst":
                    [float(v) for v in fields[3:7]]
                numbers = [float(v) for v in values]
            except ValueError:
                raise BadDataError(
                    f"{path}:{number}: expected {what} after the path, got {line.strip()[:120]!r}"
                ) from None
            if not np.all(np.isfinite(numbers)):
                raise BadDataError(f"{path}:{number}: landmark coordinates must be finite, got {line.strip()[:120]!r}")
            if image in first_line:
                raise BadDataError(f"{path}:{number}: {image} already has landmarks on line {first_line[image]}")
            first_line[image] = number
            paths.append(image)
            coordinates.append(numbers)
    points = np.asarray(coordinates, dtype=np.float64).reshape(-1, 5, 2)  # (N, 5, 2)
    return pd.DataFrame({"path": paths, "landmarks": list(points)})


# ---------------------------------------------------------------------------------------------------------------
# Images


def _jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG stream reaches its end-of-image marker after the first scan starts.

    libjpeg (OpenCV) decodes a truncated JPEG with only a warning and fills the missing rows with gray, so a
    cut-off download would silently become a training image. Walk the marker segments up to the first
    start-of-scan (each carries its length), then look for EOI (FF D9) in the rest: inside scan data FF is only
    followed by 00 (stuffing) or a restart/scan marker, so the only FF D9 there is the real end. Bytes after EOI
    are allowed (some writers pad).
    """
    position = 2  # after SOI (FF D8)
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:
            return False  # EOI before any scan
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length field
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data follows the header
            return data.find(b"\xff\xd9", position + 2 + length) >= 0
        position += 2 + length
    return False


def decode_image(data: bytes) -> np.ndarray:
    """Decode an encoded image to (H, W, 3) uint8 BGR; gray images become 3-channel.

    EXIF orientation is ignored: landmarks refer to the stored pixel grid (what MATLAB's ``imread`` returns).
    Raises ``ValueError`` with the reason for undecodable data and truncated JPEGs.
    """
    if data[:2] == b"\xff\xd8" and not _jpeg_is_complete(data):
        raise ValueError("truncated JPEG (no end-of-image marker after the image data)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if len(buffer) else None
    if image is None:
        raise ValueError("not a decodable image")
    return image


def write_image_atomically(path: Path, image: np.ndarray, jpeg_quality: int) -> None:
    """Encode ``image`` (BGR) as JPEG and move it into place in one rename, so that an interrupted run never
    leaves a partial file under the final name (a later run would take it for done). The temporary name does
    not end in an image extension, so tree scans ignore leftovers."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(encoded.tobytes())
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------------------------
# Whole trees


def scan_images(root: Path) -> list[str]:
    """Relative POSIX paths of all image files under ``root`` (any depth), sorted; hidden entries skipped."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        relative = Path(folder).relative_to(root)
        found += [
            (relative / name).as_posix()
            for name in files
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
        ]
    return sorted(found)


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


def _align_one(job: _Job, template: AlignTemplate, jpeg_quality: int) -> tuple[str, str]:
    """Align one file; returns (relative path, '' on success or the reason it is bad)."""
    try:
        image = decode_image(Path(job.source).read_bytes())
    except (OSError, ValueError) as error:
        return job.relative, str(error)
    write_image_atomically(Path(job.target), align_face(image, job.landmarks, template), jpeg_quality)
    return job.relative, ""


def _run_jobs(jobs: list[_Job], template: AlignTemplate, jpeg_quality: int, workers: int) -> Iterator[tuple[str, str]]:
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
    """Refuse to resume into a folder aligned with another template (the tree would mix crop geometries)."""
    info_path = output / INFO_NAME
    if info_path.is_file():
        previous = json.loads(info_path.read_text(encoding="utf-8"))
        if previous.get("template") != info["template"]:
            raise ConfigError(
                f"{output} holds faces aligned with template {previous.get('template')!r} ({info_path}), not "
                f"{info['template']!r}: choose another output folder or the same template"
            )
    output.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _plan(table: pd.DataFrame, raw_root: Path, landmarks: Path, output: Path) -> tuple[list[_Job], list[tuple], int]:
    """Match landmark rows to the images on disk: (jobs still to do, report rows (path, status, reason) of the
    files that will not be aligned, number already aligned by an earlier run)."""
    table = table.assign(path=[_relative_to_root(p, raw_root, landmarks) for p in table["path"]])
    images = scan_images(raw_root)
    on_disk = set(images)
    has_image = table["path"].isin(on_disk)
    if len(images) and len(table) and not has_image.any():
        raise BadDataError(
            f"none of the {len(table)} paths in {landmarks} names an image under {raw_root} (e.g. {table['path'][0]!r} "
            f"vs {images[0]!r}): the paths must be relative to raw_root"
        )
    report = [
        (p, "missing_image", "listed in the landmark file but not under raw_root") for p in table["path"][~has_image]
    ]
    listed = set(table["path"])
    report += [(p, "no_landmarks", "no landmarks (e.g. no face detected)") for p in images if p not in listed]

    table = table[has_image].reset_index(drop=True)
    table["output"] = [_output_name(p) for p in table["path"]]
    clash = table["output"].duplicated(keep="first")
    report += [
        (p, "name_clash", f"another image is also written as {o}")
        for p, o in zip(table["path"][clash], table["output"][clash], strict=True)
    ]
    table = table[~clash]
    done = np.array([(output / o).is_file() for o in table["output"]], dtype=bool)
    jobs = [
        _Job(str(raw_root / row.path), str(output / row.output), row.path, row.landmarks)
        for row in table[~done].itertuples()
    ]
    return jobs, report, int(done.sum())


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

    Resumable: images whose output exists are skipped (outputs are written to a temporary name and renamed,
    so an existing file is always complete). Images without landmarks are skipped, as SphereFace drops faces
    MTCNN missed. Every skipped file is listed with the reason in ``<output>/align_report.csv``; the template
    used is recorded in ``<output>/alignment.json``.

    Args:
        raw_root: folder of the original images, e.g. ``CASIA-WebFace/`` holding ``<7-digit id>/<nnn>.jpg``.
        landmarks: five-point landmark file with paths relative to ``raw_root`` (or absolute, under it).
        output: folder for the aligned tree (created; must not be ``raw_root`` or inside it).
        template: ``sphereface_112x96`` (SphereFace / AM-Softmax) or ``insightface_112x112``.
        landmark_format: ``lfw`` (path + x1 y1 .. x5 y5), ``casia`` (path, class id, x1 y1 .. x5 y5), ``lst``
            (insightface: aligned, path, label, bbox, 5 x's, 5 y's), or ``auto`` (from the field count).
        workers: worker threads (default: all CPU cores; 0 or 1 = no pool).
        jpeg_quality: JPEG quality of the written crops (1-100; insightface packs with 95).
        on_bad: ``skip`` undecodable/truncated images (listed in the report) or ``fail`` on the first one.

    Returns:
        Counts: ``aligned``, ``already_done``, ``no_landmarks``, ``missing_image``, ``bad_image``, ``name_clash``.
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
    workers = (os.cpu_count() or 1) if workers is None else workers

    jobs, report, already_done = _plan(read_landmarks(landmarks, landmark_format), raw_root, landmarks, output)
    _check_alignment_info(output, {"template": template, **_template_info(align_template), "landmarks": str(landmarks)})

    aligned = 0
    # closing(): on an on_bad="fail" stop the generator exits its Pool block at once, ending the workers.
    with closing(_run_jobs(jobs, align_template, jpeg_quality, workers)) as results:
        for relative, problem in tqdm(results, total=len(jobs), desc="aligning", unit="img"):
            if not problem:
                aligned += 1
            elif on_bad == "fail":
                raise BadDataError(
                    f"cannot align {raw_root / relative}: {problem}; fix or remove the file, or pass --on_bad=skip"
                )
            else:
                report.append((relative, "bad_image", problem))

    report_frame = pd.DataFrame(report, columns=["path", "status", "reason"]).sort_values(["status", "path"])
    report_frame.to_csv(output / REPORT_NAME, index=False)
    counts = {"aligned": aligned, "already_done": already_done}
    counts |= {
        status: int((report_frame["status"] == status).sum())
        for status in ("no_landmarks", "missing_image", "bad_image", "name_clash")
    }
    print(
        f"{output}: "
        + ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in counts.items())
        + f"; skipped files are listed in {output / REPORT_NAME}"
    )
    return counts


def _template_info(template: AlignTemplate) -> dict:
    return {"size_hw": list(template.size), "points_xy": [list(p) for p in template.points], "coordinates": "0-based"}
