"""Landmark files: the three public formats, the real LFW file, and errors that name file and line."""

import numpy as np
import pytest

from amlit.data.landmarks import read_landmarks
from amlit.errors import BadDataError


def test_real_lfw_landmarks_parse(shared_data):
    table = read_landmarks(shared_data / "lfw" / "lfw_landmark.txt")
    assert len(table) == 13_233 and table["path"].is_unique
    points = np.stack(table["landmarks"])  # (N, 5, 2)
    assert points.shape == (13_233, 5, 2)
    assert points.min() >= 0 and points.max() < 250  # inside the 250x250 originals
    # First line: Aaron_Eckhart/Aaron_Eckhart_0001.jpg 107 107 147 111 124 143 103 157 139 161 (x1 y1 ... x5 y5)
    assert table["path"][0] == "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
    np.testing.assert_array_equal(points[0], [[107, 107], [147, 111], [124, 143], [103, 157], [139, 161]])
    # Left eye left of right eye and eyes above the mouth, in image coordinates, for nearly every face.
    assert (points[:, 0, 0] < points[:, 1, 0]).mean() > 0.99 and (points[:, 0, 1] < points[:, 3, 1]).mean() > 0.99


def test_three_formats_give_the_same_landmarks(tmp_path):
    xs, ys = [10.5, 30, 20, 12, 28], [40, 41, 55, 70, 71.25]
    interleaved = [v for pair in zip(xs, ys, strict=True) for v in pair]
    lines = {
        "lfw": "a/001.jpg " + " ".join(map(str, interleaved)),
        "casia": "a/001.jpg\t7\t" + "\t".join(map(str, interleaved)),
        "lst": "\t".join(["0", "a/001.jpg", "7", "1", "2", "50", "60", *map(str, xs), *map(str, ys)]),
    }
    for fmt, line in lines.items():
        path = tmp_path / f"{fmt}.txt"
        extra = "\n1\tb/002.jpg\t8\n" if fmt == "lst" else "\n"  # an .lst line without landmarks is left out
        path.write_text(line + extra)
        for requested in ("auto", fmt):
            table = read_landmarks(path, requested)
            assert table["path"].tolist() == ["a/001.jpg"], (fmt, requested)
            np.testing.assert_array_equal(table["landmarks"][0], np.column_stack([xs, ys]))


@pytest.mark.parametrize(
    ("fmt", "content", "message"),
    [
        ("auto", "a.jpg 1 2 3 4 5 6 7 8 9 10\nb.jpg 1 2 3\n", r"bad.txt:2: expected 11 fields"),
        ("auto", "a.jpg 1 2 3 4 5 6 7 8 9 10\nb.jpg 1 2 3 4 5 x 7 8 9 10\n", r"bad.txt:2: expected 10 numbers"),
        ("auto", "\na.jpg 1 2 3 4 5 6 7 8 9 10\na.jpg 1 2 3 4 5 6 7 8 9 10\n", r"bad.txt:3: a.jpg .* on line 2"),
        ("auto", "a.jpg 1 2 3 4 5 6 7 8 9 nan\n", r"bad.txt:1: .*finite"),
        ("auto", "a.jpg 1 2 3\n", r"bad.txt:1: cannot tell the landmark format"),
        ("casia", "a.jpg\tseven\t1\t2\t3\t4\t5\t6\t7\t8\t9\t10\n", r"bad.txt:1: expected an integer class id"),
        ("lst", "0\ta.jpg\t1\t1\t2\t3\t4\t1\t2\t3\t4\t5\t6\t7\t8\t9\n", r"bad.txt:1: expected 3 or 7 or 17 fields"),
    ],
)
def test_malformed_landmark_lines_name_file_and_line(tmp_path, fmt, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(BadDataError, match=message):
        read_landmarks(path, fmt)


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_text("\ufeffa/001.jpg 1 2 3 4 5 6 7 8 9 10\r\nb/002.jpg 1 2 3 4 5 6 7 8 9 10\r\n", encoding="utf-8")
    assert read_landmarks(path)["path"].tolist() == ["a/001.jpg", "b/002.jpg"]


def test_a_landmark_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "landmarks.txt"
    path.write_bytes("a/001.jpg 1 2 3 4 5 6 7 8 9 10\nJos\xe9/002.jpg 1 2 3 4 5 6 7 8 9 10\n".encode("latin-1"))
    with pytest.raises(BadDataError, match=r"landmarks.txt:2: not UTF-8 text \(byte 0xe9"):
        read_landmarks(path)
