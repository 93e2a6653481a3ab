"""insightface verification ``.bin`` files (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``), read without running them.

Format (insightface ``lfw2pack.py``, ``build_eval_pack.py``, ``eval/verification.py load_bin``):
a pickle of ``(bins, issame_list)``; ``bins`` holds ``2·P`` encoded image files (bytes, or uint8 numpy buffers from
``cv2.imencode``), ``issame_list`` ``P`` bools; pair ``i`` is ``(bins[2i], bins[2i+1])``. Images are aligned
112x112 crops (the SphereFace 112x96 template shifted by +8 px in x). insightface scores them in 10 folds of
contiguous pairs (sklearn ``KFold(n_splits=10, shuffle=False)``), which are LFW's official folds when the file keeps
``pairs.txt`` order.

A pickle can run any code while it loads. The reader therefore resolves only the globals a real file needs — numpy
arrays and dtypes, and ``_codecs.encode`` (how Python 3 pickles bytes at protocol <= 2), limited to latin-1 — and
refuses every other one before it is created, so nothing in the file is ever executed.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from amlit.data.images import decode_face
from amlit.errors import BadDataError, MissingDataError
from amlit.eval.evalset import EvalSet
from amlit.eval.far import FarRule
from amlit.eval.pairs import PairList
from amlit.eval.verification import PROTOCOL_VIEWS, PairProtocol, pair_verification_metrics

NUM_FOLDS = 10

_FORMAT = "a pickle of (list of encoded images, list of bools)"


def _numpy_global(submodule: str, name: str) -> Callable:
    """``numpy._core.<submodule>.<name>`` (numpy >= 2), else ``numpy.core...`` (numpy 1.x)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy has no {submodule}.{name}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to pickle bytes at protocol <= 2, and for nothing else."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only for latin-1 text, got encoding {encoding!r}")
    return text.encode("latin1")


# (module, name) -> the object to hand the unpickler. numpy 2 pickles name numpy._core, numpy 1 numpy.core.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], object]] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
    **{
        (f"{package}.{submodule}", name): partial(_numpy_global, submodule, name)
        for package in ("numpy._core", "numpy.core")
        for submodule, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
    },
}


class _VerificationBinUnpickler(pickle.Unpickler):
    """Unpickler that builds bytes, lists, tuples, bools and numpy arrays, and refuses every other global."""

    def __init__(self, data: bytes, path: Path, encoding: str = "ASCII") -> None:
        super().__init__(io.BytesIO(data), encoding=encoding)
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise BadDataError(
                f"{self.path} is not a plain verification .bin: its pickle asks for the global {module}.{name}, "
                f"which was refused and not run (only {_FORMAT} with numpy buffers is read). "
                "Do not load this file with pickle; get the .bin from a source you trust"
            )
        return resolve()

    def persistent_load(self, pid: object) -> object:
        raise BadDataError(f"{self.path} is not a plain verification .bin: it holds persistent references ({pid!r})")


def _unpickle(path: Path) -> object:
    data = path.read_bytes()
    try:
        try:
            return _VerificationBinUnpickler(data, path).load()
        except UnicodeDecodeError:
            # Written under Python 2: its str objects (the encoded images) are not ASCII; read them as bytes.
            return _VerificationBinUnpickler(data, path, encoding="bytes").load()
    except BadDataError:
        raise
    except Exception as error:  # a truncated or foreign file raises any of several types while unpickling
        raise BadDataError(f"{path} is not a readable verification .bin ({type(error).__name__}: {error})") from error


def _encoded_bytes(item: object, index: int, path: Path) -> bytes:
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8:  # cv2.imencode buffer, shape (n,) or (n, 1)
        return item.tobytes()
    raise BadDataError(
        f"{path}: image {index} is a {type(item).__name__}"
        f"{f' of {item.dtype}' if isinstance(item, np.ndarray) else ''}; expected encoded image bytes "
        f"(bytes or a uint8 numpy buffer) in {_FORMAT}"
    )


def _issame_array(issame: object, path: Path) -> np.ndarray:
    values = np.asarray(issame if isinstance(issame, np.ndarray) else list(issame))  # type: ignore[call-overload]
    if values.ndim != 1 or values.dtype != np.bool_:
        raise BadDataError(
            f"{path}: the second element should be a flat list of bools (is the pair the same person?), got an "
            f"array of {values.dtype} with shape {values.shape}"
        )
    return values


def insightface_folds(num_pairs: int, num_folds: int = NUM_FOLDS) -> np.ndarray:
    """Fold of each pair (P,) int64: ``num_folds`` contiguous blocks, the first ``P % num_folds`` one pair longer,
    exactly sklearn ``KFold(n_splits=num_folds, shuffle=False)`` (insightface's split)."""
    if num_pairs < num_folds:
        raise BadDataError(f"{num_folds}-fold evaluation needs at least {num_folds} pairs, got {num_pairs}")
    sizes = np.full(num_folds, num_pairs // num_folds)
    sizes[: num_pairs % num_folds] += 1
    return np.repeat(np.arange(num_folds, dtype=np.int64), sizes)


@dataclass(frozen=True, eq=False)
class VerificationBin:
    """A verification ``.bin``: ``encoded[i]`` is the file of image ``pairs.images[i]``; pair p = images (2p, 2p+1)."""

    path: Path
    encoded: list[bytes]  # (2P,) encoded image files (JPEG/PNG)
    pairs: PairList  # images named "<file name>[<index>]", folds as insightface

    @property
    def name(self) -> str:
        return self.path.stem  # "lfw", "cfp_fp", "agedb_30"


def read_verification_bin(path: str | Path, num_folds: int = NUM_FOLDS) -> VerificationBin:
    """Read an insightface verification ``.bin`` safely (no code in the file runs); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"verification .bin not found: {path}. Expected e.g. lfw.bin / cfp_fp.bin / agedb_30.bin from "
            "insightface's faces_webface_112x112 (or any folder of its training sets)"
        )
    content = _unpickle(path)
    if not isinstance(content, tuple | list) or len(content) != 2:
        raise BadDataError(f"{path} holds a {type(content).__name__}; expected {_FORMAT}")
    bins, issame_list = content
    if not isinstance(bins, list | tuple):
        raise BadDataError(f"{path}: the first element is a {type(bins).__name__}; expected {_FORMAT}")
    issame = _issame_array(issame_list, path)
    if len(bins) != 2 * len(issame):
        raise BadDataError(
            f"{path}: {len(bins)} images for {len(issame)} pairs; a verification .bin has two images per pair"
        )
    encoded = [_encoded_bytes(item, index, path) for index, item in enumerate(bins)]
    left = np.arange(0, len(encoded), 2, dtype=np.int64)
    pairs = PairList(
        images=[f"{path.name}[{index}]" for index in range(len(encoded))],
        left=left,
        right=left + 1,
        issame=issame,
        fold=insightface_folds(len(issame), num_folds),
    )
    return VerificationBin(path, encoded, pairs)


class EncodedImages(Dataset):
    """``(uint8 image (H, W, 3) RGB, index)`` decoded from in-memory image files by ``decode_face``: an image of
    ``size`` is kept, a 112x112 insightface crop is center-cropped to 112x96 (8 px off each side, which maps its
    template onto SphereFace's exactly), anything else is an error.

    The files sit in one uint8 buffer with offsets: DataLoader workers share it instead of copying (on fork) or
    pickling (on spawn) thousands of small ``bytes`` objects.
    """

    def __init__(self, encoded: Sequence[bytes], size: tuple[int, int], source: str) -> None:
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int64)
        self.size = (int(size[0]), int(size[1]))
        self.source = source

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        encoded = self.buffer[self.offsets[index] : self.offsets[index + 1]]
        image = decode_face(encoded, self.size, f"image {index} of {self.source}")
        return torch.from_numpy(image), index


def bin_eval_set(
    path: str | Path,
    image_size: tuple[int, int],
    protocol: PairProtocol = "amsoftmax",
    far_rule: FarRule = "evalroc",
) -> EvalSet:
    """An ``EvalSet`` named after the file (``lfw``, ``cfp_fp``, ``agedb_30``): its images, decoded and fitted to
    ``image_size`` (H, W), scored by ``pair_verification_metrics`` with ``protocol`` (which sets the EvalSet's
    ``views``: ``"amsoftmax"`` flip-sum, ``"sphereface"`` concatenation) and ``far_rule``."""
    data = read_verification_bin(path)
    dataset = EncodedImages(data.encoded, image_size, str(data.path))
    dataset[0]  # decode one image now, so that a size mismatch is reported at setup rather than in a worker
    evaluate = partial(pair_verification_metrics, pairs=data.pairs, protocol=protocol, far_rule=far_rule)
    return EvalSet(data.name, dataset, len(dataset), evaluate, views=PROTOCOL_VIEWS[protocol])
