r"""Scenario reduction: N simulated paths → K weighted scenarios of coefficient trajectories.

1. **Pilot.** The first ``pilot_paths`` paths give per-path features (yearly mean log hashprice,
   log BTC price, log lease rate × occupancy, log GPU-hour price, log power per region) and a
   risk score (the mean of the standardised horizon averages of log hashprice, log BTC and log
   AI market revenue: low is bad for every site and for the treasury).
2. **Tail.** Paths whose score falls below the pilot's ``tail_share`` quantile form the tail,
   with ``tail_share = max(1 − cvar_alpha, 1 − covenants.confidence)`` — the outcomes CVaR
   and the chance covenants look at. The tail gets its own ``K_tail`` clusters, the body
   ``K − K_tail``; centroids by k-means (k-means++ seeding from the seed) on the pilot.
3. **Assignment.** Every path is assigned to the nearest centroid of its group; per cluster
   the sums of every coefficient trajectory (taken per block of :func:`reduce_block_paths`
   paths, chained in path order) and the path count are accumulated.

All of it is **one market pass** (:func:`simulate_and_reduce`, also behind
:func:`reduce_scenarios`): each path is simulated once, in chunks (bounded memory). The pilot
range goes first; its factor logs (T·(6 + R) floats a path) are kept until the centroids are
known, then its cluster sums and the medoids' coefficients are computed from them (not
re-simulated); the rest of the paths follow in fixed work items, here or on an executor, and
give the same bits whatever the chunk size or the number of workers.
4. **Scenarios.** Scenario k has weight p_k = n_k / N. With ``method="mean"`` it is the
   cluster mean, so Σ_k p_k·c̄_k = Σ_paths c / N. With ``method="medoid"`` (default) it is the
   pilot path nearest the centroid, scaled per coefficient and period by
   c̄ / Σ_k p_k·c_k(medoid) where that factor is within [1/2, 2], shifted by their difference
   elsewhere (:func:`match_means`: a ratio of means near zero, as margins near break-even have,
   would blow the medoids up), which gives the same weighted means while keeping the dispersion
   of real paths. Either way the weighted mean of every coefficient equals the full-sample mean
   (up to rounding) and the weights sum to one. Empty clusters are dropped.

Coefficients per scenario and period: mining margin per MW per site [$/MW/period], BTC price
[$/BTC], power price per region [$/MWh], market lease rate [$/kW-month], occupancy [-],
lease rate × occupancy [$/kW-month], GPU-hour price [$/GPU-h], and per lease offer the share of
paths whose tenant has not defaulted (survival) and the share defaulted at least the re-leasing
gap earlier (re-let share).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashpivot.scenarios import Scenario

from . import philox
from .backend import Backend, get_backend, get_namespace, path_executor, to_numpy
from .market import (
    MarketParams,
    PeriodFactors,
    Shocks,
    iter_periods,
    market_params,
    mining_margin,
    tenant_default_periods,
)
from .sampling import Sampling, lhs_shocks
from .simulate import (
    SPLIT_PATHS,
    PassBlock,
    SimulationResult,
    StatsMerger,
    item_bounds,
    run_blocks,
    run_pass_block,
)

#: Paths used to place the centroids.
PILOT_PATHS = 20_000
#: Iterations of Lloyd's algorithm.
KMEANS_ITERS = 30
#: Upper bound on the tail share of paths.
MAX_TAIL_SHARE = 0.5
#: Coefficient elements (periods × columns × paths) per chunk of the assignment pass.
CHUNK_ELEMENTS = 8_000_000
#: Coefficient elements per chunk on a GPU: the array-module path launches a few kernels per
#: period and chunk, so chunks must be large for the launches not to dominate (about 3 GB of
#: coefficients; the cluster sums are still taken per block, so results do not change).
GPU_CHUNK_ELEMENTS = 400_000_000


@dataclass
class ReducedScenarios:
    """K weighted scenarios of coefficient trajectories (NumPy arrays on the host).

    Shapes: ``(K,)`` for weights, ``(K, T)`` for scalar factors, ``(K, S, T)`` for margins,
    ``(K, R, T)`` for power, ``(K, L, T)`` for lease survival.
    """

    weights: np.ndarray
    is_tail: np.ndarray
    path_counts: np.ndarray
    margin_usd_per_mw: np.ndarray
    btc_price_usd: np.ndarray
    power_usd_per_mwh: np.ndarray
    lease_rate_usd_per_kw_month: np.ndarray
    occupancy: np.ndarray
    lease_x_occupancy: np.ndarray
    gpu_hour_usd: np.ndarray
    tenant_survival: np.ndarray
    tenant_relet: np.ndarray
    paths: int = 0
    seed: int = 0
    #: Seconds of the reduction proper within its pass (clustering, pilot sums, medoids).
    seconds: float = 0.0
    full_means: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_scenarios(self) -> int:
        return int(self.weights.shape[0])

    def coefficient_arrays(self) -> dict[str, np.ndarray]:
        """Every coefficient array by name (scenario axis first)."""
        return {
            name: getattr(self, name)
            for name in (
                "margin_usd_per_mw",
                "btc_price_usd",
                "power_usd_per_mwh",
                "lease_rate_usd_per_kw_month",
                "occupancy",
                "lease_x_occupancy",
                "gpu_hour_usd",
                "tenant_survival",
                "tenant_relet",
            )
        }

    def weighted_means(self) -> dict[str, np.ndarray]:
        """Σ_k p_k·coefficient_k for every coefficient."""
        return {
            k: np.tensordot(self.weights, v, axes=1) for k, v in self.coefficient_arrays().items()
        }


# --------------------------------------------------------------------------- per-path data
class _PathData:
    """Features (n, G·(4+R)), risk score inputs (n, 3) and, if asked for, the coefficient
    trajectories of a chunk of paths, filled one period at a time."""

    def __init__(
        self, mp: MarketParams, n: int, ppy: int, xp: Any, *, features: bool, coefficients: bool
    ) -> None:
        self.mp, self.n, self.xp = mp, n, xp
        t_count = mp.n_periods
        self.groups = np.arange(t_count) // ppy
        self.per_group = np.bincount(self.groups)
        n_groups = int(self.groups[-1]) + 1
        self.feats = xp.zeros((n, n_groups, 4 + mp.n_regions)) if features else None
        self.score = xp.zeros((n, 3)) if features else None
        self.co: dict[str, Any] = (
            {}
            if not coefficients
            else {
                "margin_usd_per_mw": xp.empty((n, mp.n_sites, t_count)),
                "btc_price_usd": xp.empty((n, t_count)),
                "power_usd_per_mwh": xp.empty((n, mp.n_regions, t_count)),
                "lease_rate_usd_per_kw_month": xp.empty((n, t_count)),
                "occupancy": xp.empty((n, t_count)),
                "gpu_hour_usd": xp.empty((n, t_count)),
            }
        )

    def add(self, f: PeriodFactors, margin: Any = None) -> None:
        """Add period ``f.t``; ``margin`` (S, n) is :func:`mining_margin` of ``f`` (computed
        here when not given)."""
        xp, co, t = self.xp, self.co, f.t
        occ = 1.0 / (1.0 + xp.exp(-f.occ_logit))
        if co:
            if margin is None:
                margin = mining_margin(self.mp, f, xp=xp)
            co["margin_usd_per_mw"][:, :, t] = margin.T
            co["btc_price_usd"][:, t] = xp.exp(f.ln_btc)
            co["power_usd_per_mwh"][:, :, t] = xp.exp(f.ln_power).T
            co["lease_rate_usd_per_kw_month"][:, t] = xp.exp(f.ln_lease)
            co["occupancy"][:, t] = occ
            co["gpu_hour_usd"][:, t] = xp.exp(f.ln_gpu)
        if self.feats is not None:
            ln_ai = f.ln_lease + xp.log(occ)
            row = xp.concatenate(
                [xp.stack([f.ln_hashprice, f.ln_btc, ln_ai, f.ln_gpu]), f.ln_power]
            )
            g = self.groups[t]
            self.feats[:, g, :] += row.T / self.per_group[g]
            self.score += xp.stack([f.ln_hashprice, f.ln_btc, ln_ai], axis=1) / self.mp.n_periods

    def finish(self, first: Any, relet_gap: int) -> tuple[Any, Any, dict[str, Any]]:
        """(features, score, coefficients) once every period is in; ``first`` (L, n) are the
        tenants' default periods (:func:`tenant_default_periods`)."""
        xp, co = self.xp, self.co
        feats = self.feats.reshape(self.n, -1) if self.feats is not None else None
        if co:
            co["lease_x_occupancy"] = co["lease_rate_usd_per_kw_month"] * co["occupancy"]
            t_idx = xp.arange(self.mp.n_periods)[None, None, :]
            co["tenant_survival"] = (first.T[:, :, None] > t_idx).astype(xp.float64)
            co["tenant_relet"] = (first.T[:, :, None] + relet_gap <= t_idx).astype(xp.float64)
        return feats, self.score, co


def _features_and_coefficients(
    mp: MarketParams,
    key: tuple[int, int],
    paths: Any,
    relet_gap: int,
    ppy: int,
    xp: Any,
    *,
    coefficients: bool = True,
    shocks: Shocks | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Features (n, G·(4+R)), risk score inputs (n, 3) and, unless ``coefficients`` is False,
    the coefficient trajectories of a chunk (simulated here; from ``shocks`` where given)."""
    pd = _PathData(mp, paths.shape[0], ppy, xp, features=True, coefficients=coefficients)
    for f in iter_periods(mp, key, paths, xp=xp, shocks=shocks):
        pd.add(f)
    first = tenant_default_periods(mp, key, paths, xp=xp) if coefficients else None
    return pd.finish(first, relet_gap)


def _factors_from_logs(t: int, logs: Any, xp: Any) -> PeriodFactors:
    """The :class:`PeriodFactors` of period ``t`` from its :func:`factor_logs` rows (6 + R, n),
    as contiguous arrays (the same values, and the same vectorised code paths, as the pass)."""
    c = xp.ascontiguousarray
    return PeriodFactors(
        t, c(logs[0]), c(logs[1]), c(logs[2]), c(logs[6:]), c(logs[3]), c(logs[4]), c(logs[5])
    )


def _coefficients_from_logs(
    mp: MarketParams, logs: Any, first: Any, relet_gap: int, ppy: int, xp: Any
) -> dict[str, Any]:
    """Coefficient trajectories of paths whose factor logs (T, 6 + R, n) and default periods
    (L, n) were kept: bit-identical to simulating them again."""
    pd = _PathData(mp, logs.shape[2], ppy, xp, features=False, coefficients=True)
    for t in range(mp.n_periods):
        pd.add(_factors_from_logs(t, logs[t], xp))
    return pd.finish(first, relet_gap)[2]


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Centroids by k-means++ seeding and Lloyd iterations (deterministic given ``rng``)."""
    k = min(k, x.shape[0])
    centers = [x[rng.integers(x.shape[0])]]
    d2 = ((x - centers[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0.0:
            break
        nxt = x[rng.choice(x.shape[0], p=d2 / total)]
        centers.append(nxt)
        d2 = np.minimum(d2, ((x - nxt) ** 2).sum(axis=1))
    c = np.array(centers)
    for _ in range(KMEANS_ITERS):
        labels = _nearest(x, c)
        new = np.array(
            [x[labels == j].mean(axis=0) if np.any(labels == j) else c[j] for j in range(len(c))]
        )
        if np.allclose(new, c):
            break
        c = new
    return c


def _nearest(x: Any, c: Any) -> Any:
    """Index of the nearest centroid of each row (squared Euclidean distance)."""
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ c.T + (c * c).sum(axis=1)[None, :]
    return d.argmin(axis=1)


def tail_share(sc: Scenario) -> float:
    """Share of paths reduced separately as the tail."""
    return min(MAX_TAIL_SHARE, max(1.0 - sc.risk.cvar_alpha, 1.0 - sc.covenants.confidence))


#: Coefficients kept as cluster means under ``method="medoid"`` (0/1 per path, so scaling a
#: representative path could leave [0, 1]).
MEAN_ONLY = ("tenant_survival", "tenant_relet")
METHODS = ("medoid", "mean")
#: Largest factor (and smallest, its inverse) by which a medoid coefficient is scaled to match the
#: full-sample mean; beyond it the medoids are shifted instead.
MAX_SCALE_FACTOR = 2.0


def match_means(rep: np.ndarray, weights: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Correct representative trajectories so their weighted mean equals ``full`` exactly.

    Per entry (coefficient, period), the medoids are scaled by ``full / mixed`` (``mixed`` their
    weighted mean) when that factor lies within [1/MAX_SCALE_FACTOR, MAX_SCALE_FACTOR]: this keeps
    signs and relative dispersion of positive quantities. Elsewhere (a weighted mean near zero or
    of the other sign, as mining margins near break-even are) a ratio would blow the medoids up
    or flip them, so they are shifted by ``full − mixed`` instead.

    Parameters
    ----------
    rep
        Representative trajectories, scenario axis first, (K, ...).
    weights
        Scenario weights p_k, (K,), summing to one.
    full
        Full-sample means, ``rep.shape[1:]``.
    """
    mixed = np.tensordot(weights, rep, axes=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = full / mixed
    scale = np.isfinite(factor) & (factor >= 1.0 / MAX_SCALE_FACTOR) & (factor <= MAX_SCALE_FACTOR)
    return np.where(
        scale[None], rep * np.where(scale, factor, 1.0)[None], rep + (full - mixed)[None]
    )


def _nearest_members(z: np.ndarray, members: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index (into z) of the member row nearest to each centroid."""
    if not len(centers):
        return np.empty(0, dtype=np.int64)
    rows = np.flatnonzero(members)
    return rows[_nearest(centers, z[rows])]


def _coefficient_elements(mp: MarketParams) -> int:
    """Coefficient elements of one path (periods × columns)."""
    return mp.n_periods * (mp.n_sites + mp.n_regions + 6 + 2 * mp.lease_default_hazard.shape[0])


def reduce_block_paths(mp: MarketParams) -> int:
    """Paths per block of the coefficient sums (about :data:`CHUNK_ELEMENTS` coefficient
    elements): cluster sums are taken per block and chained in block order, so they depend on
    the scenario's dimensions only, never on chunks or workers."""
    return max(256, CHUNK_ELEMENTS // max(_coefficient_elements(mp), 1))


@dataclass(frozen=True)
class _Clusters:
    """What the assignment needs from the pilot: feature and score scaling, the tail
    threshold and the centroids (body first, then tail)."""

    f_mu: np.ndarray
    f_sd: np.ndarray
    s_mu: np.ndarray
    s_sd: np.ndarray
    threshold: float
    centers: np.ndarray
    n_body: int

    def sums(self, feats: Any, score: Any, co: dict[str, Any], xp: Any) -> tuple[Any, Any]:
        """Path counts (K,) and per-cluster sums of every coefficient of one block of paths
        (nearest centroid of the path's group: tail when its risk score is at or below the
        threshold), as arrays of ``xp`` (:func:`_to_host` copies them)."""
        k_all = self.centers.shape[0]
        d_centers = xp.asarray(self.centers)
        zc = (feats - xp.asarray(self.f_mu)) / xp.asarray(self.f_sd)
        rk = ((score - xp.asarray(self.s_mu)) / xp.asarray(self.s_sd)).mean(axis=1)
        in_tail = rk <= self.threshold
        labels = _nearest(zc, d_centers[: self.n_body])
        if k_all > self.n_body:
            lab_tail = _nearest(zc, d_centers[self.n_body :]) + self.n_body
            labels = xp.where(in_tail, lab_tail, labels)
        onehot = (labels[None, :] == xp.arange(k_all)[:, None]).astype(xp.float64)
        parts = {
            name: (onehot @ arr.reshape(arr.shape[0], -1)).reshape((k_all,) + arr.shape[1:])
            for name, arr in co.items()
        }
        return onehot.sum(axis=1), parts


def _to_host(
    parts: list[tuple[Any, dict[str, Any]]],
) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Blocks' cluster sums as NumPy arrays: stacked per coefficient and copied once (one
    transfer per coefficient, not per block, from a GPU)."""
    if not parts:
        return []
    xp = get_namespace(parts[0][0])
    counts = to_numpy(xp.stack([c for c, _ in parts]))
    sums = {name: to_numpy(xp.stack([d[name] for _, d in parts])) for name in parts[0][1]}
    return [(counts[b], {name: a[b] for name, a in sums.items()}) for b in range(len(parts))]


def _cluster_pilot(
    sc: Scenario, seed: int, n_scenarios: int, feats: np.ndarray, score: np.ndarray
) -> tuple[_Clusters, np.ndarray, np.ndarray]:
    """Scaling, tail threshold, centroids (k-means++ from the seed), tail flags and medoids
    (pilot rows nearest each centroid) from the pilot's features and scores."""
    n_pilot = feats.shape[0]
    f_mu, f_sd = feats.mean(axis=0), feats.std(axis=0)
    f_sd[f_sd <= 0.0] = 1.0
    s_mu, s_sd = score.mean(axis=0), score.std(axis=0)
    s_sd[s_sd <= 0.0] = 1.0
    risk = ((score - s_mu) / s_sd).mean(axis=1)
    share = tail_share(sc)
    k_tail = 0
    if n_scenarios >= 2 and n_pilot >= 2:
        k_tail = min(n_scenarios - 1, max(1, round(n_scenarios * share * 2)))
    threshold = float(np.quantile(risk, share)) if k_tail else -np.inf
    z = (feats - f_mu) / f_sd
    rng = np.random.default_rng([seed, 0x5CE7])
    body = _kmeans(z[risk > threshold], n_scenarios - k_tail, rng)
    tail = _kmeans(z[risk <= threshold], k_tail, rng) if k_tail else np.empty((0, z.shape[1]))
    centers = np.concatenate([body, tail])
    is_tail = np.r_[np.zeros(len(body), bool), np.ones(len(tail), bool)]
    medoids = np.concatenate(
        [_nearest_members(z, risk > threshold, body), _nearest_members(z, risk <= threshold, tail)]
    )
    clusters = _Clusters(f_mu, f_sd, s_mu, s_sd, threshold, centers, len(body))
    return clusters, is_tail, medoids


@dataclass
class _Pilot:
    """The pilot range's kept data: factor logs (T, 6 + R, n), tenants' default periods
    (L, n), features (n, D) and score inputs (n, 3)."""

    logs: Any
    first: Any
    feats: Any
    score: Any


class _PilotAccumulator:
    #: The pilot keeps factor logs; its coefficients (margins included) come later from them.
    needs_margin = False

    def __init__(self, mp: MarketParams, key: tuple[int, int], ppy: int, n: int, xp: Any) -> None:
        self.mp, self.key, self.ppy, self.xp = mp, key, ppy, xp
        n_leases = mp.lease_default_hazard.shape[0]
        n_feat = (int((mp.n_periods - 1) // ppy) + 1) * (4 + mp.n_regions)
        self.data = _Pilot(
            logs=xp.empty((mp.n_periods, 6 + mp.n_regions, n)),
            first=xp.empty((n_leases, n), dtype=xp.int64),
            feats=xp.empty((n, n_feat)),
            score=xp.empty((n, 3)),
        )
        self.pos = 0

    def begin(self, paths: Any) -> None:
        self.paths = paths
        self.n = paths.shape[0]
        self.pd = _PathData(self.mp, self.n, self.ppy, self.xp, features=True, coefficients=False)

    def period(self, f: PeriodFactors, logs: Any, margin: Any) -> None:
        self.data.logs[f.t, :, self.pos : self.pos + self.n] = logs
        self.pd.add(f)

    def end(self) -> None:
        a, b = self.pos, self.pos + self.n
        feats, score, _ = self.pd.finish(None, 0)
        self.data.feats[a:b] = feats
        self.data.score[a:b] = score
        self.data.first[:, a:b] = tenant_default_periods(self.mp, self.key, self.paths, xp=self.xp)
        self.pos = b

    def result(self) -> _Pilot:
        return self.data


@dataclass(frozen=True)
class _PilotConsumer:
    """Keeps what the reduction needs of the pilot range while the pass simulates it."""

    mp: MarketParams
    key: tuple[int, int]
    ppy: int

    def new(self, start: int, stop: int, xp: Any) -> _PilotAccumulator:
        return _PilotAccumulator(self.mp, self.key, self.ppy, stop - start, xp)


class _AssignAccumulator:
    def __init__(self, owner: _AssignConsumer, xp: Any) -> None:
        self.owner, self.xp = owner, xp
        self.parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []

    def begin(self, paths: Any) -> None:
        self.paths = paths
        o = self.owner
        self.pd = _PathData(o.mp, paths.shape[0], o.ppy, self.xp, features=True, coefficients=True)

    def period(self, f: PeriodFactors, logs: Any, margin: Any) -> None:
        self.pd.add(f, margin)

    def end(self) -> None:
        o, xp = self.owner, self.xp
        first = tenant_default_periods(o.mp, o.key, self.paths, xp=xp)
        feats, score, co = self.pd.finish(first, o.relet_gap)
        n = self.paths.shape[0]
        blocks = []
        for a in range(0, n, o.block_paths):
            sl = slice(a, min(n, a + o.block_paths))
            blk = {name: arr[sl] for name, arr in co.items()}
            blocks.append(o.clusters.sums(feats[sl], score[sl], blk, xp))
        self.parts += _to_host(blocks)
        del self.pd

    def result(self) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        return self.parts


@dataclass(frozen=True)
class _AssignConsumer:
    """Assigns the paths of the pass to the clusters and takes the per-block cluster sums of
    their coefficients (chunks start on block boundaries)."""

    mp: MarketParams
    key: tuple[int, int]
    ppy: int
    relet_gap: int
    clusters: _Clusters
    block_paths: int

    def new(self, start: int, stop: int, xp: Any) -> _AssignAccumulator:
        return _AssignAccumulator(self, xp)


def _ceil_multiple(n: int, unit: int) -> int:
    return unit * max(1, -(-n // unit))


def _one_pass(
    scenario: Scenario,
    paths: int,
    n_scenarios: int,
    seed: int,
    *,
    backend: str | Backend | None,
    pilot_paths: int,
    method: str,
    chunk_paths: int | None,
    executor: Any,
    split_paths: int,
    statistics: bool,
    progress: Callable[[int, int], None] | None,
) -> tuple[SimulationResult | None, ReducedScenarios]:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if paths < 1 or n_scenarios < 1:
        raise ValueError("paths and n_scenarios must be >= 1")
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    executor = path_executor(be, executor)
    xp = be.xp
    mp = market_params(scenario)
    key = philox.seed_key(seed)
    ppy = scenario.horizon.periods_per_year
    gap = scenario.market.ai_lease.releasing_gap_periods
    blk = reduce_block_paths(mp)
    if chunk_paths is None and be.is_gpu:
        chunk_paths = GPU_CHUNK_ELEMENTS // max(_coefficient_elements(mp), 1)
    chunk = _ceil_multiple(int(chunk_paths or blk), blk)
    item = _ceil_multiple(split_paths, blk)
    if be.is_gpu and executor is None:  # one device here: work items as large as a chunk
        item = max(item, chunk)
    n_pilot = min(paths, pilot_paths)
    p_end = min(paths, _ceil_multiple(n_pilot, blk))
    start = time.perf_counter()
    merger = StatsMerger(mp) if statistics else None

    # 1. the pilot range, simulated once: statistics, and its factor logs kept
    def done_pilot(d: int) -> None:
        if progress is not None:
            progress(d, paths)

    pilot_blk = PassBlock(
        mp, key, 0, p_end, chunk, be.name, statistics, consumer=_PilotConsumer(mp, key, ppy)
    )
    part = run_pass_block(pilot_blk, done_pilot)
    if merger is not None:
        merger.merge(part)
    pilot: _Pilot = part.extra
    del part
    t_red = time.perf_counter()
    clusters, is_tail, medoids = _cluster_pilot(
        scenario,
        seed,
        n_scenarios,
        to_numpy(pilot.feats[:n_pilot]),
        to_numpy(pilot.score[:n_pilot]),
    )
    k_all = clusters.centers.shape[0]
    counts = np.zeros(k_all)
    sums: dict[str, np.ndarray] = {}

    def add(cnt: np.ndarray, parts: dict[str, np.ndarray]) -> None:
        nonlocal counts
        counts += cnt
        for name, s in parts.items():
            sums[name] = sums[name] + s if name in sums else s

    # 2. the pilot range's cluster sums from its kept logs, and the medoids' coefficients
    blocks = []
    for a in range(0, p_end, blk):
        sl = slice(a, min(p_end, a + blk))
        co = _coefficients_from_logs(mp, pilot.logs[:, :, sl], pilot.first[:, sl], gap, ppy, xp)
        blocks.append(clusters.sums(pilot.feats[sl], pilot.score[sl], co, xp))
    for cnt, parts in _to_host(blocks):  # in block order, copied once
        add(cnt, parts)
    rep: dict[str, np.ndarray] = {}
    if method == "medoid":
        m_idx = xp.asarray(medoids, dtype=xp.int64)
        rep_d = _coefficients_from_logs(
            mp, pilot.logs[:, :, m_idx], pilot.first[:, m_idx], gap, ppy, xp
        )
        rep = {name: to_numpy(arr) for name, arr in rep_d.items()}
    del pilot
    t_red = time.perf_counter() - t_red

    # 3. every other path, once: statistics and cluster sums, in fixed work items
    consumer = _AssignConsumer(mp, key, ppy, gap, clusters, blk)
    blocks = [
        PassBlock(mp, key, a, b, chunk, be.name, statistics, None, 0, consumer)
        for a, b in item_bounds(p_end, paths, item)
    ]
    cb = (lambda d: progress(p_end + d, paths)) if progress is not None else None
    for part in run_blocks(blocks, executor, cb, {"GPU": 1} if be.is_gpu else None):
        if merger is not None:
            merger.merge(part)
        for cnt, parts in part.extra:
            add(cnt, parts)
    t = time.perf_counter()
    keep = counts > 0
    means = {
        name: s[keep] / counts[keep].reshape((-1,) + (1,) * (s.ndim - 1))
        for name, s in sums.items()
    }
    full = {name: s.sum(axis=0) / paths for name, s in sums.items()}
    weights = counts[keep] / paths
    for name, arr in rep.items():
        if name not in MEAN_ONLY:
            means[name] = match_means(arr[keep], weights, full[name])
    red = ReducedScenarios(
        weights=weights,
        is_tail=is_tail[keep],
        path_counts=counts[keep].astype(np.int64),
        paths=paths,
        seed=seed,
        full_means=full,
        seconds=t_red + time.perf_counter() - t,
        **means,
    )
    seconds = time.perf_counter() - start
    sim = merger.result(scenario, seed, be, seconds, chunk) if merger is not None else None
    return sim, red


def simulate_and_reduce(
    scenario: Scenario,
    paths: int,
    n_scenarios: int,
    seed: int,
    *,
    backend: str | Backend | None = None,
    pilot_paths: int = PILOT_PATHS,
    method: str = "medoid",
    chunk_paths: int | None = None,
    executor: Any = None,
    split_paths: int = SPLIT_PATHS,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[SimulationResult, ReducedScenarios]:
    """One market pass over ``paths`` paths: the statistics of
    :func:`~hashpivot.kernels.simulate.simulate` and the reduction of :func:`reduce_scenarios`.

    Every path is simulated once. The pilot range (the first ``pilot_paths`` paths, rounded
    up to a whole coefficient block) goes first: its statistics are taken and its factor logs
    (T·(6 + R) per path) and default periods kept, which bounds the extra memory by the
    pilot; the centroids come from its features; its cluster sums and the medoids'
    coefficients are then computed from the kept logs (no simulation). The other paths
    follow in fixed work items of about ``split_paths`` paths, here or on ``executor``.

    With NumPy the results are bit-identical to :func:`simulate` and to the separate
    simulate-pilot / assignment-pass / medoid-resimulation reduction on the same seed, for
    any ``chunk_paths`` and ``executor``: path values depend on the path index only, the
    statistics are chained per :data:`~hashpivot.kernels.accumulate.BLOCK_PATHS` block and
    the cluster sums per :func:`reduce_block_paths` block, in path order. With CuPy the pass
    runs through the array-module (``xp``) path of the NumPy kernels (the fused CUDA kernel
    of :func:`simulate` has no coefficient output), one GPU work item at a time.

    Parameters
    ----------
    scenario, paths, n_scenarios, seed, backend, pilot_paths, method
        As for :func:`reduce_scenarios`.
    chunk_paths
        Paths per chunk (rounded up to a whole coefficient block; default one block, on a GPU
        about :data:`GPU_CHUNK_ELEMENTS` coefficient elements).
    executor
        Runs the work items after the pilot (``.map(fn, items, **resources)``, results in
        input order; GPU items ask for ``GPU=1``); ``None``: here, one after the other.
    split_paths
        Paths per work item (rounded up to a whole coefficient block).
    progress
        Called with (paths done, paths) after each chunk (each work item on an executor).
    """
    sim, red = _one_pass(
        scenario,
        paths,
        n_scenarios,
        seed,
        backend=backend,
        pilot_paths=pilot_paths,
        method=method,
        chunk_paths=chunk_paths,
        executor=executor,
        split_paths=split_paths,
        statistics=True,
        progress=progress,
    )
    assert sim is not None
    return sim, red


def reduce_scenarios(
    scenario: Scenario,
    paths: int,
    n_scenarios: int,
    seed: int,
    *,
    backend: str | Backend | None = None,
    pilot_paths: int = PILOT_PATHS,
    method: str = "medoid",
    progress: Callable[[int, int], None] | None = None,
    executor: Any = None,
) -> ReducedScenarios:
    """Reduce ``paths`` simulated paths to at most ``n_scenarios`` weighted scenarios.

    The pass of :func:`simulate_and_reduce` without the simulation statistics: every path is
    simulated once.

    Parameters
    ----------
    scenario
        A validated scenario.
    paths
        Paths simulated (all of them are assigned; memory stays bounded).
    n_scenarios
        K, the number of scenarios wanted (≥ 2 keeps a separate tail).
    seed
        Seed of the paths and of the k-means seeding.
    backend
        Array backend (the dispatch point of :mod:`~hashpivot.kernels.backend`).
    method
        ``mean``: scenario k is its cluster's mean trajectory. ``medoid`` (default): scenario k
        is the pilot path nearest its centroid, corrected per coefficient and period by
        :func:`match_means` (a bounded ratio, else a shift), so the weighted means still equal
        the full-sample means while each scenario keeps the dispersion of a real path (cluster
        means understate it, and with it the risk the covenants and CVaR see).
    progress
        Called with (paths done, paths) after each chunk.
    executor
        Runs the work items after the pilot (see :func:`simulate_and_reduce`).
    """
    return _one_pass(
        scenario,
        paths,
        n_scenarios,
        seed,
        backend=backend,
        pilot_paths=pilot_paths,
        method=method,
        chunk_paths=None,
        executor=executor,
        split_paths=SPLIT_PATHS,
        statistics=False,
        progress=progress,
    )[1]


def sample_scenarios(
    scenario: Scenario,
    n: int,
    seed: int,
    *,
    tag: int,
    backend: str | Backend | None = None,
    offset: int = 0,
    sampling: str = Sampling.IID,
) -> ReducedScenarios:
    """``n`` market paths as equally weighted scenarios (for validation: sampled batches,
    candidate selection, wait-and-see solves).

    Paths ``offset .. offset + n`` under the key :func:`~hashpivot.kernels.philox.seed_key`
    (seed, tag) (a named tag of :mod:`~hashpivot.kernels.philox`, so the sets are independent
    of the optimisation and evaluation paths and of each other), coefficients exactly as
    :func:`_features_and_coefficients` makes them, weights 1/n, no tail flags, one path each.
    ``sampling`` "iid": i.i.d. paths; "lhs": their market shocks a Latin hypercube of the n
    paths drawn from (seed, tag) (:func:`~hashpivot.kernels.sampling.lhs_shocks`; each path
    has the i.i.d. law, tenant defaults stay i.i.d.).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    try:
        how = Sampling(sampling)
    except ValueError:
        raise ValueError(
            f"sampling must be one of {[s.value for s in Sampling]}, got {sampling!r}"
        ) from None
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    xp = be.xp
    mp = market_params(scenario)
    key = philox.seed_key(seed, tag)
    ppy = scenario.horizon.periods_per_year
    gap = scenario.market.ai_lease.releasing_gap_periods
    blk = reduce_block_paths(mp)
    design = lhs_shocks(mp, n, seed, tag) if how is Sampling.LHS else None
    parts: list[dict[str, np.ndarray]] = []
    for a in range(offset, offset + n, blk):
        b = min(offset + n, a + blk)
        idx = xp.arange(a, b, dtype=xp.int64)
        shocks = design.take(a - offset, b - offset) if design is not None else None
        _, _, co = _features_and_coefficients(mp, key, idx, gap, ppy, xp, shocks=shocks)
        parts.append({name: to_numpy(arr) for name, arr in co.items()})
    co = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return ReducedScenarios(
        weights=np.full(n, 1.0 / n),
        is_tail=np.zeros(n, dtype=bool),
        path_counts=np.ones(n, dtype=np.int64),
        paths=n,
        seed=seed,
        full_means={name: arr.mean(axis=0) for name, arr in co.items()},
        **co,
    )
