"""Training images held in device memory: the whole training set as one uint8 tensor on the GPU.

The packed CASIA-WebFace at 112x96 is ~15 GB of uint8 (490k x 112 x 96 x 3), which fits in an H100/H200 beside
SphereFace-20's training state. Then the training loader only hands out sample indices, in the order of the same
resumable ``EpochShardSampler`` (so a run resumes, and runs on any device count, exactly as from the loader), and
the batch is gathered on the device: no decoding, no host-to-device copy of images, no loader workers.

``CasiaDataModule(device_resident=...)`` uses it: ``"never"`` (default), ``"if_fits"`` (when the images take at
most ``RESIDENT_SHARE`` of the device's free memory, else the ordinary loader, saying which), ``"always"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from amlit.errors import ConfigError

ResidencyPolicy = Literal["never", "if_fits", "always"]
RESIDENT_SHARE = 0.5  # of the free device memory (host memory on CPU) the images may take under "if_fits"


class ResidentIndices(NamedTuple):
    """A training batch before it is gathered on the device: the sample indices (B,) int64."""

    indices: torch.Tensor


class SampleIndices(Dataset):
    """The indices 0..n-1 as a dataset: what the training loader hands out for device-resident images."""

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> int:
        return index

    def __getitems__(self, indices: list[int]) -> list[int]:
        return indices


def collate_indices(indices: list[int]) -> ResidentIndices:
    return ResidentIndices(torch.tensor(indices, dtype=torch.long))


def free_memory(device: torch.device) -> int:
    """Bytes free for new tensors on ``device`` (CUDA: the driver's count; CPU: available physical memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def resident_bytes(num_samples: int, image_size: tuple[int, int]) -> int:
    return num_samples * image_size[0] * image_size[1] * 3


def fits(num_samples: int, image_size: tuple[int, int], device: torch.device) -> bool:
    return resident_bytes(num_samples, image_size) <= RESIDENT_SHARE * free_memory(device)


class ResidentImages:
    """uint8 images (N, H, W, 3) and int64 targets (N,) of ``dataset`` on ``device``, read once in batches.

    ``dataset`` yields ``(uint8 image (H, W, 3), target)`` (any ``TrainingImages`` source without random
    augmentation: the stored images are served again every epoch).
    """

    def __init__(
        self,
        dataset: Dataset,
        image_size: tuple[int, int],
        device: torch.device,
        worker_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``worker_options``: the DataLoader's ``num_workers`` (and ``multiprocessing_context``) for the one pass
        that reads the images (none: in this process)."""
        count = len(dataset)
        self.device = device
        self.images = torch.empty((count, *image_size, 3), dtype=torch.uint8, device=device)
        self.targets = torch.empty(count, dtype=torch.long, device=device)
        pin = device.type == "cuda"
        loader = DataLoader(dataset, batch_size=4096, shuffle=False, pin_memory=pin, **(worker_options or {}))
        start = 0
        for images, targets in loader:
            stop = start + len(images)
            self.images[start:stop].copy_(images, non_blocking=pin)
            self.targets[start:stop].copy_(targets, non_blocking=pin)
            start = stop
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def gather(self, batch: ResidentIndices) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images (B, H, W, 3), int64 targets (B,)) on the device for the batch's indices."""
        indices = batch.indices.to(self.device, non_blocking=True)
        return self.images[indices], self.targets[indices]


def check_fixed_images(source) -> None:
    """Device-resident training stores each image once: refuse a source that augments on the host at random."""
    if getattr(source, "augment", None) is not None:
        raise ConfigError(
            f"data.device_resident keeps every training image once on the device, but {source.describe()} has an "
            "augment: its random transforms would be applied once and then frozen. Set data.device_resident=never "
            "for host augmentation, or drop data.train.augment (the mirror is done on the device either way)"
        )
