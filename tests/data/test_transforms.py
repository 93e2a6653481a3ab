import cv2
import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser

from amlit.data import CasiaDataModule, ImageFolder
from amlit.data.transforms import TrainAugment, to_rgb
from amlit.errors import ConfigError

EVERYTHING_ON = dict(affine_p=1.0, brightness_contrast_p=1.0, grayscale_p=0.5, jpeg_p=1.0)


@pytest.fixture
def face() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (112, 96, 3), dtype=np.uint8)


def test_default_is_the_identity_and_mirror_is_an_exact_flip(face):
    np.testing.assert_array_equal(TrainAugment()(face), face)
    augment = TrainAugment(mirror=True, seed=3)
    outputs = [augment(face) for _ in range(40)]
    flipped = [bool(np.array_equal(out, face[:, ::-1])) for out in outputs]
    kept = [bool(np.array_equal(out, face)) for out in outputs]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each output is exactly one of the two
    assert 5 < sum(flipped) < 35
    again = TrainAugment(mirror=True, seed=3)
    assert [bool(np.array_equal(again(face), face[:, ::-1])) for _ in range(40)] == flipped
    assert all(out.flags["C_CONTIGUOUS"] for out in outputs)  # torch.from_numpy needs positive strides


def test_other_augmentations_keep_uint8_hwc_and_are_seeded(face):
    first = [TrainAugment(**EVERYTHING_ON, seed=7)(face) for _ in range(2)]
    stream = TrainAugment(**EVERYTHING_ON, seed=7)
    outputs = [stream(face) for _ in range(3)]
    assert all(out.shape == (112, 96, 3) and out.dtype == np.uint8 for out in outputs)
    np.testing.assert_array_equal(first[0], first[1])  # same seed, same result
    np.testing.assert_array_equal(outputs[0], first[0])
    assert not np.array_equal(outputs[0], face) and not np.array_equal(outputs[1], outputs[0])


def test_grayscale_is_the_weighted_average_in_three_channels(face):
    gray = TrainAugment(grayscale_p=1.0, seed=0)(face)
    expected = face.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray[..., 0].astype(np.float64) - expected).max() <= 1.0
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_gray_inputs_become_three_channels(face):
    gray = face[..., 0]
    for image in (gray, gray[..., None]):
        for transform in (to_rgb, TrainAugment(), TrainAugment(mirror=True, seed=0)):
            out = transform(image)
            assert out.shape == (112, 96, 3) and out.dtype == np.uint8
            assert all(
                np.array_equal(out[..., c], gray) or np.array_equal(out[..., c], gray[:, ::-1]) for c in range(3)
            )
    np.testing.assert_array_equal(to_rgb(face), face)


def test_workers_get_different_streams(face, monkeypatch):
    class Worker:
        def __init__(self, worker_id):
            self.id, self.seed = worker_id, 1000 + worker_id

    def flips_in_worker(worker_id, seed):
        augment = TrainAugment(mirror=True, seed=seed)
        augment._seeded_in = -1  # as if this object had been copied into a new process
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: Worker(worker_id))
        return [bool(np.array_equal(augment(face), face)) for _ in range(32)]

    for seed in (5, None):
        assert flips_in_worker(0, seed) != flips_in_worker(1, seed)
        assert flips_in_worker(1, seed) == flips_in_worker(1, seed)


def test_bad_settings_are_explained():
    with pytest.raises(ConfigError, match=r"augment.jpeg_p=1.5 is not a probability"):
        TrainAugment(jpeg_p=1.5)
    with pytest.raises(ConfigError, match=r"augment.jpeg_quality=\(90, 10\)"):
        TrainAugment(jpeg_quality=(90, 10))


def test_image_folder_augments_training_images_only(tiny_tree):
    parser = ArgumentParser()
    parser.add_class_arguments(ImageFolder, "train")
    config = parser.parse_string(f"train:\n  root: {tiny_tree / 'casia'}\n  augment:\n    mirror: true\n    seed: 1\n")
    source = parser.instantiate_classes(config).train
    assert isinstance(source.augment, TrainAugment) and source.augment.settings["mirror"]
    dm = CasiaDataModule(source, val_identities=4, val_pairs_per_fold=2, batch_size=4, num_workers=0)
    train = dm.train_dataloader().dataset
    decoded = cv2.cvtColor(cv2.imread(str(tiny_tree / "casia" / train.files[0])), cv2.COLOR_BGR2RGB)
    outputs = [train[0][0].numpy() for _ in range(16)]
    assert any(np.array_equal(out, decoded[:, ::-1]) for out in outputs)
    assert all(np.array_equal(out, decoded) or np.array_equal(out, decoded[:, ::-1]) for out in outputs)
    val = dm.eval_sets("val")[0].dataset
    assert val.transform is None
