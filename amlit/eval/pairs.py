"""Verification pairs: the LFW ``pairs.txt`` format (View 2), and pairs drawn from held-out identities.

``pairs.txt`` (LFW README, "View 2"): a header ``<folds><TAB><n>``, then per fold ``n`` matched lines
``Name<TAB>i<TAB>j`` followed by ``n`` mismatched lines ``Name1<TAB>i<TAB>Name2<TAB>j``; image numbers are 1-based
and name the file ``Name/Name_<%04d>.jpg``. The real file has 10 folds of 300 + 300 pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amlit.errors import BadDataError, MissingDataError
from amlit.listfiles import read_utf8_lines


@dataclass(frozen=True)
class PairList:
    """Pairs over a list of images. ``left``/``right`` index ``images``; one entry per pair in file order."""

    images: list[str]  # image paths relative to the data root, each once
    left: np.ndarray  # (P,) int64
    right: np.ndarray  # (P,) int64
    issame: np.ndarray  # (P,) bool
    fold: np.ndarray  # (P,) int64, 0-based

    def __len__(self) -> int:
        return len(self.issame)

    @property
    def num_folds(self) -> int:
        return int(self.fold.max()) + 1 if len(self) else 0

    def select(self, keep: np.ndarray) -> PairList:
        """The pairs where ``keep`` (P,) bool is true, in order, over the same ``images``."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.issame.shape:
            raise ValueError(f"selection mask has shape {keep.shape}, expected ({len(self)},)")
        return PairList(self.images, self.left[keep], self.right[keep], self.issame[keep], self.fold[keep])


def lfw_image_path(name: str, number: int, extension: str = ".jpg") -> str:
    return f"{name}/{name}_{number:04d}{extension}"


def _from_path_pairs(left: Sequence[str], right: Sequence[str], issame, fold) -> PairList:
    images = sorted(set(left) | set(right))
    position = {image: index for index, image in enumerate(images)}
    return PairList(
        images=images,
        left=np.array([position[p] for p in left], dtype=np.int64),
        right=np.array([position[p] for p in right], dtype=np.int64),
        issame=np.asarray(issame, dtype=bool),
        fold=np.asarray(fold, dtype=np.int64),
    )


def _positive_int(field: str, where: str, what: str) -> int:
    try:
        value = int(field)
    except ValueError:
        raise BadDataError(f"{where}: {what} must be an integer, got {field!r}") from None
    if value < 1:
        raise BadDataError(f"{where}: {what} must be >= 1, got {value}")
    return value


Folds = list[tuple[list[tuple[str, int, int]], list[tuple[str, int, str, int]]]]
"""Per fold: (matched [(name, i, j)], mismatched [(name1, i, name2, j)]) with 1-based image numbers."""


def parse_lfw_pairs(path: str | Path) -> Folds:
    """Parse an LFW-format ``pairs.txt`` into folds; errors name the file and line."""
    path = Path(path)
    if path.is_dir():  # e.g. the LFW folder: "does not exist" would send the user looking for a missing path
        raise BadDataError(f"{path} is a folder; expected the LFW-format pairs.txt file (e.g. {path}/pairs.txt)")
    if not path.is_file():
        raise MissingDataError(f"pairs file {path} does not exist: expected an LFW-format pairs.txt")
    lines = read_utf8_lines(path)
    if not lines:
        raise BadDataError(f"{path}:1: empty file; expected a header '<folds><TAB><pairs per class per fold>'")
    header = lines[0].split()
    if len(header) != 2:
        raise BadDataError(f"{path}:1: expected a header '<folds><TAB><n>' such as '10\\t300', got {lines[0]!r}")
    num_folds = _positive_int(header[0], f"{path}:1", "the number of folds")
    per_fold = _positive_int(header[1], f"{path}:1", "the number of pairs per class per fold")

    body = [(number, line.split()) for number, line in enumerate(lines[1:], start=2) if line.strip()]
    expected = num_folds * 2 * per_fold
    if len(body) != expected:
        raise BadDataError(
            f"{path}:1: the header promises {num_folds} folds x (2 x {per_fold}) = {expected} pairs, "
            f"but the file has {len(body)} pair lines"
        )
    folds: Folds = [([], []) for _ in range(num_folds)]
    for position, (number, fields) in enumerate(body):
        where = f"{path}:{number}"
        matched, mismatched = folds[position // (2 * per_fold)]
        if position % (2 * per_fold) < per_fold:  # each fold: n matched lines, then n mismatched
            if len(fields) != 3:
                raise BadDataError(f"{where}: expected a matched pair 'Name i j' here, got {' '.join(fields)!r}")
            name, i, j = fields
            matched.append(
                (name, _positive_int(i, where, "an image number"), _positive_int(j, where, "an image number"))
            )
        else:
            if len(fields) != 4:
                raise BadDataError(
                    f"{where}: expected a mismatched pair 'Name1 i Name2 j' here, got {' '.join(fields)!r}"
                )
            name_a, i, name_b, j = fields
            mismatched.append(
                (
                    name_a,
                    _positive_int(i, where, "an image number"),
                    name_b,
                    _positive_int(j, where, "an image number"),
                )
            )
    return folds


def lines_naming(path: str | Path, images: set[str], extension: str = ".jpg") -> list[tuple[int, str]]:
    """(line number, image) for every pair line of a (valid) ``pairs.txt`` that names one of ``images``, in file
    order: for messages that point at the line of a missing image."""
    found = []
    for number, line in enumerate(read_utf8_lines(path)[1:], start=2):
        fields = line.split()
        if len(fields) == 3:  # Name i j
            named = [(fields[0], fields[1]), (fields[0], fields[2])]
        elif len(fields) == 4:  # Name1 i Name2 j
            named = [(fields[0], fields[1]), (fields[2], fields[3])]
        else:
            continue
        for name, number_field in named:
            image = lfw_image_path(name, int(number_field), extension)
            if image in images:
                found.append((number, image))
    return found


def read_lfw_pairs(path: str | Path, extension: str = ".jpg") -> PairList:
    """Read an LFW-format ``pairs.txt`` as a ``PairList`` over ``Name/Name_%04d<extension>`` files."""
    return fold_pairs_to_list(parse_lfw_pairs(path), lambda name, number: lfw_image_path(name, number, extension))


def write_lfw_pairs(path: str | Path, folds: Folds) -> None:
    """Write ``folds`` as an LFW-format ``pairs.txt``."""
    per_fold = len(folds[0][0])
    if any(len(m) != per_fold or len(n) != per_fold for m, n in folds):
        raise BadDataError("every fold needs the same number of matched and mismatched pairs")
    rows = [f"{len(folds)}\t{per_fold}"]
    for matched, mismatched in folds:
        rows += ["\t".join(map(str, pair)) for pair in matched]
        rows += ["\t".join(map(str, pair)) for pair in mismatched]
    Path(path).write_text("\n".join(rows) + "\n", encoding="utf-8")


def sample_fold_pairs(
    images_by_identity: dict[str, list[int]],
    num_folds: int,
    pairs_per_fold: int,
    rng: np.random.Generator,
    advice: str = "use more images per identity or fewer pairs",
) -> Folds:
    """Draw LFW-style folds from identities with numbered images: identities are split into disjoint folds
    (as in LFW View 2), each fold gets ``pairs_per_fold`` matched and as many mismatched pairs, no repeats.

    ``images_by_identity`` maps an identity name to its image numbers. ``advice`` ends the error when a fold has
    too few matched pairs (callers name their settings).
    """
    names = sorted(images_by_identity)
    if len(names) < 2 * num_folds:
        raise BadDataError(f"need at least {2 * num_folds} identities for {num_folds} folds, got {len(names)}")
    order = rng.permutation(len(names))
    fold_names = [[names[i] for i in order[k::num_folds]] for k in range(num_folds)]
    folds = []
    for members in fold_names:
        candidates = [
            (name, a, b)
            for name in members
            for x, a in enumerate(images_by_identity[name])
            for b in images_by_identity[name][x + 1 :]
        ]
        if len(candidates) < pairs_per_fold:
            raise BadDataError(
                f"a fold of {len(members)} identities has only {len(candidates)} possible matched pairs, "
                f"{pairs_per_fold} requested: {advice}"
            )
        matched = [candidates[i] for i in rng.choice(len(candidates), pairs_per_fold, replace=False)]
        mismatched: set[tuple[str, int, str, int]] = set()
        while len(mismatched) < pairs_per_fold:
            a, b = rng.choice(len(members), 2, replace=False)
            name_a, name_b = members[min(a, b)], members[max(a, b)]
            mismatched.add(
                (
                    name_a,
                    int(rng.choice(images_by_identity[name_a])),
                    name_b,
                    int(rng.choice(images_by_identity[name_b])),
                )
            )
        folds.append((matched, sorted(mismatched)))
    return folds


def fold_pairs_to_list(folds: Folds, image_path: Callable[[str, int], str]) -> PairList:
    """Turn ``sample_fold_pairs`` output into a ``PairList``; ``image_path(name, number)`` names the files."""
    left, right, issame, fold = [], [], [], []
    for k, (matched, mismatched) in enumerate(folds):
        for name, i, j in matched:
            left.append(image_path(name, i))
            right.append(image_path(name, j))
            issame.append(True)
            fold.append(k)
        for name_a, i, name_b, j in mismatched:
            left.append(image_path(name_a, i))
            right.append(image_path(name_b, j))
            issame.append(False)
            fold.append(k)
    return _from_path_pairs(left, right, issame, fold)
