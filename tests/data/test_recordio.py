"""RecordIO byte format: records built by hand with ``struct`` (so the writer is checked), split records, IRHeader,
.idx, property, and the vectorized header scan against a per-record decode."""

import io
import struct

import cv2
import numpy as np
import pytest

from amlit.data.recordio import (
    RecProperty,
    index_rec,
    iter_records,
    pack_header,
    read_idx,
    read_property,
    read_record,
    scan_image_headers,
    unpack_payload,
    write_idx,
    write_insightface_rec,
    write_property,
    write_record,
)
from amlit.errors import BadDataError, MissingDataError

MAGIC = b"\x0a\x23\xd7\xce"  # 0xCED7230A little-endian, as dmlc writes it


def part(cflag: int, data: bytes, pad: int = 0) -> bytes:
    """One physical part written by hand: magic, lrec = cflag << 29 | length, data, zero padding."""
    return MAGIC + struct.pack("<I", (cflag << 29) | len(data)) + data + b"\x00" * pad


def written(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    write_record(buffer, payload)
    return buffer.getvalue()


def test_whole_record_matches_a_hand_built_one_and_reads_back():
    payload = struct.pack("<IfQQ", 0, 3.0, 7, 0) + b"abc"  # 27 bytes -> 1 byte of padding
    assert written(payload) == part(0, payload, pad=1)
    assert read_record(io.BytesIO(part(0, payload, pad=1)), 0) == payload
    assert written(b"") == part(0, b"")  # an empty record is just the 8-byte header


def test_aligned_magic_splits_the_record_exactly_as_dmlc_and_reads_back():
    # Aligned magic at 4 and 16 split the record; the unaligned one at 21 stays inside the last part.
    payload = b"AAAA" + MAGIC + b"BBBBBBBB" + MAGIC + b"C" + MAGIC + b"DD"
    expected = part(1, b"AAAA") + part(2, b"BBBBBBBB") + part(3, b"C" + MAGIC + b"DD", pad=1)
    assert written(payload) == expected
    assert read_record(io.BytesIO(expected), 0) == payload
    # Magic at byte 0: a first part of length 0.
    assert written(MAGIC + b"xy") == part(1, b"") + part(3, b"xy", pad=2)
    assert read_record(io.BytesIO(part(1, b"") + part(3, b"xy", pad=2)), 0) == MAGIC + b"xy"


def test_random_payloads_with_planted_magic_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    payloads = []
    for n in range(30):
        payload = bytearray(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes())
        for position in rng.integers(0, max(1, len(payload) // 4), n % 4) * 4:
            payload[position : position + 4] = MAGIC
        payloads.append(bytes(payload))
    path = tmp_path / "x.rec"
    with open(path, "wb") as file:
        offsets = [write_record(file, p) for p in payloads]
    assert [(o, p) for o, p in iter_records(path)] == list(zip(offsets, payloads, strict=True))
    assert path.stat().st_size % 4 == 0


def test_headers_match_struct_for_scalar_and_array_labels():
    scalar = pack_header(12, id=5, id2=6)
    assert scalar == struct.pack("<IfQQ", 0, 12.0, 5, 6)
    assert unpack_payload(scalar + b"img") == (0, 12.0, 5, 6, b"img")
    array = pack_header([7, 1.5], id=9)
    assert array == struct.pack("<IfQQff", 2, 0.0, 9, 0, 7.0, 1.5)
    flag, label, id_, id2, image = unpack_payload(array + b"jpeg")
    assert (flag, id_, id2, image) == (2, 9, 0, b"jpeg") and label.dtype == np.float32
    np.testing.assert_array_equal(label, [7.0, 1.5])


def test_label_shorter_than_its_flag_and_short_payloads_are_named():
    with pytest.raises(BadDataError, match=r"key 3: IRHeader flag=2 announces 2 label floats \(8 bytes\) but only 4"):
        unpack_payload(struct.pack("<IfQQ", 2, 0, 0, 0) + b"\0\0\0\0", "train.rec key 3")
    with pytest.raises(BadDataError, match="10 bytes is shorter than the 24-byte IRHeader"):
        unpack_payload(b"0123456789")


def test_bad_magic_truncation_and_offsets_beyond_the_file_name_file_and_offset(tmp_path):
    path = tmp_path / "t.rec"
    path.write_bytes(part(0, b"abcdefgh") + part(0, b"0123456789abcdef"))
    with open(path, "rb") as file:
        assert read_record(file, 16) == b"0123456789abcdef"
        with pytest.raises(BadDataError, match=r"t.rec: no RecordIO magic at byte 4 \(found 0x00000008"):
            read_record(file, 4)
        with pytest.raises(BadDataError, match=r"t.rec: record at byte 100 is beyond the end of the file"):
            read_record(file, 100)
    path.write_bytes(path.read_bytes()[:-3])
    with (
        open(path, "rb") as file,
        pytest.raises(BadDataError, match="byte 16 says 16 bytes but the file ends after 13"),
    ):
        read_record(file, 16)
    # A continuation part where a record should start.
    path.write_bytes(part(2, b"abcd"))
    with (
        open(path, "rb") as file,
        pytest.raises(BadDataError, match=r"part cflag=2 at byte 0, expected one of \(0, 1\)"),
    ):
        read_record(file, 0)


def test_idx_and_property_round_trip_and_reject_malformed_files(tmp_path):
    write_idx(tmp_path / "a.idx", [0, 1, 5], [0, 32, 4096])
    assert (tmp_path / "a.idx").read_text() == "0\t0\n1\t32\n5\t4096\n"
    idx = read_idx(tmp_path / "a.idx")
    assert idx.to_dict() == {0: 0, 1: 32, 5: 4096}
    (tmp_path / "b.idx").write_text("0\t0\n1\tzero\n")
    with pytest.raises(BadDataError, match=r"b.idx: expected lines '<integer key>\\t<integer byte offset>'"):
        read_idx(tmp_path / "b.idx")
    (tmp_path / "c.idx").write_text("0\t0\n0\t8\n")
    with pytest.raises(BadDataError, match="key 0 appears more than once"):
        read_idx(tmp_path / "c.idx")
    with pytest.raises(MissingDataError, match=r"none.idx does not exist"):
        read_idx(tmp_path / "none.idx")

    (tmp_path / "property").write_text("10572,112,112\n")
    assert read_property(tmp_path / "property") == RecProperty(10572, 112, 112, None)
    (tmp_path / "property").write_text("10572,112,112\n490623\n")
    assert read_property(tmp_path / "property") == RecProperty(10572, 112, 112, 490623)
    (tmp_path / "property").write_text("\ufeff10572,112,112\n", encoding="utf-8")  # saved by a Windows editor
    assert read_property(tmp_path / "property") == RecProperty(10572, 112, 112, None)
    write_property(tmp_path / "p2", RecProperty(3, 112, 96, 7))
    assert (tmp_path / "p2").read_text() == "3,112,96\n7\n"
    (tmp_path / "property").write_text("10572 112 112\n")
    with pytest.raises(BadDataError, match="expected 'num_classes,height,width'"):
        read_property(tmp_path / "property")


def jpeg_with_aligned_magic(image: np.ndarray) -> bytes:
    """A valid JPEG whose COM segment holds the magic word at byte 8 of the JPEG (byte 32 of the payload)."""
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    comment = b"\0\0" + MAGIC + b"\0\0"  # COM data starts at JPEG byte 6 -> the magic at JPEG byte 8
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def test_jpeg_containing_the_magic_is_stored_split_and_read_back_byte_exact(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    jpeg = jpeg_with_aligned_magic(image)
    np.testing.assert_array_equal(
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
        cv2.imdecode(np.frombuffer(cv2.imencode(".jpg", image)[1], np.uint8), cv2.IMREAD_COLOR),
    )  # the comment changes no pixel
    folder = write_insightface_rec(tmp_path / "rec", [(0, jpeg), (0, b"plain"), (1, jpeg)])
    raw = (folder / "train.rec").read_bytes()
    idx = read_idx(folder / "train.idx")
    # Key 1's record: a first part of 24 (header) + 8 (JPEG bytes before the magic) = 32 bytes with cflag 1.
    lrec = struct.unpack_from("<I", raw, idx[1] + 4)[0]
    assert (lrec >> 29, lrec & (2**29 - 1)) == (1, 32)
    with open(folder / "train.rec", "rb") as file:
        assert unpack_payload(read_record(file, int(idx[1])))[4] == jpeg
        assert unpack_payload(read_record(file, int(idx[3])))[4] == jpeg
    index = index_rec(folder / "train.rec", folder / "train.idx", read_identity_records=True)
    assert index.images["cls"].tolist() == [0, 0, 1] and index.problems == []


def test_insightface_layout_record_zero_and_identity_records(tmp_path):
    samples = [(0, b"a"), (0, b"bb"), (1, b"ccc"), (2, b"dddd"), (2, b"e")]
    for array_labels in (False, True):
        folder = write_insightface_rec(tmp_path / str(array_labels), samples, array_labels=array_labels)
        records = dict(enumerate(p for _, p in iter_records(folder / "train.rec")))
        # Record 0: [A, B] = [6, 9]; images are keys 1..5; identity records 6..8 hold [first key, end key).
        assert unpack_payload(records[0])[1].tolist() == [6.0, 9.0]
        assert [unpack_payload(records[k])[1].tolist() for k in (6, 7, 8)] == [[1, 3], [3, 4], [4, 6]]
        flag, label, _, _, image = unpack_payload(records[3])
        assert flag == (2 if array_labels else 0) and image == b"ccc"
        assert (label.tolist() == [1.0, 1.0]) if array_labels else label == 1.0
        index = index_rec(folder / "train.rec", folder / "train.idx", read_identity_records=True)
        assert index.ranges == (6, 9) and index.num_image_records == 5 and index.problems == []
        assert index.images["key"].tolist() == [1, 2, 3, 4, 5] and index.images["cls"].tolist() == [0, 0, 1, 2, 2]
        assert index.identity_ranges == [(1, 3), (3, 4), (4, 6)]
        assert read_property(folder / "property") == RecProperty(3, 112, 112, 5)


def test_header_scan_agrees_with_decoding_each_record_and_reports_damage(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "s.rec"
    payloads = {}
    with open(path, "wb") as file:
        offsets = {}
        for key in range(40):
            cls = int(rng.integers(0, 1000))
            label = cls if key % 2 else [cls, 1.0]
            # id = magic: the aligned word at payload byte 8 splits the record inside its header (slow path).
            ident = 0xCED7230A if key % 7 == 0 else key
            payloads[key] = pack_header(label, id=ident) + rng.integers(0, 256, 50, dtype=np.uint8).tobytes()
            offsets[key] = write_record(file, payloads[key])
        offsets[40] = write_record(file, struct.pack("<IfQQ", 2, 0, 0, 0) + b"\0\0\0\0")  # flag 2, 1 float
        offsets[41] = write_record(file, pack_header(2.5))  # not a class number
        offsets[42] = offsets[3] + 4  # points inside a record
    offsets[43] = path.stat().st_size + 100  # beyond the file
    keys = np.array(sorted(offsets))
    table, problems = scan_image_headers(path, keys, np.array([offsets[k] for k in keys]))
    expected = {}
    for key, payload in payloads.items():
        flag, label, *_ = unpack_payload(payload)
        expected[key] = int(label if flag == 0 else label[0])
    assert dict(zip(table["key"], table["cls"], strict=True)) == expected
    assert len(problems) == 4
    assert any("key 40" in p and "cannot hold the 24-byte IRHeader and the 2 label floats" in p for p in problems)
    assert any("key 41" in p and "label 2.5 is not a class number" in p for p in problems)
    assert any(f"key 42 (byte {offsets[42]}): no RecordIO magic" in p for p in problems)
    assert any("key 43" in p and "beyond the end of the file" in p for p in problems)
    # Truncated last record.
    with open(path, "ab") as file:
        offsets[44] = write_record(file, pack_header(1) + b"x" * 100)
    path.write_bytes(path.read_bytes()[:-50])
    _, problems = scan_image_headers(path, np.array([44]), np.array([offsets[44]]))
    assert problems == [
        f"{path} key 44 (byte {offsets[44]}): record of 124 bytes runs past the end of the file (truncated .rec)"
    ]


def test_identity_records_that_disagree_with_the_images_are_reported(tmp_path):
    rec, idx = tmp_path / "t.rec", tmp_path / "t.idx"
    with open(rec, "wb") as file:
        offsets = [write_record(file, pack_header([4, 6]))]  # images 1..3, identity records 4, 5
        offsets += [write_record(file, pack_header(cls) + b"img") for cls in (0, 1, 1)]
        offsets += [write_record(file, pack_header([1, 3])), write_record(file, pack_header([3, 4]))]
    write_idx(idx, range(6), offsets)
    index = index_rec(rec, idx, read_identity_records=True)
    assert index.identity_ranges == [(1, 3), (3, 4)]
    assert index.problems == [f"{rec} identity key 4 (class slot 0) covers keys [1, 3) whose image classes are [0, 1]"]


def test_record_zero_with_an_image_is_an_image_not_a_range_header(tmp_path):
    """mxnet im2rec with array labels: key 0 is an ordinary image record."""
    rec, idx = tmp_path / "t.rec", tmp_path / "t.idx"
    with open(rec, "wb") as file:
        offsets = [write_record(file, pack_header([cls, 0.0]) + b"jpeg") for cls in (0, 0, 1)]
    write_idx(idx, range(3), offsets)
    index = index_rec(rec, idx)
    assert index.ranges is None and index.images["cls"].tolist() == [0, 0, 1]
