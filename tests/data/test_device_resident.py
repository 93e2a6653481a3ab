"""Loader options of CasiaDataModule and the device-resident training images (equal training: test_training.py)."""

from __future__ import annotations

import pytest
import torch

from amlit.data import CasiaDataModule, ImageFolder
from amlit.data.device_resident import ResidentImages, ResidentIndices, collate_indices, fits, resident_bytes
from amlit.data.transforms import TrainAugment
from amlit.errors import ConfigError


def test_loader_options_pin_memory_and_prefetch(tiny_tree):
    dm = CasiaDataModule(ImageFolder(tiny_tree / "casia"), num_workers=2, pin_memory=True, prefetch_factor=6)
    options = dm._loader_options()
    assert options["pin_memory"] is True and options["prefetch_factor"] == 6 and options["persistent_workers"]
    # without workers PyTorch refuses a prefetch_factor and a start method: they are left out
    settings = dict(num_workers=0, prefetch_factor=6, multiprocessing_context="spawn")
    assert (
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), **settings)
        ._loader_options()
        .keys()
        .isdisjoint(["prefetch_factor", "multiprocessing_context"])
    )
    default = CasiaDataModule(ImageFolder(tiny_tree / "casia"))._loader_options()
    assert default["pin_memory"] == torch.cuda.is_available()


def test_resident_images_gather_what_the_dataset_yields(tiny_tree):
    dm = CasiaDataModule(ImageFolder(tiny_tree / "casia"), batch_size=4)
    table = dm.train_table
    dataset = dm.train.dataset(table["name"], table["label"], dm.image_size)
    resident = ResidentImages(dataset, dm.image_size, torch.device("cpu"))
    indices = [5, 0, 3, 3]
    images, targets = resident.gather(collate_indices(indices))
    for row, index in enumerate(indices):
        image, target = dataset[index]
        assert torch.equal(images[row], torch.as_tensor(image)) and int(targets[row]) == int(target)
    assert isinstance(collate_indices(indices), ResidentIndices)


def test_fits_compares_with_free_memory():
    assert resident_bytes(10, (112, 96)) == 10 * 112 * 96 * 3
    assert fits(1, (2, 2), torch.device("cpu"))
    assert not fits(10**12, (112, 96), torch.device("cpu"))  # 32 PB


def test_device_resident_refuses_host_augmentation(tiny_tree):
    with pytest.raises(ConfigError, match="device_resident"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia", augment=TrainAugment(jpeg_p=0.5)), device_resident="always")
