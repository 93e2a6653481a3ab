"""A minimal reader of the protocol buffers wire format (https://protobuf.dev/programming-guides/encoding/), enough
to read Caffe's ``.caffemodel`` without Caffe or a compiled ``caffe.proto``.

A message is a sequence of (field number, wire type, value) records: the key is a varint ``field << 3 | type``;
type 0 = varint, 1 = 8 bytes, 2 = length-delimited (strings, sub-messages, packed repeated numbers), 5 = 4 bytes
(3 and 4, groups, are not used by caffe.proto). Values are returned as memoryview slices: nothing is copied until
a caller turns them into arrays.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from amlit.errors import BadDataError

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def read_varint(data: memoryview, position: int) -> tuple[int, int]:
    """(value, position after it) of the base-128 varint at ``position``."""
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise BadDataError("truncated or malformed varint in the protobuf data")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def fields(data: memoryview | bytes) -> Iterator[tuple[int, int, int | memoryview]]:
    """Every (field number, wire type, value) record of one message, in order: int for varints, memoryview else."""
    data = memoryview(data)
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, position = read_varint(data, position)
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            value, position = data[position : position + size], position + size
        elif wire_type == LENGTH_DELIMITED:
            length, position = read_varint(data, position)
            value, position = data[position : position + length], position + length
        else:
            raise BadDataError(f"protobuf wire type {wire_type} (field {number}) is not used by caffe.proto")
        if position > len(data):
            raise BadDataError(f"protobuf field {number} runs past the end of its message (truncated file?)")
        yield number, wire_type, value


def by_field(data: memoryview | bytes) -> dict[int, list[tuple[int, int | memoryview]]]:
    """The records of one message grouped by field number: {number: [(wire type, value), ...]}."""
    grouped: dict[int, list[tuple[int, int | memoryview]]] = defaultdict(list)
    for number, wire_type, value in fields(data):
        grouped[number].append((wire_type, value))
    return grouped


def repeated_numbers(records: list[tuple[int, int | memoryview]], dtype: str) -> np.ndarray:
    """A repeated numeric field, packed (one length-delimited record) or not (one record per value), or both:
    ``dtype`` '<f4' / '<f8' for float / double, 'varint' for int32/int64."""
    parts = []
    for wire_type, value in records:
        if dtype == "varint":
            if wire_type == VARINT:
                parts.append(np.array([_signed(value)], dtype=np.int64))
            else:  # packed varints
                values, position, view = [], 0, memoryview(value)
                while position < len(view):
                    number, position = read_varint(view, position)
                    values.append(_signed(number))
                parts.append(np.array(values, dtype=np.int64))
        else:
            size = np.dtype(dtype).itemsize
            if wire_type == LENGTH_DELIMITED and len(value) % size:
                raise BadDataError(f"packed {dtype} field of {len(value)} bytes is not a whole number of values")
            parts.append(np.frombuffer(value, dtype=dtype))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64 if dtype == "varint" else dtype)


def _signed(value: int) -> int:
    """int32/int64 fields store negative numbers as 64-bit two's complement varints."""
    return value - (1 << 64) if value >= 1 << 63 else value


def text(records: list[tuple[int, int | memoryview]]) -> str:
    """The last value of a string field ('' when absent), as protobuf's parsers take the last one."""
    return bytes(records[-1][1]).decode("utf-8", errors="replace") if records else ""
