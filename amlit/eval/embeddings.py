"""The embeddings file, amlit's interface to other tools: one ``.npz`` with ``names`` (image paths relative to the
data root, str) and ``features`` (N, D) float32, flip-summed and L2-normalized; written by ``amlit predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amlit.errors import BadDataError, MissingDataError


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(names, features (N, D) float32) from an embeddings ``.npz``; never unpickles (``allow_pickle=False``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"embeddings file not found: {path}; write one with `amlit predict` (an .npz file)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "names" not in archive or "features" not in archive:
                raise BadDataError(
                    f"{path} holds {sorted(archive.files)}; expected an amlit embeddings .npz with 'names' and "
                    "'features'"
                )
            names, features = archive["names"], archive["features"]
    except (OSError, ValueError) as error:
        if isinstance(error, BadDataError):
            raise
        raise BadDataError(f"{path} is not a readable .npz of names and features ({error})") from error
    if names.ndim != 1 or features.ndim != 2 or len(names) != len(features):
        raise BadDataError(
            f"{path}: names {names.shape} and features {features.shape} do not match; expected (N,) and (N, D)"
        )
    return [str(name) for name in names], np.asarray(features, dtype=np.float32)
