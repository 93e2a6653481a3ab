"""What a model was trained on, beyond counts: the alignment template of its crops and checksums of its data.

Part of the data manifest (``CasiaDataModule.manifest``), which checkpoints, ``results.json`` and model cards carry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from amlit.data.align import get_template, template_at
from amlit.data.packed import file_sha256
from amlit.data.sources import TrainingImages
from amlit.errors import ConfigError


def listing_sha256(table: pd.DataFrame) -> str:
    """sha256 over the sorted ``identity<TAB>name`` lines of the images trained on: the same set of images under
    the same identities gives the same checksum, whatever the order or the machine (no file is read)."""
    digest = hashlib.sha256()
    for identity, name in sorted(zip(table["identity"], table["name"], strict=True)):
        digest.update(f"{identity}\t{name}\n".encode(errors="surrogateescape"))  # names not UTF-8 on disk too
    return digest.hexdigest()


def _same_points(first: str, second: str, image_size: tuple[int, int]) -> bool:
    """Whether two templates put the five points at the same place in crops of ``image_size`` (e.g. insightface's
    112x112 cut to 112x96 and SphereFace's 112x96)."""
    a, b = template_at(first, image_size), template_at(second, image_size)
    return a is not None and b is not None and np.allclose(a.array(), b.array(), atol=1e-6)


def alignment_template_of(train: TrainingImages, configured: str | None, image_size: tuple[int, int]) -> str | None:
    """The configured template (checked against what the source records, at ``image_size``), else the source's;
    None if neither."""
    recorded = train.alignment_template()
    if configured is None:
        return recorded
    get_template(configured)  # an unknown name is a ConfigError naming the known ones
    if recorded is not None and not _same_points(recorded, configured, image_size):
        raise ConfigError(
            f"data.alignment_template={configured} but {train.describe()} records that its faces were aligned with "
            f"{recorded}: remove the setting, or set it to {recorded}"
        )
    return configured


def training_provenance(
    train: TrainingImages,
    alignment_template: str | None,
    image_size: tuple[int, int],
    table: pd.DataFrame,
    exclude_id_lists: Sequence[str | Path],
) -> dict:
    """Manifest entries: ``alignment_template``, ``train_listing_sha256`` (``listing_sha256`` of ``table``, the
    images trained on) and ``exclude_id_list_sha256`` (each exclusion list file's sha256, by path)."""
    return {
        "alignment_template": alignment_template_of(train, alignment_template, image_size),
        "train_listing_sha256": listing_sha256(table),
        "exclude_id_list_sha256": {str(path): file_sha256(Path(path)) for path in exclude_id_lists},
    }
