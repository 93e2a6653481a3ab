"""Progress bars of amlit's long tool work (alignment, packing, RecordIO checks, MegaFace files, data generation)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

LOG_REFRESH_SECONDS = 30.0  # where every refresh is a new line of a log file


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm`` with amlit's defaults: in a terminal it refreshes as usual; when stderr is not a terminal (a log file,
    a SLURM output file, CI) at most every 30 s, so a long run does not flood its log."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_REFRESH_SECONDS)
    return tqdm(iterable, **kwargs)
