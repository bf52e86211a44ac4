r"""Market model: every stochastic factor of DESIGN.md §4, one period at a time.

Period ``t`` covers (tΔ, (t+1)Δ]; factors are sampled at its end, ``t_years = (t+1)Δ``. The
correlated shocks of a period are ``ε = L z`` with ``L`` the Cholesky factor of the scenario's
correlation matrix over the factors (btc, hashrate, ai_lease, ai_occupancy, gpu_hour,
power:<region>…) and ``z`` standard normals from :mod:`~hashpivot.kernels.philox`.

BTC price (Merton jump-diffusion, E[P_t] = P0·e^{μt})
    ln P_t = ln P_{t-1} + (μ − σ²/2 − λκ)Δ + σ√Δ ε_btc + Σ_{i≤N_t} J_i,
    N_t ~ Poisson(λΔ), J_i ~ N(m_J, s_J²), κ = e^{m_J + s_J²/2} − 1.
Network hashrate (breakeven feedback: fast down, lagged up)
    c_t = blocks_per_day·(subsidy_t + fees)/1000, so HP = c·P/H  [$/PH/day];
    b_t = 24·e_m·p_m/1000·e^{−η t_years}: hashprice at which the marginal fleet (e_m J/TH at the
        start, improving at η per year, power p_m $/MWh) breaks even, R = HP·1000/(24e) = p_m;
    x_t = ln H_{t−1} + ηΔ  (efficiency gains: more TH/s from the same network power);
    g_t = ln c_t + ln P_t − x_t − ln b_t  (the period's margin gap before miners respond);
    ln H_t = x_t + φ_d·min(g_t, 0) + φ_u·max(g_{t−L}, 0) + σ_H√Δ ε_hash
             + β(r_{t−L} − E[r]) + step·1{halving in t},
    φ_d = 1 − e^{−a_down·Δ}, φ_u = 1 − e^{−a_up·Δ} (exact for a first-order pull at speed a over
    the period), g_{t−L} = g_start = ln(c·P0/(H0·b_0)) at the start before period 0, r the BTC
    log-return of a period. Miners switch off within weeks when hashprice falls below breakeven
    (a_down = 10/yr, a 5-week time constant) and add machines 3–12 months after it rises above
    (L = 1 quarter plus 1/a_up = 6 months); domain_facts §1 'Difficulty vs price'. Fixed point:
    with no shocks g = 0 stays 0 (HP = b_t for ever); a BTC drift μ raises H at μ + η once HP
    tracks b_t, with HP above b_t by about μ·(LΔ + 1/a_up). A halving halves c_t: g drops by
    ~ln 2, H falls by φ_d of it in the same period, and hashprice returns towards b_t. For a
    smooth upward response keep φ_u·(L + 1) ≲ 1 (the defaults give 0.79 quarterly).
Subsidy and hashprice
    height(t) = h0 + blocks_per_day·365.25·t_years; subsidy = s0·2^{−⌊height/interval⌋};
    HP_t = blocks_per_day·(subsidy_t + fees)·P_t / (1000·H_t)   [$/PH/day].
Power price per region (log-OU, stationary mean = ``mean_usd_per_mwh``)
    x = ln p, θ = ln(mean) − σ²/(4κ), x_t = θ + (x_{t−1} − θ)a + σ√((1−a²)/(2κ)) ε_r, a = e^{−κΔ}.
AI lease market rate (log-OU deviation y around a drifting mean; E[L_t] = L0·e^{g t})
    y_t = a·y_{t−1} + σ√((1−a²)/(2κ)) ε_lease, L_t = L0·exp(g·t_years + y_t − Var[y_t]/2).
AI occupancy (logit-OU)
    u_t = m + (u_{t−1} − m)a + σ√((1−a²)/(2κ)) ε_occ, m = logit(mean), occ = 1/(1+e^{−u}).
GPU-hour price (E[G_t] = G0·(1−d)^t)
    ln G_t = ln G_{t−1} + (ln(1−d) − σ²/2)Δ + σ√Δ ε_gpu.

Mining margin per utility MW of ASICs at site s (the curtailment option)
    R = HP·1000/(24·e) [$/MWh]; hourly power X = p·exp(σ_i Z − σ_i²/2) (E[X] = p);
    market-indexed: E[(R − X)⁺] = R·Φ(−d₂) − p·Φ(−d₁), d₁ = (ln(p/R) + σ_i²/2)/σ_i, d₂ = d₁ − σ_i;
    fixed price c with resale: E[max(R, X)] − c = E[(R − X)⁺] + p − c (put–call parity);
    fixed price c without resale: (R − c)⁺;
    margin = hours·uptime·(share·indexed + (1 − share)·fixed)   [$/MW/period],
after power and before fixed opex.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from hashpivot.scenarios import MARKET_FACTORS, Scenario

from . import philox

#: Index of each non-power factor among the correlated shocks; power regions follow.
F_BTC, F_HASH, F_LEASE, F_OCC, F_GPU = range(5)
N_BASE_FACTORS = len(MARKET_FACTORS)
#: Cap of the Poisson jump count per period (probability mass beyond is below 1e-12 for λΔ ≤ 3).
MAX_JUMPS = 24
SQRT_2PI = 2.5066282746310002
DAYS_PER_YEAR = 365.25


def _ou(kappa: float, sigma: float, dt: float) -> tuple[float, float]:
    """(a, sd) of an OU step of length ``dt``: a = e^{−κΔ}, sd = σ√((1−a²)/(2κ))."""
    a = float(np.exp(-kappa * dt))
    return a, float(sigma * np.sqrt((1.0 - a * a) / (2.0 * kappa)))


@dataclass(frozen=True)
class MarketParams:
    """Everything the path kernels need, as plain numbers and NumPy arrays."""

    n_periods: int
    dt_years: float
    hours_per_period: float
    # BTC
    ln_p0: float
    btc_drift_dt: float
    btc_vol_sqdt: float
    jump_lambda_dt: float
    jump_mean: float
    jump_std: float
    btc_mean_return: float
    # hashrate
    ln_h0: float
    hash_drift_dt: float
    hash_vol_sqdt: float
    hash_beta: float
    hash_lag: int
    halving_step: float
    hash_down: float  # φ_d
    hash_up: float  # φ_u
    hash_gap0: float  # g_start
    hash_ln_breakeven: np.ndarray  # ln b_t per period (T,)
    # subsidy per period and halving flags
    subsidy_btc: np.ndarray
    halving_in_period: np.ndarray
    blocks_per_day: float
    fees_btc: float
    # lease, occupancy, gpu
    ln_lease0: float
    lease_drift: float
    lease_a: float
    lease_sd: float
    lease_var: np.ndarray
    occ_mean_logit: float
    occ_u0: float
    occ_a: float
    occ_sd: float
    ln_gpu0: float
    gpu_drift_dt: float
    gpu_vol_sqdt: float
    # power regions (R,)
    power_theta: np.ndarray
    power_x0: np.ndarray
    power_a: np.ndarray
    power_sd: np.ndarray
    power_intra: np.ndarray
    # correlation
    chol: np.ndarray
    # sites (S,)
    site_region: np.ndarray
    site_ln_rev_per_hp: np.ndarray
    site_hours_uptime: np.ndarray
    site_indexed_share: np.ndarray
    site_fixed_price: np.ndarray
    site_resale: np.ndarray
    # leases (L,)
    lease_default_hazard: np.ndarray
    region_names: tuple[str, ...] = field(default=())
    site_names: tuple[str, ...] = field(default=())

    @property
    def n_regions(self) -> int:
        return int(self.power_theta.shape[0])

    @property
    def n_sites(self) -> int:
        return int(self.site_region.shape[0])

    @property
    def n_factors(self) -> int:
        """Correlated shocks per period."""
        return N_BASE_FACTORS + self.n_regions

    @property
    def n_normals(self) -> int:
        """Normals drawn per path and period: the correlated shocks and the jump size."""
        return self.n_factors + 1

    def t_years(self) -> np.ndarray:
        """End of each period [years]."""
        return (np.arange(self.n_periods) + 1.0) * self.dt_years


def subsidy_schedule(sc: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Subsidy at the end of each period [BTC] and whether a halving falls inside it."""
    h = sc.market.halving
    t_end = (np.arange(sc.horizon.n_periods) + 1.0) * sc.horizon.dt_years
    heights = h.block_height_at_start + h.blocks_per_day * DAYS_PER_YEAR * t_end
    epochs = np.floor(heights / h.interval_blocks)
    subsidy = h.initial_subsidy_btc * np.exp2(-epochs)
    before = np.concatenate([[np.floor(h.block_height_at_start / h.interval_blocks)], epochs[:-1]])
    return subsidy, epochs > before


def correlation_matrix(sc: Scenario) -> np.ndarray:
    """Full correlation over (btc, hashrate, ai_lease, ai_occupancy, gpu_hour, power:<r>…)."""
    names = list(MARKET_FACTORS) + [f"power:{r}" for r in sc.market.power_regions]
    c = np.eye(len(names))
    given = sc.market.correlation
    pos = [names.index(f) for f in given.factors]
    for i, fi in enumerate(pos):
        for j, fj in enumerate(pos):
            c[fi, fj] = given.matrix[i][j]
    return c


def cholesky_psd(c: np.ndarray) -> np.ndarray:
    """A lower factor L with L·Lᵀ = C, also for singular positive semi-definite C."""
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(c)
        factor = v * np.sqrt(np.clip(w, 0.0, None))
        _, r = np.linalg.qr(factor.T)  # factor·factorᵀ = rᵀ·r
        return r.T * np.where(np.diag(r) < 0.0, -1.0, 1.0)


def market_params(sc: Scenario) -> MarketParams:
    """Compile a scenario's market model and sites into :class:`MarketParams`."""
    h = sc.horizon
    m = sc.market
    dt = h.dt_years
    b = m.btc
    kappa_j = float(np.exp(b.jump_mean_log + 0.5 * b.jump_std_log**2) - 1.0)
    lam = b.jump_intensity_per_year
    btc_drift = b.drift_per_year - 0.5 * b.vol_per_year**2 - lam * kappa_j
    hr = m.hashrate
    subsidy, halving = subsidy_schedule(sc)
    ln_be0 = float(
        np.log(24.0 * hr.marginal_efficiency_j_per_th * hr.marginal_power_usd_per_mwh / 1000.0)
    )
    t_end = (np.arange(h.n_periods) + 1.0) * dt
    hv = m.halving
    subsidy0 = hv.initial_subsidy_btc * 2.0 ** -np.floor(
        hv.block_height_at_start / hv.interval_blocks
    )
    ln_c0 = np.log(hv.blocks_per_day * (subsidy0 + m.fees_btc_per_block) / 1000.0)
    lease = m.ai_lease
    lease_a, lease_sd = _ou(lease.reversion_per_year, lease.vol_per_year, dt)
    steps = np.arange(1, h.n_periods + 1)
    lease_var = lease_sd**2 * (1.0 - lease_a ** (2 * steps)) / (1.0 - lease_a**2)
    occ = m.ai_occupancy
    occ_a, occ_sd = _ou(occ.reversion_per_year, occ.vol_per_year, dt)
    g = m.gpu_hour
    regions = list(m.power_regions.values())
    pa, psd = zip(*(_ou(r.reversion_per_year, r.vol_per_year, dt) for r in regions), strict=True)
    theta = [
        np.log(r.mean_usd_per_mwh) - r.vol_per_year**2 / (4.0 * r.reversion_per_year)
        for r in regions
    ]
    region_names = tuple(m.power_regions)
    sites = sc.sites
    return MarketParams(
        n_periods=h.n_periods,
        dt_years=dt,
        hours_per_period=h.hours_per_period,
        ln_p0=float(np.log(b.price_usd)),
        btc_drift_dt=btc_drift * dt,
        btc_vol_sqdt=b.vol_per_year * np.sqrt(dt),
        jump_lambda_dt=lam * dt,
        jump_mean=b.jump_mean_log,
        jump_std=b.jump_std_log,
        btc_mean_return=(btc_drift + lam * b.jump_mean_log) * dt,
        ln_h0=float(np.log(hr.hashrate_eh_s)),
        hash_drift_dt=hr.drift_per_year * dt,
        hash_vol_sqdt=hr.vol_per_year * np.sqrt(dt),
        hash_beta=hr.elasticity_to_btc,
        hash_lag=hr.lag_periods,
        halving_step=hr.halving_step_log,
        hash_down=float(-np.expm1(-hr.down_response_per_year * dt)),
        hash_up=float(-np.expm1(-hr.up_response_per_year * dt)),
        hash_gap0=float(ln_c0 + np.log(b.price_usd) - np.log(hr.hashrate_eh_s) - ln_be0),
        hash_ln_breakeven=ln_be0 - hr.drift_per_year * t_end,
        subsidy_btc=subsidy,
        halving_in_period=halving,
        blocks_per_day=m.halving.blocks_per_day,
        fees_btc=m.fees_btc_per_block,
        ln_lease0=float(np.log(lease.rate_usd_per_kw_month)),
        lease_drift=lease.mean_drift_per_year,
        lease_a=lease_a,
        lease_sd=lease_sd,
        lease_var=lease_var,
        occ_mean_logit=float(np.log(occ.mean / (1.0 - occ.mean))),
        occ_u0=float(np.log(occ.initial / (1.0 - occ.initial))),
        occ_a=occ_a,
        occ_sd=occ_sd,
        ln_gpu0=float(np.log(g.price_usd)),
        gpu_drift_dt=(np.log1p(-g.decline_per_year) - 0.5 * g.vol_per_year**2) * dt,
        gpu_vol_sqdt=g.vol_per_year * np.sqrt(dt),
        power_theta=np.array(theta),
        power_x0=np.log([r.initial_usd_per_mwh for r in regions]),
        power_a=np.array(pa),
        power_sd=np.array(psd),
        power_intra=np.array([r.intra_period_dispersion for r in regions]),
        chol=cholesky_psd(correlation_matrix(sc)),
        site_region=np.array([region_names.index(s.region) for s in sites], dtype=np.int64),
        site_ln_rev_per_hp=np.log([1000.0 / (24.0 * s.efficiency_j_per_th) for s in sites]),
        site_hours_uptime=np.array([h.hours_per_period * s.uptime for s in sites]),
        site_indexed_share=np.array([s.power.market_indexed_share for s in sites]),
        site_fixed_price=np.array([s.power.fixed_price_usd_per_mwh for s in sites]),
        site_resale=np.array([float(s.power.resale_allowed) for s in sites]),
        lease_default_hazard=np.array(
            [1.0 - (1.0 - lo.tenant_default_prob_per_year) ** dt for lo in sc.lease_offers]
        ),
        region_names=region_names,
        site_names=tuple(s.name for s in sites),
    )


# --------------------------------------------------------------------------- path stepping
@dataclass
class PeriodFactors:
    """Factor values of one period for a chunk of paths (arrays of shape ``(n,)`` or ``(R, n)``)."""

    t: int
    ln_btc: Any
    ln_hashrate: Any
    ln_hashprice: Any
    ln_power: Any
    ln_lease: Any
    occ_logit: Any
    ln_gpu: Any

    def values(self, xp: ModuleType = np) -> dict[str, Any]:
        """Factor values in their units (BTC $, EH/s, $/PH/day, $/MWh, $/kW-month, share, $)."""
        return {
            "btc_price_usd": xp.exp(self.ln_btc),
            "network_hashrate_eh_s": xp.exp(self.ln_hashrate),
            "hashprice_usd_per_ph_day": xp.exp(self.ln_hashprice),
            "power_price_usd_per_mwh": xp.exp(self.ln_power),
            "ai_lease_usd_per_kw_month": xp.exp(self.ln_lease),
            "ai_occupancy": 1.0 / (1.0 + xp.exp(-self.occ_logit)),
            "gpu_hour_usd": xp.exp(self.ln_gpu),
        }


def poisson_from_uniform(u: Any, lam: float, *, xp: ModuleType = np) -> Any:
    """Poisson(λ) counts by inversion of the CDF, capped at :data:`MAX_JUMPS`.

    The count is the number of CDF values F(0) … F(MAX_JUMPS − 1) below ``u``: one binary
    search per path instead of a comparison pass per k, with the same counts.
    """
    if lam <= 0.0:
        return xp.zeros(u.shape, dtype=xp.float64)
    pmf = np.exp(-lam)
    cdf = pmf
    table = np.empty(MAX_JUMPS)
    for k in range(1, MAX_JUMPS + 1):
        table[k - 1] = cdf
        pmf *= lam / k
        cdf += pmf
    return xp.searchsorted(xp.asarray(table), u, side="left").astype(xp.float64)


def correlate(chol: Any, z: Any, *, xp: ModuleType = np) -> Any:
    """Correlated shocks ``L z`` of shape ``(F, n)`` from ``z`` of shape ``(≥F, n)``.

    On NumPy without BLAS: a (5 + R)² product per period is too small for threads, and OpenBLAS's
    spinning threads slow everything else down on a loaded machine. Row ``i`` is
    Σ_{j≤i} L_ij z_j summed in order of j with elementwise multiplies and adds, so every path's
    value is the same whatever the chunk and its position in it; columns of L that are zero
    below some row are cut short there.
    """
    nf = chol.shape[0]
    if xp is not np:
        return xp.asarray(chol) @ z[:nf]
    out = chol[:, :1] * z[0]
    tmp = np.empty((nf, z.shape[1]))
    for j in range(1, nf):
        nz = np.flatnonzero(chol[j:, j])
        if nz.size == 0:
            continue
        hi = j + int(nz[-1]) + 1
        part = tmp[: hi - j]
        np.multiply(chol[j:hi, j : j + 1], z[j], out=part)
        out[j:hi] += part
    return out


@dataclass(frozen=True)
class Shocks:
    """Given random inputs of a chunk of n paths, in place of their Philox draws (for example
    a Latin hypercube design, :mod:`~hashpivot.kernels.sampling`).

    ``z`` (T, n_normals, n): the standard normals of every period (the correlated shocks, then
    the jump size); ``u_jump`` (T, n): the uniforms on (0, 1) of the BTC jump counts.
    """

    z: np.ndarray
    u_jump: np.ndarray

    @property
    def n_paths(self) -> int:
        return int(self.z.shape[2])

    def take(self, start: int, stop: int) -> Shocks:
        """The shocks of paths ``start .. stop`` (views)."""
        return Shocks(self.z[:, :, start:stop], self.u_jump[:, start:stop])

    def check(self, mp: MarketParams, n: int) -> None:
        """Raise ``ValueError`` unless the shapes fit ``n`` paths of ``mp``."""
        want_z, want_u = (mp.n_periods, mp.n_normals, n), (mp.n_periods, n)
        if self.z.shape != want_z or self.u_jump.shape != want_u:
            raise ValueError(
                f"shocks of shape z {self.z.shape}, u_jump {self.u_jump.shape}; "
                f"expected {want_z} and {want_u}"
            )


def iter_periods(
    mp: MarketParams,
    key: tuple[int, int],
    paths: Any,
    *,
    xp: ModuleType = np,
    shocks: Shocks | None = None,
) -> Iterator[PeriodFactors]:
    """Step a chunk of paths through the horizon, yielding each period's factors.

    Parameters
    ----------
    mp
        Compiled market parameters.
    key
        Philox key (see :func:`~hashpivot.kernels.philox.seed_key`).
    paths
        Global indices of the paths (int64 array); they fix the random numbers.
    shocks
        The paths' normals and jump uniforms, given instead of drawn from ``key`` (same
        shape of use: period t takes ``z[t]`` and ``u_jump[t]``).
    """
    n = paths.shape[0]
    if shocks is not None:
        shocks.check(mp, n)
    chol = mp.chol if xp is np else xp.asarray(mp.chol)
    ln_p = xp.full(n, mp.ln_p0)
    ln_h = xp.full(n, mp.ln_h0)
    x_pow = xp.asarray(mp.power_x0)[:, None] * xp.ones((1, n))
    theta = xp.asarray(mp.power_theta)[:, None]
    pa = xp.asarray(mp.power_a)[:, None]
    psd = xp.asarray(mp.power_sd)[:, None]
    y_lease = xp.zeros(n)
    u_occ = xp.full(n, mp.occ_u0)
    ln_g = xp.full(n, mp.ln_gpu0)
    lag = mp.hash_lag
    past_returns = [None] * (lag + 1)  # ring buffer of demeaned BTC returns
    past_gaps = [None] * (lag + 1)  # ring buffer of margin gaps g
    nf = mp.n_factors
    for t in range(mp.n_periods):
        if shocks is not None:
            z, u = xp.asarray(shocks.z[t]), xp.asarray(shocks.u_jump[t])
        elif mp.jump_lambda_dt > 0.0:  # the jump uniform from the normals' Philox call
            z, u = philox.normals_and_uniform(
                key, paths, t, mp.n_normals, philox.JUMP_STREAM, xp=xp
            )
        else:
            z = philox.normals(key, paths, t, mp.n_normals, xp=xp)
        eps = correlate(chol, z, xp=xp)
        jumps = 0.0
        if mp.jump_lambda_dt > 0.0:
            count = poisson_from_uniform(u, mp.jump_lambda_dt, xp=xp)
            jumps = count * mp.jump_mean + xp.sqrt(count) * mp.jump_std * z[nf]
        ret = mp.btc_drift_dt + mp.btc_vol_sqdt * eps[F_BTC] + jumps
        ln_p = ln_p + ret
        past_returns[t % (lag + 1)] = ret - mp.btc_mean_return
        lagged = past_returns[(t - lag) % (lag + 1)] if t >= lag else 0.0
        ln_c = np.log(mp.blocks_per_day * (mp.subsidy_btc[t] + mp.fees_btc) / 1000.0)
        x_h = ln_h + mp.hash_drift_dt
        gap = ln_c + ln_p - x_h - mp.hash_ln_breakeven[t]
        past_gaps[t % (lag + 1)] = gap
        gap_lagged = past_gaps[(t - lag) % (lag + 1)] if t >= lag else mp.hash_gap0
        ln_h = (
            x_h
            + mp.hash_down * xp.minimum(gap, 0.0)
            + mp.hash_up * xp.maximum(gap_lagged, 0.0)
            + mp.hash_vol_sqdt * eps[F_HASH]
            + mp.hash_beta * lagged
            + (mp.halving_step if mp.halving_in_period[t] else 0.0)
        )
        ln_hp = ln_c + ln_p - ln_h
        x_pow = theta + (x_pow - theta) * pa + psd * eps[N_BASE_FACTORS:]
        y_lease = mp.lease_a * y_lease + mp.lease_sd * eps[F_LEASE]
        ln_lease = (
            mp.ln_lease0 + mp.lease_drift * (t + 1) * mp.dt_years + y_lease - 0.5 * mp.lease_var[t]
        )
        u_occ = mp.occ_mean_logit + (u_occ - mp.occ_mean_logit) * mp.occ_a + mp.occ_sd * eps[F_OCC]
        ln_g = ln_g + mp.gpu_drift_dt + mp.gpu_vol_sqdt * eps[F_GPU]
        yield PeriodFactors(t, ln_p, ln_h, ln_hp, x_pow, ln_lease, u_occ, ln_g)


#: Period × lease-stream × path words per Philox call of :func:`tenant_default_periods`.
DEFAULT_DRAW_ELEMENTS = 1 << 15


def tenant_default_periods(
    mp: MarketParams, key: tuple[int, int], paths: Any, *, xp: ModuleType = np
) -> Any:
    """First period in which each lease's tenant defaults, shape ``(L, n)``; ``T`` = never.

    Lease ``l`` defaults in period ``t`` when the uniform of its lane in stream
    ``DEFAULT_STREAM + l // 4`` falls below the per-period hazard 1 − (1 − q)^Δ, so that
    P(default by the end of period t) = 1 − (1 − q)^{t_years}. The uniforms of many periods
    come from one Philox call (the counter holds the period, so the bits are those of a call
    per period).
    """
    n_leases = mp.lease_default_hazard.shape[0]
    n, t_n = paths.shape[0], mp.n_periods
    out = xp.full((n_leases, n), t_n, dtype=xp.int64)
    if n_leases == 0 or n == 0:
        return out
    hazard = xp.asarray(mp.lease_default_hazard)[None, :, None]
    lo, hi = philox.path_counter(paths, xp=xp)
    n_streams = (n_leases + 3) // 4
    streams = xp.arange(philox.DEFAULT_STREAM, philox.DEFAULT_STREAM + n_streams, dtype=xp.uint64)[
        None, :, None
    ]
    step = max(1, DEFAULT_DRAW_ELEMENTS // (n_streams * n))
    for t0 in range(t_n - 1, -1, -step):  # backwards: the earliest hit wins
        t1 = max(t0 + 1 - step, 0)
        periods = xp.arange(t1, t0 + 1, dtype=xp.uint64)[:, None, None]
        words = philox.philox4x32((lo[None, None], hi[None, None], periods, streams), key, xp=xp)
        u = philox.uniform(xp.stack(words, axis=2), xp=xp)  # (P, streams, 4, n)
        hit = u.reshape(t0 + 1 - t1, 4 * n_streams, n)[:, :n_leases] < hazard
        first = xp.argmax(hit, axis=0) + t1  # earliest hit in the batch, if any
        out = xp.where(hit.any(axis=0), first, out)
    return out


# --------------------------------------------------------------------------- mining margin
#: Abramowitz & Stegun 26.2.17 coefficients: |error| < 7.5e-8 on Φ.
_AS_P = 0.2316419
_AS_B = (0.319381530, -0.356563782, 1.781477937, -1.821255978, 1.330274429)
#: Site × path elements per tile of the NumPy margin kernel (keeps temporaries in L2 cache).
MARGIN_TILE_ELEMENTS = 16384
#: ln of the largest finite float32 (3.4028235e38).
LN_F32_MAX = float(np.log(np.finfo(np.float32).max))
#: Headroom of the float32 margin kernel's clamp [ln units]: the margin adds up to four terms
#: (ln 4) and a period's R·hours·uptime must stay finite after the row coefficients.
_MARGIN_LN_HEADROOM = float(np.log(4.0))


def norm_cdf(x: Any, *, xp: ModuleType = np) -> Any:
    """Φ(x) by A&S 26.2.17 (|error| < 7.5e-8)."""
    pdf = xp.exp(-0.5 * x * x) / SQRT_2PI
    k = 1.0 / (1.0 + _AS_P * xp.abs(x))
    b1, b2, b3, b4, b5 = _AS_B
    tail = pdf * k * (b1 + k * (b2 + k * (b3 + k * (b4 + k * b5))))
    return xp.where(x >= 0.0, 1.0 - tail, tail)


def expected_shortfall_put(rev: Any, power: Any, sigma: Any, *, xp: ModuleType = np) -> Any:
    """E[(R − X)⁺] with X lognormal of mean ``power`` and log-sd ``sigma`` [$/MWh].

    Reference implementation (broadcasting arrays); where ``sigma`` is 0 it is max(R − p, 0).
    """
    safe = xp.where(sigma > 0.0, sigma, 1.0)
    d1 = (xp.log(power / rev) + 0.5 * safe * safe) / safe
    put = rev * norm_cdf(-(d1 - safe), xp=xp) - power * norm_cdf(-d1, xp=xp)
    return xp.where(sigma > 0.0, xp.maximum(put, 0.0), xp.maximum(rev - power, 0.0))


def _put_tile(
    rev: np.ndarray, power: np.ndarray, ln_ratio: np.ndarray, sig: np.ndarray, out: np.ndarray
) -> None:
    """E[(R − X)⁺] on a float32 tile, in place, with one exp for both densities.

    ``ln_ratio`` = ln(p/R); ``sig`` (S, 1) is σ_intra (> 0). Uses φ(d₂) = φ(d₁)·p/R and
    Φ(−d) = tail(|d|) for d ≥ 0, else 1 − tail(|d|).
    """
    d1 = ln_ratio
    d1 += 0.5 * sig * sig
    d1 /= sig  # d₁
    pdf = np.multiply(d1, d1)
    pdf *= np.float32(-0.5)
    np.exp(pdf, out=pdf)
    pdf *= np.float32(1.0 / SQRT_2PI)  # φ(d₁)
    b1, b2, b3, b4, b5 = (np.float32(b) for b in _AS_B)
    for sign, d, dens, weight in ((1, d1, pdf, power), (-1, None, None, rev)):
        if sign == -1:
            d = d1 - sig  # d₂
            dens = pdf * power
            dens /= rev  # φ(d₂)
        k = np.abs(d)
        k *= np.float32(_AS_P)
        k += np.float32(1.0)
        np.reciprocal(k, out=k)
        poly = k * b5
        for b in (b4, b3, b2):
            poly += b
            poly *= k
        poly += b1
        poly *= k
        poly *= dens  # tail(|d|) = 1 − Φ(|d|)
        # Φ(−d) = tail where d ≥ 0, 1 − tail where d < 0 (np.where: a masked ufunc is slower)
        poly = np.where(d < 0, np.float32(1.0) - poly, poly)
        poly *= weight
        if sign == 1:
            np.negative(poly, out=out)  # −p·Φ(−d₁)
        else:
            out += poly  # + R·Φ(−d₂)
    np.maximum(out, np.float32(0.0), out=out)


def _margin_rows(mp: MarketParams) -> tuple[np.ndarray, ...]:
    """Row coefficients (a, b, d, e) of the margin per MW, float32 ``(S, 1)`` each:
    margin = a·put + b·p + d + e·(R − c)⁺ with hours·uptime folded in. With w = 1 − share,
    resale sites have a = 1, b = w, d = −w·c, e = 0 (put–call parity), the others a = share,
    b = d = 0, e = w."""
    share = mp.site_indexed_share
    w = 1.0 - share
    resale = mp.site_resale > 0.0
    hu = mp.site_hours_uptime
    rows = (
        np.where(resale, 1.0, share),
        np.where(resale, w, 0.0),
        np.where(resale, -w * mp.site_fixed_price, 0.0),
        np.where(resale, 0.0, w),
    )
    return tuple((r * hu).astype(np.float32)[:, None] for r in rows)


def margin_log_bounds(mp: MarketParams) -> tuple[float, float]:
    """Clamp of ln hashprice and ln power price in the float32 margin kernel, (lo, hi).

    Within ±``hi`` every float32 intermediate of :func:`_put_tile` is finite and every divisor
    a normal number: revenue R = HP·k_s and power p times the largest row coefficient
    (hours·uptime), summed over the four terms, stay below the float32 maximum, and
    φ(d₂) = φ(d₁)·p/R is formed as (φ(d₁)·p)/R with R ≥ k_s·e^{−hi}.
    Accepted scenarios can reach ln HP ≈ 80 (BTC at $10M growing at 100%/year against a
    shrinking network for 40 years); values beyond the bound are economically meaningless
    ($10³³/MWh) and are capped instead of turning into inf or NaN.
    """
    rows = np.abs(np.concatenate([r.ravel() for r in _margin_rows(mp)] + [np.ones(1)]))
    c_rev = np.abs(mp.site_ln_rev_per_hp) if mp.n_sites else np.zeros(1)
    hi = LN_F32_MAX - float(np.log(rows.max())) - float(c_rev.max()) - _MARGIN_LN_HEADROOM
    return -hi, hi


def mining_margin(
    mp: MarketParams, f: PeriodFactors, *, xp: ModuleType = np, out: Any = None
) -> Any:
    """Expected mining margin per utility MW of ASICs of every site, shape ``(S, n)`` [$/MW/period].

    On NumPy the paths are processed in cache-sized float32 tiles (power prices exponentiated
    per region, revenue as hashprice times a per-site constant, the contract terms as the row
    coefficients of :func:`_margin_rows`; ln hashprice and ln power clamped to
    :func:`margin_log_bounds` so that nothing overflows); other array modules use the
    broadcasting reference formulas (the CUDA path has its own fused kernel, same clamp).

    Parameters
    ----------
    out
        Optional float64 array of shape ``(S, n)`` to write into (a strided view, such as the
        transpose of a path-major ``(n, S)`` block, is fine); it is returned.
    """
    if xp is not np:
        ref = _mining_margin_reference(mp, f, xp=xp)
        if out is None:
            return ref
        out[...] = ref
        return out
    region = mp.site_region
    n = f.ln_hashprice.shape[0]
    s = mp.n_sites
    if out is None:
        out = np.empty((s, n), dtype=np.float64)
    tile = max(64, MARGIN_TILE_ELEMENTS // max(s, 1))
    lo, hi = (np.float32(v) for v in margin_log_bounds(mp))
    c_rev = mp.site_ln_rev_per_hp.astype(np.float32)[:, None]
    k_rev = np.exp(mp.site_ln_rev_per_hp).astype(np.float32)[:, None]
    sig = mp.power_intra[region].astype(np.float32)[:, None]
    has_sig = bool(np.all(sig > 0.0))
    c = mp.site_fixed_price.astype(np.float32)[:, None]
    row_a, row_b, row_d, row_e = _margin_rows(mp)
    use_b, use_d, use_e = bool(np.any(row_b)), bool(np.any(row_d)), bool(np.any(row_e))
    for a in range(0, n, tile):
        b = min(n, a + tile)
        ln_hp = f.ln_hashprice[a:b].astype(np.float32)
        np.clip(ln_hp, lo, hi, out=ln_hp)
        ln_pow_r = f.ln_power[:, a:b].astype(np.float32)  # (R, tile)
        np.clip(ln_pow_r, lo, hi, out=ln_pow_r)
        power = np.take(np.exp(ln_pow_r), region, axis=0)
        ln_pow_r -= ln_hp
        ln_ratio = np.take(ln_pow_r, region, axis=0)
        ln_ratio -= c_rev  # ln(p/R)
        rev = np.multiply(np.exp(ln_hp), k_rev)
        put = np.empty_like(rev)
        if has_sig:
            _put_tile(rev, power, ln_ratio, sig, put)
        else:
            # float64: p/R of the clamped values may exceed the float32 range
            put[...] = expected_shortfall_put(
                rev.astype(np.float64), power.astype(np.float64), sig.astype(np.float64)
            )
        put *= row_a
        if use_b:
            power *= row_b
            put += power
        if use_d:
            put += row_d
        if use_e:
            rev -= c
            np.maximum(rev, np.float32(0.0), out=rev)
            rev *= row_e
            put += rev
        out[:, a:b] = put
    return out


def _mining_margin_reference(mp: MarketParams, f: PeriodFactors, *, xp: ModuleType) -> Any:
    region = xp.asarray(mp.site_region)
    rev = xp.exp(f.ln_hashprice[None, :] + xp.asarray(mp.site_ln_rev_per_hp)[:, None])
    power = xp.exp(f.ln_power[region])
    sigma = xp.asarray(mp.power_intra)[region][:, None]
    put = expected_shortfall_put(rev, power, sigma, xp=xp)
    share = xp.asarray(mp.site_indexed_share)[:, None]
    c = xp.asarray(mp.site_fixed_price)[:, None]
    resale = xp.asarray(mp.site_resale)[:, None]
    fixed = xp.where(resale > 0.0, put + power - c, xp.maximum(rev - c, 0.0))
    return xp.asarray(mp.site_hours_uptime)[:, None] * (share * put + (1.0 - share) * fixed)
