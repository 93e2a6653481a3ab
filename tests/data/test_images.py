"""Image bytes: decoding, integrity checks, atomic writes and tree walking (``amlit.data.images``)."""

import cv2
import numpy as np
import pytest

from amlit.data.images import decode_image


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
