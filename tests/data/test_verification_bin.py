import builtins
import os
import pickle
import subprocess

import cv2
import numpy as np
import pytest
import torch

from amlit.data.verification_bin import (
    EncodedImages,
    bin_eval_set,
    insightface_folds,
    read_verification_bin,
)
from amlit.errors import BadDataError, MissingDataError

NUM_PAIRS = 12


def face_like(seed: int, size=(112, 112)) -> np.ndarray:
    """A BGR image with a distinct left and right border, so that a wrong crop is visible in the pixels."""
    rng = np.random.default_rng(seed)
    image = np.full((*size, 3), 40, np.uint8)
    image[:, :8] = (255, 0, 0)
    image[:, -8:] = (0, 0, 255)
    image[20:90, 20:90] = rng.integers(0, 256, 3, dtype=np.uint8)
    return image


def jpeg_buffers(count: int = 2 * NUM_PAIRS, size=(112, 112)) -> list[np.ndarray]:
    return [cv2.imencode(".png", face_like(i, size))[1] for i in range(count)]  # lossless: exact pixel checks


def issame_list() -> list[bool]:
    return [i % 3 != 0 for i in range(NUM_PAIRS)]


def write_bin(path, content, protocol=pickle.HIGHEST_PROTOCOL):
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


@pytest.mark.parametrize(
    ("kind", "protocol"),
    [("bytes", pickle.HIGHEST_PROTOCOL), ("numpy", pickle.HIGHEST_PROTOCOL), ("numpy", 4), ("bytes", 2), ("numpy", 2)],
)
def test_real_format_bins_round_trip_exactly(tmp_path, kind, protocol):
    buffers = jpeg_buffers()
    bins = [b.tobytes() for b in buffers] if kind == "bytes" else buffers  # lfw2pack / build_eval_pack style
    path = write_bin(tmp_path / "cfp_fp.bin", (bins, issame_list()), protocol)
    data = read_verification_bin(path)
    assert data.name == "cfp_fp"
    assert data.encoded == [b.tobytes() for b in buffers]
    np.testing.assert_array_equal(data.pairs.issame, issame_list())
    np.testing.assert_array_equal(data.pairs.left, np.arange(0, 24, 2))
    np.testing.assert_array_equal(data.pairs.right, np.arange(1, 24, 2))
    # 12 pairs in 10 contiguous folds: sklearn KFold gives the first 12 % 10 = 2 folds one extra pair.
    np.testing.assert_array_equal(data.pairs.fold, [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9])


def test_insightface_folds_are_contiguous_kfold_blocks():
    assert insightface_folds(6000).tolist() == np.repeat(np.arange(10), 600).tolist()
    assert np.bincount(insightface_folds(23, 10)).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    with pytest.raises(BadDataError, match="at least 10 pairs"):
        insightface_folds(9)


def test_python2_bin_with_non_ascii_str_is_retried_as_bytes(tmp_path):
    # Hand-written protocol-2 pickle as Python 2 writes (["\xff\xd8..", "\x89PNG.."], [True, False]): its str
    # opcodes (SHORT_BINSTRING) hold raw bytes that are not ASCII, so the first (default) load fails to decode them.
    images = [b"\xff\xd8\xff\xe0 one", b"\x89PNG two"] * 10
    body = b"".join(b"U" + bytes([len(image)]) + image for image in images)
    flags = b"\x88\x89" * 5  # NEWTRUE, NEWFALSE
    raw = b"\x80\x02]q\x00(" + body + b"e]q\x01(" + flags + b"e\x86q\x02."
    path = tmp_path / "lfw.bin"
    path.write_bytes(raw)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)  # the default load cannot read it (so the retry path is what is tested)
    data = read_verification_bin(path)
    assert data.encoded == images
    assert data.pairs.issame.tolist() == [True, False] * 5


class _Exploit:
    """Pickles as a call to ``function(*args)``: what a malicious .bin would run while loading."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize(
    ("make_exploit", "refused"),
    [
        (lambda marker: _Exploit(os.system, f"touch {marker}"), "system"),
        (lambda marker: _Exploit(builtins.eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
        (lambda marker: _Exploit(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
    ],
)
def test_malicious_bin_is_refused_and_runs_nothing(tmp_path, make_exploit, refused):
    marker = tmp_path / "pwned"
    bins = [b.tobytes() for b in jpeg_buffers()]
    bins[5] = make_exploit(marker)  # hidden among real images
    path = write_bin(tmp_path / "lfw.bin", (bins, issame_list()))
    with pytest.raises(BadDataError, match=rf"lfw\.bin is not a plain verification \.bin.*{refused}"):
        read_verification_bin(path)
    assert not marker.exists()
    # The same file loaded with plain pickle would run it: the marker proves the exploit is real.
    if refused == "builtins.eval":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_codecs_encode_is_allowed_only_for_latin1(tmp_path):
    class _Codec:
        def __reduce__(self):
            import _codecs

            return _codecs.encode, ("eJwDAAAAAAE=", "base64")

    path = write_bin(tmp_path / "lfw.bin", ([_Codec(), b"x"] * NUM_PAIRS, issame_list()), protocol=2)
    with pytest.raises(BadDataError, match="latin-1"):
        read_verification_bin(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"bins": []}, "holds a dict"),
        (([b"x"] * 5, [True, False, True]), "5 images for 3 pairs"),
        (([b"x"] * 24, [1, 0] * 6), "flat list of bools"),
        (([1.5] * 24, issame_list()), "image 0 is a float"),
        (([np.zeros(3, np.float32)] * 24, issame_list()), "image 0 is a ndarray of float32"),
    ],
)
def test_bins_of_the_wrong_shape_are_clear_errors(tmp_path, content, message):
    path = write_bin(tmp_path / "agedb_30.bin", content)
    with pytest.raises(BadDataError, match=message):
        read_verification_bin(path)


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(MissingDataError, match=r"nope\.bin"):
        read_verification_bin(tmp_path / "nope.bin")
    path = write_bin(tmp_path / "lfw.bin", ([b.tobytes() for b in jpeg_buffers()], issame_list()))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BadDataError, match=r"not a readable verification \.bin"):
        read_verification_bin(path)


def test_encoded_images_decode_to_rgb_and_center_crop_112x112_to_112x96(tmp_path):
    buffers = jpeg_buffers(4)
    gray = cv2.imencode(".png", face_like(9)[:, :, 1])[1].tobytes()
    encoded = [b.tobytes() for b in buffers] + [gray]
    kept = EncodedImages(encoded, (112, 112), "test.bin")
    cropped = EncodedImages(encoded, (112, 96), "test.bin")
    for index in range(4):
        rgb = face_like(index)[:, :, ::-1]
        image, returned_index = kept[index]
        assert returned_index == index and image.dtype == torch.uint8
        np.testing.assert_array_equal(image.numpy(), rgb)
        # 8 px off each side: the red/blue 8-px borders disappear entirely and nothing else does.
        np.testing.assert_array_equal(cropped[index][0].numpy(), rgb[:, 8:104])
    gray_image = kept[4][0].numpy()
    assert gray_image.shape == (112, 112, 3)
    np.testing.assert_array_equal(gray_image[..., 0], face_like(9)[:, :, 1])
    np.testing.assert_array_equal(gray_image[..., 0], gray_image[..., 2])


def test_wrong_image_sizes_and_undecodable_bytes_are_clear_errors():
    small = cv2.imencode(".png", face_like(0, (100, 100)))[1].tobytes()
    with pytest.raises(BadDataError, match=r"image 0 of x\.bin: image is 100x100 \(HxW\) but 112x96 is configured"):
        EncodedImages([small], (112, 96), "x.bin")[0]
    with pytest.raises(BadDataError, match=r"image 0 of x\.bin: image is 112x112 \(HxW\) but 96x96 is configured"):
        EncodedImages([jpeg_buffers(1)[0].tobytes()], (96, 96), "x.bin")[0]
    with pytest.raises(BadDataError, match=r"image 0 of x\.bin: not an image"):
        EncodedImages([b"not an image"], (112, 112), "x.bin")[0]


def test_bin_eval_set_names_the_set_after_the_file_and_scores_its_pairs(tmp_path):
    path = write_bin(tmp_path / "agedb_30.bin", (jpeg_buffers(), issame_list()))
    eval_set = bin_eval_set(path, (112, 96))
    assert eval_set.name == "agedb_30" and eval_set.num_images == len(eval_set.dataset) == 24
    assert eval_set.dataset[0][0].shape == (112, 96, 3)
    # Features that make every genuine pair identical and every impostor pair orthogonal: perfect scores.
    features = torch.zeros(24, 24, dtype=torch.float64)
    for pair, same in enumerate(issame_list()):
        features[2 * pair, 2 * pair] = 1
        features[2 * pair + 1, 2 * pair if same else 2 * pair + 1] = 1
    metrics = eval_set.evaluate(features)
    assert metrics["acc"] == 1.0 and metrics["auc"] == pytest.approx(1.0) and metrics["eer"] == 0.0
    assert metrics["num_pairs"] == NUM_PAIRS
    with pytest.raises(BadDataError, match="100x100"):
        bin_eval_set(write_bin(tmp_path / "lfw.bin", (jpeg_buffers(24, (100, 100)), issame_list())), (112, 96))


def test_bin_eval_set_with_the_sphereface_protocol_asks_for_concatenated_features(tmp_path):
    path = write_bin(tmp_path / "lfw.bin", (jpeg_buffers(), issame_list()))
    assert bin_eval_set(path, (112, 112)).views == "sum"
    eval_set = bin_eval_set(path, (112, 112), protocol="sphereface")
    assert eval_set.views == "concat" and eval_set.dataset[0][0].shape == (112, 112, 3)
    features = torch.randn(24, 2 * 6, generator=torch.Generator().manual_seed(0))  # [f(image), f(mirror)]
    features[1::2][torch.tensor(issame_list())] = features[0::2][torch.tensor(issame_list())]  # genuine: identical
    metrics = eval_set.evaluate(features)
    assert metrics["num_pairs"] == NUM_PAIRS and metrics["auc"] == pytest.approx(1.0)
