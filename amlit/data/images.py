"""Image files -> uint8 HWC RGB arrays, and the Dataset that serves them to a DataLoader.

Batches stay uint8 (B, H, W, 3) on the CPU: flipping and normalization happen on the device
(``FaceVerificationModule.on_after_batch_transfer``), so the worker processes only decode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from amlit.errors import BadDataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
BadDataPolicy = Literal["skip", "fail"]  # what a data source does with a damaged image


def read_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Decode an aligned face crop to (H, W, 3) uint8 RGB; gray images become 3-channel.

    Raises ``ValueError`` naming the file when it cannot be decoded or is not ``size`` = (H, W): the data must
    be aligned to the network's input size beforehand (resizing here would silently change the alignment).
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, gray is replicated to 3 channels
    if image is None:
        raise BadDataError(f"cannot decode image {path}: the file is missing, truncated or not an image")
    if image.shape[:2] != tuple(size):
        raise BadDataError(
            f"image {path} is {image.shape[0]}x{image.shape[1]} (HxW) but the data is configured for "
            f"{size[0]}x{size[1]}: align the faces to that size first, or set data.image_size"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ImageFiles(Dataset):
    """``(image uint8 (H, W, 3), target int64)`` for a list of files under ``root``.

    ``targets`` are class labels for training and image indices for evaluation (so that embeddings gathered
    from several processes can be put back in order). With ``on_bad="skip"`` an image that fails to decode is
    replaced by the next one in the list (a training batch keeps its size) and a warning names it; evaluation sets
    use ``"fail"``, since a replaced image would change the protocol. ``transform`` (uint8 (H, W, 3) -> uint8
    (H, W, 3), e.g. ``amlit.data.transforms.TrainAugment``) runs on each decoded image in the worker.
    """

    def __init__(
        self,
        root: Path,
        files: Sequence[str],
        targets: Sequence[int],
        size: tuple[int, int],
        on_bad: BadDataPolicy = "fail",
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if len(files) != len(targets):
            raise ValueError(f"{len(files)} files but {len(targets)} targets")
        self.root = Path(root)
        self.files = list(files)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.size = (int(size[0]), int(size[1]))
        self.on_bad = on_bad
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(len(self.files)):
            current = (index + attempt) % len(self.files)
            try:
                image = read_image(self.root / self.files[current], self.size)
            except BadDataError as error:
                if self.on_bad == "fail":
                    raise
                rank_zero_warn(f"skipping an unreadable training image: {error}")
                continue
            if self.transform is not None:
                image = self.transform(image)
            return torch.from_numpy(image), int(self.targets[current])
        raise BadDataError(f"no image under {self.root} could be decoded")
