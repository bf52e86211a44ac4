"""Streaming accumulators with bounded memory and results independent of chunk size.

:class:`OrderedSums`
    Sums over paths in a canonical order: paths are grouped in fixed blocks of
    :data:`BLOCK_PATHS` consecutive indices, each block is summed on its own, and block sums are
    added in block order. A chunk that ends inside a block leaves the rest in a carry buffer
    for the next chunk, so any chunking gives bit-identical sums.
:func:`pairwise_row_sum`
    The sum over the first axis by halving (row ``i`` += row ``i + h``): the order of the
    additions is fixed by the number of rows alone, on any backend and device, and on a GPU
    the rows never leave the device.
:class:`LogHistograms`
    Per-period histograms of log-values on a fixed grid (:data:`HIST_BINS` bins over
    ±:data:`HIST_HALF_WIDTH` around each factor's log start value; bin width 0.005, i.e. 0.5%
    relative resolution, refined by linear interpolation inside the bin). Counts are integers,
    so they too are exact and order-free. Values outside the grid fall in the edge bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

#: Paths per canonical summation block.
BLOCK_PATHS = 1024
#: Bins of each per-period histogram.
HIST_BINS = 4000
#: Half-width of the histogram grid in log units around the start value.
HIST_HALF_WIDTH = 10.0


def pairwise_row_sum(a: Any, *, xp: ModuleType = np) -> Any:
    """Sum of ``a`` over its first axis by pairwise halving, in place (``a`` is consumed).

    While ``r`` > 1 rows are left, the last ``h = r // 2`` rows are added to the first ``h``
    and ``r − h`` rows remain. The additions are elementwise (IEEE, no reduction kernel whose
    order could depend on the device), so the result depends on the values and the number of
    rows only; it is ``a.sum(axis=0)`` up to rounding. Returns the row, of shape
    ``a.shape[1:]``.
    """
    r = a.shape[0]
    if r == 0:
        return xp.zeros(a.shape[1:], dtype=a.dtype)
    while r > 1:
        h = r // 2
        a[:h] += a[r - h : r]
        r -= h
    return a[0]


class OrderedSums:
    """Per-period column sums over paths, bit-identical for any chunking (NumPy).

    Block sums are taken straight from the caller's arrays (no copy of a chunk); only the paths
    of a block that a chunk leaves unfinished are copied, into a per-period carry buffer of one
    block.

    Parameters
    ----------
    n_periods, width
        The sums have shape ``(n_periods, width)``.
    """

    def __init__(self, n_periods: int, width: int, block: int = BLOCK_PATHS) -> None:
        self.block = block
        self.width = width
        self.total = np.zeros((n_periods, width))
        self.carry: list[np.ndarray | None] = [None] * n_periods
        self.filled = [0] * n_periods

    def add(self, t: int, values: np.ndarray | Sequence[np.ndarray]) -> None:
        """Add the values of a chunk of consecutive paths for period ``t``: one array of shape
        ``(width, n)``, or parts of shape ``(w_i, n)`` stacked in order (Σ w_i = width) that
        are never concatenated."""
        parts = [values] if isinstance(values, np.ndarray) else list(values)
        rows = sum(p.shape[0] for p in parts)
        if rows != self.width:
            raise ValueError(f"values have {rows} rows, the sums {self.width}")
        n = parts[0].shape[1]
        block = self.block
        seq = [self.total[t][:, None]]  # running total, then block sums in path order
        start = 0
        filled = self.filled[t]
        if filled:  # finish the block the previous chunk left open
            start = min(block - filled, n)
            self._fill(t, parts, 0, start, filled)
            filled += start
            if filled == block:
                seq.append(self.carry[t].sum(axis=1)[:, None])
                filled = 0
        n_full = (n - start) // block
        stop = start + n_full * block
        if n_full:  # (width, n_full): small, stacked from each part's block sums
            seq.append(
                np.concatenate(
                    [p[:, start:stop].reshape(p.shape[0], n_full, block).sum(axis=2) for p in parts]
                )
            )
        if stop < n:
            self._fill(t, parts, stop, n, 0)
            filled = n - stop
        self.filled[t] = filled
        if len(seq) > 1:
            self.total[t] = np.cumsum(np.concatenate(seq, axis=1), axis=1)[:, -1]

    def _fill(self, t: int, parts: list[np.ndarray], a: int, b: int, at: int) -> None:
        """Copy paths ``a..b`` of the parts into the carry buffer of period t from column at."""
        if self.carry[t] is None:
            self.carry[t] = np.empty((self.width, self.block))
        buf = self.carry[t]
        r = 0
        for p in parts:
            buf[r : r + p.shape[0], at : at + b - a] = p[:, a:b]
            r += p.shape[0]

    def add_raw(self, totals: np.ndarray) -> None:
        """Add sums computed elsewhere (the GPU kernel), shape ``(n_periods, width)``."""
        self.total += totals

    def result(self) -> np.ndarray:
        """The sums over every path added so far."""
        out = self.total.copy()
        for t, (c, filled) in enumerate(zip(self.carry, self.filled, strict=True)):
            if filled:
                out[t] += c[:, :filled].sum(axis=1)
        return out


class LogHistograms:
    """Per-period histograms of ``F`` log-valued factors on fixed grids."""

    def __init__(self, n_periods: int, centers: np.ndarray) -> None:
        self.centers = np.asarray(centers, dtype=np.float64)
        self.lo = self.centers - HIST_HALF_WIDTH
        self.width = 2.0 * HIST_HALF_WIDTH / HIST_BINS
        self.counts = np.zeros((n_periods, self.centers.shape[0], HIST_BINS), dtype=np.int64)

    def add(self, t: int, logs: Any, *, xp: ModuleType = np) -> None:
        """Count the log-values ``logs`` of shape ``(F, n)`` for period ``t``."""
        lo = xp.asarray(self.lo)[:, None]
        idx = xp.floor((logs - lo) / self.width)
        idx = xp.clip(idx, 0, HIST_BINS - 1).astype(xp.int64)
        idx += xp.arange(self.centers.shape[0], dtype=xp.int64)[:, None] * HIST_BINS
        counts = xp.bincount(idx.ravel(), minlength=self.centers.shape[0] * HIST_BINS)
        self.counts[t] += np.asarray(
            counts.get() if hasattr(counts, "get") else counts, dtype=np.int64
        ).reshape(self.centers.shape[0], HIST_BINS)

    def quantiles(self, qs: tuple[float, ...]) -> np.ndarray:
        """Log-value quantiles, shape ``(len(qs), n_periods, F)``, interpolated within bins."""
        cum = np.cumsum(self.counts, axis=2)
        total = cum[:, :, -1:]
        out = np.empty((len(qs),) + self.counts.shape[:2])
        for i, q in enumerate(qs):
            target = q * total
            k = np.argmax(cum >= target, axis=2)[..., None]
            below = np.where(k > 0, np.take_along_axis(cum, np.maximum(k - 1, 0), axis=2), 0)
            inbin = np.take_along_axis(self.counts, k, axis=2)
            frac = np.where(inbin > 0, (target - below) / np.maximum(inbin, 1), 0.5)
            out[i] = (self.lo[None, :] + (k[..., 0] + frac[..., 0]) * self.width)[...]
        return out
