"""Embedded default data: generated face-like identities written in the real on-disk formats.

An identity is a fixed geometry and colouring (face shape, skin, hair, eye spacing and colour, brows, nose, mouth,
beard, glasses); each of its images adds nuisances that real photos have: head pose (in-plane rotation, scale,
shift, a squash for yaw), expression, lighting and colour cast, background, occlusion, blur, sensor noise and JPEG
compression. Faces are drawn on the SphereFace 112x96 template (eyes, nose and mouth corners at the template's
five points, moved by the identity's geometry), so the crops look like aligned faces.

``generate`` writes two trees so that the demo and the tests go through the same loaders as real data:

- ``casia/<7-digit id>/<nnn>.jpg``: training identities in the CASIA-WebFace layout, plus ``names.txt``
  (``<id> <Name>`` per line, as ``webface_id_name_list.txt``);
- ``lfw/<Name>/<Name>_<%04d>.jpg`` and ``lfw/pairs.txt``: disjoint test identities in the LFW layout, with
  LFW View-2 style folds (identity-disjoint folds, matched then mismatched pairs).

Generation is deterministic from the seed and cached: a finished tree carries a ``COMPLETE`` file holding its
parameters; it is built in a temporary folder and renamed into place, so an interrupted run never leaves a tree
that looks complete, and processes started together (DDP ranks) do not clash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from amlit.eval.pairs import lfw_image_path, sample_fold_pairs, write_lfw_pairs
from amlit.progress import progress_bar

# SphereFace 112x96 alignment template (x, y): left eye, right eye, nose tip, left and right mouth corner.
TEMPLATE_112X96 = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]],
    dtype=np.float32,
)
SKIN_TONES = np.array([(236, 200, 170), (220, 175, 140), (190, 140, 105), (150, 105, 75), (105, 70, 50)], float)
HAIR_COLOURS = np.array([(25, 20, 18), (70, 45, 30), (120, 80, 45), (200, 165, 100), (150, 60, 30), (160, 160, 160)])
IRIS_COLOURS = np.array([(60, 40, 25), (90, 60, 30), (70, 110, 160), (80, 120, 80), (110, 110, 120)], float)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Train and test identities never overlap (open-set evaluation)."""

    train_identities: int = 200
    images_per_identity: int = 24
    test_identities: int = 120
    test_images_per_identity: int = 6
    pairs_per_fold: int = 60  # matched (and as many mismatched) pairs per fold, 10 folds
    image_size: tuple[int, int] = (112, 96)
    seed: int = 0

    def tag(self) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"synthetic-{digest}"


@dataclass(frozen=True)
class Identity:
    skin: np.ndarray  # (3,) RGB
    hair: np.ndarray  # (3,) RGB
    iris: np.ndarray  # (3,) RGB
    lips: np.ndarray  # (3,) RGB
    face_axes: tuple[float, float]  # half width, half height of the face ellipse
    landmarks: np.ndarray  # (5, 2) the identity's own eye/nose/mouth points on the 112x96 canvas
    eye_radius: float
    brow: tuple[float, float, float]  # height above the eye, tilt, thickness
    nose: tuple[float, float]  # half width, tip lift
    hair_style: int
    beard: bool
    glasses: bool


def random_identity(rng: np.random.Generator) -> Identity:
    mix = rng.dirichlet(np.ones(len(SKIN_TONES)) * 0.5)
    # Geometry: the five points move by up to a few pixels, symmetrically or not, like real faces do.
    eye_spread, eye_height = rng.uniform(-4, 4), rng.uniform(-4, 4)
    nose_shift = rng.uniform(-3, 4)
    mouth_spread, mouth_height = rng.uniform(-5, 5), rng.uniform(-4, 4)
    offsets = np.array(
        [
            [-eye_spread, eye_height],
            [eye_spread, eye_height],
            [rng.uniform(-1.5, 1.5), nose_shift],
            [-mouth_spread, mouth_height],
            [mouth_spread, mouth_height],
        ]
    )
    return Identity(
        skin=mix @ SKIN_TONES + rng.normal(0, 8, 3),
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 12, 3),
        iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] + rng.normal(0, 10, 3),
        lips=np.array((170, 90, 90)) + rng.normal(0, 18, 3),
        face_axes=(rng.uniform(30, 38), rng.uniform(42, 52)),
        landmarks=TEMPLATE_112X96 + offsets,
        eye_radius=rng.uniform(2.8, 4.8),
        brow=(rng.uniform(6, 11), rng.uniform(-0.25, 0.25), rng.uniform(1.5, 3.5)),
        nose=(rng.uniform(3, 8), rng.uniform(8, 16)),
        hair_style=int(rng.integers(4)),
        beard=bool(rng.random() < 0.2),
        glasses=bool(rng.random() < 0.15),
    )


def _colour(rgb: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(rgb, 0, 255))


def _pt(xy: np.ndarray) -> tuple[int, int]:
    # cv2 drawing with 4 fractional bits (shift=4): sub-pixel positions, anti-aliased.
    return int(round(xy[0] * 16)), int(round(xy[1] * 16))


def render_face(identity: Identity, rng: np.random.Generator, size: tuple[int, int] = (112, 96)) -> np.ndarray:
    """Draw one image of ``identity`` with random nuisances: (H, W, 3) uint8 RGB."""
    height, width = size
    aa, s = cv2.LINE_AA, 4
    canvas = np.empty((112, 96, 3), np.float32)
    # Background: a random colour with a random linear gradient.
    ramp = np.linspace(-1, 1, 96)[None, :, None] * rng.uniform(-40, 40, 3)
    canvas[:] = rng.uniform(20, 235, 3) + ramp + np.linspace(-1, 1, 112)[:, None, None] * rng.uniform(-30, 30, 3)
    img = np.ascontiguousarray(np.clip(canvas, 0, 255).astype(np.uint8))

    le, re, nose, lm, rm = identity.landmarks
    centre = np.array([48.0, 64.0])
    ax, ay = identity.face_axes
    hair = _colour(identity.hair)
    if identity.hair_style in (1, 3):  # long hair behind the face
        cv2.ellipse(img, _pt(centre + [0, -4]), _pt(np.array([ax + 7, ay + 8])), 0, 0, 360, hair, -1, aa, s)
    cv2.ellipse(img, _pt(centre), _pt(np.array([ax, ay])), 0, 0, 360, _colour(identity.skin), -1, aa, s)
    if identity.hair_style >= 2:  # hair cap
        cap = np.array([ax + 2, ay * 0.55])
        cv2.ellipse(img, _pt(centre + [0, -ay * 0.55]), _pt(cap), 0, 180, 360, hair, -1, aa, s)
    else:  # fringe
        cv2.ellipse(img, _pt(centre + [0, -ay * 0.7]), _pt(np.array([ax, ay * 0.42])), 0, 180, 360, hair, -1, aa, s)
    if identity.beard:
        cv2.ellipse(img, _pt(centre + [0, 22]), _pt(np.array([ax * 0.8, 20])), 0, 0, 180, hair, -1, aa, s)

    # Eyes (with expression: openness), brows, nose, mouth (with expression: smile / open).
    openness = rng.uniform(0.35, 1.0)
    brow_height, brow_tilt, brow_thickness = identity.brow
    for eye, side in ((le, -1), (re, 1)):
        r = identity.eye_radius
        cv2.ellipse(img, _pt(eye), _pt(np.array([r * 1.9, r * openness])), 0, 0, 360, (245, 245, 240), -1, aa, s)
        cv2.circle(img, _pt(eye), int(r * openness * 16), _colour(identity.iris), -1, aa, s)
        start = eye + [-side * 7, -brow_height + side * brow_tilt * 7]
        end = eye + [side * 7, -brow_height - side * brow_tilt * 7]
        cv2.line(img, _pt(start), _pt(end), hair, max(1, round(brow_thickness)), aa, s)
        if identity.glasses:
            cv2.circle(img, _pt(eye), int(r * 2.6 * 16), (30, 30, 30), 1, aa, s)
    half_width, lift = identity.nose
    shade = _colour(identity.skin * 0.75)
    nose_poly = np.array([nose + [0, -lift], nose + [-half_width, 2], nose + [half_width, 2]])
    cv2.polylines(img, [np.array([_pt(p) for p in nose_poly])], True, shade, 1, aa, s)
    smile = rng.uniform(-2, 5)
    mid = (lm + rm) / 2 + [0, smile]
    mouth = np.array([_pt(p) for p in (lm, mid, rm)])
    cv2.polylines(img, [mouth], False, _colour(identity.lips), 2 + int(rng.random() < 0.3), aa, s)

    # Pose: similarity transform about the face centre plus a horizontal squash (yaw-like), then resize to size.
    angle, scale = rng.uniform(-12, 12), rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((48.0, 64.0), angle, scale)
    matrix[0, :2] *= rng.uniform(0.85, 1.0)
    matrix[:, 2] += rng.uniform(-5, 5, 2)
    border = tuple(float(v) for v in img[0, 0])
    img = cv2.warpAffine(img, matrix, (96, 112), flags=cv2.INTER_LINEAR, borderValue=border)
    if (height, width) != (112, 96):
        # insightface 112x112 crops are the same template shifted 8 px to the right; narrower crops are only resized
        pad = max(0, (width - 96) // 2)
        img = cv2.copyMakeBorder(img, 0, 0, pad, max(0, width - 96 - pad), cv2.BORDER_REPLICATE)
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) if img.shape[:2] != size else img

    # Occlusion, lighting, colour cast, blur, noise.
    if rng.random() < 0.25:
        x0, y0 = rng.integers(0, width - 20), rng.integers(0, height - 20)
        w, h = rng.integers(15, 40, 2)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), _colour(rng.uniform(0, 255, 3)), -1)
    light = np.linspace(-1, 1, width)[None, :, None] * rng.uniform(-50, 50)
    out = img.astype(np.float32) * rng.uniform(0.6, 1.3) * rng.uniform(0.85, 1.15, 3) + light
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (5, 5), rng.uniform(0.6, 1.4))
    out += rng.normal(0, rng.uniform(2, 10), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def _write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(encoded.tobytes())


def _write_tree(spec: SyntheticSpec, out: Path) -> None:
    rng = np.random.default_rng(spec.seed)
    total = spec.train_identities + spec.test_identities
    identities = [random_identity(np.random.default_rng([spec.seed, k])) for k in range(total)]
    casia_ids = sorted(rng.choice(9_000_000, spec.train_identities, replace=False) + 100_000)
    names: dict[str, list[int]] = {}
    with progress_bar(
        total=spec.train_identities * spec.images_per_identity + spec.test_identities * spec.test_images_per_identity,
        desc="generating synthetic faces",
        unit="img",
    ) as progress:
        name_lines = []
        for k, casia_id in enumerate(casia_ids):
            folder = out / "casia" / f"{casia_id:07d}"
            folder.mkdir(parents=True)
            name_lines.append(f"{casia_id:07d} Synthetic_Train_{k:05d}")
            image_rng = np.random.default_rng([spec.seed, k, 1])
            for n in range(1, spec.images_per_identity + 1):
                image = render_face(identities[k], image_rng, spec.image_size)
                _write_jpeg(folder / f"{n:03d}.jpg", image, int(image_rng.integers(40, 96)))
                progress.update()
        (out / "casia" / "names.txt").write_text("\n".join(name_lines) + "\n", encoding="utf-8")
        for t in range(spec.test_identities):
            k = spec.train_identities + t
            name = f"Synthetic_Person_{t:04d}"
            (out / "lfw" / name).mkdir(parents=True)
            image_rng = np.random.default_rng([spec.seed, k, 1])
            for n in range(1, spec.test_images_per_identity + 1):
                image = render_face(identities[k], image_rng, spec.image_size)
                _write_jpeg(out / "lfw" / lfw_image_path(name, n), image, int(image_rng.integers(40, 96)))
                progress.update()
            names[name] = list(range(1, spec.test_images_per_identity + 1))
    folds = sample_fold_pairs(names, num_folds=10, pairs_per_fold=spec.pairs_per_fold, rng=rng)
    write_lfw_pairs(out / "lfw" / "pairs.txt", folds)


def generate(root: str | Path, spec: SyntheticSpec) -> Path:
    """Generate (or reuse) the synthetic trees for ``spec`` under ``root``; returns the folder holding
    ``casia/`` and ``lfw/``."""
    target = Path(root) / spec.tag()
    marker = target / "COMPLETE"
    if marker.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_tree(spec, staging)
        (staging / "COMPLETE").write_text(json.dumps(asdict(spec), indent=2) + "\n", encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not marker.is_file():  # another process finished first only if its marker is there
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def blufr_config_for(tree: Path, seed: int = 0) -> Path:
    """A BLUFR-style protocol (``sample_blufr_protocol``) over the generated ``lfw/`` tree, written once as
    ``lfw/blufr_config.mat`` so the demo runs the BLUFR code path exactly as on the real LFW."""
    from amlit.eval.blufr import sample_blufr_protocol, write_blufr_config

    path = tree / "lfw" / "blufr_config.mat"
    if not path.is_file():
        files = sorted(p.name for p in (tree / "lfw").glob("*/*.jpg"))
        subjects = sorted({name.rsplit("_", 1)[0] for name in files})
        label_of = {subject: label for label, subject in enumerate(subjects, start=1)}
        config = sample_blufr_protocol(files, [label_of[name.rsplit("_", 1)[0]] for name in files], seed=seed)
        staging = path.with_suffix(f".tmp-{os.getpid()}.mat")
        write_blufr_config(staging, config)
        staging.replace(path)  # atomic: a reader never sees half a file
    return path


def megaface_distractors_for(tree: Path, count: int, image_size: tuple[int, int], seed: int = 0) -> Path:
    """``count`` distractor faces of new identities (one image each, like MegaFace's Flickr photos), written once
    under ``megaface-distractors-<count>/<kkk>/<k>.jpg``; with ``lfw/`` as the probe set the demo runs MegaFace."""
    target = tree / f"megaface-distractors-{count}"
    if (target / "COMPLETE").is_file():
        return target
    staging = tree / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for k in progress_bar(range(count), desc="generating distractor faces", unit="img"):
            rng = np.random.default_rng([seed, 2, k])  # a stream no train/test identity uses ([seed, k])
            image = render_face(random_identity(rng), rng, image_size)
            (staging / f"{k // 1000:03d}").mkdir(parents=True, exist_ok=True)
            _write_jpeg(staging / f"{k // 1000:03d}" / f"{k:07d}.jpg", image, int(rng.integers(40, 96)))
        (staging / "COMPLETE").write_text(f"{count}\n", encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "COMPLETE").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
