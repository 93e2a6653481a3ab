"""The embeddings file, amlit's interface to other tools: one ``.npz`` with ``names`` (image paths relative to the
data root, str) and ``features`` (N, D) float32, flip-summed and L2-normalized; written by ``amlit predict``.

Every protocol that starts from features (``amlit score lfw|blufr|megaface``, ``amlit export megaface``) loads them
through ``load_embeddings`` / ``check_features``, so features made elsewhere are either scored right or refused:
non-finite and zero rows and names listed twice are refused naming them, features that are not unit length are
normalized (saying so), since every protocol compares cosines.
"""

from __future__ import annotations

import posixpath
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amlit.errors import BadDataError, MissingDataError, listed

UNIT_TOLERANCE = 1e-3  # |norm - 1| above this counts as not L2-normalized (float32 rounding stays far below)


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(names, features (N, D) float32) from an embeddings ``.npz`` as stored; never unpickles
    (``allow_pickle=False``). Most callers want ``load_embeddings``, which also checks the rows."""
    path = Path(path)
    if path.is_dir():  # e.g. the run folder: "not found" would send the user looking for a missing path
        raise BadDataError(f"{path} is a folder; --embeddings takes the .npz file (e.g. runs/<name>/embeddings.npz)")
    if not path.is_file():
        raise MissingDataError(f"embeddings file not found: {path}; write one with `amlit predict` (an .npz file)")
    if path.stat().st_size == 0:  # np.load's EOFError "No data left in file" does not say so
        raise BadDataError(f"{path} is empty (0 bytes): an interrupted write? Write it again (`amlit embed`)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy (one bare array) renamed or saved as .npz
            raise BadDataError(
                f"{path} holds one bare array {getattr(loaded, 'shape', '')}, not an .npz archive; expected an amlit "
                "embeddings .npz with 'names' and 'features' (np.savez(path, names=..., features=...))"
            )
        with loaded as archive:
            if "names" not in archive or "features" not in archive:
                raise BadDataError(
                    f"{path} holds {sorted(archive.files)}; expected an amlit embeddings .npz with 'names' and "
                    "'features'"
                )
            names, features = (_plain_array(archive, key, path) for key in ("names", "features"))
    # EOFError: an empty file; BadZipFile: a truncated or damaged archive (an interrupted copy or download)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, BadDataError):
            raise
        raise BadDataError(f"{path} is not a readable .npz of names and features ({error})") from error
    if names.ndim != 1 or features.ndim != 2 or len(names) != len(features):
        raise BadDataError(
            f"{path}: names {names.shape} and features {features.shape} do not match; expected (N,) and (N, D)"
        )
    # complex: the float32 cast would drop the imaginary parts, scoring what is left with only numpy's warning
    if not np.issubdtype(features.dtype, np.number) or np.iscomplexobj(features):
        raise BadDataError(f"{path}: features are {features.dtype}, expected real numbers (float32)")
    return _decoded(names, path), np.asarray(features, dtype=np.float32)


def _plain_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """``archive[key]``; an object array (names as a list of Path objects, features as a list of arrays) is refused
    saying which and how to store it: numpy's "Object arrays cannot be loaded when allow_pickle=False" says neither."""
    try:
        return archive[key]
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise
        example = "np.array([str(n) for n in names])" if key == "names" else "np.stack(features).astype(np.float32)"
        raise BadDataError(
            f"{path}: {key!r} is an object array, which only unpickling could read (never done: a pickle can run "
            f"code); save it as a plain array, e.g. {key}={example}"
        ) from error


def _decoded(names: np.ndarray, path: Path) -> list[str]:
    """Names as str. Byte strings (dtype 'S', as Python 2 or h5py write them) are decoded as UTF-8: str() of them
    would give "b'...'", which matches no protocol path."""
    if names.dtype.kind != "S":
        return [str(name) for name in names]
    try:
        return [name.decode("utf-8") for name in names.tolist()]
    except UnicodeDecodeError as error:
        raise BadDataError(f"{path}: names are bytes that are not UTF-8 ({error}); store them as str") from error


def unmatched_hint(names: Sequence[str], wanted: Sequence[str]) -> str:
    """Why none of the ``wanted`` protocol paths is among ``names``, for an error message: the file extensions
    differ (e.g. ``.png`` features of ``.jpg`` pairs), or else what a stored name looks like."""
    if not names:
        return "the file holds no names"
    stored = sorted({Path(name).suffix for name in names})
    expected = sorted({Path(image).suffix for image in wanted})
    if not set(stored) & set(expected):
        return (
            f"its names end in {listed(stored or [''], 3)} (e.g. {names[0]}) but the protocol names "
            f"{listed(expected, 3)} files: name the features by the protocol's file names"
        )
    return f"its names look like {names[0]}"


def check_features(
    names: Sequence[str], features: np.ndarray, source: str | Path, normalize: bool = True
) -> np.ndarray:
    """Refuse what no protocol can score, naming the rows; L2-normalize (with a warning) unless ``normalize`` is
    off (protocols that normalize themselves, such as SphereFace's mean-subtracted LFW variant).

    features (N, D) -> (N, D) float32. Refused: D < 2 (cosines of +-1 only), a name listed twice (one feature per
    image; a silent "last row wins" or a probe counted twice would change the result), rows with NaN/Inf, all-zero
    rows (no direction: cosine undefined).
    """
    # By the path they name: ./A/A_1.png and A/A_1.png are one image (two probes of it made a genuine pair of
    # cosine 1; export wrote one feature file over the other and counted both).
    duplicated = [name for name, count in Counter(map(posixpath.normpath, names)).items() if count > 1]
    if duplicated:
        raise BadDataError(
            f"{source}: {len(duplicated)} image names appear more than once (e.g. {listed(duplicated, 3)}): each "
            "image needs exactly one feature ('./a' and 'a' name one image); remove the duplicates"
        )
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] < 2:
        # A 1-d unit vector is +1 or -1: every cosine would be +-1 and each protocol a coin toss, scored as if fine.
        raise BadDataError(
            f"{source}: features have shape {features.shape}; expected (images, D) embeddings with D >= 2 (512 for "
            "SphereFace-20): is this a file of scores or labels rather than features?"
        )
    # float64 norms a block of rows at a time: a float64 copy of a million 512-d features would be 4 GB
    step = 65_536
    norms = np.concatenate(
        [np.linalg.norm(features[i : i + step].astype(np.float64), axis=1) for i in range(0, len(features), step)]
        or [np.empty(0)]
    )
    bad = ~np.isfinite(norms)  # NaN or Inf in a row makes its norm NaN or Inf
    if bad.any():
        examples = listed([names[i] for i in np.flatnonzero(bad)], 3)
        raise BadDataError(
            f"{source}: {int(bad.sum())} feature rows hold NaN or Inf (e.g. {examples}): embed those images again "
            "or leave them out of the file"
        )
    zero = norms == 0
    if zero.any():
        examples = listed([names[i] for i in np.flatnonzero(zero)], 3)
        raise BadDataError(
            f"{source}: {int(zero.sum())} feature rows are all zeros (e.g. {examples}): a zero vector has no "
            "direction, so no cosine; embed those images again or leave them out"
        )
    if normalize and len(norms) and np.abs(norms - 1).max() > UNIT_TOLERANCE:
        warnings.warn(
            f"{source}: features are not L2-normalized (norms {norms.min():.4g} .. {norms.max():.4g}); normalized "
            "them, since every protocol compares cosines",
            stacklevel=2,
        )
        features = (features / norms[:, None]).astype(np.float32)  # one copy, only of features that need it
    return features


@dataclass(frozen=True)
class Embeddings:
    """Checked features with their image names (``load_embeddings``)."""

    names: list[str]
    features: np.ndarray  # (N, D) float32
    source: str

    def rows_of(self, wanted: Sequence[str]) -> np.ndarray:
        """Row of each ``wanted`` image path (M,) int64, -1 where absent: matched by the whole path, else by file
        name (LFW's ``Name/Name_0001.jpg`` finds ``lfw/Name/Name_0001.jpg`` or ``Name_0001.jpg``). A file name that
        two embedded paths share cannot be matched by file name and is refused."""
        by_path = {name: row for row, name in enumerate(self.names)}
        by_file: dict[str, int] = {}
        shared: set[str] = set()
        for row, name in enumerate(self.names):
            file = Path(name).name
            if file in by_file:
                shared.add(file)
            by_file[file] = row
        rows = np.full(len(wanted), -1, dtype=np.int64)
        for k, image in enumerate(wanted):
            if image in by_path:
                rows[k] = by_path[image]
            elif Path(image).name in shared:
                raise BadDataError(
                    f"{self.source}: {image} is not among the names, and its file name {Path(image).name} belongs "
                    "to several of them: name the features by the protocol's paths"
                )
            else:
                rows[k] = by_file.get(Path(image).name, -1)
        return rows


def load_embeddings(path: str | Path, normalize: bool = True) -> Embeddings:
    """Read and check an embeddings ``.npz`` (``read_embeddings`` + ``check_features``)."""
    names, features = read_embeddings(path)
    return Embeddings(names, check_features(names, features, path, normalize), str(path))
