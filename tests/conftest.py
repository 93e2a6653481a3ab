"""Shared fixtures: the real protocol files in ../shared/data, and tiny data trees in the real formats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

from amlit.data.synthetic import SyntheticSpec, blufr_config_for, generate  # noqa: E402

# Small enough to generate in a second, large enough for 10 identity-disjoint folds.
TINY_SPEC = SyntheticSpec(
    train_identities=12, images_per_identity=6, test_identities=20, test_images_per_identity=3, pairs_per_fold=2
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real protocol files not available: {SHARED_DATA} is absent (it sits beside the repo checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory) -> Path:
    """Generated tree holding ``casia/<7-digit id>/<nnn>.jpg`` and ``lfw/<Name>/...`` + ``lfw/pairs.txt`` and
    ``lfw/blufr_config.mat`` (a BLUFR-style protocol over the LFW-layout tree)."""
    tree = generate(tmp_path_factory.mktemp("synthetic"), TINY_SPEC)
    blufr_config_for(tree)
    return tree


def paper_fit_args(root_dir: Path) -> list[str]:
    """``fit`` of the paper config on the CPU without its test sets or exclusion lists, run folders under
    ``root_dir``: callers add the training source and their overrides (later flags win)."""
    no_test_sets = ("lfw_root", "lfw_pairs", "blufr_config", "megaface_probes", "megaface_distractors")
    return [
        "fit",
        f"--config={REPO / 'configs' / 'amsoftmax_casia.yaml'}",
        f"--trainer.default_root_dir={root_dir}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        *[f"--data.{key}=null" for key in no_test_sets],
        "--data.exclude_id_lists=[]",
        "--data.batch_size=4",
        "--data.num_workers=0",
        "--model.backbone.width_multiplier=0.125",
    ]


@pytest.fixture
def data_root(tmp_path_factory) -> Path:
    """Where the demo config generates its synthetic data: once per session, shared by the training runs."""
    return tmp_path_factory.getbasetemp() / "demo-synthetic"


def write_verification_bin(lfw: Path, path: Path):
    """A verification .bin in insightface's format (pickle of (encoded images, issame)) from the tiny LFW pairs,
    with the 112x96 crops padded to 112x112 by 8 px each side (the template offset between the two)."""
    import pickle

    import cv2

    from amlit.eval.pairs import read_lfw_pairs

    pairs = read_lfw_pairs(lfw / "pairs.txt")
    bins = []
    for left, right in zip(pairs.left, pairs.right, strict=True):
        for index in (left, right):
            image = cv2.imread(str(lfw / pairs.images[index]))
            padded = cv2.copyMakeBorder(image, 0, 0, 8, 8, cv2.BORDER_CONSTANT, value=0)
            bins.append(cv2.imencode(".png", padded)[1].tobytes())
    path.write_bytes(pickle.dumps((bins, [bool(s) for s in pairs.issame]), protocol=pickle.HIGHEST_PROTOCOL))
    return path, pairs


def damaged_in_the_middle(encoded: bytes) -> bytes:
    """JPEG bytes whose compressed data is overwritten mid-file (magic and end marker intact): libjpeg decodes them
    and only warns "Corrupt JPEG data: bad Huffman code" on stderr."""
    damaged = bytearray(encoded)
    middle = len(damaged) // 2
    damaged[middle : middle + 64] = b"\xff\x00" * 32  # stuffed 0xFF bytes: all-ones bits, no valid Huffman code
    return bytes(damaged)
