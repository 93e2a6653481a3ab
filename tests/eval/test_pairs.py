import numpy as np
import pytest

from amlit.errors import BadDataError, MissingDataError
from amlit.eval.pairs import PairList, parse_lfw_pairs, read_lfw_pairs, sample_fold_pairs, write_lfw_pairs


def test_real_lfw_pairs_parse_into_ten_folds_of_300_plus_300(shared_data):
    pairs = read_lfw_pairs(shared_data / "lfw" / "pairs.txt")
    assert len(pairs) == 6000
    assert pairs.num_folds == 10
    for k in range(10):
        in_fold = pairs.fold == k
        assert in_fold.sum() == 600
        assert pairs.issame[in_fold].sum() == 300
        # Within a fold the 300 matched pairs come first, as in the file.
        assert pairs.issame[in_fold][:300].all() and not pairs.issame[in_fold][300:].any()
    assert len(pairs.images) == 7701  # distinct images of the real pairs.txt
    assert {p.split("/")[0] for p in pairs.images}.__len__() == 4281  # distinct people
    first = pairs.images[pairs.left[0]], pairs.images[pairs.right[0]]
    assert first == ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg")


def test_write_then_read_round_trip(tmp_path):
    folds = sample_fold_pairs({f"P{i}": [1, 2, 3] for i in range(20)}, 10, 2, np.random.default_rng(0))
    write_lfw_pairs(tmp_path / "pairs.txt", folds)
    assert (tmp_path / "pairs.txt").read_text().splitlines()[0] == "10\t2"
    assert parse_lfw_pairs(tmp_path / "pairs.txt") == [
        ([tuple(p) for p in matched], [tuple(p) for p in mismatched]) for matched, mismatched in folds
    ]
    pairs = read_lfw_pairs(tmp_path / "pairs.txt")
    assert len(pairs) == 40 and pairs.issame.sum() == 20
    # Folds are identity-disjoint, as LFW View 2.
    names = [
        {
            p.split("/")[0]
            for p in np.array(pairs.images)[np.r_[pairs.left, pairs.right][np.r_[pairs.fold, pairs.fold] == k]]
        }
        for k in range(10)
    ]
    assert all(not (names[a] & names[b]) for a in range(10) for b in range(a + 1, 10))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("2\t1\nA\t1\t2\nA\t1\tB\t2\nC\t1\t2\nC\t1\n", r"pairs.txt:5: expected a mismatched pair 'Name1 i Name2 j'"),
        ("2\t1\nA\t1\t2\nA\t1\tB\t2\nC\t1\tD\t2\nC\t1\tD\t2\n", r"pairs.txt:4: expected a matched pair"),
        ("2\t1\nA\t1\tx\nA\t1\tB\t2\nC\t1\t2\nC\t1\tD\t2\n", r"pairs.txt:2: an image number must be an integer"),
        (
            "2\t1\nA\t1\t2\nA\t1\tB\t2\n",
            r"pairs.txt:1: the header promises 2 folds x \(2 x 1\) = 4 pairs, but the file has 2",
        ),
        ("ten\t300\n", r"pairs.txt:1: the number of folds must be an integer"),
        ("10 300 5\n", r"pairs.txt:1: expected a header"),
        ("", r"pairs.txt:1: empty file"),
    ],
)
def test_malformed_pairs_name_file_and_line(tmp_path, body, match):
    path = tmp_path / "pairs.txt"
    path.write_text(body)
    with pytest.raises(BadDataError, match=match):
        read_lfw_pairs(path)


def test_missing_pairs_file(tmp_path):
    with pytest.raises(MissingDataError, match=r"nope.txt does not exist"):
        read_lfw_pairs(tmp_path / "nope.txt")


def test_select_keeps_the_chosen_pairs_in_order_over_the_same_images():
    pairs = four_pairs()
    keep = np.array([True, False, True, True])
    chosen = pairs.select(keep)
    assert chosen.images == pairs.images
    assert chosen.left.tolist() == pairs.left[[0, 2, 3]].tolist()
    assert chosen.right.tolist() == pairs.right[[0, 2, 3]].tolist()
    assert chosen.issame.tolist() == [True, False, False] and chosen.fold.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="shape"):
        pairs.select(np.array([True]))


def four_pairs() -> PairList:
    return PairList(
        images=["a", "b", "c"],
        left=np.array([0, 0, 1, 2]),
        right=np.array([1, 2, 2, 0]),
        issame=np.array([True, True, False, False]),
        fold=np.array([0, 0, 1, 1]),
    )


def test_a_byte_order_mark_before_the_header_is_ignored(tmp_path):
    folds = sample_fold_pairs({f"P{i}": [1, 2, 3] for i in range(20)}, 10, 2, np.random.default_rng(0))
    write_lfw_pairs(tmp_path / "plain.txt", folds)
    with_bom = tmp_path / "bom.txt"
    with_bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.txt").read_bytes())
    assert parse_lfw_pairs(with_bom) == parse_lfw_pairs(tmp_path / "plain.txt")
    assert len(read_lfw_pairs(with_bom)) == 40


def test_a_pairs_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("1\t1\nJos\u00e9_Garc\u00eda\t1\t2\nA\t1\tB\t2\n", encoding="utf-16")  # Notepad's "Unicode"
    with pytest.raises(BadDataError, match=r"pairs.txt:1: not UTF-8 text .*UTF-16"):
        read_lfw_pairs(path)
    path.write_text("1\t1\nJos\u00e9_Garc\u00eda\t1\t2\nA\t1\tB\t2\n", encoding="latin-1")
    with pytest.raises(BadDataError, match=r"pairs.txt:2: not UTF-8 text \(byte 0xe9"):
        read_lfw_pairs(path)
