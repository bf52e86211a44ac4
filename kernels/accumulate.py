"""Streaming accumulators with bounded memory and results independent of chunk size.

:class:`OrderedSums`
    Sums over paths in a canonical order: paths are grouped in fixed blocks of
    :data:`BLOCK_PATHS` consecutive indices, each block is summed on its own, and block sums are
    added in block order. A chunk that ends inside a block leaves the rest in a carry buffer
    for the next chunk, so any chunking gives bit-identical sums.
:class:`LogHistograms`
    Per-period histograms of log-values on a fixed grid (:data:`HIST_BINS` bins over
    ±:data:`HIST_HALF_WIDTH` around each factor's log start value; bin width 0.005, i.e. 0.5%
    relative resolution, refined by linear interpolation inside the bin). Counts are integers,
    so they too are exact and order-free. Values outside the grid fall in the edge bins.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

#: Paths per canonical summation block.
BLOCK_PATHS = 1024
#: Bins of each per-period histogram.
HIST_BINS = 4000
#: Half-width of the histogram grid in log units around the start value.
HIST_HALF_WIDTH = 10.0


class OrderedSums:
    """Per-period column sums over paths, bit-identical for any chunking (NumPy).

    Parameters
    ----------
    n_periods, width
        The sums have shape ``(n_periods, width)``.
    """

    def __init__(self, n_periods: int, width: int, block: int = BLOCK_PATHS) -> None:
        self.block = block
        self.total = np.zeros((n_periods, width))
        self.carry: list[np.ndarray] = [np.empty((width, 0)) for _ in range(n_periods)]

    def add(self, t: int, values: np.ndarray) -> None:
        """Add the values of a chunk of consecutive paths, shape ``(width, n)``, for period t."""
        v = np.concatenate([self.carry[t], values], axis=1) if self.carry[t].size else values
        n_full = v.shape[1] // self.block
        if n_full:
            w = v.shape[0]
            blocks = v[:, : n_full * self.block].reshape(w, n_full, self.block).sum(axis=2)
            seq = np.concatenate([self.total[t][:, None], blocks], axis=1)
            self.total[t] = np.cumsum(seq, axis=1)[:, -1]
        self.carry[t] = np.ascontiguousarray(v[:, n_full * self.block :])

    def add_raw(self, totals: np.ndarray) -> None:
        """Add sums computed elsewhere (the GPU kernel), shape ``(n_periods, width)``."""
        self.total += totals

    def result(self) -> np.ndarray:
        """The sums over every path added so far."""
        out = self.total.copy()
        for t, c in enumerate(self.carry):
            if c.size:
                out[t] += c.sum(axis=1)
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
