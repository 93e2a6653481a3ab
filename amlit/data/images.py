"""Image bytes, in one place: decoding to uint8 arrays, integrity checks, atomic writes and walking image trees.

Everything that turns a file (or an encoded buffer) into pixels, or pixels into a file, goes through here, so every
path of amlit (training trees, alignment, packing, RecordIO, verification ``.bin`` sets) accepts and refuses the
same inputs.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import re
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, NamedTuple

import cv2
import numpy as np
import pandas as pd

from amlit.data.jpeg_warnings import PADDING_OR_DAMAGE, decode_jpeg
from amlit.errors import BadDataError

# Extensions accepted as image files (lower-cased); the README's "What amlit accepts" lists them. OpenCV decodes
# every one of them (GIF since OpenCV 4.7; Pillow is the fallback for builds without it).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".pnm", ".tif", ".tiff", ".webp")
FORMAT_NAMES = {
    "jpeg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "bmp": "BMP",
    "pnm": "PGM/PPM/PBM",
    "tiff": "TIFF",
    "webp": "WebP",
}
BadDataPolicy = Literal["skip", "fail"]  # what a data source does with a damaged image
IdentityFolders = Literal["auto", "casia", "any"]  # which folders of a tree are identities (scan_identity_tree)
CASIA_ID = re.compile(r"^\d{7}$")  # CASIA-WebFace identity folders are 7-digit ids
INSIGHTFACE_SIZE = (112, 112)  # insightface crops (H, W)
CROP_X = 8  # 112x112 -> 112x96: the insightface template is SphereFace's + 8 px in x
_MORE_HEADER_BYTES = 65536  # a JPEG's EXIF block (thumbnail included) fits in one segment of at most 64 KB


def accepted_extensions() -> str:
    return " ".join(IMAGE_EXTENSIONS)


# ---- what a file is -------------------------------------------------------------------------------------------
def image_format(head: bytes) -> str | None:
    """The image format of a file from its first bytes (magic numbers), or None when it is not an image we read.

    The content decides, not the extension: a PNG named ``.jpg`` is a PNG (OpenCV decodes by content too), a text
    file named ``.jpg`` is not an image.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM") and head[6:10] == b"\x00\x00\x00\x00":  # reserved fields, zero in practice
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if (
        len(head) >= 3
        and head[:1] == b"P"
        and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6")
        and head[2:3].isspace()
    ):
        return "pnm"
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """(H, W) from the first start-of-frame segment (SOF0-15 but DHT C4, JPG C8, DAC CC)."""
    position = 2
    while position + 9 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:
            position += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[position + 5 : position + 9])
            return height, width
        position += 2 + int.from_bytes(head[position + 2 : position + 4], "big")
    return None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    tokens = re.sub(rb"#[^\n]*", b" ", head[2:256]).split()  # comments may sit between the numbers
    try:
        return int(tokens[1]), int(tokens[0])
    except (IndexError, ValueError):
        return None


def header_size(head: bytes, fmt: str) -> tuple[int, int] | None:
    """(H, W) read from the header bytes of a ``fmt`` file without decoding; None where the header does not say
    (TIFF, truncated headers): then only decoding tells."""
    try:
        if fmt == "jpeg":
            return _jpeg_size(head)
        if fmt == "png" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return height, width
        if fmt == "gif":
            width, height = struct.unpack("<HH", head[6:10])
            return height, width
        if fmt == "bmp":
            if int.from_bytes(head[14:18], "little") == 12:  # BITMAPCOREHEADER
                width, height = struct.unpack("<HH", head[18:22])
            else:
                width, height = struct.unpack("<ii", head[18:26])  # negative height = stored top-down
            return abs(height), width
        if fmt == "pnm":
            return _pnm_size(head)
        if fmt == "webp":
            chunk = head[12:16]
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", head[26:30])
                return height & 0x3FFF, width & 0x3FFF
            if chunk == b"VP8L":
                bits = int.from_bytes(head[21:25], "little")
                return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
            if chunk == b"VP8X":
                return int.from_bytes(head[27:30], "little") + 1, int.from_bytes(head[24:27], "little") + 1
    except struct.error:
        return None
    return None


@dataclass(frozen=True)
class FileCheck:
    """What indexing learns about one file without decoding it."""

    problem: str | None  # why it is not a usable image (None: looks fine)
    size: tuple[int, int] | None = None  # (H, W) from the header, when the header says


def _read_header(file) -> tuple[bytes, str | None, tuple[int, int] | None]:
    """(first bytes, format, (H, W)) of an open file: 4 KB hold the header of almost every image; a JPEG whose frame
    header sits behind a large EXIF block gets one more read."""
    head = file.read(4096)
    fmt = image_format(head)
    size = header_size(head, fmt) if fmt is not None else None
    if size is None and fmt == "jpeg" and len(head) == 4096:
        head += file.read(_MORE_HEADER_BYTES)
        size = header_size(head, fmt)
    return head, fmt, size


def check_image_file(path: str | Path) -> FileCheck:
    """Cheap integrity check at indexing: the magic bytes name an image format, and a JPEG ends with its EOI marker
    (FF D9), a PNG with its IEND chunk, a GIF with its trailer; plus the (H, W) the header declares.

    Catches files that are not images (a text or HTML file named ``.jpg``), empty files and truncated downloads in
    two small reads per file, before training starts. Decoding (``decode_image``) checks JPEGs fully again.
    """
    try:
        with open(path, "rb") as file:
            head, fmt, image_size = _read_header(file)
            file.seek(0, os.SEEK_END)
            size = file.tell()
            if size > len(head):
                file.seek(size - 16)
                tail = file.read()
            else:
                tail = head[-16:]
    except OSError as error:
        return FileCheck(f"cannot be read ({error.strerror})")
    if size == 0:
        return FileCheck("empty file")
    if fmt is None:
        return FileCheck(f"not an image: its first bytes are not those of a {', '.join(FORMAT_NAMES.values())} file")
    if fmt == "jpeg" and not tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return FileCheck("truncated JPEG (no end-of-image marker)")
    if fmt == "png" and not tail.endswith(b"IEND\xaeB`\x82"):
        return FileCheck("truncated PNG (no IEND chunk at the end)")
    if fmt == "gif" and not tail.rstrip(b"\x00").endswith(b";"):
        return FileCheck("truncated GIF (no trailer at the end)")
    return FileCheck(None, image_size)


def read_image_size(path: str | Path) -> tuple[int, int] | None:
    """(H, W) of an image file from its header (a few KB read), or None when the header does not say (TIFF) or the
    file is not an image we read."""
    try:
        with open(path, "rb") as file:
            return _read_header(file)[2]
    except OSError:
        return None


# ---- decoding -------------------------------------------------------------------------------------------------
def decode_image(data: bytes) -> np.ndarray:
    """Decode an encoded image to (H, W, 3) uint8 BGR; gray (and palette) images become 3-channel, alpha is dropped.

    Every format of ``IMAGE_EXTENSIONS`` is read by OpenCV (GIF: the first frame, through Pillow where OpenCV was
    built without GIF). EXIF orientation is ignored, TIFF's Orientation tag too: landmarks refer to the stored
    pixel grid (what MATLAB's ``imread`` returns). Raises ``BadDataError`` with the reason (no path: callers add
    it) for data that is not an image, truncated JPEGs, JPEGs whose compressed data libjpeg reports as corrupt
    (``amlit.data.jpeg_warnings``: it would fill the damaged part with guessed pixels) and undecodable data.
    """
    fmt = image_format(data[:32])
    if fmt is None:
        raise BadDataError(f"not an image: its first bytes are not those of a {', '.join(FORMAT_NAMES.values())} file")
    if fmt == "jpeg" and not _jpeg_is_complete(data):
        raise BadDataError("damaged or truncated JPEG (no end-of-image marker after the image data)")
    if fmt == "jpeg":
        image, damage = decode_jpeg(data)
        if damage is not None and PADDING_OR_DAMAGE.search(damage):
            raise BadDataError(
                f"damaged JPEG data (libjpeg: {damage}): the image data ends before its end marker, either because "
                "bytes overwritten mid-file decoded as an early end (the rest of the image would be wrong) or "
                "because its writer padded it; libjpeg cannot tell which, so it is refused (re-encode it if you "
                "know it is intact)"
            )
        if damage is not None:
            raise BadDataError(f"damaged JPEG data (libjpeg: {damage}; the rest of the image would be guessed)")
    else:
        if fmt == "tiff":
            data = _tiff_without_orientation(data)
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None and fmt == "gif":
        image = _decode_with_pillow(data)
    if image is None:
        raise BadDataError(f"damaged {FORMAT_NAMES[fmt]} file (it cannot be decoded)")
    return image


def orientation_tag(path: str | Path) -> int:
    """The orientation tag (EXIF's, TIFF's: 1..8) of an image file, 1 (as stored) when it has none or cannot be
    read. ``decode_image`` ignores it; callers warn where that matters (landmarks made on the rotated image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            tag = image.getexif().get(274, 1)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return 1
    return tag if isinstance(tag, int) and 1 <= tag <= 8 else 1


def _tiff_without_orientation(data: bytes) -> bytes:
    """TIFF bytes with the first image's Orientation tag (274) set to 1, the stored pixel grid.

    OpenCV's TIFF decoder applies that tag whatever ``IMREAD_IGNORE_ORIENTATION`` says (measured with OpenCV 5.0),
    so a face stored with orientation 3 came out upside down at its stored size, silently. Setting the tag to 1
    reads every TIFF as stored, like the other formats. Files whose first directory cannot be read are left as
    they are (OpenCV then reports them).
    """
    order = "<" if data[:2] == b"II" else ">"
    try:
        (directory,) = struct.unpack_from(order + "I", data, 4)
        (entries,) = struct.unpack_from(order + "H", data, directory)
        for entry in range(directory + 2, directory + 2 + 12 * entries, 12):
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            if tag == 274 and kind == 3:  # Orientation, a SHORT stored in the entry's value field
                patched = bytearray(data)
                struct.pack_into(order + "H", patched, entry + 8, 1)
                return bytes(patched)
    except struct.error:
        pass
    return data


def _decode_with_pillow(data: bytes) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError  # only for OpenCV builds without a GIF decoder

    try:
        with Image.open(io.BytesIO(data)) as image:
            return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


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


def wrong_size_message(where: str, found: tuple[int, int], expected: tuple[int, int]) -> str:
    """The one message for faces that are not at the configured size: what was found, what is configured, and the
    two ways out (align at the configured size, or train at the found size)."""
    from amlit.data.align import TEMPLATES  # align builds on this module

    templates = [name for name, template in TEMPLATES.items() if template.size == tuple(expected)]
    how = f"--template={templates[0]}" if templates else f"a template of that size ({', '.join(TEMPLATES)} exist)"
    return (
        f"{where} is {found[0]}x{found[1]} (HxW) but data.image_size is {expected[0]}x{expected[1]}: align the raw "
        f"faces to {expected[0]}x{expected[1]} (amlit data align {how}), or, if these crops are aligned the way "
        f"you want, use their size: --data.image_size=[{found[0]},{found[1]}] for fit/test (the backbone's input "
        f"size follows it), --image_size=[{found[0]},{found[1]}] for amlit data pack"
    )


def read_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Decode an aligned face crop to (H, W, 3) uint8 RGB (``decode_image``) and check it is ``size`` = (H, W).

    Raises ``BadDataError`` naming the file when it cannot be read or decoded, or has another size: the data must be
    aligned to the network's input size beforehand (resizing here would silently change the alignment).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BadDataError(f"cannot read image {path}: {error.strerror}") from None
    try:
        image = decode_image(data)
    except BadDataError as error:
        raise BadDataError(f"image {path}: {error}") from None
    if image.shape[:2] != tuple(size):
        raise BadDataError(wrong_size_message(f"image {path}", image.shape[:2], tuple(size)))
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def can_serve(stored: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether faces stored at ``stored`` (H, W) can be served at ``size``: as they are, or insightface's 112x112
    crops cut to SphereFace's 112x96 (8 px off each side maps the insightface template onto SphereFace's exactly)."""
    return tuple(stored) == tuple(size) or (tuple(stored) == INSIGHTFACE_SIZE and tuple(size) == (112, 96))


def decode_face(
    encoded: bytes, size: tuple[int, int], where: str, advice: str = "set data.image_size to the stored size"
) -> np.ndarray:
    """Decode a stored face (a ``.rec`` record, a ``.bin`` image) to (H, W, 3) uint8 RGB at ``size`` by the
    ``can_serve`` rule; anything else raises ``BadDataError`` naming ``where`` (a face of another size ends with
    ``advice``)."""
    try:
        image = decode_image(bytes(encoded))
    except BadDataError as error:
        raise BadDataError(f"{where}: {error} ({len(encoded)} bytes): the stored image is damaged") from None
    height, width = image.shape[:2]
    if not can_serve((height, width), size):
        raise BadDataError(
            f"{where}: image is {height}x{width} (HxW) but {size[0]}x{size[1]} is configured (a 112x112 insightface "
            f"crop can also be served as 112x96): {advice}"
        )
    if (height, width) != tuple(size):
        image = image[:, CROP_X : width - CROP_X]  # (112, 112, 3) -> (112, 96, 3)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ---- writing ----------------------------------------------------------------------------------------------------
def remove_stale_partials(path: Path) -> list[Path]:
    """Remove the temporary files of ``write_atomically(path)`` left by processes of this machine that no longer
    run (killed with SIGKILL mid-write: nothing could clean up); return them. For paths only one process writes at a
    time (a run's checkpoints, under ``amlit.run_lock``): each preempted save would otherwise keep a whole
    checkpoint's worth of disk."""
    removed = []
    for partial in Path(path).parent.glob(f".{glob.escape(Path(path).name)}.*-*.partial"):
        pid = partial.name[len(Path(path).name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and not _process_runs(int(pid)):
            with contextlib.suppress(OSError):
                partial.unlink()
                removed.append(partial)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_atomically(path: Path, content: bytes | Callable[[IO[bytes]], None], sync_folder: bool = False) -> None:
    """Write ``content`` (the bytes, or a function that writes them to the open file, e.g. ``torch.save`` of a
    checkpoint) to a temporary name beside ``path``, flush and fsync it, then rename it into place: an interrupted
    run never leaves a partial file under the final name (a later run would take it for done). ``sync_folder`` also
    fsyncs the folder, so that the rename itself survives a power cut (checkpoints). On any failure the temporary
    file is removed and ``path`` is left as it was. The temporary name is hidden, unique to the process and call,
    and does not end in an image extension, so tree scans ignore leftovers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        # os.open, not mkstemp: the file gets the usual permissions (umask), as open() or torch.save would give it.
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as file:
            if callable(content):
                content(file)
            else:
                file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    if sync_folder:
        with contextlib.suppress(OSError):  # some filesystems (NFS, FUSE) refuse to fsync a folder
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def source_checksum(root: Path, names: Sequence[str]) -> str:
    """sha256 over the sorted ``name<TAB>size<TAB>mtime_ns`` lines of ``names`` (files under ``root``): changes when
    a file is added, removed, resized or rewritten (no file contents are read). A missing file counts as such (its
    line says so): image lists may name files that are not there yet. Names are hashed as the bytes on disk
    (``surrogateescape``): a file name that is not UTF-8 (GBK or Latin-1 names unzipped on Linux) is a name too."""
    digest = hashlib.sha256()
    for name in sorted(names):
        try:
            stat = os.stat(Path(root) / name)
            digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode(errors="surrogateescape"))
        except FileNotFoundError:
            digest.update(f"{name}\tmissing\n".encode(errors="surrogateescape"))
    return digest.hexdigest()


def write_json_atomically(path: Path, content: dict) -> None:
    write_atomically(path, (json.dumps(content, indent=1) + "\n").encode("utf-8"))


def write_image_atomically(path: Path, image: np.ndarray, jpeg_quality: int) -> None:
    """Encode ``image`` (BGR) as JPEG and write it with ``write_atomically``."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    write_atomically(path, encoded.tobytes())


# ---- walking trees ----------------------------------------------------------------------------------------------
def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class FileListing:
    """Files below a folder, relative POSIX paths, sorted: the images (by extension) and every other file."""

    images: list[str]
    other_files: list[str]


def scan_images(root: Path) -> FileListing:
    """Every file under ``root`` (any depth), split into images (``IMAGE_EXTENSIONS``) and others; hidden files and
    folders (``.name``, e.g. an interrupted write's temporary file) are skipped."""
    images, others = [], []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        relative = Path(folder).relative_to(root)
        for name in files:
            if not name.startswith("."):
                (images if is_image_name(name) else others).append((relative / name).as_posix())
    return FileListing(sorted(images), sorted(others))


class Skipped(NamedTuple):
    """An entry of a tree left out of the data, and why."""

    path: str  # relative to the tree's root; folders end with "/"
    reason: str
    damaged: bool  # damage (on_bad decides) rather than layout (never trained on, only reported)


@dataclass
class IdentityTree:
    """What ``scan_identity_tree`` found: usable images, and everything it left out."""

    table: pd.DataFrame  # one row per usable image: identity, name (<identity>/<file>), height, width (0: unknown)
    skipped: list[Skipped] = field(default_factory=list)


def identity_rule(folders: Sequence[str], rule: IdentityFolders) -> IdentityFolders:
    """``auto`` -> ``casia`` when any folder is named like a CASIA id (7 digits), else ``any``."""
    if rule == "auto":
        return "casia" if any(CASIA_ID.match(name) for name in folders) else "any"
    return rule


def _identity_of_linked_folders(folders: Sequence[os.DirEntry]) -> dict[str, str]:
    """For ``folders`` that are the same folder on disk (a symbolic link beside its target, two links to one
    target): the name each is used under, the real folder's own name if it is among them, else the first name."""
    by_target: dict[str, list[os.DirEntry]] = {}
    for entry in folders:
        by_target.setdefault(os.path.realpath(entry.path), []).append(entry)
    kept = {}
    for same in by_target.values():
        if len(same) > 1:
            owner = next((e.name for e in same if not e.is_symlink()), same[0].name)
            kept.update({e.name: owner for e in same})
    return kept


def scan_identity_tree(
    root: Path, identity_folders: IdentityFolders = "auto", check_files: bool = True
) -> IdentityTree:
    """Scan ``<root>/<identity>/<image>``: one identity per folder, its image files below it.

    Which folders are identities (``identity_folders``): ``casia`` = folders named by a 7-digit CASIA id; ``any`` =
    every folder; ``auto`` = ``casia`` when at least one folder has a 7-digit name, else ``any``. Other folders,
    empty folders, nested folders, files with another extension, image files directly under ``root`` and (with
    ``check_files``) files that ``check_image_file`` rejects are left out and listed in ``skipped`` with the reason.
    Hidden entries (``.name``) are ignored, as are non-image files directly under ``root`` (reports, manifests). A
    folder that is a symbolic link to another identity folder of the tree is left out: one person as two classes.
    """
    entries = sorted((e for e in os.scandir(root) if not e.name.startswith(".")), key=lambda e: e.name)
    folders = [e.name for e in entries if e.is_dir()]
    rule = identity_rule(folders, identity_folders)
    rows, skipped = [], []
    identity_of_folder = _identity_of_linked_folders(
        [e for e in entries if e.is_dir() and (rule != "casia" or CASIA_ID.match(e.name))]
    )
    for entry in entries:
        if not entry.is_dir():
            if is_image_name(entry.name):
                skipped.append(Skipped(entry.name, "image directly under the root, not in an identity folder", False))
            elif entry.is_symlink() and not os.path.exists(entry.path):
                # Most likely an identity folder linked from a disk that is not mounted: say so, do not drop it.
                skipped.append(Skipped(entry.name, "a link to something that does not exist (not mounted?)", True))
            continue
        if rule == "casia" and not CASIA_ID.match(entry.name):
            reason = "not an identity folder: CASIA identity folders are 7-digit ids (identity_folders=any takes all)"
            skipped.append(Skipped(f"{entry.name}/", reason, False))
            continue
        if identity_of_folder.get(entry.name, entry.name) != entry.name:
            # Trained as well, the same person's images would be two classes pulled apart by the loss.
            reason = f"the same folder as {identity_of_folder[entry.name]}/ (a link): its images are used once, there"
            skipped.append(Skipped(f"{entry.name}/", reason, False))
            continue
        found = 0
        for item in sorted(os.scandir(entry.path), key=lambda e: e.name):
            name = f"{entry.name}/{item.name}"
            if item.name.startswith("."):
                continue
            if item.is_dir():
                skipped.append(Skipped(f"{name}/", "folder inside an identity folder (not searched)", False))
                continue
            if not is_image_name(item.name):
                skipped.append(Skipped(name, f"not an image extension (accepted: {accepted_extensions()})", False))
                continue
            check = check_image_file(item.path) if check_files else FileCheck(None)
            if check.problem is not None:
                skipped.append(Skipped(name, check.problem, True))
                continue
            height, width = check.size or (0, 0)
            rows.append((entry.name, name, height, width))
            found += 1
        if not found:
            skipped.append(Skipped(f"{entry.name}/", "identity folder without usable images", True))
    table = pd.DataFrame(rows, columns=["identity", "name", "height", "width"])
    return IdentityTree(table.astype({"height": "int64", "width": "int64"}), skipped)
