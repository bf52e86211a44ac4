"""A naive reference for the CPU kernels: the same factor work in straightforward NumPy.

What a careful first version would do: NumPy's own :class:`numpy.random.Generator` for the
normals and jump counts, ``chol @ z`` for the correlated shocks, float64 broadcasting for the
mining margin (Black–Scholes put with the A&S normal CDF), ``concatenate(...).sum`` for the
running sums and ``bincount`` for the histograms. The model is the one of
:mod:`hashpivot.kernels.market` (same parameters, same equations); only the random numbers
differ, so statistics agree within Monte Carlo error but not bit for bit.

:func:`side_by_side` times the project and the reference in one process, interleaved, and
gives the ratio of medians (reference time / project time: > 1 means the project is faster).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from hashpivot.kernels.accumulate import HIST_BINS, HIST_HALF_WIDTH
from hashpivot.kernels.evaluate import PathCoefficients
from hashpivot.kernels.factors import factor_values_from_logs, start_logs
from hashpivot.kernels.market import MarketParams, market_params
from hashpivot.scenarios import Scenario

#: Paths per chunk of the reference (as the project's CPU default).
CHUNK_PATHS = 8192
_AS_P = 0.2316419
_AS_B = (0.319381530, -0.356563782, 1.781477937, -1.821255978, 1.330274429)


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    k = 1.0 / (1.0 + _AS_P * np.abs(x))
    b1, b2, b3, b4, b5 = _AS_B
    tail = pdf * k * (b1 + k * (b2 + k * (b3 + k * (b4 + k * b5))))
    return np.where(x >= 0.0, 1.0 - tail, tail)


def _margin(mp: MarketParams, ln_hp: np.ndarray, ln_power: np.ndarray) -> np.ndarray:
    """Mining margin per MW of every site, (S, n) [$/MW/period], float64 broadcasting."""
    rev = np.exp(ln_hp[None, :] + mp.site_ln_rev_per_hp[:, None])
    power = np.exp(ln_power[mp.site_region])
    sigma = mp.power_intra[mp.site_region][:, None]
    safe = np.where(sigma > 0.0, sigma, 1.0)
    d1 = (np.log(power / rev) + 0.5 * safe**2) / safe
    put = np.maximum(rev * _norm_cdf(-(d1 - safe)) - power * _norm_cdf(-d1), 0.0)
    put = np.where(sigma > 0.0, put, np.maximum(rev - power, 0.0))
    c = mp.site_fixed_price[:, None]
    fixed = np.where(mp.site_resale[:, None] > 0, put + power - c, np.maximum(rev - c, 0.0))
    share = mp.site_indexed_share[:, None]
    return mp.site_hours_uptime[:, None] * (share * put + (1.0 - share) * fixed)


def _periods(mp: MarketParams, rng: np.random.Generator, n: int):
    """Yield (t, ln_btc, ln_hash, ln_hp, ln_power (R, n), ln_lease, occ_logit, ln_gpu)."""
    nf = mp.n_factors
    ln_p = np.full(n, mp.ln_p0)
    ln_h = np.full(n, mp.ln_h0)
    x_pow = np.repeat(mp.power_x0[:, None], n, axis=1)
    y = np.zeros(n)
    u = np.full(n, mp.occ_u0)
    ln_g = np.full(n, mp.ln_gpu0)
    past = np.zeros((mp.hash_lag + 1, n))
    past_gap = np.zeros((mp.hash_lag + 1, n))
    for t in range(mp.n_periods):
        z = rng.standard_normal((nf + 1, n))
        eps = mp.chol @ z[:nf]
        count = rng.poisson(mp.jump_lambda_dt, n)
        ret = (
            mp.btc_drift_dt
            + mp.btc_vol_sqdt * eps[0]
            + count * mp.jump_mean
            + np.sqrt(count) * mp.jump_std * z[nf]
        )
        ln_p = ln_p + ret
        past[t % (mp.hash_lag + 1)] = ret - mp.btc_mean_return
        lagged = past[(t - mp.hash_lag) % (mp.hash_lag + 1)] if t >= mp.hash_lag else 0.0
        ln_c = np.log(mp.blocks_per_day * (mp.subsidy_btc[t] + mp.fees_btc) / 1000.0)
        x_h = ln_h + mp.hash_drift_dt
        gap = ln_c + ln_p - x_h - mp.hash_ln_breakeven[t]  # margin gap of the marginal fleet
        past_gap[t % (mp.hash_lag + 1)] = gap
        gap_lag = past_gap[(t - mp.hash_lag) % (mp.hash_lag + 1)] if t >= mp.hash_lag else None
        ln_h = (
            x_h
            + mp.hash_down * np.minimum(gap, 0.0)
            + mp.hash_up * np.maximum(mp.hash_gap0 if gap_lag is None else gap_lag, 0.0)
            + mp.hash_vol_sqdt * eps[1]
            + mp.hash_beta * lagged
            + mp.halving_step * mp.halving_in_period[t]
        )
        ln_hp = ln_c + ln_p - ln_h
        x_pow = (
            mp.power_theta[:, None]
            + (x_pow - mp.power_theta[:, None]) * mp.power_a[:, None]
            + mp.power_sd[:, None] * eps[5:]
        )
        y = mp.lease_a * y + mp.lease_sd * eps[2]
        ln_lease = mp.ln_lease0 + mp.lease_drift * (t + 1) * mp.dt_years + y - 0.5 * mp.lease_var[t]
        u = mp.occ_mean_logit + (u - mp.occ_mean_logit) * mp.occ_a + mp.occ_sd * eps[3]
        ln_g = ln_g + mp.gpu_drift_dt + mp.gpu_vol_sqdt * eps[4]
        yield t, ln_p, ln_h, ln_hp, x_pow, ln_lease, u, ln_g


def naive_simulate(sc: Scenario, paths: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Running sums (T, 2F + 2S) of values, squares, margins and squared margins (values
    shifted by their start as in the project) and the per-period log histograms."""
    mp = market_params(sc)
    rng = np.random.default_rng(seed)
    shift_logs = start_logs(mp)
    shift = factor_values_from_logs(shift_logs[:, None].copy())[:, 0]
    f = shift.shape[0]
    sums = np.zeros((mp.n_periods, 2 * f + 2 * mp.n_sites))
    counts = np.zeros((mp.n_periods, f * HIST_BINS), dtype=np.int64)
    lo = (shift_logs - HIST_HALF_WIDTH)[:, None]
    width = 2.0 * HIST_HALF_WIDTH / HIST_BINS
    offsets = (np.arange(f) * HIST_BINS)[:, None]
    for done in range(0, paths, CHUNK_PATHS):
        n = min(CHUNK_PATHS, paths - done)
        for t, ln_p, ln_h, ln_hp, x_pow, ln_lease, u, ln_g in _periods(mp, rng, n):
            logs = np.vstack([ln_p, ln_h, ln_hp, ln_lease, u, ln_g, x_pow])
            vals = np.exp(logs)
            vals[4] = 1.0 / (1.0 + np.exp(-u))
            vals -= shift[:, None]
            margin = _margin(mp, ln_hp, x_pow)
            sums[t] += np.concatenate([vals, vals**2, margin, margin**2]).sum(axis=1)
            idx = np.clip(np.floor((logs - lo) / width), 0, HIST_BINS - 1).astype(np.int64)
            counts[t] += np.bincount((idx + offsets).ravel(), minlength=f * HIST_BINS)
    return sums, counts.reshape(mp.n_periods, f, HIST_BINS)


def naive_path_coefficients(sc: Scenario, n: int, rng: np.random.Generator) -> PathCoefficients:
    """The coefficient trajectories of ``n`` paths, as
    :func:`hashpivot.kernels.evaluate.path_coefficients` computes them."""
    mp = market_params(sc)
    t_n = mp.n_periods
    margin = np.empty((n, mp.n_sites, t_n))
    btc = np.empty((n, t_n))
    power = np.empty((n, mp.n_regions, t_n))
    lxo = np.empty((n, t_n))
    gpu = np.empty((n, t_n))
    for t, ln_p, _, ln_hp, x_pow, ln_lease, u, ln_g in _periods(mp, rng, n):
        margin[:, :, t] = _margin(mp, ln_hp, x_pow).T
        btc[:, t] = np.exp(ln_p)
        power[:, :, t] = np.exp(x_pow).T
        lxo[:, t] = np.exp(ln_lease) / (1.0 + np.exp(-u))
        gpu[:, t] = np.exp(ln_g)
    hit = rng.random((n, mp.lease_default_hazard.shape[0], t_n)) < mp.lease_default_hazard[:, None]
    first = np.where(hit.any(axis=2), hit.argmax(axis=2), t_n)  # (n, L)
    t_idx = np.arange(t_n)[None, None, :]
    gap = sc.market.ai_lease.releasing_gap_periods
    return PathCoefficients(
        margin_usd_per_mw=margin,
        btc_price_usd=btc,
        power_usd_per_mwh=power,
        lease_x_occupancy=lxo,
        gpu_hour_usd=gpu,
        tenant_survival=(first[:, :, None] > t_idx).astype(np.float64),
        tenant_relet=(first[:, :, None] + gap <= t_idx).astype(np.float64),
    )


def side_by_side(
    project: Callable[[], object], naive: Callable[[], object], repeats: int
) -> dict[str, float]:
    """Time ``project`` and ``naive`` interleaved (P, N, P, N, …) after one warm-up each.

    Returns the best and median seconds of the project, the median of the reference and
    ``naive_reference_ratio`` = median reference / median project (issue 13's goal: ≥ 1.5).
    """
    project()
    naive()
    t_p: list[float] = []
    t_n: list[float] = []
    for _ in range(repeats):
        for fn, out in ((project, t_p), (naive, t_n)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    med_p, med_n = statistics.median(t_p), statistics.median(t_n)
    return {
        "project_best_seconds": min(t_p),
        "project_median_seconds": med_p,
        "naive_median_seconds": med_n,
        "naive_reference_ratio": med_n / med_p,
    }
