"""Stream market paths in chunks and accumulate the statistics the optimizer needs.

Per period: mean, standard deviation and 5/50/95 percentiles of every factor (percentiles from
the fixed log-space histograms of :mod:`~hashpivot.kernels.accumulate`), and per site the mean
and standard error of the mining margin per MW. Memory is bounded by the chunk size whatever the
number of paths. With NumPy, the same seed gives bit-identical statistics for any chunk size;
with CuPy the fused kernel accumulates with fp64 atomics (≤ 1e-6 relative across chunkings).

The paths can be split into fixed work items (:class:`PassBlock`, run by
:func:`run_pass_block`) whose partial sums (:class:`PartialSums`) are chained in path order by
:class:`StatsMerger`: bit-identical statistics for any number of workers. The same work items
carry the scenario reduction's work in the one market pass of
:func:`~hashpivot.kernels.reduce.simulate_and_reduce`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashpivot.scenarios import Scenario

from . import philox
from .accumulate import BLOCK_PATHS, LogHistograms, OrderedSums
from .backend import Backend, get_backend, path_executor, to_numpy
from .factors import factor_values_from_logs, feature_groups, start_logs
from .market import MarketParams, PeriodFactors, iter_periods, market_params, mining_margin

#: Scalar factors reported per period, in kernel order; power per region follows them.
SCALAR_FACTORS: tuple[str, ...] = (
    "btc_price_usd",
    "network_hashrate_eh_s",
    "hashprice_usd_per_ph_day",
    "ai_lease_usd_per_kw_month",
    "ai_occupancy",
    "gpu_hour_usd",
)
POWER_FACTOR = "power_price_usd_per_mwh"
QUANTILES = (0.05, 0.50, 0.95)
#: Default paths per chunk on the CPU (bounded memory: a few MB per period).
CPU_CHUNK_PATHS = 8192
#: Paths of one work item of the split pass (a multiple of the summation block).
SPLIT_PATHS = 65_536
#: Work items handed to an executor at a time, per worker (bounds the results held at once).
WAVE_ITEMS_PER_WORKER = 2


def factor_logs(f: PeriodFactors, xp: Any = np) -> Any:
    """Log-values (logit for occupancy) of every reported factor, shape ``(6 + R, n)``."""
    return xp.concatenate(
        [
            xp.stack([f.ln_btc, f.ln_hashrate, f.ln_hashprice, f.ln_lease, f.occ_logit, f.ln_gpu]),
            f.ln_power,
        ]
    )


@dataclass
class ChunkOutput:
    """What one chunk adds beyond the running sums: per-path features, if asked for."""

    features: np.ndarray | None = None


def numpy_chunk(
    mp: MarketParams,
    key: tuple[int, int],
    paths: np.ndarray,
    sums: OrderedSums,
    hists: LogHistograms,
    shift: np.ndarray,
    groups: np.ndarray | None,
) -> ChunkOutput:
    """Simulate one chunk with NumPy: time loop in Python, vectorised over paths."""
    n_groups = int(groups.max()) + 1 if groups is not None else 0
    feats = np.zeros((paths.shape[0], n_groups, 4 + mp.n_regions)) if groups is not None else None
    per_group = np.bincount(groups) if groups is not None else None
    for f in iter_periods(mp, key, paths):
        logs = factor_logs(f)
        vals = factor_values_from_logs(logs) - shift[:, None]
        margin = mining_margin(mp, f)
        sums.add(f.t, [vals, vals * vals, margin, margin * margin])
        hists.add(f.t, logs)
        if feats is not None:
            g = groups[f.t]
            occ = -np.log1p(np.exp(-f.occ_logit))
            row = np.concatenate(
                [np.stack([f.ln_hashprice, f.ln_btc, f.ln_lease + occ, f.ln_gpu]), f.ln_power]
            )
            feats[:, g, :] += row.T / per_group[g]
    return ChunkOutput(feats.reshape(paths.shape[0], -1) if feats is not None else None)


@dataclass
class FactorStats:
    """Per-period statistics of one factor (arrays of length T)."""

    mean: np.ndarray
    std: np.ndarray
    p05: np.ndarray
    p50: np.ndarray
    p95: np.ndarray

    def to_json(self) -> dict[str, list[float]]:
        return {
            k: [float(x) for x in getattr(self, k)] for k in ("mean", "std", "p05", "p50", "p95")
        }


@dataclass
class SimulationResult:
    """Statistics of a simulation run (DESIGN.md §4), all NumPy arrays on the host."""

    scenario: str
    paths: int
    seed: int
    backend: str
    device: str
    seconds: float
    chunk_paths: int
    hours_per_period: float
    period_starts: list[str]
    t_years: np.ndarray
    factors: dict[str, FactorStats]
    power: dict[str, FactorStats]
    site_names: list[str]
    margin_mean_usd_per_mw: np.ndarray
    margin_stderr_usd_per_mw: np.ndarray
    features: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The content of ``simulation.json``."""
        factors: dict[str, Any] = {k: v.to_json() for k, v in self.factors.items()}
        factors[POWER_FACTOR] = {r: v.to_json() for r, v in self.power.items()}
        return {
            "scenario": self.scenario,
            "paths": self.paths,
            "seed": self.seed,
            "backend": self.backend,
            "device": self.device,
            "seconds": self.seconds,
            "chunk_paths": self.chunk_paths,
            "hours_per_period": self.hours_per_period,
            "periods": [
                {"index": i, "start": s, "t_years": float(t)}
                for i, (s, t) in enumerate(zip(self.period_starts, self.t_years, strict=True))
            ],
            "factors": factors,
            "sites": {
                name: {
                    "mining_margin_usd_per_mw": {
                        "mean": [float(x) for x in self.margin_mean_usd_per_mw[i]],
                        "stderr": [float(x) for x in self.margin_stderr_usd_per_mw[i]],
                    }
                }
                for i, name in enumerate(self.site_names)
            },
        }


def _stats(
    sums: np.ndarray, n: int, shift: np.ndarray, q: np.ndarray, occ_row: int
) -> list[FactorStats]:
    f = shift.shape[0]
    s1 = sums[:, :f]
    s2 = sums[:, f : 2 * f]
    mean_shifted = s1 / n
    var = np.clip((s2 - n * mean_shifted**2) / max(n - 1, 1), 0.0, None)
    mean = mean_shifted + shift[None, :]
    vals = np.exp(q)
    vals[:, :, occ_row] = 1.0 / (1.0 + np.exp(-q[:, :, occ_row]))
    return [
        FactorStats(mean[:, i], np.sqrt(var[:, i]), vals[0, :, i], vals[1, :, i], vals[2, :, i])
        for i in range(f)
    ]


def default_chunk_paths(backend: Backend, mp: MarketParams) -> int:
    """Paths per chunk: bounded host memory on the CPU; from free device memory on a GPU."""
    if not backend.is_gpu:
        return CPU_CHUNK_PATHS
    from .cuda import gpu_chunk_paths  # noqa: PLC0415

    return gpu_chunk_paths(mp)


# --------------------------------------------------------------------------- split pass
class PartialSums:
    """Per-period sums of a run of consecutive paths that starts at any path index, kept in the
    parts that :meth:`merge_into` chains onto an :class:`OrderedSums` exactly as if its paths
    had been added there: the paths before the first block boundary (``lead``, raw), the sum
    of each whole block of :data:`BLOCK_PATHS` paths (``blocks``), and the paths after the last
    boundary (``trail``, raw). Block sums are taken as :class:`OrderedSums` takes them, so a
    pass split into work items gives bit-identical sums.

    Parameters
    ----------
    n_periods, width
        The sums have shape ``(n_periods, width)``.
    start
        Global index of the first path added.
    xp
        Array module of the values (block sums are taken there; parts come back as NumPy).
    """

    def __init__(
        self, n_periods: int, width: int, start: int, xp: Any = np, block: int = BLOCK_PATHS
    ) -> None:
        self.width = width
        self.block = block
        self.xp = xp
        self.lead_len = (-start) % block
        self.added = [0] * n_periods
        self.lead: list[list[Any]] = [[] for _ in range(n_periods)]
        self.blocks: list[list[Any]] = [[] for _ in range(n_periods)]
        self.carry: list[list[Any]] = [[] for _ in range(n_periods)]
        self.filled = [0] * n_periods

    def add(self, t: int, parts: list[Any]) -> None:
        """Add the values of the next consecutive paths for period ``t``: parts of shape
        ``(w_i, n)`` stacked in order (Σ w_i = width)."""
        xp = self.xp
        n = parts[0].shape[1]
        block = self.block
        i = 0
        pos = self.added[t]
        if pos < self.lead_len:
            i = min(self.lead_len - pos, n)
            self.lead[t].append(xp.concatenate([p[:, :i] for p in parts]))
        elif self.filled[t]:
            i = min(block - self.filled[t], n)
            self.carry[t].append(xp.concatenate([p[:, :i] for p in parts]))
            self.filled[t] += i
            if self.filled[t] == block:
                buf = xp.concatenate(self.carry[t], axis=1)
                self.blocks[t].append(buf.sum(axis=1)[:, None])
                self.carry[t] = []
                self.filled[t] = 0
        n_full = (n - i) // block
        stop = i + n_full * block
        if n_full:
            self.blocks[t].append(
                xp.concatenate(
                    [p[:, i:stop].reshape(p.shape[0], n_full, block).sum(axis=2) for p in parts]
                )
            )
        if stop < n:
            self.carry[t].append(xp.concatenate([p[:, stop:] for p in parts]))
            self.filled[t] += n - stop
        self.added[t] = pos + n

    def parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lead, blocks, trail)`` as NumPy arrays of shape ``(T, width, ·)``; ``blocks``
        holds one column per whole block."""

        def stack(pieces: list[list[Any]]) -> np.ndarray:
            return np.stack(
                [
                    to_numpy(self.xp.concatenate(p, axis=1)) if p else np.empty((self.width, 0))
                    for p in pieces
                ]
            )

        return stack(self.lead), stack(self.blocks), stack(self.carry)


def merge_into(sums: OrderedSums, lead: np.ndarray, blocks: np.ndarray, trail: np.ndarray) -> None:
    """Chain the parts of a :class:`PartialSums` onto ``sums`` (whose paths end where the
    partial sums' paths start), bit-identically to adding the paths themselves."""
    n_periods = lead.shape[0]
    if lead.shape[2]:
        for t in range(n_periods):
            sums.add(t, lead[t])
    for j in range(blocks.shape[2]):  # the lead closed the open block: chain whole blocks
        sums.add_raw(blocks[:, :, j])
    if trail.shape[2]:
        for t in range(n_periods):
            sums.add(t, trail[t])


@dataclass(frozen=True)
class PassBlock:
    """One work item of the streaming market pass: paths ``start .. stop`` in chunks.

    ``consumer`` (duck-typed, picklable) adds work to the pass: ``consumer.new(start, stop,
    xp)`` returns an accumulator with ``begin(paths)``, ``period(f, logs, margin)`` for every
    period of a chunk (``margin`` is None when the accumulator's ``needs_margin`` is False and
    no statistics are taken), ``end()`` after it and ``result()`` at the end of the item.
    """

    mp: MarketParams
    key: tuple[int, int]
    start: int
    stop: int
    chunk: int
    backend: str
    statistics: bool = True
    groups: np.ndarray | None = None
    feature_paths: int = 0
    consumer: Any = None


@dataclass
class PassPart:
    """What one :class:`PassBlock` returns (NumPy arrays; ``extra`` is the consumer's)."""

    start: int
    stop: int
    sums: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    hist_counts: np.ndarray | None
    features: np.ndarray | None
    extra: Any = None


def _stat_width(mp: MarketParams) -> int:
    return 2 * (6 + mp.n_regions) + 2 * mp.n_sites


def run_pass_block(block: PassBlock, progress: Callable[[int], None] | None = None) -> PassPart:
    """Simulate the paths of one work item once: the statistics of :func:`simulate` as
    partial sums and histogram counts, and whatever the consumer computes from the same
    periods. ``progress`` gets the paths done in this item after each chunk."""
    be = get_backend(block.backend, notify=False)
    xp = be.xp
    mp = block.mp
    shift = start_logs(mp)
    shift_vals = factor_values_from_logs(shift[:, None].copy())[:, 0]
    d_shift = xp.asarray(shift_vals)[:, None]
    stats = block.statistics
    psums = PartialSums(mp.n_periods, _stat_width(mp), block.start, xp) if stats else None
    hists = LogHistograms(mp.n_periods, shift) if stats else None
    acc = block.consumer.new(block.start, block.stop, xp) if block.consumer is not None else None
    need_margin = stats or (acc is not None and getattr(acc, "needs_margin", True))
    groups = block.groups
    feats: list[np.ndarray] = []
    for a in range(block.start, block.stop, block.chunk):
        b = min(block.stop, a + block.chunk)
        idx = xp.arange(a, b, dtype=xp.int64)
        fe = None
        if stats and groups is not None and a < block.feature_paths:
            per_group = np.bincount(groups)
            fe = xp.zeros((b - a, int(groups.max()) + 1, 4 + mp.n_regions))
        if acc is not None:
            acc.begin(idx)
        for f in iter_periods(mp, block.key, idx, xp=xp):
            logs = factor_logs(f, xp)
            margin = mining_margin(mp, f, xp=xp) if need_margin else None
            if stats:
                vals = factor_values_from_logs(logs, xp) - d_shift
                psums.add(f.t, [vals, vals * vals, margin, margin * margin])
                hists.add(f.t, logs, xp=xp)
                if fe is not None:
                    g = groups[f.t]
                    occ = -xp.log1p(xp.exp(-f.occ_logit))
                    row = xp.concatenate(
                        [
                            xp.stack([f.ln_hashprice, f.ln_btc, f.ln_lease + occ, f.ln_gpu]),
                            f.ln_power,
                        ]
                    )
                    fe[:, g, :] += row.T / per_group[g]
            if acc is not None:
                acc.period(f, logs, margin)
        if acc is not None:
            acc.end()
        if fe is not None:
            feats.append(to_numpy(fe.reshape(b - a, -1)[: block.feature_paths - a]))
        if progress is not None:
            progress(b - block.start)
    return PassPart(
        start=block.start,
        stop=block.stop,
        sums=psums.parts() if psums is not None else None,
        hist_counts=hists.counts if hists is not None else None,
        features=np.concatenate(feats) if feats else None,
        extra=acc.result() if acc is not None else None,
    )


def item_bounds(start: int, stop: int, item_paths: int) -> list[tuple[int, int]]:
    """Work items ``[a, b)`` of ``item_paths`` paths from ``start`` (the last may be short):
    they depend on the paths only, never on the number of workers."""
    return [(a, min(stop, a + item_paths)) for a in range(start, stop, item_paths)]


def run_blocks(
    blocks: list[PassBlock],
    executor: Any = None,
    progress: Callable[[int], None] | None = None,
    resources: dict[str, float] | None = None,
) -> Iterator[PassPart]:
    """The parts of ``blocks`` in block order: here one after the other (``progress`` gets
    the paths done after each chunk), or on ``executor`` (``.map(fn, items, **resources)``,
    results in input order) in waves of a few items per worker, so the parts held at once
    stay bounded."""
    if executor is None:
        done = 0
        for blk in blocks:
            cb = (lambda n, d=done: progress(d + n)) if progress else None
            yield run_pass_block(blk, cb)
            done += blk.stop - blk.start
        return
    wave = max(1, int(getattr(executor, "workers", 1))) * WAVE_ITEMS_PER_WORKER
    done = 0
    for i in range(0, len(blocks), wave):
        for part in executor.map(run_pass_block, blocks[i : i + wave], **(resources or {})):
            done += part.stop - part.start
            if progress is not None:
                progress(done)
            yield part


class StatsMerger:
    """Merges the statistics of :class:`PassPart` objects in path order into a
    :class:`SimulationResult` (bit-identical to :func:`simulate` on the same paths)."""

    def __init__(self, mp: MarketParams) -> None:
        self.mp = mp
        shift = start_logs(mp)
        self.shift_vals = factor_values_from_logs(shift[:, None].copy())[:, 0]
        self.sums = OrderedSums(mp.n_periods, _stat_width(mp))
        self.hists = LogHistograms(mp.n_periods, shift)
        self.features: list[np.ndarray] = []
        self.next = 0

    def merge(self, part: PassPart) -> None:
        if part.start != self.next:
            raise ValueError(f"parts out of order: expected path {self.next}, got {part.start}")
        merge_into(self.sums, *part.sums)
        self.hists.counts += part.hist_counts
        if part.features is not None:
            self.features.append(part.features)
        self.next = part.stop

    def result(
        self, scenario: Scenario, seed: int, be: Backend, seconds: float, chunk: int
    ) -> SimulationResult:
        features = np.concatenate(self.features) if self.features else None
        return _result(
            scenario, self.mp, self.next, seed, be, seconds, chunk, self.sums, self.hists, features
        )


def _result(
    scenario: Scenario,
    mp: MarketParams,
    paths: int,
    seed: int,
    be: Backend,
    seconds: float,
    chunk: int,
    sums: OrderedSums,
    hists: LogHistograms,
    features: np.ndarray | None,
) -> SimulationResult:
    shift = start_logs(mp)
    shift_vals = factor_values_from_logs(shift[:, None].copy())[:, 0]
    nf = shift.shape[0]
    total = sums.result()
    q = hists.quantiles(QUANTILES)
    stats = _stats(total[:, : 2 * nf], paths, shift_vals, q, occ_row=4)
    m1 = total[:, 2 * nf : 2 * nf + mp.n_sites].T
    m2 = total[:, 2 * nf + mp.n_sites :].T
    m_mean = m1 / paths
    m_var = np.clip((m2 - paths * m_mean**2) / max(paths - 1, 1), 0.0, None)
    h = scenario.horizon
    return SimulationResult(
        scenario=scenario.name,
        paths=paths,
        seed=seed,
        backend=be.name,
        device=be.device,
        seconds=seconds,
        chunk_paths=chunk,
        hours_per_period=h.hours_per_period,
        period_starts=[str(h.period_start(t)) for t in range(h.n_periods)],
        t_years=mp.t_years(),
        factors=dict(zip(SCALAR_FACTORS, stats[:6], strict=True)),
        power=dict(zip(mp.region_names, stats[6:], strict=True)),
        site_names=list(mp.site_names),
        margin_mean_usd_per_mw=m_mean,
        margin_stderr_usd_per_mw=np.sqrt(m_var / paths),
        features=features,
    )


def simulate(
    scenario: Scenario,
    paths: int,
    seed: int,
    *,
    backend: str | Backend | None = None,
    chunk_paths: int | None = None,
    feature_paths: int = 0,
    progress: Callable[[int, int], None] | None = None,
    executor: Any = None,
    split_paths: int = SPLIT_PATHS,
) -> SimulationResult:
    """Simulate ``paths`` market paths and accumulate their statistics.

    Parameters
    ----------
    scenario
        A validated scenario.
    paths
        Number of Monte Carlo paths.
    seed
        Seed of the counter-based generator.
    backend
        ``auto``, ``numpy``, ``cupy`` or a :class:`Backend`; ``None`` reads the environment.
    chunk_paths
        Paths per chunk (default: from memory). Results do not depend on it.
    feature_paths
        Keep per-path features (yearly mean log-factors) of the first this many paths (none
        by default: the scenario reduction computes its own in
        :func:`~hashpivot.kernels.reduce.simulate_and_reduce`).
    progress
        Called with (paths done, paths total) after each chunk.
    executor
        Split the paths into fixed work items of ``split_paths`` paths run on this executor
        (``.map(fn, items, **resources)``, results in order; a GPU item asks for ``GPU=1``);
        the statistics are bit-identical to a run here (NumPy; on CuPy the work items run the
        array-module path of the NumPy kernels, not the fused kernel). ``None``: run here.
    """
    if paths < 1:
        raise ValueError(f"paths must be >= 1, got {paths}")
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    mp = market_params(scenario)
    key = philox.seed_key(seed)
    groups = feature_groups(mp, scenario.horizon.periods_per_year)
    executor = path_executor(be, executor)
    chunk = int(chunk_paths or default_chunk_paths(be, mp))
    if chunk < 1:
        raise ValueError(f"chunk_paths must be >= 1, got {chunk}")
    start = time.perf_counter()
    if executor is not None:
        merger = StatsMerger(mp)
        blocks = [
            PassBlock(mp, key, a, b, min(chunk, split_paths), be.name, True, groups, feature_paths)
            for a, b in item_bounds(0, paths, split_paths)
        ]
        cb = (lambda d: progress(d, paths)) if progress else None
        for part in run_blocks(blocks, executor, cb, {"GPU": 1} if be.is_gpu else None):
            merger.merge(part)
        return merger.result(scenario, seed, be, time.perf_counter() - start, chunk)
    shift = start_logs(mp)
    shift_vals = factor_values_from_logs(shift[:, None].copy())[:, 0]
    sums = OrderedSums(mp.n_periods, _stat_width(mp))
    hists = LogHistograms(mp.n_periods, shift)
    feats: list[np.ndarray] = []
    if be.is_gpu:
        from .cuda import simulate_gpu  # noqa: PLC0415

        chunk, feats = simulate_gpu(
            mp, key, paths, chunk, sums, hists, shift_vals, groups, feature_paths, progress
        )
    else:
        done = 0
        while done < paths:
            n = min(chunk, paths - done)
            idx = np.arange(done, done + n, dtype=np.int64)
            want = groups if done < feature_paths else None
            out = numpy_chunk(mp, key, idx, sums, hists, shift_vals, want)
            if out.features is not None:
                feats.append(out.features[: max(0, feature_paths - done)])
            done += n
            if progress:
                progress(done, paths)
    seconds = time.perf_counter() - start
    features = np.concatenate(feats) if feats else None
    return _result(scenario, mp, paths, seed, be, seconds, chunk, sums, hists, features)
