"""Stream market paths in chunks and accumulate the statistics the optimizer needs.

Per period: mean, standard deviation and 5/50/95 percentiles of every factor (percentiles from
the fixed log-space histograms of :mod:`~hashpivot.kernels.accumulate`), and per site the mean
and standard error of the mining margin per MW. Memory is bounded by the chunk size whatever the
number of paths. With NumPy, the same seed gives bit-identical statistics for any chunk size;
with CuPy the fused kernel accumulates with fp64 atomics (≤ 1e-6 relative across chunkings).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashpivot.scenarios import Scenario

from . import philox
from .accumulate import LogHistograms, OrderedSums
from .backend import Backend, get_backend
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
#: Paths whose per-path features are kept for the scenario reduction.
FEATURE_PATHS = 20_000


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


def simulate(
    scenario: Scenario,
    paths: int,
    seed: int,
    *,
    backend: str | Backend | None = None,
    chunk_paths: int | None = None,
    feature_paths: int = FEATURE_PATHS,
    progress: Callable[[int, int], None] | None = None,
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
        Keep per-path features (yearly mean log-factors) of the first this many paths.
    progress
        Called with (paths done, paths total) after each chunk.
    """
    if paths < 1:
        raise ValueError(f"paths must be >= 1, got {paths}")
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    mp = market_params(scenario)
    key = philox.seed_key(seed)
    shift = start_logs(mp)
    shift_vals = factor_values_from_logs(shift[:, None].copy())[:, 0]
    nf = shift.shape[0]
    sums = OrderedSums(mp.n_periods, 2 * nf + 2 * mp.n_sites)
    hists = LogHistograms(mp.n_periods, shift)
    groups = feature_groups(mp, scenario.horizon.periods_per_year)
    chunk = int(chunk_paths or default_chunk_paths(be, mp))
    if chunk < 1:
        raise ValueError(f"chunk_paths must be >= 1, got {chunk}")
    feats: list[np.ndarray] = []
    start = time.perf_counter()
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
        features=np.concatenate(feats) if feats else None,
    )
