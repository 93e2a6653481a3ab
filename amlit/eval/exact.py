"""Scores in float32, decisions in float64: fast score products with the float64 protocols' exact counts.

Every protocol compares cosine scores with a threshold or with each other. The score matrices are the cost, and
float32 products run at about twice the rate of float64 ones (more on GPUs), but a float32 score can sit on the
other side of a threshold than its float64 value. A float32 dot product of rows a and b is within

    bound = (gamma_D (1 + u)^2 + 2u + u^2) |a| |b|,  gamma_D = D u / (1 - D u),  u = 2^-24

of the float64 one (the standard bound on a sum of D rounded products, whatever the summation order, plus the
rounding of float64 inputs to float32; Higham, Accuracy and Stability of Numerical Algorithms, Sec. 3.1), so:

- a comparison of two float32 scores more than ``2 * bound`` apart has the float64 answer;
- the k-th largest float64 score is within ``bound`` of the k-th largest float32 one, so every score that can be
  among the k largest in float64 has a float32 value at least (k-th largest float32) - 2 * bound.

The protocols score everything in float32, keep the few scores that can decide (``RunningTop``, the candidates
near a rank, a mate and its rivals) with their row and column, and recompute those in float64 (``pair_dots``).
The rest of the arithmetic (thresholds, counts) is the float64 rule of ``amlit.eval.far``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch

UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}
SAFETY = 2.0  # the bound is doubled: cheap insurance against a BLAS that sums in an unusual way
MIN_GUESS_RANK = 32  # a guess has >= 32 sampled scores above it: too high (a second pass) with probability ~1e-4


def max_row_norm(rows: torch.Tensor, chunk: int = 65_536) -> float:
    """An upper bound on the largest L2 norm of the rows of ``rows`` (N, D), a chunk at a time and in their own
    dtype (a float64 copy of a million distractors would be 4 GB): float32's relative error of a norm, at most
    (D + 2) u, is added."""
    norms = [torch.linalg.vector_norm(rows[s : s + chunk], dim=1).max() for s in range(0, len(rows), chunk)]
    if not norms:
        return 0.0
    unit = UNIT_ROUNDOFF.get(rows.dtype, UNIT_ROUNDOFF[torch.float32])
    return float(max(norms)) * (1 + 2 * (rows.shape[1] + 2) * unit)


def rounding_bound(a: torch.Tensor, b: torch.Tensor | None = None, dtype: torch.dtype = torch.float32) -> float:
    """Largest possible |score in ``dtype`` - float64 score| of a row of ``a`` (N, D) with a row of ``b`` (M, D)
    (``b`` defaults to ``a``), inputs of any dtype. 0 for empty inputs."""
    if not a.numel() or (b is not None and not b.numel()):
        return 0.0
    dim = a.shape[1]
    u = UNIT_ROUNDOFF[dtype]
    gamma = dim * u / (1 - dim * u)
    inputs = 2 * u + u * u if dtype != a.dtype or (b is not None and dtype != b.dtype) else 0.0  # inputs to dtype
    norm_a = max_row_norm(a)
    return SAFETY * (gamma * (1 + u) ** 2 + inputs) * norm_a * (norm_a if b is None else max_row_norm(b))


@contextlib.contextmanager
def full_precision_matmul() -> Iterator[None]:
    """float32 products in full float32 inside the block (no TF32 or bfloat16 shortcuts, which a training
    configuration may have switched on for speed: their error is ~1e-3, far above ``rounding_bound``)."""
    precision = torch.get_float32_matmul_precision()
    cuda_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = cuda_tf32


def pair_dots(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """float64 scores ``a[rows[i]] . b[cols[i]]`` (K,) on ``a``'s device, in chunks (each pair reads two rows;
    ``b`` may live on another device, e.g. distractors on the host)."""
    out = torch.empty(len(rows), dtype=torch.float64, device=a.device)
    step = 2048  # (step, D) float64 rows stay in cache: 3x faster than 65,536 here
    for start in range(0, len(rows), step):
        left = a[rows[start : start + step].to(a.device)].double()
        right = b[cols[start : start + step].to(b.device)].to(a.device).double()
        out[start : start + step] = torch.linalg.vecdot(left, right)
    return out


class RunningTop:
    """The candidates for the ``k`` largest exact scores of a stream of approximate (float32) scores.

    ``add`` takes approximate values with their (row, column); everything that can be among the k largest exact
    scores is kept: every value at least (k-th largest so far) - 2 ``margin``, where ``margin`` bounds the error of a
    value. ``cut`` (a 0-d tensor on the device) is that limit, ``-inf`` until k values were seen: a caller may skip
    every value at or below it. Storage stays O(k): the buffer is pruned when it has grown past 2k.
    """

    def __init__(self, k: int, margin: float, device: torch.device | str, dtype: torch.dtype = torch.float32) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.margin = margin
        self.values = torch.empty(0, dtype=dtype, device=device)
        self.rows = torch.empty(0, dtype=torch.long, device=device)
        self.cols = torch.empty(0, dtype=torch.long, device=device)
        self.cut = torch.tensor(-math.inf, dtype=dtype, device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending_size = 0
        self._guess: torch.Tensor | None = None

    @property
    def has_cut(self) -> bool:
        """Whether ``cut`` is finite (set by k values seen, or by ``raise_cut``/``guess_cut``)."""
        return bool(torch.isfinite(self.cut))

    def raise_cut(self, values: torch.Tensor) -> None:
        """Raise ``cut`` with the k-th largest of ``values`` (any shape; -inf entries are no scores), scores that
        are being ``add``-ed too: the k largest of the stream are at least as large (a first block can then skip
        its own small scores)."""
        if values.numel() >= self.k:
            kth = torch.kthvalue(values.reshape(-1), values.numel() - self.k + 1).values
            if torch.isfinite(kth):
                self.cut = torch.maximum(self.cut, kth - 2 * self.margin)

    def guess_cut(self, sample: torch.Tensor, population: int) -> None:
        """Set ``cut`` from a ``sample`` of the stream's scores (-inf entries are no scores) out of ``population``:
        at the sample's quantile above which about twice the k needed would lie. Much higher than ``raise_cut``
        can give early on, but a guess: ``complete`` tells afterwards whether it was low enough."""
        sample = sample.reshape(-1)
        scores = int(torch.isfinite(sample).sum())
        rank = math.ceil(2 * self.k * scores / max(population, 1))  # from the top
        if MIN_GUESS_RANK <= rank <= scores:  # fewer sampled scores above the guess: too noisy to guess
            self._guess = torch.kthvalue(sample, sample.numel() - rank + 1).values
            self.cut = torch.maximum(self.cut, self._guess)

    @property
    def complete(self) -> bool:
        """Whether the kept candidates hold every score that can be among the k largest exact ones: always, unless
        ``guess_cut`` guessed too high (fewer than k scores above it, or one within 2 ``margin`` below its k-th)."""
        if self._guess is None:
            return True
        self._prune()
        if len(self.values) < self.k:
            return False
        kth = torch.kthvalue(self.values, len(self.values) - self.k + 1).values
        return bool(kth - 2 * self.margin >= self._guess)

    def add(self, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
        """Candidates (n,) each; the caller leaves out what is below ``cut`` (it may keep some)."""
        self._pending.append((values, rows, cols))
        self._pending_size += len(values)
        if len(self.values) + self._pending_size > 2 * self.k:
            self._prune()

    def _prune(self) -> None:
        parts = [(self.values, self.rows, self.cols), *self._pending]
        self.values, self.rows, self.cols = (torch.cat(column) for column in zip(*parts, strict=True))
        self._pending, self._pending_size = [], 0
        if len(self.values) >= self.k:
            kth = torch.kthvalue(self.values, len(self.values) - self.k + 1).values
            self.cut = torch.maximum(self.cut, kth - 2 * self.margin)
            keep = (self.values >= self.cut).nonzero().squeeze(1)
            self.values, self.rows, self.cols = self.values[keep], self.rows[keep], self.cols[keep]

    def kept(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values, rows, columns) of every candidate, unordered: a superset of the k largest exact scores."""
        self._prune()
        return self.values, self.rows, self.cols

    def exact(
        self,
        rescore: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        ranks: Sequence[int] | None = None,
        prefix: int = 0,
    ) -> torch.Tensor:
        """The k largest scores, descending, float64 (all of them when fewer were added), with ``rescore(rows,
        columns)`` giving the exact scores of candidates.

        Without ``ranks`` every candidate is rescored. With ``ranks`` (0-based) only the values at those ranks and
        the first ``prefix`` values are exact: a rank's value from the candidates within 2 ``margin`` of its
        approximate value (the exact r-th largest is among them, below the ones that are certainly larger), the
        prefix from the candidates at least (approximate ``prefix``-th largest) - 2 ``margin`` (every one of the
        exact ``prefix`` largest is among them); the values at other ranks are the approximate ones.
        """
        values, rows, cols = self.kept()
        if ranks is None:
            return rescore(rows, cols).sort(descending=True).values[: self.k]
        values, order = values.sort(descending=True)
        rows, cols = rows[order], cols[order]
        top = values[: self.k].double()
        ascending = values.double().flip(0)
        prefix = min(prefix, len(top))
        if prefix:
            within = len(values) - int(torch.searchsorted(ascending, top[prefix - 1] - 2 * self.margin))
            top[:prefix] = rescore(rows[:within], cols[:within]).sort(descending=True).values[:prefix]
        for rank in sorted({r for r in ranks if prefix <= r < len(top)}):
            value = ascending[len(values) - 1 - rank]
            above = len(values) - int(torch.searchsorted(ascending, value + 2 * self.margin, right=True))
            below = len(values) - int(torch.searchsorted(ascending, value - 2 * self.margin, right=False))
            window = rescore(rows[above:below], cols[above:below]).sort(descending=True).values
            top[rank] = window[rank - above]
        return top


class RunningTopPerRow:
    """Per row of a score matrix streamed in blocks of columns, the candidates for its ``k`` largest exact scores
    (``RunningTop`` for every row at once, e.g. each MegaFace probe's best distractors).

    ``cut`` (R,) is each row's limit, (k-th largest approximate value kept) - 2 ``margin``, ``-inf`` until the row
    has k values: a caller may skip every value of a row at or below it. Storage stays O(R k): the buffer is pruned
    when it has grown past 4 R k.
    """

    def __init__(self, num_rows: int, k: int, margin: float, device: torch.device | str) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.margin, self.num_rows = k, margin, num_rows
        self.cut = torch.full((num_rows,), -math.inf, device=device)
        self.values = torch.empty(0, device=device)
        self.rows = torch.empty(0, dtype=torch.long, device=device)
        self.cols = torch.empty(0, dtype=torch.long, device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending_size = 0

    def raise_cut(self, scores: torch.Tensor) -> None:
        """Raise ``cut`` with each row's k-th largest of ``scores`` (R, c), c >= k, a block being ``add``-ed."""
        if scores.shape[1] >= self.k:
            self.cut = torch.maximum(self.cut, scores.topk(self.k, dim=1).values[:, -1] - 2 * self.margin)

    def add(self, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
        """Candidates (n,) each; the caller leaves out what is below its row's ``cut`` (it may keep some)."""
        self._pending.append((values, rows, cols))
        self._pending_size += len(values)
        if len(self.values) + self._pending_size > 4 * self.num_rows * self.k:
            self._prune()

    def _kth(self, k: int) -> torch.Tensor:
        """(R,) each row's k-th largest kept value, ``-inf`` for rows with fewer than k."""
        return top_per_row(self.values, self.rows, self.num_rows, k)[:, k - 1]

    def _prune(self) -> None:
        parts = [(self.values, self.rows, self.cols), *self._pending]
        self.values, self.rows, self.cols = (torch.cat(column) for column in zip(*parts, strict=True))
        self._pending, self._pending_size = [], 0
        self.cut = torch.maximum(self.cut, self._kth(self.k) - 2 * self.margin)
        keep = (self.values >= self.cut[self.rows]).nonzero().squeeze(1)
        self.values, self.rows, self.cols = self.values[keep], self.rows[keep], self.cols[keep]

    def exact(
        self, rescore: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], k: int | None = None
    ) -> torch.Tensor:
        """(R, k) each row's ``k`` (default: all k) largest exact scores, descending, float64, ``-inf`` where a row
        has fewer; ``rescore(rows, columns)`` gives the exact scores of the candidates within 2 ``margin`` of the
        row's approximate k-th largest or above (the exact k largest are among them)."""
        k = self.k if k is None else min(k, self.k)
        self._prune()
        near = (self.values >= self._kth(k)[self.rows] - 2 * self.margin).nonzero().squeeze(1)
        rows = self.rows[near]
        return top_per_row(rescore(rows, self.cols[near]), rows, self.num_rows, k)


def top_per_row(values: torch.Tensor, rows: torch.Tensor, num_rows: int, k: int) -> torch.Tensor:
    """(num_rows, k) the k largest of ``values`` (n,) in each row (``rows`` (n,)), descending, ``-inf`` padded."""
    order = values.argsort(descending=True, stable=True)
    order = order[rows[order].argsort(stable=True)]  # grouped by row, descending within a row
    counts = torch.bincount(rows, minlength=num_rows)
    rank = torch.arange(len(order), device=order.device) - (torch.cumsum(counts, 0) - counts)[rows[order]]
    top = torch.full((num_rows, k), -math.inf, dtype=values.dtype, device=values.device)
    first = rank < k
    top[rows[order][first], rank[first]] = values[order][first]
    return top


def entries_at_or_above(
    scores: torch.Tensor, row_cut: torch.Tensor, tile: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, columns, values) of the entries of ``scores`` (R, C) at or above their row's ``row_cut`` (R,).

    Tiles first: the maximum of each run of ``tile`` columns (one read of the matrix, vectorized), then only the
    tiles whose maximum reaches the cut are compared entry by entry. Measured on 3,530 x 16,384 float32 scores (2
    CPU cores): a comparison and ``nonzero`` over the whole matrix 69 ms, a sixth of the product that made them;
    tiles of 32: 43 ms when 1e-3 of the entries pass (MegaFace's calibration at FAR 1e-3), 20 ms at 1e-5.
    """
    num_cols = scores.shape[1]
    whole = num_cols // tile * tile
    parts = []
    if whole:
        tiles = scores[:, :whole].unflatten(1, (whole // tile, tile))  # (R, T, tile), a view
        hot_rows, hot_tiles = (tiles.amax(dim=2) >= row_cut[:, None]).nonzero(as_tuple=True)  # (H,) each
        block = tiles[hot_rows, hot_tiles]  # (H, tile)
        index, column = (block >= row_cut[hot_rows, None]).nonzero(as_tuple=True)
        parts.append((hot_rows[index], hot_tiles[index] * tile + column, block[index, column]))
    if whole < num_cols:
        rest = scores[:, whole:]
        rows, column = (rest >= row_cut[:, None]).nonzero(as_tuple=True)
        parts.append((rows, column + whole, rest[rows, column]))
    rows, cols, values = (torch.cat(column) for column in zip(*parts, strict=True))
    return rows, cols, values
