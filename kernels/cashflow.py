r"""Cash flows of a plan on coefficient trajectories (scenarios or paths), without recourse.

This is the second, independent implementation of the cash-flow equations of the MILP
(:mod:`hashpivot.optimizer.model`): the MILP's objective on its K scenarios must equal the
value computed here for the plan it returns. With an ``n``-first axis (scenarios or paths):

    MIN[t]   = Σ_s (m[s,t] − fixed_opex_s·Δ)·A[s,t]
    LEASE[t] = Σ_l D[l,t]·(rent[l,t]·surv[l,t] + μ[t]·relet[l,t]),  μ = lease×occ·1000·12Δ
    RACK[t]  = Σ_s K[s,t]·(gpus·hours·util·G[t] − kW/1000·PUE·hours·p[region_s,t] − opex·Δ)
    MKT[t]   = μ[t]·Σ_s M[s,t]
    OCF[t]   = MIN + LEASE + RACK + MKT − Σ_s it_opex_s·Δ·I[s,t] − Σ_l pen_l·short[l,t]
    cash[t]  = cash[t−1]·(1 + i_c·Δ) + OCF − capex + salvage + Σ_f draw·(1 − fee) − DS + P·b
    W        = (1+r)^{−TΔ}·(cash[T−1] + P[T−1]·held[T−1] + TV + Σ_s salvage_s·A[s,T−1]
               − Σ_f balance_f[T−1] − DIL)
    TV       = ppy·(mult_ai·AI_NOI[T−1] + mult_mining·MIN[T−1]) + Σ_s opt[s]·C[s]
    opt[s]   = max(0, ρ_s·(mult_ai·ppy·(μ[T−1] − it_opex_s·Δ) − capex_s)
                      − mult_mining·ppy·(m[s,T−1] − fixed_opex_s·Δ))
    DIL      = Σ_t (1 + i_c·Δ)^{T−1−t}·Σ_f c_f·Δ·balance_f[t−1]

with AI_NOI = LEASE + RACK + MKT − IT opex. Terminal value (one rule for both uses): each use of
a site is worth its multiple (``valuation``, years) times its last-period NOI annualised, so a
site earning the same NOI from AI or from mining is worth the same when the multiples are equal
(the defaults). C[s] = convertible_s − MW started converting: the convertible MW still mining
keep the option to convert at the horizon, worth max(mining value, AI value at the market lease
rate × occupancy − conversion capex) per MW; the mining value is in MIN already, so opt adds the
excess (intrinsic value at the horizon, no time value; ``valuation.conversion_option: false``
drops it). DIL is the dilution cost of convertibles (``dilution_cost_per_year`` c_f): the value
of the holders' conversion option, a cost to shareholders, not cash (no effect on cash, DSCR or
default), accrued on the opening balance and compounded like cash.

Covenants are in force from a facility's draw start to its maturity once anything is drawn from it (facilities with ``covenants: true``), tested from
the first full year (t ≥ ppy−1) on trailing windows of ppy periods: DSCR, Σ OCF ≥ min_dscr·Σ DS
(DS scheduled: interest and amortisation, bullets excluded); leverage, Σ_f balance ≤
max_leverage·Σ OCF (annualised).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from hashpivot.scenarios import Scenario

from .plan import Plan, Schedule, covenant_periods, lease_terms, schedule

#: Money tolerance of the constraint checks [$]: well above the MILP's feasibility tolerance
#: (1e-7 in millions), far below anything that matters.
CASH_TOL_USD = 10.0


@dataclass
class CashFlows:
    """Per scenario (or path) cash flows of a plan; arrays have the scenario axis first."""

    ocf_usd: Any  # (n, T)
    mining_usd: Any  # (n, T)
    ai_noi_usd: Any  # (n, T)
    ai_revenue_usd: Any  # (n, T)
    cash_usd: Any  # (n, T)
    terminal_equity_usd: Any  # (n,) discounted, W
    dscr_breach: Any  # (n, T) bool
    leverage_breach: Any  # (n, T) bool
    min_dscr: Any  # (n,) lowest trailing DSCR where tested (inf if never)
    schedule: Schedule

    @property
    def covenant_breach(self) -> Any:
        """Whether any covenant fails in the scenario."""
        return (self.dscr_breach | self.leverage_breach).any(axis=1)


def rack_coefficient(
    sc: Scenario, gpu_hour_usd: Any, power_usd_per_mwh: Any, xp: ModuleType = np
) -> Any:
    """Net revenue of one active rack at each site, (n, S, T) [$/rack/period]."""
    g = sc.gpu_racks
    hours = sc.horizon.hours_per_period
    regions = list(sc.market.power_regions)
    region = xp.asarray([regions.index(s.region) for s in sc.sites])
    revenue = g.gpus_per_rack * hours * g.utilization * gpu_hour_usd[:, None, :]
    power = g.rack_kw / 1000.0 * g.pue * hours * power_usd_per_mwh[:, region, :]
    return revenue - power - g.opex_usd_per_rack_year * sc.horizon.dt_years


def trailing_sum(x: Any, window: int, xp: ModuleType = np) -> Any:
    """Sum over the trailing ``window`` periods (fewer at the start), along the last axis."""
    c = xp.cumsum(x, axis=-1)
    out = c.copy()
    out[..., window:] = c[..., window:] - c[..., :-window]
    return out


def cvar(losses: np.ndarray, weights: np.ndarray, alpha: float) -> float:
    """CVaR_α of a discrete loss distribution: mean of the worst (1 − α) probability mass."""
    order = np.argsort(-losses, kind="stable")
    w = weights[order] / weights.sum()
    tail = 1.0 - alpha
    acc = np.cumsum(w)
    take = np.minimum(w, np.maximum(tail - (acc - w), 0.0))
    return float((take * losses[order]).sum() / tail)


@dataclass
class OperatingFlows:
    """Operating cash flows of a schedule on coefficient trajectories, (n, T) each [$/period]."""

    mining_usd: Any  # margin net of fixed opex on the ASIC MW still mining
    gross_mining_usd: Any  # margin only (for revenue shares)
    ai_revenue_usd: Any  # leases (incl. re-let MW), own racks, market leasing
    ai_noi_usd: Any  # AI revenue less IT opex
    ocf_usd: Any  # mining + AI NOI − late penalties


def operating_flows(
    sc: Scenario, sch: Schedule, coeffs: dict[str, Any], *, xp: ModuleType = np
) -> OperatingFlows:
    """MIN, LEASE, RACK, MKT and OCF of the module docstring for every scenario or path.

    Sums over sites and leases are contractions of the (n, S, T) and (n, L, T) coefficients
    with the schedule (``einsum``: no (n, S, T) temporaries, any memory layout); the fixed
    parts (fixed opex, rack opex) are summed over the schedule first, and the racks' power over
    regions (RACK = a·G·ΣK − b·Σ_r p_r·Σ_{s∈r} K_s − opex·ΣK).
    """
    dt = sc.horizon.dt_years
    a = sch.asic_mw  # (S, T)
    margin = xp.asarray(coeffs["margin_usd_per_mw"])
    fixed = np.array([s.fixed_opex_usd_per_mw_year * dt for s in sc.sites])[:, None]
    gross = xp.einsum("nst,st->nt", margin, xp.asarray(a))
    mining = gross - xp.asarray((fixed * a).sum(axis=0))[None]
    mu = xp.asarray(coeffs["lease_x_occupancy"]) * 1000.0 * 12 * dt  # $/IT MW/period
    rent, _, _ = lease_terms(sc)
    d = sch.lease_total_it_mw  # (L, T)
    surv, relet = xp.asarray(coeffs["tenant_survival"]), xp.asarray(coeffs["tenant_relet"])
    lease = xp.einsum("nlt,lt->nt", surv, xp.asarray(d * rent))
    lease += mu * xp.einsum("nlt,lt->nt", relet, xp.asarray(d))
    racks = _rack_flows(sc, sch.racks_active, coeffs, xp)
    market = mu * xp.asarray(sch.market_it_mw.sum(axis=0))[None]
    opex = np.array([s.conversion.opex_usd_per_it_mw_year * dt for s in sc.sites])[:, None]
    it_opex = xp.asarray((opex * sch.it_online_mw).sum(axis=0))
    penalty = np.array([lo.late_penalty_usd_per_mw_period for lo in sc.lease_offers])[:, None]
    pen = xp.asarray((penalty * sch.lease_short_it_mw).sum(axis=0))
    ai_revenue = lease
    ai_revenue += racks
    ai_revenue += market
    ai_noi = ai_revenue - it_opex[None]
    return OperatingFlows(
        mining_usd=mining,
        gross_mining_usd=gross,
        ai_revenue_usd=ai_revenue,
        ai_noi_usd=ai_noi,
        ocf_usd=mining + ai_noi - pen[None],
    )


def _rack_flows(
    sc: Scenario, racks_active: np.ndarray, coeffs: dict[str, Any], xp: ModuleType
) -> Any:
    """Σ_s K[s,t]·rack_coefficient[n,s,t] of every scenario or path, (n, T) [$/period], with
    the power term summed per region."""
    g = sc.gpu_racks
    hours = sc.horizon.hours_per_period
    regions = list(sc.market.power_regions)
    region = np.array([regions.index(s.region) for s in sc.sites], dtype=np.int64)
    k_total = racks_active.sum(axis=0)  # (T,)
    k_region = np.zeros((len(regions), racks_active.shape[1]))
    np.add.at(k_region, region, racks_active)  # (R, T)
    gpu = xp.asarray(coeffs["gpu_hour_usd"])
    power = xp.asarray(coeffs["power_usd_per_mwh"])
    out = gpu * xp.asarray(g.gpus_per_rack * hours * g.utilization * k_total)[None]
    out -= xp.einsum("nrt,rt->nt", power, xp.asarray(g.rack_kw / 1000.0 * g.pue * hours * k_region))
    out -= xp.asarray(g.opex_usd_per_rack_year * sc.horizon.dt_years * k_total)[None]
    return out


@dataclass
class CovenantTerms:
    """Both sides of the covenants on trailing years (scenario or path axis first)."""

    tested: Any  # (T,) bool: a drawn facility's covenants in force, from the first full year
    service_trail_usd: Any  # (T,) scheduled debt service over the trailing year
    required_ocf_usd: Any  # (T,) min_dscr × service_trail_usd
    ocf_trail_usd: Any  # (n, T) OCF over the trailing year
    debt_usd: Any  # (T,) total balance
    debt_cap_usd: Any  # (n, T) max_leverage × annualised trailing OCF


def covenant_terms(
    sc: Scenario, plan: Plan, sch: Schedule, ocf: Any, *, xp: ModuleType = np
) -> CovenantTerms:
    """DSCR needs OCF ≥ ``required_ocf_usd``, leverage debt ≤ ``debt_cap_usd``, where tested."""
    ppy, n_t = sc.horizon.periods_per_year, sc.horizon.n_periods
    cov = sc.covenants
    ds_trail = xp.asarray(trailing_sum(sch.scheduled_service_usd, ppy))
    ocf_trail = trailing_sum(ocf, ppy, xp)
    window = xp.asarray(np.minimum(np.arange(n_t) + 1, ppy))
    return CovenantTerms(
        tested=xp.asarray(covenant_periods(sc, plan)),
        service_trail_usd=ds_trail,
        required_ocf_usd=cov.min_dscr * ds_trail,
        ocf_trail_usd=ocf_trail,
        debt_usd=xp.asarray(sch.balance_usd.sum(axis=0)),
        debt_cap_usd=cov.max_leverage * ocf_trail * (ppy / window)[None],
    )


def conversion_option_usd_per_mw(
    sc: Scenario, mining_net_usd_per_mw: Any, mu_usd_per_it_mw: Any, *, xp: ModuleType = np
) -> Any:
    """opt[s] of the module docstring, (n, S) [$/MW], from the last period's mining margin net of
    fixed opex (n, S) and market lease × occupancy (n,), both per period (IT MW for μ)."""
    v = sc.valuation
    if not v.conversion_option:
        return xp.zeros(mining_net_usd_per_mw.shape)
    ppy, dt = sc.horizon.periods_per_year, sc.horizon.dt_years
    rho = xp.asarray([s.conversion.it_mw_per_utility_mw for s in sc.sites])[None]
    capex = xp.asarray([s.conversion.capex_usd_per_it_mw for s in sc.sites])[None]
    opex = xp.asarray([s.conversion.opex_usd_per_it_mw_year * dt for s in sc.sites])[None]
    ai = rho * (v.ai_noi_multiple * ppy * (mu_usd_per_it_mw[:, None] - opex) - capex)
    return xp.maximum(ai - v.mining_margin_multiple * ppy * mining_net_usd_per_mw, 0.0)


def remaining_convertible_mw(sc: Scenario, sch: Schedule) -> np.ndarray:
    """C[s]: convertible MW not started converting by the last period, (S,) [MW]."""
    started = np.array([s.asic_mw for s in sc.sites]) - sch.asic_mw[:, -1]
    return np.clip(np.array([s.convertible_mw for s in sc.sites]) - started, 0.0, None)


def terminal_value_usd(
    sc: Scenario,
    sch: Schedule,
    mining_usd: Any,
    ai_noi_usd: Any,
    margin_usd_per_mw: Any,
    lease_x_occupancy: Any,
    *,
    xp: ModuleType = np,
) -> Any:
    """TV of the module docstring, (n,) [$], from the last period's MIN, AI_NOI (n,), gross
    margin per MW (n, S) and lease × occupancy [$/kW-month] (n,)."""
    v = sc.valuation
    dt, ppy = sc.horizon.dt_years, sc.horizon.periods_per_year
    fixed = xp.asarray([s.fixed_opex_usd_per_mw_year * dt for s in sc.sites])[None]
    opt = conversion_option_usd_per_mw(
        sc, margin_usd_per_mw - fixed, lease_x_occupancy * 1000.0 * 12 * dt, xp=xp
    )
    option = (opt * xp.asarray(remaining_convertible_mw(sc, sch))[None]).sum(axis=1)
    return ppy * (v.ai_noi_multiple * ai_noi_usd + v.mining_margin_multiple * mining_usd) + option


def dilution_accrued_usd(sc: Scenario, sch: Schedule) -> float:
    """DIL of the module docstring for the plan's own balances [$ at the horizon]."""
    h = sc.horizon
    growth = (1.0 + h.cash_interest_rate * h.dt_years) ** np.arange(h.n_periods - 1, -1, -1)
    return float((sch.dilution_usd.sum(axis=0) * growth).sum())


def cash_flows(
    sc: Scenario, plan: Plan, coeffs: dict[str, Any], *, xp: ModuleType = np
) -> CashFlows:
    """Cash flows of ``plan`` on coefficient arrays (keys of ``ReducedScenarios.coefficient_arrays``)."""
    h = sc.horizon
    dt, n_t = h.dt_years, h.n_periods
    sch = schedule(sc, plan)
    op = operating_flows(sc, sch, coeffs, xp=xp)
    mining, ai_revenue, ai_noi, ocf = op.mining_usd, op.ai_revenue_usd, op.ai_noi_usd, op.ocf_usd
    btc = xp.asarray(coeffs["btc_price_usd"])
    fees = np.array([f.upfront_fee_share for f in sc.debt_facilities])[:, None]
    financing = xp.asarray(
        (plan.draws_usd * (1.0 - fees)).sum(axis=0)
        - sch.debt_service_usd
        - sch.capex_usd
        + sch.salvage_usd
    )
    growth = 1.0 + h.cash_interest_rate * dt
    n = ocf.shape[0]
    cash = xp.empty((n, n_t))
    prev = xp.full(n, sc.treasury.cash_usd)
    sold = xp.asarray(plan.btc_sold)
    for t in range(n_t):
        prev = prev * growth + ocf[:, t] + financing[t] + btc[:, t] * sold[t]
        cash[:, t] = prev
    salvage_end = float(
        (np.array([s.asic_salvage_usd_per_mw for s in sc.sites]) * sch.asic_mw[:, -1]).sum()
    )
    tv = terminal_value_usd(
        sc,
        sch,
        mining[:, -1],
        ai_noi[:, -1],
        xp.asarray(coeffs["margin_usd_per_mw"])[:, :, -1],
        xp.asarray(coeffs["lease_x_occupancy"])[:, -1],
        xp=xp,
    )
    terminal = (
        cash[:, -1]
        + btc[:, -1] * float(sch.btc_held[-1])
        + tv
        + salvage_end
        - float(sch.balance_usd[:, -1].sum())
        - dilution_accrued_usd(sc, sch)
    )
    disc = (1.0 + h.discount_rate) ** (-n_t * dt)
    ct = covenant_terms(sc, plan, sch, ocf, xp=xp)
    tested, ds_trail, ocf_trail = ct.tested, ct.service_trail_usd, ct.ocf_trail_usd
    dscr_on = tested
    dscr_breach = dscr_on[None] & (ocf_trail < ct.required_ocf_usd[None] - CASH_TOL_USD)
    lev_breach = tested[None] & (ct.debt_usd[None] > ct.debt_cap_usd + CASH_TOL_USD)
    ratio = xp.where(
        dscr_on[None] & (ds_trail > 0)[None],
        ocf_trail / xp.where(ds_trail > 0, ds_trail, 1.0)[None],
        xp.inf,
    )
    return CashFlows(
        ocf_usd=ocf,
        mining_usd=mining,
        ai_noi_usd=ai_noi,
        ai_revenue_usd=ai_revenue,
        cash_usd=cash,
        terminal_equity_usd=disc * terminal,
        dscr_breach=dscr_breach,
        leverage_breach=lev_breach,
        min_dscr=ratio.min(axis=1),
        schedule=sch,
    )


def chance_breach(sc: Scenario, cf: CashFlows) -> np.ndarray:
    """Per scenario, whether it misses what the chance constraint bounds: a covenant, or cash
    below the minimum at a period end (K,) bool."""
    short = (np.asarray(cf.cash_usd) < sc.covenants.min_cash_usd - CASH_TOL_USD).any(axis=1)
    return np.asarray(cf.covenant_breach) | short


#: Dollars per million dollars (minimum-cash shortfalls in :func:`breach_severity`) [$/M$].
USD_PER_MUSD = 1e6


def breach_severity(sc: Scenario, plan: Plan, cf: CashFlows) -> np.ndarray:
    """How badly ``plan`` (with its cash flows ``cf``) breaks the covenants or minimum cash in
    each scenario, (K,) [-]; zero exactly where :func:`chance_breach` is False.

    The largest of the relative covenant shortfalls over the tested periods,
    (min_dscr·DS − OCF)/(min_dscr·DS) for the DSCR and (debt − max_leverage·OCF)/debt for
    leverage (trailing year, annualised), and the largest minimum-cash shortfall in M$.
    """
    short = np.maximum(sc.covenants.min_cash_usd - np.asarray(cf.cash_usd), 0.0).max(axis=1)
    short = np.where(short > CASH_TOL_USD, short / USD_PER_MUSD, 0.0)
    ct = covenant_terms(sc, plan, cf.schedule, np.asarray(cf.ocf_usd))
    tested = ct.tested
    if not tested.any():
        return short
    ocf = ct.ocf_trail_usd[:, tested]
    need, debt, cap = ct.required_ocf_usd[tested], ct.debt_usd[tested], ct.debt_cap_usd[:, tested]
    dscr = np.where(need > 0, (need[None] - ocf) / np.where(need > 0, need, 1.0)[None], 0.0)
    lev = np.where(debt > 0, (debt[None] - cap) / np.where(debt > 0, debt, 1.0)[None], 0.0)
    return np.maximum(np.maximum(np.maximum(dscr, lev).max(axis=1), 0.0), short)


def objective(sc: Scenario, cf: CashFlows, weights: np.ndarray) -> tuple[float, float, float]:
    """(objective, E[W], CVaR_α(−W)) with objective = E[W] − λ·CVaR_α(−W)."""
    w = np.asarray(cf.terminal_equity_usd)
    mean = float(weights @ w)
    risk = cvar(-w, weights, sc.risk.cvar_alpha)
    return mean - sc.risk.cvar_weight * risk, mean, risk
