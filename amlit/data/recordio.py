"""MXNet/insightface RecordIO (``train.rec`` + ``train.idx`` + ``property``) read and written without mxnet.

Byte layout (dmlc-core ``include/dmlc/recordio.h``, ``src/recordio.cc``), all integers little-endian uint32::

    magic 0xCED7230A | lrec = cflag << 29 | length | length payload bytes | zero padding to a multiple of 4

When the 4-byte-aligned word ``magic`` occurs inside a payload, dmlc's writer splits the record there and drops that
word: cflag 1 = first part, 2 = middle, 3 = last (0 = whole record); the reader puts the magic back between parts.

Payload (mxnet ``python/mxnet/recordio.py``): ``IRHeader`` packed as ``'IfQQ'`` = 24 bytes ``flag | label | id | id2``;
``flag > 0`` means the label is an array of ``flag`` float32 values stored right after the header (the header's
float is then 0); the encoded image follows. ``.idx`` is text, ``"<key>\\t<byte offset of the record>"`` per line.

insightface layout (``face2rec2.py``, ``rec_builder.py``): record 0 has label ``[A, B]``: image records are keys
``1 .. A-1``, identity records ``A .. B-1`` (label = ``[first image key, end key)``, no image). Image records carry
the class as a scalar label (flag 0) or as ``label[0]`` of ``[class, aligned]`` (flag 2). ``property`` is
``num_classes,H,W`` and, from newer builders, a second line with the image count.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from amlit.errors import BadDataError, MissingDataError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
LENGTH_MASK = (1 << LENGTH_BITS) - 1
IR_FORMAT = "<IfQQ"  # flag, label, id, id2: mxnet packs 'IfQQ' natively, i.e. little-endian on x86/ARM
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
# Enough bytes to classify an image record without reading it: magic, lrec, IRHeader, two label floats.
HEADER_PROBE = 8 + IR_SIZE + 8


def _name(file: BinaryIO) -> str:
    return str(getattr(file, "name", "<stream>"))


def _padding(length: int) -> int:
    return -length % 4


def _read_part(file: BinaryIO, offset: int) -> tuple[int, bytes, int]:
    """One physical part at ``offset``: ``(cflag, data, offset of the next part)``."""
    file.seek(offset)
    head = file.read(8)
    if len(head) < 8:
        where = "beyond the end of" if not head else "cut short at the end of"
        raise BadDataError(
            f"{_name(file)}: record at byte {offset} is {where} the file: the .rec is truncated (re-download it) "
            "or the .idx belongs to another .rec"
        )
    magic, lrec = struct.unpack("<II", head)
    if magic != MAGIC:
        raise BadDataError(
            f"{_name(file)}: no RecordIO magic at byte {offset} (found 0x{magic:08X}, expected 0x{MAGIC:08X}): "
            "the .idx offsets do not match this .rec, or the file is not MXNet RecordIO"
        )
    cflag, length = lrec >> LENGTH_BITS, lrec & LENGTH_MASK
    data = file.read(length)
    if len(data) < length:
        raise BadDataError(
            f"{_name(file)}: record at byte {offset} says {length} bytes but the file ends after {len(data)}: "
            "the .rec is truncated, re-download or rebuild it"
        )
    return cflag, data, offset + 8 + length + _padding(length)


def _read_record_at(file: BinaryIO, offset: int) -> tuple[bytes, int]:
    """Reassemble the logical record starting at ``offset``: ``(payload, offset of the next record)``."""
    parts: list[bytes] = []
    position = offset
    while True:
        cflag, data, following = _read_part(file, position)
        expected = (0, 1) if not parts else (2, 3)
        if cflag not in expected:
            raise BadDataError(
                f"{_name(file)}: record at byte {offset} has part cflag={cflag} at byte {position}, expected one of "
                f"{expected}: the split record is damaged, rebuild the .rec"
            )
        parts.append(data)
        position = following
        if cflag in (0, 3):
            return MAGIC_BYTES.join(parts), position


def read_record(file: BinaryIO, offset: int) -> bytes:
    """The payload of the record at byte ``offset`` of an open ``.rec`` (split parts joined, magic re-inserted)."""
    return _read_record_at(file, offset)[0]


def iter_records(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """``(byte offset, payload)`` of every record of a ``.rec`` file, in file order (no ``.idx`` needed)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as file:
        offset = 0
        while offset < size:
            payload, following = _read_record_at(file, offset)
            yield offset, payload
            offset = following


def _aligned_magic_positions(payload: bytes) -> np.ndarray:
    """Byte positions ``i`` (``i % 4 == 0``) where the magic word sits in the payload (dmlc checks these only)."""
    words = np.frombuffer(payload, dtype="<u4", count=len(payload) // 4)
    return np.flatnonzero(words == MAGIC) * 4


def write_record(file: BinaryIO, payload: bytes) -> int:
    """Append one record exactly as dmlc's ``RecordIOWriter::WriteRecord`` does; returns its byte offset.

    Each aligned magic word in ``payload`` ends a part (cflag 1 first, 2 middle, 3 last) and is dropped; the parts
    before the last have lengths that are multiples of 4, the last part is zero-padded to a multiple of 4.
    """
    length = len(payload)
    if length >= 1 << LENGTH_BITS:
        raise BadDataError(f"a RecordIO record holds less than 2^29 bytes, got a payload of {length} bytes")
    offset = file.tell()
    start = 0
    for position in _aligned_magic_positions(payload):
        cflag = 1 if start == 0 else 2
        file.write(struct.pack("<II", MAGIC, (cflag << LENGTH_BITS) | (int(position) - start)))
        file.write(payload[start:position])
        start = int(position) + 4
    cflag = 3 if start else 0
    file.write(struct.pack("<II", MAGIC, (cflag << LENGTH_BITS) | (length - start)))
    file.write(payload[start:])
    file.write(b"\x00" * _padding(length))
    return offset


# ---- IRHeader ---------------------------------------------------------------------------------------------------
def pack_header(label: float | Sequence[float] | np.ndarray, id: int = 0, id2: int = 0) -> bytes:
    """IRHeader (+ label array) as mxnet's ``recordio.pack`` writes it: a scalar label -> flag 0; an array of n
    floats -> flag n, header label 0, then the n float32 values. Append the encoded image to get a payload."""
    if np.ndim(label) == 0:
        return struct.pack(IR_FORMAT, 0, float(label), id, id2)
    values = np.asarray(label, dtype="<f4").ravel()
    return struct.pack(IR_FORMAT, len(values), 0.0, id, id2) + values.tobytes()


def unpack_payload(payload: bytes, where: str = "record") -> tuple[int, float | np.ndarray, int, int, bytes]:
    """``(flag, label, id, id2, image bytes)`` of a payload; ``label`` is a float (flag 0) or ``flag`` float32s.

    ``where`` names the record in errors (e.g. ``"train.rec key 17"``).
    """
    if len(payload) < IR_SIZE:
        raise BadDataError(f"{where}: payload of {len(payload)} bytes is shorter than the 24-byte IRHeader")
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, payload)
    if flag == 0:
        return flag, float(label), id_, id2, payload[IR_SIZE:]
    end = IR_SIZE + 4 * flag
    if len(payload) < end:
        raise BadDataError(
            f"{where}: IRHeader flag={flag} announces {flag} label floats ({4 * flag} bytes) but only "
            f"{len(payload) - IR_SIZE} bytes follow the header: the record is damaged or not an mxnet IRHeader"
        )
    return flag, np.frombuffer(payload, dtype="<f4", count=flag, offset=IR_SIZE).copy(), id_, id2, payload[end:]


# ---- .idx and property -------------------------------------------------------------------------------------------
def read_idx(path: str | Path) -> pd.Series:
    """``.idx`` text (``key\\toffset`` per line) as a Series offset (int64) indexed by key, in file order."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"RecordIO index {path} does not exist: expected the .idx written next to the .rec (lines "
            "'<key>\\t<byte offset>'); insightface downloads ship train.idx beside train.rec"
        )
    try:
        table = pd.read_csv(path, sep="\t", header=None, names=["key", "offset"], dtype="int64", comment=None)
    except (ValueError, pd.errors.ParserError) as error:
        raise BadDataError(f"{path}: expected lines '<integer key>\\t<integer byte offset>': {error}") from error
    except pd.errors.EmptyDataError:
        raise BadDataError(f"{path} is empty: expected lines '<key>\\t<byte offset>'") from None
    duplicated = table["key"][table["key"].duplicated()]
    if len(duplicated):
        raise BadDataError(f"{path}: key {duplicated.iloc[0]} appears more than once ({len(duplicated)} repeats)")
    if (table["offset"] < 0).any():
        raise BadDataError(f"{path}: negative byte offset for key {table['key'][table['offset'] < 0].iloc[0]}")
    return table.set_index("key")["offset"]


def write_idx(path: str | Path, keys: Iterable[int], offsets: Iterable[int]) -> None:
    """Write a ``.idx`` file as mxnet's ``MXIndexedRecordIO`` does (``"%d\\t%d\\n"`` per record)."""
    Path(path).write_text("".join(f"{k}\t{o}\n" for k, o in zip(keys, offsets, strict=True)), encoding="ascii")


@dataclass(frozen=True)
class RecProperty:
    """insightface ``property``: ``num_classes,H,W`` and (newer builders) a second line with the image count."""

    num_classes: int
    height: int
    width: int
    num_images: int | None = None
    path: Path | None = field(default=None, compare=False)  # the file it was read from, for messages


def read_property(path: str | Path) -> RecProperty:
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig", errors="replace")  # -sig: a BOM from a Windows editor is dropped
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        num_classes, height, width = (int(v) for v in lines[0].split(","))
        num_images = int(lines[1].split(",")[0]) if len(lines) > 1 else None
    except (IndexError, ValueError):
        raise BadDataError(
            f"{path}: expected 'num_classes,height,width' (e.g. '10572,112,112') and optionally a second line with "
            f"the image count, got {lines[:2]!r}"
        ) from None
    return RecProperty(num_classes, height, width, num_images, path)


def write_property(path: str | Path, prop: RecProperty) -> None:
    text = f"{prop.num_classes},{prop.height},{prop.width}\n"
    Path(path).write_text(text + (f"{prop.num_images}\n" if prop.num_images is not None else ""), encoding="ascii")


# ---- reading many headers fast -----------------------------------------------------------------------------------
def scan_image_headers(rec_path: str | Path, keys: np.ndarray, offsets: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    """Class of each image record from its IRHeader alone (no image read): ``(table key/cls, problems)``.

    Reads ``HEADER_PROBE`` bytes at each offset through a memory map (one page touched per record, vectorized);
    the rare record whose first part is too short to hold the header (a split in the first 32 bytes) is read whole.
    ``problems`` are messages naming the key and offset of records that are unusable (bad magic, offset beyond the
    file, truncated, label shorter than its flag says, class not a non-negative integer); those keys are left out.
    """
    rec_path = Path(rec_path)
    keys = np.asarray(keys, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    size = rec_path.stat().st_size
    problems: list[str] = []
    if size == 0:
        return pd.DataFrame({"key": keys[:0], "cls": keys[:0]}), [f"{rec_path} is empty"] * bool(len(keys))
    data = np.memmap(rec_path, dtype=np.uint8, mode="r")
    # (N, HEADER_PROBE) bytes; positions past the end are clamped and the rows flagged below.
    window = data[np.minimum(offsets[:, None] + np.arange(HEADER_PROBE), size - 1)]
    words = window.view("<u4")  # (N, 10): magic, lrec, flag, label, id lo/hi, id2 lo/hi, label[0], label[1]
    floats = window.view("<f4")
    magic, lrec, flag = words[:, 0], words[:, 1], words[:, 2]
    cflag, length = lrec >> LENGTH_BITS, (lrec & LENGTH_MASK).astype(np.int64)
    cls = np.where(flag == 0, floats[:, 3], floats[:, 8]).astype(np.float64)

    beyond = offsets + 8 > size
    bad_magic = ~beyond & (magic != MAGIC)
    good_start = ~beyond & ~bad_magic
    truncated = good_start & (offsets + 8 + length > size)
    needed = IR_SIZE + 4 * flag.astype(np.int64)  # the header and its label floats
    whole = good_start & ~truncated & (cflag == 0)
    short = whole & (length < needed)
    split = good_start & ~truncated & (cflag != 0)
    ok = whole & ~short
    # Split records: the probe holds a valid header only if the first part is long enough; otherwise read it whole.
    ok |= split & (cflag == 1) & (length >= needed)
    slow = np.flatnonzero(split & ~ok)

    def describe(index: int, message: str) -> str:
        return f"{rec_path} key {keys[index]} (byte {offsets[index]}): {message}"

    for i in np.flatnonzero(beyond):
        problems.append(describe(i, f"the .idx offset is beyond the end of the file ({size} bytes)"))
    for i in np.flatnonzero(bad_magic):
        problems.append(describe(i, f"no RecordIO magic (found 0x{magic[i]:08X}): .idx and .rec do not match"))
    for i in np.flatnonzero(truncated):
        problems.append(describe(i, f"record of {length[i]} bytes runs past the end of the file (truncated .rec)"))
    for i in np.flatnonzero(short):
        problems.append(
            describe(i, f"payload of {length[i]} bytes cannot hold the 24-byte IRHeader and the {flag[i]} label floats")
        )
    if len(slow):
        with open(rec_path, "rb") as file:
            for i in slow:
                try:
                    flag_i, label, *_ = unpack_payload(read_record(file, int(offsets[i])), describe(i, "payload"))
                except BadDataError as error:
                    problems.append(str(error))
                    continue
                cls[i] = label if flag_i == 0 else label[0]
                ok[i] = True
    not_class = ok & ~((cls >= 0) & (cls == np.round(cls)) & np.isfinite(cls))
    for i in np.flatnonzero(not_class):
        problems.append(describe(i, f"label {cls[i]} is not a class number (a non-negative integer)"))
    ok &= ~not_class
    return pd.DataFrame({"key": keys[ok], "cls": cls[ok].astype(np.int64)}), problems


# ---- the insightface layout --------------------------------------------------------------------------------------
@dataclass
class RecIndex:
    """What a ``.rec``/``.idx`` pair holds, found from headers only.

    ``images``: one row per usable image record (``key``, ``cls``, ``offset``), in key order; ``ranges``: record 0's
    ``(A, B)`` when present; ``identity_ranges``: class slot -> ``(first key, end key)`` from the identity records;
    ``problems``: unusable records (see ``scan_image_headers``) and inconsistencies found; ``images_past_end``: image
    records the ``.idx`` lists that start beyond the end of the ``.rec`` or are cut short by it (a truncated file).
    """

    rec_path: Path
    offsets: pd.Series
    images: pd.DataFrame
    ranges: tuple[int, int] | None
    num_image_records: int  # image keys examined (usable or not)
    identity_ranges: list[tuple[int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    images_past_end: int = 0

    @property
    def num_classes(self) -> int:
        return int(self.images["cls"].max()) + 1 if len(self.images) else 0


def _cut_short(file: BinaryIO, offset: int, size: int) -> bool:
    """Whether the record at ``offset`` (its parts followed) runs past ``size``, the end of the file."""
    while True:
        file.seek(offset)
        head = file.read(8)
        if len(head) < 8:
            return True
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            return False  # not a truncation: scan_image_headers names it
        length = lrec & LENGTH_MASK
        if offset + 8 + length > size:
            return True
        if lrec >> LENGTH_BITS in (0, 3):
            return False
        offset += 8 + length + _padding(length)


def records_past_end(rec_path: str | Path, offsets: np.ndarray) -> int:
    """How many of the records at ``offsets`` start beyond the end of the ``.rec`` or are cut short by it. A
    truncated file (a cut-off download, a full disk) loses its last records; only the last one that starts inside
    the file can be cut short, so one record is read at most."""
    size = Path(rec_path).stat().st_size
    offsets = np.asarray(offsets, dtype=np.int64)
    inside = offsets[offsets + 8 <= size]
    lost = len(offsets) - len(inside)
    if len(inside):
        with open(rec_path, "rb") as file:
            lost += _cut_short(file, int(inside.max()), size)
    return lost


def index_rec(rec_path: str | Path, idx_path: str | Path, read_identity_records: bool = False) -> RecIndex:
    """Index an insightface-style ``.rec``: image keys from record 0's range (else all ``.idx`` keys), classes
    from the image headers. Record 0 is the range header when it has an array label and no image (as face2rec2
    writes it); otherwise (mxnet im2rec files) it is an image like the others. With ``read_identity_records`` the
    identity records are read and checked too."""
    rec_path = Path(rec_path)
    if not rec_path.is_file():
        raise MissingDataError(
            f"RecordIO file {rec_path} does not exist: expected e.g. faces_webface_112x112/train.rec"
        )
    offsets = read_idx(idx_path)
    ranges = None
    problems: list[str] = []
    image_keys = offsets.index.to_numpy()
    if 0 in offsets.index:
        with open(rec_path, "rb") as file:
            flag, label, _, _, image = unpack_payload(read_record(file, int(offsets[0])), f"{rec_path} key 0")
        if flag >= 2 and not image:  # face2rec2 writes its info records with an empty image
            first_identity, end = int(label[0]), int(label[1])
            if not 1 <= first_identity <= end or label[0] != first_identity or label[1] != end:
                raise BadDataError(
                    f"{rec_path} key 0: insightface header label {label.tolist()} is not an image range [A, B] with "
                    "1 <= A <= B: the record 0 header is damaged"
                )
            ranges = (first_identity, end)
            image_keys = np.arange(1, first_identity)
            listed = np.isin(image_keys, offsets.index.to_numpy())
            if not listed.all():
                missing = image_keys[~listed]
                problems.append(
                    f"{idx_path}: {len(missing)} image keys of record 0's range 1..{first_identity - 1} are not in the "
                    f".idx (e.g. {missing[:5].tolist()})"
                )
                image_keys = image_keys[listed]
    scanned, header_problems = scan_image_headers(rec_path, image_keys, offsets.loc[image_keys].to_numpy())
    problems += header_problems
    images = scanned.assign(offset=offsets.loc[scanned["key"]].to_numpy()).reset_index(drop=True)
    index = RecIndex(rec_path, offsets, images, ranges, len(image_keys), problems=problems)
    index.images_past_end = records_past_end(rec_path, offsets.loc[image_keys].to_numpy())
    if read_identity_records and ranges is not None:
        _check_identity_records(index, Path(idx_path))
    elif ranges is not None:
        index.problems += _lost_identity_records(rec_path, offsets, ranges, Path(idx_path))
    return index


def _lost_identity_records(rec_path: Path, offsets: pd.Series, ranges: tuple[int, int], idx_path: Path) -> list[str]:
    """Identity records (keys A..B-1) that the .idx lacks or that start beyond the end of the .rec: a truncated
    download loses them first, as they are written last. Training does not need them (classes come from the image
    headers), but their loss means the file is incomplete; cheap: offsets only, nothing read."""
    first_identity, end = ranges
    keys = np.arange(first_identity, end)
    listed = np.isin(keys, offsets.index.to_numpy())
    size = rec_path.stat().st_size
    beyond = np.zeros_like(listed)
    beyond[listed] = offsets.loc[keys[listed]].to_numpy() + 8 > size
    lost = ~listed | beyond
    if not lost.any():
        return []
    return [
        f"{rec_path}: {int(lost.sum())} of the {len(keys)} identity records (keys {first_identity}..{end - 1}, e.g. "
        f"{keys[lost][:3].tolist()}) are not in {idx_path.name} or start beyond the end of the file ({size:,} bytes): "
        "the .rec is truncated or incomplete; re-download it"
    ]


def _check_identity_records(index: RecIndex, idx_path: Path) -> None:
    """Identity record A + c should hold class c's key range; every image in it should have class c."""
    first_identity, end = index.ranges
    cls_of = np.full(first_identity, -1, dtype=np.int64)  # class of each image key; -1 = unusable or absent
    cls_of[index.images["key"].to_numpy()] = index.images["cls"].to_numpy()
    with open(index.rec_path, "rb") as file:
        for slot, key in enumerate(range(first_identity, end)):
            if key not in index.offsets.index:
                index.problems.append(f"{idx_path}: identity record key {key} is not in the .idx")
                continue
            try:
                flag, label, *_ = unpack_payload(read_record(file, int(index.offsets[key])), f"identity key {key}")
            except BadDataError as error:
                index.problems.append(str(error))
                continue
            if flag < 2:
                index.problems.append(f"{index.rec_path} identity key {key}: expected a [start, end) label, {flag=}")
                continue
            start, stop = int(label[0]), int(label[1])
            index.identity_ranges.append((start, stop))
            classes = set(np.unique(cls_of[max(start, 0) : max(stop, 0)]).tolist()) - {-1}
            if classes != {slot}:
                index.problems.append(
                    f"{index.rec_path} identity key {key} (class slot {slot}) covers keys [{start}, {stop}) whose "
                    f"image classes are {sorted(classes)[:5]}"
                )
    if len(index.identity_ranges) != index.num_classes:
        index.problems.append(
            f"{index.rec_path}: {end - first_identity} identity records but the image labels give "
            f"{index.num_classes} classes"
        )


def property_problems(prop: RecProperty, num_classes: int, num_image_records: int, rec_path: Path) -> list[str]:
    """Where ``property`` disagrees with the records: class count (``num_classes`` = largest label + 1) and image
    count (image records, usable or not)."""
    problems = []
    if prop.num_classes != num_classes:
        problems.append(
            f"{prop.path} says {prop.num_classes} classes but the image records of {rec_path} have "
            f"{num_classes} (largest label + 1)"
        )
    if prop.num_images is not None and prop.num_images != num_image_records:
        problems.append(
            f"{prop.path} says {prop.num_images} images but {rec_path} has {num_image_records} image records"
        )
    return problems


def write_insightface_rec(
    folder: str | Path,
    samples: Iterable[tuple[int, bytes]],
    image_size: tuple[int, int] = (112, 112),
    array_labels: bool = False,
    with_count: bool = True,
) -> Path:
    """Write ``train.rec``, ``train.idx`` and ``property`` in insightface's layout from ``(class, encoded image)``
    pairs sorted by class (classes 0..C-1): record 0 ``[A, B]``, images ``1..A-1``, one identity record per class.

    ``array_labels`` writes ``[class, 1.0]`` (face2rec2 style, flag 2) instead of a scalar class (rec_builder style,
    flag 0); ``with_count`` adds the image count as the property's second line. Returns ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    samples = list(samples)
    classes = [cls for cls, _ in samples]
    if classes != sorted(classes) or (classes and sorted(set(classes)) != list(range(classes[-1] + 1))):
        raise BadDataError("samples must be sorted by class and use every class 0..C-1 (insightface ranges)")
    num_classes = classes[-1] + 1 if classes else 0
    first_identity = len(samples) + 1
    keys, offsets = [], []
    with open(folder / "train.rec", "wb") as file:

        def put(key: int, payload: bytes) -> None:
            keys.append(key)
            offsets.append(write_record(file, payload))

        put(0, pack_header([first_identity, first_identity + num_classes]))
        for key, (cls, image) in enumerate(samples, start=1):
            put(key, pack_header([cls, 1.0] if array_labels else cls, id=key) + bytes(image))
        starts = np.searchsorted(classes, np.arange(num_classes + 1)) + 1  # first key of each class, then the end
        for cls in range(num_classes):
            put(first_identity + cls, pack_header([starts[cls], starts[cls + 1]], id=first_identity + cls))
    write_idx(folder / "train.idx", keys, offsets)
    count = len(samples) if with_count else None
    write_property(folder / "property", RecProperty(num_classes, image_size[0], image_size[1], count))
    return folder


def rec_paths(path: str | Path) -> tuple[Path, Path, Path]:
    """``(rec, idx, property)`` for a folder holding ``train.rec`` or a ``.rec`` file path (idx beside it)."""
    path = Path(path)
    rec = path / "train.rec" if path.is_dir() or not path.suffix else path
    return rec, rec.with_suffix(".idx"), rec.parent / "property"
