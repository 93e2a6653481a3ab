"""Image bytes: decoding, integrity checks, atomic writes and tree walking (``amlit.data.images``)."""

import hashlib
import os
import re
from multiprocessing.pool import ThreadPool

import cv2
import numpy as np
import pytest
from conftest import damaged_in_the_middle

from amlit.data.images import decode_image
from amlit.data.synthetic import random_identity, render_face
from amlit.errors import BadDataError


def test_decode_rejects_truncated_jpeg_and_makes_gray_three_channel():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    encoded = cv2.imencode(".jpg", image)[1].tobytes()
    assert decode_image(encoded).shape == (64, 48, 3)
    assert decode_image(encoded + b"\x00" * 16).shape == (64, 48, 3)  # padding after the end marker is fine
    with pytest.raises(ValueError, match="truncated"):
        decode_image(encoded[: len(encoded) * 2 // 3])
    with pytest.raises(ValueError, match="damaged GIF file"):
        decode_image(b"GIF89a not really")
    gray = decode_image(cv2.imencode(".jpg", image[:, :, 0])[1].tobytes())
    assert gray.shape == (64, 48, 3) and np.array_equal(gray[:, :, 0], gray[:, :, 2])


def test_decode_refuses_jpeg_data_damaged_in_the_middle_and_leaves_the_warning_on_stderr(capfd):
    rng = np.random.default_rng(5)
    image = cv2.cvtColor(render_face(random_identity(rng), rng), cv2.COLOR_RGB2BGR)
    encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    expected = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decode_image(encoded), expected)  # intact data: the same pixels as OpenCV's
    with pytest.raises(BadDataError, match=r"damaged JPEG data \(libjpeg: Corrupt JPEG data: bad Huffman code"):
        decode_image(damaged_in_the_middle(encoded))
    assert capfd.readouterr().err == "Corrupt JPEG data: bad Huffman code\n"  # passed on once, not swallowed
    np.testing.assert_array_equal(decode_image(encoded), expected)  # stderr is back in place, nothing pending


def test_decoding_threads_are_each_told_about_their_own_damaged_jpeg(capfd):
    """The decoding pools of embed and align share one stderr: a warning goes to the image that caused it."""
    rng = np.random.default_rng(7)
    image = cv2.cvtColor(render_face(random_identity(rng), rng), cv2.COLOR_RGB2BGR)
    encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    damaged = [i % 7 == 3 for i in range(400)]

    def refused(is_damaged: bool) -> bool:
        try:
            decode_image(damaged_in_the_middle(encoded) if is_damaged else encoded)
        except BadDataError:
            return True
        return False

    with ThreadPool(6) as pool:
        assert pool.map(refused, damaged, chunksize=2) == damaged
    assert capfd.readouterr().err.count("Corrupt JPEG data") == sum(damaged)


def _face_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.cvtColor(render_face(random_identity(rng), rng), cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def test_early_end_of_the_image_data_is_refused_with_both_of_its_causes(capfd):
    """libjpeg's "N extraneous bytes before marker 0xd9" comes from bytes overwritten mid-file that decode as an
    early end (most of the image wrong) as well as from a writer's padding (the image intact): it cannot tell them
    apart, so the image is refused, naming both."""
    noise = np.random.default_rng(17).integers(0, 256, (112, 96, 3), dtype=np.uint8)
    encoded = cv2.imencode(".jpg", noise)[1].tobytes()
    overwritten = bytearray(encoded)
    overwritten[len(encoded) // 2 : len(encoded) // 2 + 40] = b"\x12" * 40
    wrong = cv2.imdecode(np.frombuffer(bytes(overwritten), np.uint8), cv2.IMREAD_COLOR)
    assert (wrong != decode_image(encoded)).any(axis=2).mean() > 0.2  # the silent result this refusal prevents
    padded = encoded[:-2] + b"junk" * 30 + encoded[-2:]  # (libjpeg counts what its last buffer had not read yet)
    for data in (bytes(overwritten), padded):
        with pytest.raises(BadDataError, match=r"extraneous bytes before marker 0xd9\): .* mid-file .* padded"):
            decode_image(data)
    assert re.fullmatch(r"(Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9\n){3}", capfd.readouterr().err)


_CHILD = """
import sys, threading
from pathlib import Path
from amlit.data.images import decode_image
from amlit.errors import BadDataError
good, bad = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes()
chunk, written, done = int(sys.argv[3]), [0], threading.Event()
def flood():  # megabyte writes, many of them started while fd 2 points at the pipe
    while chunk and not done.is_set():
        sys.stderr.write("x" * chunk)
        written[0] += chunk
writer = threading.Thread(target=flood)
writer.start()
refused = []
for data in [good, bad] * 300:
    try:
        decode_image(data)
        refused.append(False)
    except BadDataError:
        refused.append(True)
done.set()
writer.join()
if sys.stderr:
    sys.stderr.flush()
print(refused == [False, True] * 300, written[0])
"""


@pytest.mark.parametrize(("stderr", "flood"), [("closed", 0), ("pipe", 1_000_000)], ids=["stderr-closed", "flood"])
def test_damage_is_found_with_stderr_closed_and_other_threads_stderr_is_neither_lost_nor_stuck(tmp_path, stderr, flood):
    """stderr closed at start (``2>&-``): the pipe must not take fd 2 itself. Another thread writing megabytes to
    stderr while images decode: every byte arrives and nothing blocks once the decodes are over."""
    import subprocess
    import sys

    encoded = _face_jpeg(13)
    (tmp_path / "good.jpg").write_bytes(encoded)
    (tmp_path / "bad.jpg").write_bytes(damaged_in_the_middle(encoded))
    command = [sys.executable, "-c", _CHILD, str(tmp_path / "good.jpg"), str(tmp_path / "bad.jpg"), str(flood)]
    if stderr == "closed":
        result = subprocess.run(command, stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2), timeout=60)
        assert result.returncode == 0 and result.stdout.split()[0] == b"True"
    else:
        result = subprocess.run(command, capture_output=True, timeout=60)  # a stuck writer: TimeoutExpired
        err = result.stderr.decode()
        assert result.returncode == 0 and result.stdout.split()[0] == b"True"
        assert err.count("x") == int(result.stdout.split()[1]) > 0
        assert err.count("Corrupt JPEG data: bad Huffman code") == 300


_EXIT_CHILD = """
import os, sys
import cv2, numpy as np
from amlit.data import jpeg_warnings
jpeg_warnings.decode_jpeg(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())  # the pipe exists now
pipe = jpeg_warnings._pipe
with pipe.condition:  # as the end of a write another thread started during a decode, still in the pipe at exit
    os.write(pipe.write_fd, b"y" * 60000)
sys.exit(0)
"""


def test_what_is_still_in_the_stderr_pipe_at_exit_is_passed_on():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _EXIT_CHILD], capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stderr.count(b"y") == 60000  # was 0: the daemon forwarder ended first


# ---- every accepted format, checked against OpenCV's own decode -----------------------------------------------
def _encodings(image: np.ndarray) -> dict[str, bytes]:
    """The same picture in every accepted format, written by OpenCV (GIF and a palette/alpha WebP by Pillow)."""
    import io

    from PIL import Image

    gray = image[:, :, 0]
    encoded = {ext: cv2.imencode(ext, image)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".ppm", ".tif")}
    encoded |= {ext: cv2.imencode(ext, gray)[1].tobytes() for ext in (".pgm", ".pbm")}
    encoded[".webp"] = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()  # lossless
    for ext, mode, fmt in ((".gif", "P", "GIF"), (".alpha.webp", "RGBA", "WEBP")):
        buffer = io.BytesIO()
        Image.fromarray(image[:, :, ::-1]).convert(mode).save(buffer, format=fmt)
        encoded[ext] = buffer.getvalue()
    return encoded


@pytest.mark.parametrize("size", [(112, 96), (37, 250)])
def test_every_accepted_format_decodes_to_three_channels_and_its_header_tells_the_size(size, tmp_path):
    from amlit.data.images import IMAGE_EXTENSIONS, check_image_file, header_size, image_format, read_image_size

    image = np.random.default_rng(5).integers(0, 256, (*size, 3), dtype=np.uint8)
    for ext, data in _encodings(image).items():
        decoded = decode_image(data)
        assert decoded.shape == (*size, 3) and decoded.dtype == np.uint8, ext
        fmt = image_format(data[:32])
        assert fmt is not None, ext
        assert header_size(data, fmt) in (None, size), ext  # TIFF's header does not say: None
        path = tmp_path / f"x{ext}"
        path.write_bytes(data)
        assert check_image_file(path).problem is None, ext
        assert read_image_size(path) == header_size(data, fmt), ext
        assert path.suffix in IMAGE_EXTENSIONS
    lossless = decode_image(_encodings(image)[".png"])
    np.testing.assert_array_equal(lossless, image)  # BGR in, BGR out
    gray = decode_image(_encodings(image)[".pgm"])
    np.testing.assert_array_equal(gray[:, :, 0], image[:, :, 0])
    np.testing.assert_array_equal(gray[:, :, 0], gray[:, :, 2])


def test_files_that_are_not_images_or_are_cut_short_are_named_by_the_check(tmp_path):
    from amlit.data.images import check_image_file

    image = np.random.default_rng(6).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    encodings = _encodings(image)
    cases = {
        "text.jpg": (b"this is a text file, not a JPEG\n", "not an image"),
        "html.png": (b"<html><body>404 Not Found</body></html>", "not an image"),
        "empty.jpg": (b"", "empty file"),
        "cut.jpg": (encodings[".jpg"][: len(encodings[".jpg"]) // 2], "truncated JPEG"),
        "cut.png": (encodings[".png"][:-20], "truncated PNG"),
        "cut.gif": (encodings[".gif"][:-10], "truncated GIF"),
    }
    for name, (data, problem) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert problem in (check_image_file(tmp_path / name).problem or ""), name
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(encodings[".jpg"] + b"\x00" * 8)  # some writers pad after the end marker
    assert check_image_file(padded) == check_image_file(padded).__class__(None, (40, 30))
    assert "cannot be read" in check_image_file(tmp_path / "absent.jpg").problem


def test_scan_images_splits_images_from_other_files_and_skips_hidden_entries(tmp_path):
    from amlit.data.images import scan_images

    for relative in ["a/1.jpg", "a/2.PGM", "a/b/3.gif", "a/notes.txt", "a/.hidden.jpg", ".cache/4.jpg", "5.webp"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    listing = scan_images(tmp_path)
    assert listing.images == ["5.webp", "a/1.jpg", "a/2.PGM", "a/b/3.gif"]
    assert listing.other_files == ["a/notes.txt"]


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    import os

    from amlit.data.images import write_atomically

    target = tmp_path / "sub" / "file.bin"
    write_atomically(target, b"first")
    assert target.read_bytes() == b"first"

    def failing_replace(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, b"second")
    assert target.read_bytes() == b"first"  # the old file is whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]  # no temporary left behind


def test_a_jpeg_whose_frame_header_sits_behind_a_large_exif_block_still_tells_its_size(tmp_path):
    from amlit.data.images import check_image_file, read_image_size

    image = np.random.default_rng(7).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    encoded = cv2.imencode(".jpg", image)[1].tobytes()
    exif = b"Exif\x00\x00" + bytes(20_000)  # an APP1 segment of 20 KB before the frame header, as cameras write
    data = encoded[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + encoded[2:]
    path = tmp_path / "camera.jpg"
    path.write_bytes(data)
    assert read_image_size(path) == (50, 70) and check_image_file(path).size == (50, 70)
    assert decode_image(data).shape == (50, 70, 3)


def test_source_checksum_changes_with_size_or_mtime_and_counts_missing_files(tmp_path):
    from amlit.data.images import source_checksum

    (tmp_path / "a.jpg").write_bytes(b"abc")
    names = ["a.jpg", "gone.jpg"]  # an image list may name files that are not there
    before = source_checksum(tmp_path, names)
    expected = f"a.jpg\t3\t{os.stat(tmp_path / 'a.jpg').st_mtime_ns}\ngone.jpg\tmissing\n"
    assert before == hashlib.sha256(expected.encode()).hexdigest()
    os.utime(tmp_path / "a.jpg", ns=(1, 1))  # same bytes, rewritten: another mtime
    assert source_checksum(tmp_path, names) != before


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG", "PNG", "WEBP"])
def test_an_orientation_tag_is_ignored_every_format_decodes_to_the_stored_pixel_grid(fmt):
    """OpenCV applied a TIFF's Orientation tag despite IMREAD_IGNORE_ORIENTATION: a face tagged 3 came out upside
    down at its stored size, silently (landmarks and training assume the stored grid, as for the other formats)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(8)
    stored = cv2.GaussianBlur(rng.integers(0, 256, (112, 96, 3), dtype=np.uint8), (9, 9), 3)  # RGB
    lossless = {"TIFF": {}, "PNG": {}, "WEBP": {"lossless": True}, "JPEG": {"quality": 100}}[fmt]
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, fmt, exif=exif, **lossless)
        decoded = cv2.cvtColor(decode_image(buffer.getvalue()), cv2.COLOR_BGR2RGB)
        assert decoded.shape == stored.shape, (fmt, orientation)
        assert np.abs(decoded.astype(int) - stored).max() <= (8 if fmt == "JPEG" else 0), (fmt, orientation)
