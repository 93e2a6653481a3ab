"""Where aligned training faces come from: a folder tree, insightface RecordIO, or packed shards.

A ``TrainingImages`` source is injected into ``CasiaDataModule`` (``data.train`` in the config, with ``class_path``
naming the format). It lists its images as an identity table first (cheap: no decoding), so overlap removal, held-out
identities and ``num_classes`` are settled before any image is read; then it serves the selected images as uint8.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from amlit.compat import rank_zero_warn
from amlit.data.images import (
    BadDataPolicy,
    IdentityFolders,
    Skipped,
    accepted_extensions,
    check_image_file,
    read_image,
    scan_identity_tree,
    wrong_size_message,
)
from amlit.data.transforms import TrainAugment
from amlit.errors import BadDataError, MissingDataError, listed


class TrainingImages(ABC):
    """A store of aligned training faces (one identity per class)."""

    @abstractmethod
    def image_table(self, image_size: tuple[int, int]) -> pd.DataFrame:
        """One row per usable image: ``identity`` (str, e.g. CASIA's 7-digit id) and ``name`` (str, unique).

        Called once, before training; must not decode every image. Bad entries found here are reported and handled
        by the source's ``on_bad`` policy; a source whose images are not at ``image_size`` (H, W) (and cannot be
        served at it) is refused here, in one message, rather than by the loader workers image by image.
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

    def alignment_template(self) -> str | None:
        """The five-point template (``amlit.data.align.TEMPLATES`` name) the stored faces were aligned with, where
        the source records it; None when it does not (``data.alignment_template`` then says it)."""
        return None


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
    """An aligned tree ``<root>/<identity>/<image>`` (e.g. SphereFace's ``CASIA-WebFace-112X96``).

    Indexing (``image_table``) lists every folder and file and leaves out, with one warning listing them by reason:
    folders that are not identities (see ``identity_folders``), files that are not images (by extension, then by
    their magic bytes), damaged files (empty, truncated: the end marker is checked), images at another size than
    ``data.image_size``; when most images have another size the tree is refused in one message instead.

    Args:
        root: the tree's folder.
        on_bad: what to do with damaged images (found when indexing, or files that fail to decode during
            training), images of another size and identity folders without images: ``"skip"`` them, counting and
            reporting each, or ``"fail"`` at once naming them. Non-identity folders and files with another
            extension are always left out with a warning, never trained on.
        identity_folders: which folders are identities: ``"casia"`` = folders named by a 7-digit CASIA id;
            ``"any"`` = every folder (e.g. a tree of names); ``"auto"`` = ``casia`` as soon as one folder has a
            7-digit name, else ``any``.
        check_files: read each file's header and end when indexing (two small reads per file: magic bytes, end
            marker, image size); turn off on slow network file systems (only a sample's sizes are checked then).
        augment: CPU augmentation of training images in the loader workers, e.g.
            ``amlit.data.transforms.TrainAugment`` (not applied to evaluation images). None: decode only, which
            is the paper's setting (the only augmentation, the mirror, happens on the device).
    """

    SIZE_SAMPLE = 64  # images whose size is checked when check_files is off

    def __init__(
        self,
        root: str | Path,
        on_bad: BadDataPolicy = "skip",
        identity_folders: IdentityFolders = "auto",
        check_files: bool = True,
        augment: TrainAugment | None = None,
    ) -> None:
        self.root = Path(root)
        self.on_bad = on_bad
        self.identity_folders = identity_folders
        self.check_files = check_files
        self.augment = augment
        # Everything image_table() left out, for reports such as a pack manifest.
        self.skipped: list[Skipped] = []

    def describe(self) -> str:
        return str(self.root)

    def required_paths(self) -> list[tuple[Path, str, str]]:
        return [(self.root, "root", "aligned training tree <identity id>/<image>.jpg")]

    def alignment_template(self) -> str | None:
        """From ``alignment.json``, which ``amlit data align`` writes into the trees it aligns."""
        info = self.root / "alignment.json"
        return json.loads(info.read_text(encoding="utf-8")).get("template") if info.is_file() else None

    def image_table(self, image_size: tuple[int, int]) -> pd.DataFrame:
        if not self.root.is_dir():
            raise MissingDataError(
                f"training data folder {self.root} {'is a file' if self.root.exists() else 'does not exist'}: "
                "expected a tree <root>/<identity id>/<image>.jpg "
                "of aligned faces (e.g. CASIA-WebFace aligned to 112x96); set data.train.root to it"
            )
        tree = scan_identity_tree(self.root, self.identity_folders, self.check_files)
        table, wrong_size = self._drop_wrong_sizes(tree.table, tuple(image_size))
        self.skipped = sorted(tree.skipped + wrong_size)
        bad = [entry for entry in self.skipped if entry.damaged]
        if bad and self.on_bad == "fail":
            raise BadDataError(
                f"{self.root}: {len(bad)} damaged or unusable entries:\n{_by_reason(bad)}\n"
                "Fix or remove them, or set data.train.on_bad=skip to train without them"
            )
        if self.skipped:
            rank_zero_warn(f"{self.root}: left out of the training data:\n{_by_reason(self.skipped)}")
        if table.empty:
            raise BadDataError(
                f"{self.root} has no usable images: expected <root>/<identity>/<image> with images "
                f"({accepted_extensions()})" + (f"; left out:\n{_by_reason(self.skipped)}" if self.skipped else "")
            )
        return table[["identity", "name"]].reset_index(drop=True)

    def _drop_wrong_sizes(self, table: pd.DataFrame, image_size: tuple[int, int]) -> tuple[pd.DataFrame, list[Skipped]]:
        """Refuse a tree whose images mostly have another size than ``image_size``; return the table without the few
        that do, and their skip entries. Sizes come from the headers read at indexing (a sample without them)."""
        if not self.check_files and len(table):
            sample = np.linspace(0, len(table) - 1, min(self.SIZE_SAMPLE, len(table))).round().astype(int)
            for row in np.unique(sample):
                check = check_image_file(self.root / table.at[row, "name"])
                if check.size is not None:
                    table.loc[row, ["height", "width"]] = check.size
        known = table["height"] > 0
        wrong = known & ((table["height"] != image_size[0]) | (table["width"] != image_size[1]))
        if wrong.any() and 2 * int(wrong.sum()) >= int(known.sum()):
            found = table[wrong].groupby(["height", "width"]).size().idxmax()
            example = table.loc[wrong & (table["height"] == found[0]) & (table["width"] == found[1]), "name"].iloc[0]
            raise BadDataError(
                f"{self.root}: {int(wrong.sum())} of the {int(known.sum())} images checked are not "
                f"{image_size[0]}x{image_size[1]} (HxW). "
                + wrong_size_message(f"e.g. {self.root / example}", tuple(int(v) for v in found), image_size)
            )
        skipped = [
            Skipped(name, f"{h}x{w} (HxW), not the configured {image_size[0]}x{image_size[1]}", True)
            for name, h, w in table.loc[wrong, ["name", "height", "width"]].itertuples(index=False)
        ]
        return table[~wrong].reset_index(drop=True), skipped

    def dataset(self, names: Sequence[str], targets: Sequence[int], image_size: tuple[int, int]) -> Dataset:
        return ImageFiles(self.root, names, targets, image_size, on_bad=self.on_bad, transform=self.augment)

    def eval_dataset(self, names: Sequence[str], targets: Sequence[int], image_size: tuple[int, int]) -> Dataset:
        return ImageFiles(self.root, names, targets, image_size, on_bad=self.on_bad)


def _by_reason(entries: Sequence[Skipped], examples: int = 5) -> str:
    """One line per reason: how many entries, the reason, and the first few of them."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        groups.setdefault(entry.reason, []).append(entry.path)
    return "\n".join(f"  {len(paths)} x {reason}: {listed(paths, examples)}" for reason, paths in groups.items())
