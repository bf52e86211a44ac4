r"""Scenario reduction: N simulated paths → K weighted scenarios of coefficient trajectories.

1. **Pilot.** The first ``pilot_paths`` paths give per-path features (yearly mean log hashprice,
   log BTC price, log lease rate × occupancy, log GPU-hour price, log power per region) and a
   risk score (the mean of the standardised horizon averages of log hashprice, log BTC and log
   AI market revenue: low is bad for every site and for the treasury).
2. **Tail.** Paths whose score falls below the pilot's ``tail_share`` quantile form the tail,
   with ``tail_share = max(1 − cvar_alpha, 1 − covenants.confidence)`` — the outcomes CVaR
   and the chance covenants look at. The tail gets its own ``K_tail`` clusters, the body
   ``K − K_tail``; centroids by k-means (k-means++ seeding from the seed) on the pilot.
3. **Assignment.** A streaming pass over all N paths (bounded memory) assigns each path to the
   nearest centroid of its group and accumulates, per cluster, the sums of every coefficient
   trajectory and the path count.
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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashpivot.scenarios import Scenario

from . import philox
from .backend import Backend, get_backend, to_numpy
from .market import MarketParams, iter_periods, market_params, mining_margin, tenant_default_periods

#: Paths used to place the centroids.
PILOT_PATHS = 20_000
#: Iterations of Lloyd's algorithm.
KMEANS_ITERS = 30
#: Upper bound on the tail share of paths.
MAX_TAIL_SHARE = 0.5
#: Coefficient elements (periods × columns × paths) per chunk of the assignment pass.
CHUNK_ELEMENTS = 8_000_000


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
def _features_and_coefficients(
    mp: MarketParams,
    key: tuple[int, int],
    paths: Any,
    relet_gap: int,
    ppy: int,
    xp: Any,
    *,
    coefficients: bool = True,
) -> tuple[Any, Any, dict[str, Any]]:
    """Features (n, G·(4+R)), risk score inputs (n, 3) and, unless ``coefficients`` is False,
    the coefficient trajectories of a chunk."""
    n = paths.shape[0]
    t_count = mp.n_periods
    groups = np.arange(t_count) // ppy
    n_groups = int(groups[-1]) + 1
    per_group = np.bincount(groups)
    cols = 4 + mp.n_regions
    feats = xp.zeros((n, n_groups, cols))
    score = xp.zeros((n, 3))
    co = (
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
    for f in iter_periods(mp, key, paths, xp=xp):
        t = f.t
        occ = 1.0 / (1.0 + xp.exp(-f.occ_logit))
        if coefficients:
            co["margin_usd_per_mw"][:, :, t] = mining_margin(mp, f, xp=xp).T
            co["btc_price_usd"][:, t] = xp.exp(f.ln_btc)
            co["power_usd_per_mwh"][:, :, t] = xp.exp(f.ln_power).T
            co["lease_rate_usd_per_kw_month"][:, t] = xp.exp(f.ln_lease)
            co["occupancy"][:, t] = occ
            co["gpu_hour_usd"][:, t] = xp.exp(f.ln_gpu)
        ln_ai = f.ln_lease + xp.log(occ)
        row = xp.concatenate([xp.stack([f.ln_hashprice, f.ln_btc, ln_ai, f.ln_gpu]), f.ln_power])
        feats[:, groups[t], :] += row.T / per_group[groups[t]]
        score += xp.stack([f.ln_hashprice, f.ln_btc, ln_ai], axis=1) / t_count
    if not coefficients:
        return feats.reshape(n, -1), score, co
    co["lease_x_occupancy"] = co["lease_rate_usd_per_kw_month"] * co["occupancy"]
    first = tenant_default_periods(mp, key, paths, xp=xp)  # (L, n)
    t_idx = xp.arange(t_count)[None, None, :]
    co["tenant_survival"] = (first.T[:, :, None] > t_idx).astype(xp.float64)
    co["tenant_relet"] = (first.T[:, :, None] + relet_gap <= t_idx).astype(xp.float64)
    return feats.reshape(n, -1), score, co


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
) -> ReducedScenarios:
    """Reduce ``paths`` simulated paths to at most ``n_scenarios`` weighted scenarios.

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
        :func:`match_means` (a bounded ratio, else a shift), so the weighted means still equal the full-sample
        means while each scenario keeps the dispersion of a real path (cluster means
        understate it, and with it the risk the covenants and CVaR see).
    progress
        Called with (paths done, paths) after the pilot and after each chunk of the
        assignment pass (the pilot counts as its own paths' share of the work).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if paths < 1 or n_scenarios < 1:
        raise ValueError("paths and n_scenarios must be >= 1")
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    xp = be.xp
    mp = market_params(scenario)
    key = philox.seed_key(seed)
    ppy = scenario.horizon.periods_per_year
    gap = scenario.market.ai_lease.releasing_gap_periods
    n_cols = mp.n_periods * (mp.n_sites + mp.n_regions + 6 + 2 * mp.lease_default_hazard.shape[0])
    chunk = max(256, CHUNK_ELEMENTS // max(n_cols, 1))

    # 1. pilot: features, score scaling, tail threshold, centroids
    n_pilot = min(paths, pilot_paths)
    parts = [
        _features_and_coefficients(
            mp,
            key,
            xp.arange(a, min(n_pilot, a + chunk), dtype=xp.int64),
            gap,
            ppy,
            xp,
            coefficients=False,
        )
        for a in range(0, n_pilot, chunk)
    ]
    feats = np.concatenate([to_numpy(p[0]) for p in parts])
    score = np.concatenate([to_numpy(p[1]) for p in parts])
    f_mu, f_sd = feats.mean(axis=0), feats.std(axis=0)
    f_sd[f_sd <= 0.0] = 1.0
    s_mu, s_sd = score.mean(axis=0), score.std(axis=0)
    s_sd[s_sd <= 0.0] = 1.0
    risk = ((score - s_mu) / s_sd).mean(axis=1)
    share = tail_share(scenario)
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
    total = n_pilot + paths
    if progress is not None:
        progress(n_pilot, total)

    # 2. streaming assignment of every path
    k_all = centers.shape[0]
    sums: dict[str, np.ndarray] = {}
    counts = np.zeros(k_all)
    d_centers = xp.asarray(centers)
    for a in range(0, paths, chunk):
        idx = xp.arange(a, min(paths, a + chunk), dtype=xp.int64)
        feats, score, co = _features_and_coefficients(mp, key, idx, gap, ppy, xp)
        zc = (feats - xp.asarray(f_mu)) / xp.asarray(f_sd)
        rk = ((score - xp.asarray(s_mu)) / xp.asarray(s_sd)).mean(axis=1)
        in_tail = rk <= threshold
        lab_body = _nearest(zc, d_centers[: len(body)])
        labels = lab_body
        if len(tail):
            lab_tail = _nearest(zc, d_centers[len(body) :]) + len(body)
            labels = xp.where(in_tail, lab_tail, lab_body)
        onehot = (labels[None, :] == xp.arange(k_all)[:, None]).astype(xp.float64)
        counts += to_numpy(onehot.sum(axis=1))
        for name, arr in co.items():
            part = to_numpy(onehot @ arr.reshape(arr.shape[0], -1)).reshape(
                (k_all,) + arr.shape[1:]
            )
            sums[name] = sums[name] + part if name in sums else part
        if progress is not None:
            progress(n_pilot + min(paths, a + chunk), total)
    keep = counts > 0
    means = {
        name: s[keep] / counts[keep].reshape((-1,) + (1,) * (s.ndim - 1))
        for name, s in sums.items()
    }
    full = {name: s.sum(axis=0) / paths for name, s in sums.items()}
    weights = counts[keep] / paths
    if method == "medoid":
        rep_idx = xp.asarray(medoids[keep], dtype=xp.int64)
        _, _, rep = _features_and_coefficients(mp, key, rep_idx, gap, ppy, xp)
        for name, arr in rep.items():
            if name in MEAN_ONLY:
                continue
            means[name] = match_means(to_numpy(arr), weights, full[name])
    return ReducedScenarios(
        weights=weights,
        is_tail=is_tail[keep],
        path_counts=counts[keep].astype(np.int64),
        paths=paths,
        seed=seed,
        full_means=full,
        **means,
    )


def sample_scenarios(
    scenario: Scenario,
    n: int,
    seed: int,
    *,
    tag: int,
    backend: str | Backend | None = None,
) -> ReducedScenarios:
    """``n`` i.i.d. paths as equally weighted scenarios (no clustering): an unbiased sample
    for statistical validation (SAA batches, wait-and-see), keyed by ``tag`` apart from the
    simulation and evaluation paths."""
    if n < 1:
        raise ValueError("n must be >= 1")
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    xp = be.xp
    mp = market_params(scenario)
    ppy = scenario.horizon.periods_per_year
    gap = scenario.market.ai_lease.releasing_gap_periods
    _, _, co = _features_and_coefficients(
        mp, philox.seed_key(seed, tag), xp.arange(n, dtype=xp.int64), gap, ppy, xp
    )
    arrays = {name: to_numpy(arr) for name, arr in co.items()}
    return ReducedScenarios(
        weights=np.full(n, 1.0 / n),
        is_tail=np.zeros(n, bool),
        path_counts=np.ones(n, np.int64),
        paths=n,
        seed=seed,
        full_means={name: a.mean(axis=0) for name, a in arrays.items()},
        **arrays,
    )
