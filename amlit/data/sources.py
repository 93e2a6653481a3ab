"""Where aligned training faces come from: a folder tree, insightface RecordIO, or packed shards.

A ``TrainingImages`` source is injected into ``CasiaDataModule`` (``data.train`` in the config, with ``class_path``
naming the format). It lists its images as an identity table first (cheap: no decoding), so overlap removal, held-out
identities and ``num_classes`` are settled before any image is read; then it serves the selected images as uint8.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from amlit.data.images import BadDataPolicy, read_image, scan_identity_tree
from amlit.data.transforms import TrainAugment
from amlit.errors import BadDataError, MissingDataError, listed


class TrainingImages(ABC):
    """A store of aligned training faces (one identity per class)."""

    @abstractmethod
    def image_table(self) -> pd.DataFrame:
        """One row per usable image: ``identity`` (str, e.g. CASIA's 7-digit id) and ``name`` (str, unique).

        Called once, before training; must not decode images. Bad entries found here are reported and handled
        by the source's ``on_bad`` policy.
        """

    @abstractmethod
    def dataset(self, names: Sequence[str], targets: Sequence[int], image_size: tuple[int, int]) -> Dataset:
        """``(uint8 image (H, W, 3) RGB, int64 target)`` for the named images, as ``image_size`` = (H, W)."""

    def eval_dataset(self, names: Sequence[str], targets: Sequence[int], image_size: tuple[int, int]) -> Dataset:
        """Like ``dataset`` but for evaluation (held-out identities): without training augmentation."""
        return self.dataset(names, targets, image_size)

    @abstractmethod
    def describe(self) -> str:
        """Where the images are, for messages (e.g. the folder or file path)."""

    def required_paths(self) -> list[tuple[Path, str, str]]:
        """(path, setting name, what it should be) of each input, so a missing one is reported with the others."""
        return []

    @property
    def identities_are_ids(self) -> bool:
        """Whether ``identity`` holds the dataset's own identity ids (CASIA's 7-digit ids), which exclusion lists
        name; False where only class numbers are known (a .rec without its identity list)."""
        return True


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


class ImageFolder(TrainingImages):
    """An aligned tree ``<root>/<identity>/<image>.jpg`` (e.g. SphereFace's ``CASIA-WebFace-112X96``).

    Args:
        root: the tree's folder.
        on_bad: what to do with damaged images (truncated/empty files found when indexing, or files that fail to
            decode during training) and empty identity folders: ``"skip"`` them, counting and reporting each, or
            ``"fail"`` at once naming the file. Indexing checks each file's end marker (two small reads per file),
            so a damaged file is found before training starts, not hours into it.
        check_files: run that end-marker check (turn off on slow network file systems to save the reads).
        augment: CPU augmentation of training images in the loader workers, e.g.
            ``amlit.data.transforms.TrainAugment`` (not applied to evaluation images). None: decode only, which
            is the paper's setting (the only augmentation, the mirror, happens on the device).
    """

    def __init__(
        self,
        root: str | Path,
        on_bad: BadDataPolicy = "skip",
        check_files: bool = True,
        augment: TrainAugment | None = None,
    ) -> None:
        self.root = Path(root)
        self.on_bad = on_bad
        self.check_files = check_files
        self.augment = augment
        # (name relative to root, reason) of everything image_table() skipped, for reports such as a pack manifest
        self.skipped: list[tuple[str, str]] = []

    def describe(self) -> str:
        return str(self.root)

    def required_paths(self) -> list[tuple[Path, str, str]]:
        return [(self.root, "root", "aligned training tree <identity id>/<image>.jpg")]

    def image_table(self) -> pd.DataFrame:
        if not self.root.is_dir():
            raise MissingDataError(
                f"training data folder {self.root} does not exist: expected a tree <root>/<identity id>/<image>.jpg "
                "of aligned faces (e.g. CASIA-WebFace aligned to 112x96); set data.train.root to it"
            )
        table, empty, damaged = scan_identity_tree(self.root, self.check_files)
        problems = [f"{len(empty)} empty identity folder(s): {listed(empty)}"] if empty else []
        if damaged:
            problems.append(f"{len(damaged)} damaged image file(s) (truncated or empty): {listed(damaged)}")
        if problems and self.on_bad == "fail":
            raise BadDataError(
                f"{self.root}: " + "; ".join(problems) + ". Fix or remove them, or set data.train.on_bad=skip"
            )
        for problem in problems:
            rank_zero_warn(f"{self.root}: skipping {problem}")
        self.skipped = [(os.path.relpath(path, self.root), "empty identity folder") for path in empty] + [
            (name, "damaged image file (truncated or empty)") for name in damaged
        ]
        if table.empty:
            raise BadDataError(f"{self.root} has no identity folders with images: expected <root>/<identity>/<n>.jpg")
        return table

    def dataset(self, names: Sequence[str], targets: Sequence[int], image_size: tuple[int, int]) -> Dataset:
        return ImageFiles(self.root, names, targets, image_size, on_bad=self.on_bad, transform=self.augment)

    def eval_dataset(self, names: Sequence[str], targets: Sequence[int], image_size: tuple[int, int]) -> Dataset:
        return ImageFiles(self.root, names, targets, image_size, on_bad=self.on_bad)
