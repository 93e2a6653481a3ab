"""Five-point alignment: the transform against a float64 least-squares solve, geometry on drawn discs, the landmark
file formats (and the real LFW file), and ``amlit data align`` end to end on a tiny tree."""

import hashlib
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from amlit.cli import run_tool
from amlit.data.align import TEMPLATES, align_face, similarity_transform
from amlit.data.landmarks import read_landmarks
from amlit.errors import BadDataError, ConfigError

# wy1iu/sphereface face_align_demo.m reference points (x, y), 112x96 (HxW).
SPHEREFACE_POINTS = [
    [30.2946, 51.6963],
    [65.5318, 51.5014],
    [48.0252, 71.7366],
    [33.5493, 92.3655],
    [62.7299, 92.2041],
]


def lstsq_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Independent reference: solve u = a x - b y + tx, v = b x + a y + ty for (a, b, tx, ty) with numpy."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows += [[x, -y, 1.0, 0.0], [y, x, 0.0, 1.0]]
        values += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def random_similarity(rng: np.random.Generator, scale_range=(1.6, 2.2), centre=(125.0, 125.0)) -> np.ndarray:
    """A (2, 3) similarity that maps the 112x96 template into the middle of a 250x250 canvas."""
    scale, angle = rng.uniform(*scale_range), rng.uniform(-0.6, 0.6)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = np.asarray(centre) + rng.uniform(-10, 10, 2) - rotation @ np.array([48.0, 72.0])
    return np.hstack([rotation, shift[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def disc_face(landmarks: np.ndarray, radius: float = 7.0) -> np.ndarray:
    """250x250 BGR canvas with a filled, anti-aliased disc centred (sub-pixel) on each landmark."""
    canvas = np.zeros((250, 250, 3), np.uint8)
    bits = 8  # cv2 drawing with fractional coordinates: values are fixed point with this many bits
    for x, y in landmarks:
        centre = (round(x * 2**bits), round(y * 2**bits))
        cv2.circle(canvas, centre, round(radius * 2**bits), (255, 255, 255), -1, cv2.LINE_AA, bits)
    return canvas


def disc_centroids(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroids (x, y; 0-based pixel centres) of the separate bright blobs, (K, 2)."""
    gray = image if image.ndim == 2 else image.mean(axis=2)
    count, labels = cv2.connectedComponents((gray > 10).astype(np.uint8))
    ys, xs = np.indices(gray.shape)
    centroids = []
    for label in range(1, count):
        weight = np.where(labels == label, gray, 0.0)
        centroids.append([(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()])
    return np.array(centroids)


def max_distance_to_template(centroids: np.ndarray, template: np.ndarray) -> float:
    assert centroids.shape == template.shape, f"expected {len(template)} separate discs, found {len(centroids)}"
    distances = np.linalg.norm(centroids[:, None, :] - template[None, :, :], axis=2)  # (found, template)
    return float(distances.min(axis=0).max())


def test_templates_are_the_published_points():
    sphereface, insightface = TEMPLATES["sphereface_112x96"], TEMPLATES["insightface_112x112"]
    np.testing.assert_array_equal(sphereface.array(), SPHEREFACE_POINTS)
    np.testing.assert_allclose(insightface.array(), np.array(SPHEREFACE_POINTS) + [8.0, 0.0], atol=1e-12)
    assert (sphereface.size, insightface.size) == ((112, 96), (112, 112))


def test_similarity_matches_float64_least_squares():
    rng = np.random.default_rng(0)
    template = np.array(SPHEREFACE_POINTS)
    for _ in range(20):
        source = apply(random_similarity(rng), template) + rng.normal(0, 3, (5, 2))  # noisy: residual is not zero
        expected = lstsq_similarity(source, template)
        np.testing.assert_allclose(similarity_transform(source, template), expected, atol=1e-9)


def test_similarity_recovers_an_exact_transform_without_reflecting():
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 200, (5, 2))
    known = random_similarity(rng)
    np.testing.assert_allclose(similarity_transform(source, apply(known, source)), known, atol=1e-9)
    # Mirrored target: the fit stays a rotation + scale (determinant >= 0), never a reflection.
    mirrored = similarity_transform(source, source * [-1.0, 1.0])
    assert np.linalg.det(mirrored[:, :2]) >= 0


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_drawn_landmarks_land_on_the_template(name):
    template = TEMPLATES[name]
    rng = np.random.default_rng(2)
    for _ in range(3):
        landmarks = apply(random_similarity(rng), template.array())
        aligned = align_face(disc_face(landmarks), landmarks, template)
        assert aligned.shape == (*template.size, 3)
        assert max_distance_to_template(disc_centroids(aligned), template.array()) < 0.25


@pytest.fixture
def raw_tree(tmp_path):
    """raw/<id>/<n>: a disc face (PNG), small noise JPEGs, a gray JPEG, a truncated JPEG, one image without
    landmarks; landmarks.txt in the casia TAB format."""
    rng = np.random.default_rng(4)
    raw = tmp_path / "raw"
    landmarks = apply(random_similarity(rng), TEMPLATES["sphereface_112x96"].array())
    files = {"0000001/001.png": disc_face(landmarks)}
    for identity in ("0000002", "0000003"):
        for n in (1, 2):
            files[f"{identity}/{n:03d}.jpg"] = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)
    files["0000003/003.jpg"] = rng.integers(0, 256, (60, 60), dtype=np.uint8)  # gray
    files["0000002/009.jpg"] = files["0000002/001.jpg"]  # no landmarks (a face MTCNN missed)
    for relative, image in files.items():
        (raw / relative).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(raw / relative), image)
    truncated = cv2.imencode(".jpg", files["0000002/001.jpg"])[1].tobytes()
    (raw / "0000003" / "004.jpg").write_bytes(truncated[: len(truncated) // 2])
    lines = []
    for relative in sorted([*files, "0000003/004.jpg"]):
        if relative != "0000002/009.jpg":
            # plausible landmarks inside the 60x60 noise images (the alignment checks refuse random points)
            small = apply(random_similarity(rng, (0.35, 0.45), (30.0, 30.0)), TEMPLATES["sphereface_112x96"].array())
            points = landmarks if relative.endswith(".png") else small
            lines.append("\t".join([relative, relative[:7], *(f"{v:.3f}" for v in points.ravel())]))
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    return raw, tmp_path / "landmarks.txt"


def test_align_command_end_to_end(raw_tree, tmp_path):
    raw, landmarks = raw_tree
    output = tmp_path / "aligned"
    args = ["data", "align", f"--raw_root={raw}", f"--landmarks={landmarks}", f"--output={output}"]
    counts = run_tool([*args, "--workers=2"])
    assert counts == {
        "aligned": 6, "already_done": 0, "no_landmarks": 1, "missing_image": 0, "unsupported_format": 0,
        "bad_image": 1, "implausible_landmarks": 0, "landmarks_outside_image": 0, "crop_outside_image": 0,
        "name_clash": 0,
    }  # fmt: skip
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*.jpg"))
    assert written == [
        "0000001/001.jpg", "0000002/001.jpg", "0000002/002.jpg", "0000003/001.jpg", "0000003/002.jpg", "0000003/003.jpg"
    ]  # fmt: skip
    assert not [p for p in output.rglob("*") if p.name.endswith(".partial")]  # no temporary left behind
    for path in written:
        assert cv2.imread(str(output / path), cv2.IMREAD_UNCHANGED).shape == (112, 96, 3)
    # The drawn face keeps its geometry through the whole command (PNG in, JPEG q95 out).
    face = cv2.imread(str(output / "0000001/001.jpg"))
    assert max_distance_to_template(disc_centroids(face), TEMPLATES["sphereface_112x96"].array()) < 1.0
    report = pd.read_csv(output / "align_report.csv", dtype=str)
    assert sorted(zip(report["path"], report["status"], strict=True)) == [
        ("0000002/009.jpg", "no_landmarks"),
        ("0000003/004.jpg", "bad_image"),
    ]
    assert "truncated" in report.set_index("path").loc["0000003/004.jpg", "reason"]
    assert json.loads((output / "alignment.json").read_text())["template"] == "sphereface_112x96"

    # Second run: nothing is redone, finished files are untouched.
    stamps = {path: (output / path).stat().st_mtime_ns for path in written}
    again = run_tool([*args, "--workers=0"])
    assert (again["aligned"], again["already_done"], again["bad_image"]) == (0, 6, 1)
    assert stamps == {path: (output / path).stat().st_mtime_ns for path in written}

    with pytest.raises(BadDataError, match=r"0000003/004.jpg: damaged or truncated JPEG"):
        run_tool([*args, "--workers=0", "--on_bad=fail"])
    with pytest.raises(ConfigError, match="aligned with template 'sphereface_112x96'"):
        run_tool([*args, "--template=insightface_112x112"])


def test_a_rerun_with_another_landmark_file_is_refused_and_with_the_same_one_resumes(raw_tree, tmp_path):
    raw, landmarks = raw_tree
    output = tmp_path / "aligned"
    args = ["data", "align", f"--raw_root={raw}", f"--output={output}", "--workers=0"]
    assert run_tool([*args, f"--landmarks={landmarks}"])["aligned"] == 6
    info = json.loads((output / "alignment.json").read_text())
    assert info["landmarks_sha256"] == hashlib.sha256(landmarks.read_bytes()).hexdigest()

    # The same content under another name resumes: nothing is redone.
    copy = tmp_path / "copy.txt"
    copy.write_bytes(landmarks.read_bytes())
    assert run_tool([*args, f"--landmarks={copy}"])["already_done"] == 6

    # A corrected file (one face less) would keep every old crop, including the one it no longer lists.
    corrected = tmp_path / "corrected.txt"
    corrected.write_text("\n".join(landmarks.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(ConfigError, match=r"aligned from another landmark file .*copy.txt.* than .*corrected.txt"):
        run_tool([*args, f"--landmarks={corrected}"])
    assert json.loads((output / "alignment.json").read_text())["landmarks"] == str(copy)  # record untouched

    # A folder aligned before the landmark file was recorded resumes, with a warning that it cannot be checked.
    del info["landmarks_sha256"]
    (output / "alignment.json").write_text(json.dumps(info))
    with pytest.warns(UserWarning, match="does not record which landmark file"):
        assert run_tool([*args, f"--landmarks={corrected}"])["already_done"] == 5


def test_align_refuses_paths_that_match_nothing_and_output_inside_raw(raw_tree, tmp_path):
    raw, landmarks = raw_tree
    prefixed = tmp_path / "prefixed.txt"
    prefixed.write_text("".join(f"CASIA-WebFace/{line}\n" for line in landmarks.read_text().splitlines()))
    with pytest.raises(BadDataError, match="relative to raw_root"):
        run_tool(["data", "align", f"--raw_root={raw}", f"--landmarks={prefixed}", f"--output={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match="inside it"):
        run_tool(["data", "align", f"--raw_root={raw}", f"--landmarks={landmarks}", f"--output={raw / 'aligned'}"])


def _lfw_lines(shared_data, count: int) -> list[str]:
    return (shared_data / "lfw" / "lfw_landmark.txt").read_text().splitlines()[:count]


@pytest.mark.parametrize("side", [250, 150])
def test_real_lfw_landmarks_on_images_of_another_size_are_refused_before_writing(shared_data, tmp_path, side):
    """lfw_landmark.txt is for the 250x250 LFW originals: on 150x150 copies (as deep-funneled sets are often
    shared) most points fall outside the image, and aligning them would silently cost accuracy."""
    lines = _lfw_lines(shared_data, 12)
    raw = tmp_path / "lfw"
    for line in lines:
        path, *coordinates = line.split()
        original = disc_face(np.array(coordinates, dtype=float).reshape(5, 2))  # 250x250, discs on the landmarks
        (raw / path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(raw / path), cv2.resize(original, (side, side), interpolation=cv2.INTER_AREA))
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    args = ["data", "align", f"--raw_root={raw}", f"--landmarks={tmp_path / 'landmarks.txt'}", "--workers=0"]
    output = tmp_path / "aligned"
    if side == 250:
        assert run_tool([*args, f"--output={output}"])["aligned"] == len(lines)
        return
    with pytest.raises(BadDataError) as info:
        run_tool([*args, f"--output={output}"])
    message = str(info.value)
    assert f"of the {len(lines)} images listed in" in message and "landmarks outside image" in message
    assert "landmarks outside the 150x150 (HxW) image" in message and "nothing was aligned" in message
    assert not output.exists() or not list(output.rglob("*.jpg"))


def test_implausible_and_outside_landmarks_are_left_out_and_reported(raw_tree, tmp_path):
    raw, landmarks = raw_tree
    lines = landmarks.read_text().splitlines()
    fields = lines[1].split("\t")  # 0000002/001.jpg: swap the eyes (image left/right mixed up)
    fields[2:6] = fields[4:6] + fields[2:4]
    lines[1] = "\t".join(fields)
    fields = lines[2].split("\t")  # 0000002/002.jpg (60x60): move every point 200 px right
    fields[2:12] = [f"{float(v) + 200 * (k % 2 == 0):.3f}" for k, v in enumerate(fields[2:12])]
    lines[2] = "\t".join(fields)
    landmarks.write_text("\n".join(lines) + "\n")
    output = tmp_path / "aligned"
    counts = run_tool(["data", "align", f"--raw_root={raw}", f"--landmarks={landmarks}", f"--output={output}"])
    assert (counts["aligned"], counts["implausible_landmarks"], counts["landmarks_outside_image"]) == (4, 1, 1)
    report = pd.read_csv(output / "align_report.csv", dtype=str).set_index("path")
    assert report.loc["0000002/001.jpg", "status"] == "implausible_landmarks"
    assert "do not fit the face template" in report.loc["0000002/001.jpg", "reason"]
    assert report.loc["0000002/002.jpg", "status"] == "landmarks_outside_image"
    assert "outside the 60x60 (HxW) image" in report.loc["0000002/002.jpg", "reason"]
    assert not (output / "0000002" / "001.jpg").exists() and not (output / "0000002" / "002.jpg").exists()
    with pytest.raises(BadDataError, match=r"cannot align .*0000002/001.jpg: the five points do not fit"):
        run_tool(["data", "align", f"--raw_root={raw}", f"--landmarks={landmarks}", f"--output={tmp_path / 'x'}",
                  "--on_bad=fail"])  # fmt: skip


def test_gray_pgm_and_gif_originals_align_and_other_formats_are_named(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(8)
    template = TEMPLATES["sphereface_112x96"].array()
    raw, lines = tmp_path / "raw", []
    for name in ("0000001/001.pgm", "0000001/002.gif", "0000002/001.heic"):
        points = apply(random_similarity(rng), template)
        gray = disc_face(points)[:, :, 0]
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gif"):
            Image.fromarray(gray).save(raw / name)
        elif name.endswith(".pgm"):
            cv2.imwrite(str(raw / name), gray)
        else:
            (raw / name).write_bytes(b"\x00\x00\x00\x18ftypheic")
        lines.append(name + " " + " ".join(f"{v:.2f}" for v in points.ravel()))
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    output = tmp_path / "aligned"
    counts = run_tool(["data", "align", f"--raw_root={raw}", f"--landmarks={tmp_path / 'landmarks.txt'}",
                       f"--output={output}", "--workers=0"])  # fmt: skip
    assert (counts["aligned"], counts["unsupported_format"], counts["missing_image"]) == (2, 1, 0)
    for name in ("0000001/001.jpg", "0000001/002.jpg"):
        aligned = cv2.imread(str(output / name))
        assert aligned.shape == (112, 96, 3)
        assert max_distance_to_template(disc_centroids(aligned), template) < 1.0
    reason = pd.read_csv(output / "align_report.csv").set_index("path").loc["0000002/001.heic", "reason"]
    assert "not an image extension (accepted: .jpg .jpeg .png .bmp .gif .pgm" in reason


def test_align_with_nothing_to_do_exits_with_status_2(tmp_path, monkeypatch, capsys):
    import sys

    from amlit.cli import main

    raw = tmp_path / "raw"
    (raw / "0000001").mkdir(parents=True)
    (raw / "0000001" / "001.jp2").write_bytes(b"\x00\x00\x00\x0cjP  ")
    (tmp_path / "landmarks.txt").write_text("0000001/001.jp2 " + " ".join(["1"] * 10) + "\n")
    landmarks, output = tmp_path / "landmarks.txt", tmp_path / "out"
    args = ["amlit", "data", "align", f"--raw_root={raw}", f"--landmarks={landmarks}", f"--output={output}"]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as info:
        main()
    error = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in error
    assert error.startswith("amlit: error: none of the 1 paths in") and "name image files (.jpg" in error


def test_outside_share_is_the_black_part_of_the_warped_crop():
    """Against a count of pixels: warp an all-white image and measure the black share of the crop."""
    from amlit.data.align import outside_share

    template = TEMPLATES["sphereface_112x96"]
    white = np.full((250, 250), 255, np.uint8)
    rng = np.random.default_rng(11)
    for shift in ([0, 0], [-100, 0], [-110, -110], [95, 100]):  # inside, off the left edge, corner, bottom right
        landmarks = apply(random_similarity(rng), template.array()) + shift
        black = float((align_face(white, landmarks, template) < 128).mean())
        assert outside_share(landmarks, template, (250, 250)) == pytest.approx(black, abs=0.01)


def test_a_crop_mostly_outside_its_image_is_left_out_and_reported(tmp_path):
    template = TEMPLATES["sphereface_112x96"].array()
    raw = tmp_path / "raw"
    faces = {  # landmarks inside each 250x250 image; the last face sits in the top-left corner
        "0000001/001.png": apply(random_similarity(np.random.default_rng(5)), template),
        "0000001/002.png": apply(random_similarity(np.random.default_rng(6)), template),
    }
    faces["0000001/003.png"] = faces["0000001/002.png"] - faces["0000001/002.png"].min(axis=0)
    lines = []
    for name, points in faces.items():
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(raw / name), disc_face(points))
        lines.append(name + " " + " ".join(f"{v:.3f}" for v in points.ravel()))
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    output = tmp_path / "aligned"
    counts = run_tool(["data", "align", f"--raw_root={raw}", f"--landmarks={tmp_path / 'landmarks.txt'}",
                       f"--output={output}", "--workers=0"])  # fmt: skip
    assert (counts["aligned"], counts["crop_outside_image"]) == (2, 1)
    reason = pd.read_csv(output / "align_report.csv").set_index("path").loc["0000001/003.png", "reason"]
    assert "of the crop would lie outside the 250x250 (HxW) image" in reason
    assert not (output / "0000001" / "003.jpg").exists()


def test_landmarks_for_half_size_copies_are_refused_before_writing(tmp_path):
    """A detector run on half-size copies without scaling its points back: each face is plausible and inside its
    image, so only the whole set shows it (every face in the top-left quarter); the crops would be of the wrong
    place, so nothing is aligned. The same file scaled back aligns."""
    rng = np.random.default_rng(9)
    raw, lines = tmp_path / "raw", []
    for k in range(10):
        points = apply(random_similarity(rng), TEMPLATES["sphereface_112x96"].array())
        name = f"{k:07d}/001.png"
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(raw / name), disc_face(points))
        lines.append((name, points))
    args = ["data", "align", f"--raw_root={raw}", "--workers=0"]
    half = tmp_path / "half.txt"
    half.write_text("".join(f"{n} " + " ".join(f"{v / 2:.2f}" for v in p.ravel()) + "\n" for n, p in lines))
    with pytest.raises(BadDataError) as info:
        run_tool([*args, f"--landmarks={half}", f"--output={tmp_path / 'half'}"])
    message = str(info.value)
    assert "all 10 images lie in the top-left quarter" in message and "half the size" in message
    assert "nothing was aligned" in message and not (tmp_path / "half").exists()
    full = tmp_path / "full.txt"
    full.write_text("".join(f"{n} " + " ".join(f"{v:.2f}" for v in p.ravel()) + "\n" for n, p in lines))
    assert run_tool([*args, f"--landmarks={full}", f"--output={tmp_path / 'full'}"])["aligned"] == 10


def _xs_then_ys(points: np.ndarray) -> str:
    """Five points written as MTCNN returns them (x1..x5 then y1..y5), where x1 y1 ... x5 y5 is expected."""
    return " ".join(f"{v:.2f}" for v in np.concatenate([points[:, 0], points[:, 1]]))


def test_real_lfw_landmarks_written_xs_then_ys_are_refused_as_a_set(shared_data):
    """Read as x, y pairs, 73% of the real lfw_landmark.txt faces written x1..x5 y1..y5 pass the per-face checks, so
    only the set's median fit shows the order; every slice of the real file as given passes."""
    from amlit.data.align import landmarks_in_another_order

    table = read_landmarks(shared_data / "lfw" / "lfw_landmark.txt")
    faces = [np.asarray(points, dtype=np.float64) for points in table["landmarks"]]
    misread = [np.array(_xs_then_ys(points).split(), dtype=float).reshape(5, 2) for points in faces]
    assert landmarks_in_another_order(faces) is None
    assert all(landmarks_in_another_order(faces[start : start + 3]) is None for start in range(0, 3000, 3))
    assert "another order" in landmarks_in_another_order(misread)
    assert all(landmarks_in_another_order(misread[start : start + 3]) for start in range(0, 3000, 3))


def test_landmarks_written_xs_then_ys_are_refused_before_writing(shared_data, tmp_path):
    lines = _lfw_lines(shared_data, 12)
    raw = tmp_path / "lfw"
    for line in lines:
        path, *coordinates = line.split()
        (raw / path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(raw / path), disc_face(np.array(coordinates, dtype=float).reshape(5, 2)))
    landmarks = tmp_path / "xs_then_ys.txt"
    landmarks.write_text(
        "".join(f"{line.split()[0]} {_xs_then_ys(np.array(line.split()[1:], float).reshape(5, 2))}\n" for line in lines)
    )
    output = tmp_path / "aligned"
    with pytest.raises(BadDataError) as info:
        run_tool(["data", "align", f"--raw_root={raw}", f"--landmarks={landmarks}", f"--output={output}"])
    message = str(info.value)
    assert "likely in another order" in message and "x1..x5 y1..y5" in message and "nothing was aligned" in message
    assert not output.exists() or not list(output.rglob("*.jpg"))


def test_aligning_photos_with_an_orientation_tag_warns(tmp_path):
    """The pixels are aligned as stored; a detector that applied the EXIF orientation first made landmarks of the
    rotated photo, which pass every check on a square image: said once, with an example."""
    from PIL import Image

    points = apply(random_similarity(np.random.default_rng(11)), TEMPLATES["sphereface_112x96"].array())
    raw = tmp_path / "raw" / "0000001"
    raw.mkdir(parents=True)
    tag = Image.Exif()
    tag[274] = 8
    Image.fromarray(disc_face(points)).save(raw / "001.jpg", quality=95, exif=tag)
    (tmp_path / "landmarks.txt").write_text("0000001/001.jpg " + " ".join(f"{v:.3f}" for v in points.ravel()) + "\n")
    with pytest.warns(UserWarning, match=r"orientation tag \(EXIF\), e.g. .*001.jpg \(8: rotated 270 degrees\)"):
        run_tool(["data", "align", f"--raw_root={tmp_path / 'raw'}", f"--landmarks={tmp_path / 'landmarks.txt'}",
                  f"--output={tmp_path / 'aligned'}", "--workers=0"])  # fmt: skip
