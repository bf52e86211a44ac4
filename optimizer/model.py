r"""The site-conversion MILP (Pyomo), one function per constraint family.

Indices: site s, period t ∈ 0..T−1, lease offer l, eligible site e ∈ E_l, facility f, power
region r, scenario k with weight p_k. Money is modelled in millions of USD (``MONEY``).

First-stage decisions (the plan, common to all scenarios)
    n[s,t] ∈ ℤ₊ ≤ blocks_s           conversion blocks started
    r[s,t] ∈ ℤ₊                      GPU racks installed (Σ_s r[s,t] ≤ racks per period)
    y[l] ∈ {0,1}, x[l,e] ∈ {0,1}     offer signed (1 if committed), campus (Σ_e x[l,e] = y[l])
    d[l,e,t] ≥ 0                     IT MW delivered (only in the lease's term)
    draw[f,t] ≥ 0                    only in the draw window; Σ_t draw[f,t] ≤ size_f
    b[t] ∈ [0, max_sale]             BTC sold; Σ_t b[t] ≤ held₀ − floor; b[T−1] = 0 (a last-
                                     period sale is valued at the terminal price: no decision)

Conversion and capacity (``add_conversion_constraints``, ``add_capacity_constraints``)
    A[s,t] = A[s,t−1] − block_s·n[s,t],  A[s,−1] = asic_s             ASIC MW mining
    I[s,t] = I[s,t−1] + ρ_s·block_s·n[s,t−lead_s]                     IT MW online
    Σ_t block_s·n[s,t] ≤ convertible_s;  Σ_s n[s,t] ≤ fleet blocks per period
    K[s,t] = K[s,t−1] + kW/1000·(r[s,t] − r[s,t−life])                IT MW of active racks
    Σ_l d[l,s,t] + K[s,t] ≤ I[s,t];  M[t] = Σ_s (I − Σ_l d − K)   market IT MW
    Σ_t n[s,t] ≤ N_s = ⌊convertible_s/block_s⌋                       (``add_block_count_cuts``)
    (the convertible row divided by block_s and rounded down, a Chvátal–Gomory cut: n is
    integer, so it removes no plan; where convertible_s is not a whole number of blocks it cuts
    off the LP's fractional last block. Without covenants on the 5- and 10-site synthetic fleets
    the LP with them equals HiGHS's root bound (10 sites: 9,410.3 M$, 9,510.7 without), so they
    are most of what its root cuts achieve; benchmarks/fleet_gap_study.py)
    (racks aggregated in IT MW, not counts: HiGHS takes a count of racks, a sum of integers,
    for an implied integer with an unbounded range, and its reduced-cost fixing keeps ~1,000
    entries for each such column — most of texas_hybrid's root time)

Leases (``add_lease_constraints``)
    d[l,e,t] ≤ it_l·x[l,e];  D[l,t] = Σ_e d[l,e,t] ≤ it_l·y[l]
    hard deadline: D[l,t] = it_l·y[l] for t ≥ deliver_by in the term; else shortfall
    it_l·y[l] − D[l,t] pays pen_l per IT MW per period.

Debt and treasury (``add_debt_constraints``)
    B[f,t] = B[f,t−1] + draw[f,t] − q[f,t]·TD[f],  TD[f] = Σ_t draw[f,t]
    DS[t] = Σ_f rate_f·Δ·B[f,t−1] + q[f,t]·TD[f]   (q: repayment shares, bullet or linear)
    DS_sched[t] = DS[t] without bullet principal (the DSCR's debt service)
    FIN[t] = Σ_f (1−fee_f)·draw[f,t] − DS[t] − capex[t] + salvage[t]

Cash per scenario (``add_cash_constraints``)
    OCF[k,t] = Σ_s (m[k,s,t] − fixed_s·Δ)·A[s,t] + Σ_l (rent[l,t]·surv[k,l,t] + μ[k,t]·relet[k,l,t])·D[l,t]
               + Σ_r ρ_rack[k,r,t]·K_r[t] + μ[k,t]·M[t] − IT opex[t] − Σ_l pen_l·(it_l·y_l − D[l,t])
    cash[k,t] = (1 + i_c·Δ)·cash[k,t−1] + OCF[k,t] + FIN[t] + P[k,t]·b[t]
    cash[k,t] ≥ min cash − Mc_kt·z_k   (the chance constraint's z_k; ``cash_big_m``)

Covenants as chance constraints (``add_covenant_constraints``), t ≥ ppy−1, trailing year W_t
    TD[f] ≤ size_f·u_f, u_f ∈ {0,1};  δ_t ≥ u_f where t is in f's window (draw start..maturity)
    min_dscr·Σ_{W_t} DS_sched − Σ_{W_t} OCF[k,·] ≤ M_kt·z_k + G_kt·(1 − δ_t)
    Σ_f B[f,t] − λ_t·Σ_{W_t} OCF[k,·] ≤ λ_t·M_kt·z_k + G'_kt·(1 − δ_t),  λ_t = max_lev·ppy/|W_t|
    Σ_k p_k·z_k ≤ 1 − confidence,  z_k ∈ {0,1}  (shared with minimum cash: ``add_chance_budget``)
    M_kt = the smallest Δ[k,j,t] left after dropping the lowest of weight ≤ 1 − confidence, with
    Δ[k,j,t] ≥ Σ_{W_t}(OCF[j,·] − OCF[k,·]) for every plan (``excuse_big_m``; the best
    conversion path, irreversible with IT online lead_s periods later: ``conversion_bound``).
    The solver fixes u per regime (``covenant_regimes``): then δ is fixed where it matters
    and G drops out.

Objective (``add_objective``), Rockafellar–Uryasev CVaR; less β·Σ_k p_k·z_k where a breach
price β is set (the optimality-gap batches only)
    W_k = (1+r)^{−TΔ}·(cash[k,T−1] + P[k,T−1]·(held₀ − Σ b) + ppy·(mult_ai·AI_NOI[k,T−1]
          + mult_mining·MIN[k,T−1]) + Σ_s opt[k,s]·(convertible_s − block_s·Σ_t n[s,t])
          + Σ_s salvage_s·A[s,T−1] − Σ_f B[f,T−1]
          − Σ_{t≥1} (1 + i_c·Δ)^{T−1−t}·Σ_f c_f·Δ·B[f,t−1])
    opt[k,s]: the option to convert at the horizon, c_f: a convertible's dilution cost
    (terminal-value rule and both terms in :mod:`hashpivot.kernels.cashflow`)
    max Σ_k p_k·W_k − λ·(η + Σ_k p_k·u_k/(1−α)),  u_k ≥ −W_k − η,  u_k ≥ 0

The same cash flows are computed independently by :mod:`hashpivot.kernels.cashflow`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from hashpivot.kernels.cashflow import (
    conversion_option_usd_per_mw,
    rack_coefficient,
)
from hashpivot.kernels.plan import covenant_windows, debt_terms, lease_terms, rack_life_periods
from hashpivot.kernels.reduce import ReducedScenarios
from hashpivot.scenarios import Scenario

#: Money unit of the model [$]: coefficients and money variables are in millions.
MONEY = 1e6
#: Slack added to big-M constants (relative).
BIG_M_MARGIN = 1.05
#: Tolerance of the whole-block test ⌊convertible/block⌋ [blocks].
BLOCK_COUNT_TOL = 1e-9
#: Most facilities with covenants for which every drawn/undrawn regime is solved on its own.
MAX_REGIME_FACILITIES = 3


@dataclass
class ModelData:
    """Scenario and reduced coefficients as NumPy arrays in model units."""

    sc: Scenario
    red: ReducedScenarios
    n_sites: int
    n_periods: int
    n_leases: int
    n_facilities: int
    n_scenarios: int
    n_regions: int
    weights: np.ndarray
    block_mw: np.ndarray
    rho: np.ndarray
    lead: np.ndarray
    site_region: np.ndarray
    mining_coef: np.ndarray  # (K, S, T) M$/MW
    lease_coef: np.ndarray  # (K, L, T) M$/IT MW incl. penalty relief
    market_coef: np.ndarray  # (K, T) M$/IT MW
    rack_coef: np.ndarray  # (K, R, T) M$/rack
    btc_price: np.ndarray  # (K, T) M$/BTC
    it_opex: np.ndarray  # (S,) M$/IT MW/period
    penalty: np.ndarray  # (L,) M$/IT MW/period
    rent: np.ndarray  # (L, T) M$/IT MW/period
    active: np.ndarray  # (L, T)
    late: np.ndarray  # (L, T)
    draw_allowed: np.ndarray  # (F, T)
    repay_share: np.ndarray  # (F, T)
    rack_life: int
    discount: float
    option: np.ndarray  # (K, S) M$/MW: the option to convert at the horizon, opt[k,s]
    breach_price: float = 0.0
    """Price of excused probability in the objective [M$ per unit of probability]: the
    objective loses breach_price·Σ_k p_k·z_k (a Lagrangian term; 0 in every plan solve, set
    by the optimality-gap batches of :mod:`~hashpivot.optimizer.validation`)."""
    expectation: ModelData | None = None
    """Where set, E[W] in the objective is W of this data's single scenario, whose coefficients
    are averages over many paths (:func:`averaged`), and the scenarios of ``weights`` carry only
    the CVaR and the chance constraint (the optimality-gap batches; ``None`` in plan solves)."""

    @property
    def ppy(self) -> int:
        return self.sc.horizon.periods_per_year


def model_data(sc: Scenario, red: ReducedScenarios) -> ModelData:
    """Assemble every coefficient array the model needs, in model units (M$)."""
    h = sc.horizon
    dt = h.dt_years
    regions = list(sc.market.power_regions)
    fixed = np.array([s.fixed_opex_usd_per_mw_year * dt for s in sc.sites])
    rent, active, late = lease_terms(sc)
    mu = red.lease_x_occupancy * 1000.0 * 12 * dt  # $/IT MW/period
    penalty = np.array([lo.late_penalty_usd_per_mw_period for lo in sc.lease_offers])
    lease = rent[None] * red.tenant_survival + mu[:, None, :] * red.tenant_relet
    lease = lease + (penalty[:, None] * late)[None]  # each delivered MW avoids the penalty
    # rack coefficient per region: sites of a region share their power price
    rack_site = rack_coefficient(sc, red.gpu_hour_usd, red.power_usd_per_mwh)
    site_region = np.array([regions.index(s.region) for s in sc.sites])
    rack_region = np.zeros((red.n_scenarios, len(regions), h.n_periods))
    for r in range(len(regions)):
        if np.any(site_region == r):
            rack_region[:, r] = rack_site[:, np.flatnonzero(site_region == r)[0]]
    allowed, repay = debt_terms(sc)
    return ModelData(
        sc=sc,
        red=red,
        n_sites=len(sc.sites),
        n_periods=h.n_periods,
        n_leases=len(sc.lease_offers),
        n_facilities=len(sc.debt_facilities),
        n_scenarios=red.n_scenarios,
        n_regions=len(regions),
        weights=red.weights,
        block_mw=np.array([s.conversion.block_mw for s in sc.sites]),
        rho=np.array([s.conversion.it_mw_per_utility_mw for s in sc.sites]),
        lead=np.array([s.conversion.lead_time_periods for s in sc.sites]),
        site_region=site_region,
        mining_coef=(red.margin_usd_per_mw - fixed[None, :, None]) / MONEY,
        lease_coef=lease / MONEY,
        market_coef=mu / MONEY,
        rack_coef=rack_region / MONEY,
        btc_price=red.btc_price_usd / MONEY,
        it_opex=np.array([s.conversion.opex_usd_per_it_mw_year * dt for s in sc.sites]) / MONEY,
        penalty=penalty / MONEY,
        rent=rent / MONEY,
        active=active,
        late=late,
        draw_allowed=allowed,
        repay_share=repay,
        rack_life=rack_life_periods(sc),
        discount=(1.0 + h.discount_rate) ** (-h.n_periods * dt),
        option=conversion_option_usd_per_mw(
            sc, red.margin_usd_per_mw[:, :, -1] - fixed[None, :], mu[:, -1]
        )
        / MONEY,
    )


#: Scenario arrays of :class:`ModelData` (leading axis K) that :func:`averaged` averages.
SCENARIO_ARRAYS = ("mining_coef", "lease_coef", "market_coef", "rack_coef", "btc_price", "option")


def averaged(d: ModelData) -> ModelData:
    """``d`` reduced to one scenario whose coefficients are the p-weighted means of ``d``'s.

    W of a plan is linear in these coefficients (the cash recursion, the terminal value and
    the conversion option enter with plan-fixed multipliers; the option is averaged as a value,
    not recomputed from averaged margins), so W of the averaged scenario is Σ_k p_k·W_k exactly.
    """
    means = {
        name: np.tensordot(d.weights, getattr(d, name), axes=1)[None] for name in SCENARIO_ARRAYS
    }
    return replace(d, n_scenarios=1, weights=np.ones(1), expectation=None, **means)


def linear(
    constant: float, coefs: Sequence[float] | np.ndarray, variables: Sequence
) -> LinearExpression:
    """A Pyomo linear expression from a constant, coefficients and variables."""
    c = coefs.tolist() if isinstance(coefs, np.ndarray) else list(coefs)
    return LinearExpression(constant=float(constant), linear_coefs=c, linear_vars=list(variables))


def _eligible(d: ModelData) -> list[tuple[int, int]]:
    names = [s.name for s in d.sc.sites]
    return [
        (i, names.index(e)) for i, lo in enumerate(d.sc.lease_offers) for e in lo.eligible_sites
    ]


# --------------------------------------------------------------------------- variables
def add_variables(m: pyo.ConcreteModel, d: ModelData) -> None:
    """Decision and auxiliary variables with their bounds."""
    sc = d.sc
    m.S = pyo.RangeSet(0, d.n_sites - 1)
    m.T = pyo.RangeSet(0, d.n_periods - 1)
    m.L = pyo.RangeSet(0, d.n_leases - 1) if d.n_leases else pyo.Set(initialize=[])
    m.F = pyo.RangeSet(0, d.n_facilities - 1) if d.n_facilities else pyo.Set(initialize=[])
    m.K = pyo.RangeSet(0, d.n_scenarios - 1)
    m.R = pyo.RangeSet(0, d.n_regions - 1)
    m.LE = pyo.Set(initialize=_eligible(d), dimen=2)
    m.LET = pyo.Set(
        initialize=[
            (l, e, t) for (l, e) in _eligible(d) for t in range(d.n_periods) if d.active[l, t]
        ],
        dimen=3,
    )
    per_site = {s: sc.sites[s].conversion.max_blocks_per_period for s in range(d.n_sites)}
    m.blocks = pyo.Var(
        m.S, m.T, within=pyo.NonNegativeIntegers, bounds=lambda _, s, t: (0, per_site[s])
    )
    racks_max = sc.gpu_racks.max_racks_per_period if sc.gpu_racks.enabled else 0
    m.racks_new = pyo.Var(m.S, m.T, within=pyo.NonNegativeIntegers, bounds=(0, racks_max))
    committed = {l: sc.lease_offers[l].committed for l in range(d.n_leases)}
    m.sign = pyo.Var(m.L, within=pyo.Binary, bounds=lambda _, l: (1 if committed[l] else 0, 1))
    single = {l: sc.lease_offers[l].single_campus for l in range(d.n_leases)}
    m.campus = pyo.Var(
        m.LE, bounds=(0, 1), within=lambda _, l, e: pyo.Binary if single[l] else pyo.Reals
    )
    m.deliver = pyo.Var(m.LET, within=pyo.NonNegativeReals)
    m.delivered = pyo.Var(m.L, m.T, within=pyo.NonNegativeReals)
    m.draw = pyo.Var(
        m.F,
        m.T,
        within=pyo.NonNegativeReals,
        bounds=lambda _, f, t: (
            0,
            sc.debt_facilities[f].size_usd / MONEY if d.draw_allowed[f, t] else 0,
        ),
    )
    # a sale in the last period changes nothing (sold at the terminal valuation price): not a
    # decision
    last = d.n_periods - 1
    m.btc_sold = pyo.Var(
        m.T, bounds=lambda _, t: (0, sc.treasury.max_btc_sale_per_period if t < last else 0)
    )
    m.asic = pyo.Var(m.S, m.T, within=pyo.NonNegativeReals)
    m.it_online = pyo.Var(m.S, m.T, within=pyo.NonNegativeReals)
    m.rack_it = pyo.Var(m.S, m.T, within=pyo.NonNegativeReals)  # IT MW of active racks
    m.rack_it_region = pyo.Var(m.R, m.T, within=pyo.NonNegativeReals)
    m.market_it = pyo.Var(m.T, within=pyo.NonNegativeReals)
    m.balance = pyo.Var(m.F, m.T, within=pyo.NonNegativeReals)
    m.total_draw = pyo.Var(m.F, within=pyo.NonNegativeReals)
    m.debt_service = pyo.Var(m.T, within=pyo.NonNegativeReals)
    m.scheduled_service = pyo.Var(m.T, within=pyo.NonNegativeReals)
    m.financing = pyo.Var(m.T, within=pyo.Reals)
    m.it_opex = pyo.Var(m.T, within=pyo.NonNegativeReals)
    m.ocf = pyo.Var(m.K, m.T, within=pyo.Reals)
    # minimum cash is a bound where it must hold in every scenario, else a chance row
    hard = sc.covenants.confidence >= 1.0
    m.cash = pyo.Var(m.K, m.T, bounds=(sc.covenants.min_cash_usd / MONEY if hard else None, None))
    m.equity = pyo.Var(m.K, within=pyo.Reals)


# --------------------------------------------------------------------------- families
def add_conversion_constraints(m: pyo.ConcreteModel, d: ModelData) -> None:
    """ASIC MW and IT MW recursions, convertible and construction limits."""
    sc = d.sc
    asic0 = [s.asic_mw for s in sc.sites]
    conv = [s.convertible_mw for s in sc.sites]

    def asic_rule(_, s, t):
        prev = m.asic[s, t - 1] if t else None
        terms = [m.asic[s, t], m.blocks[s, t]] + ([prev] if prev is not None else [])
        coefs = [1.0, d.block_mw[s]] + ([-1.0] if prev is not None else [])
        return linear(0.0, coefs, terms) == (0.0 if t else asic0[s])

    m.asic_balance = pyo.Constraint(m.S, m.T, rule=asic_rule)

    def it_rule(_, s, t):
        terms, coefs = [m.it_online[s, t]], [1.0]
        if t:
            terms.append(m.it_online[s, t - 1])
            coefs.append(-1.0)
        if t - d.lead[s] >= 0:
            terms.append(m.blocks[s, t - d.lead[s]])
            coefs.append(-d.rho[s] * d.block_mw[s])
        return linear(0.0, coefs, terms) == 0.0

    m.it_balance = pyo.Constraint(m.S, m.T, rule=it_rule)
    m.convertible_limit = pyo.Constraint(
        m.S,
        rule=lambda _, s: (
            linear(0.0, [d.block_mw[s]] * d.n_periods, [m.blocks[s, t] for t in m.T]) <= conv[s]
        ),
    )
    fleet = sc.construction.max_blocks_per_period
    m.fleet_blocks_limit = pyo.Constraint(
        m.T,
        rule=lambda _, t: linear(0.0, [1.0] * d.n_sites, [m.blocks[s, t] for s in m.S]) <= fleet,
    )


def block_counts(d: ModelData) -> np.ndarray:
    """Most conversion blocks each site can start, ⌊convertible_s/block_s⌋, (S,) [-]."""
    conv = np.array([s.convertible_mw for s in d.sc.sites])
    return np.floor(conv / d.block_mw + BLOCK_COUNT_TOL).astype(np.int64)


def add_block_count_cuts(m: pyo.ConcreteModel, d: ModelData) -> None:
    """Σ_t n[s,t] ≤ ⌊convertible_s/block_s⌋ where convertible_s is not a whole number of blocks
    (elsewhere the convertible row already says it): valid for every integer plan."""
    counts = block_counts(d)
    conv = np.array([s.convertible_mw for s in d.sc.sites])
    sites = [s for s in range(d.n_sites) if counts[s] * d.block_mw[s] < conv[s] - BLOCK_COUNT_TOL]
    m.block_count_sites = pyo.Set(initialize=sites)
    m.block_count_cut = pyo.Constraint(
        m.block_count_sites,
        rule=lambda _, s: (
            linear(0.0, [1.0] * d.n_periods, [m.blocks[s, t] for t in m.T]) <= float(counts[s])
        ),
    )


def add_rack_constraints(m: pyo.ConcreteModel, d: ModelData) -> None:
    """IT MW of active racks over their life, per-period installation limit, regional
    aggregates."""
    life = d.rack_life
    kw = d.sc.gpu_racks.rack_kw / 1000.0

    def active_rule(_, s, t):
        terms = [m.rack_it[s, t], m.racks_new[s, t]]
        coefs = [1.0, -kw]
        if t:
            terms.append(m.rack_it[s, t - 1])
            coefs.append(-1.0)
        if t - life >= 0:
            terms.append(m.racks_new[s, t - life])
            coefs.append(kw)
        return linear(0.0, coefs, terms) == 0.0

    m.racks_active_balance = pyo.Constraint(m.S, m.T, rule=active_rule)
    per = d.sc.gpu_racks.max_racks_per_period
    m.racks_per_period_limit = pyo.Constraint(
        m.T,
        rule=lambda _, t: linear(0.0, [1.0] * d.n_sites, [m.racks_new[s, t] for s in m.S]) <= per,
    )

    def region_rule(_, r, t):
        sites = np.flatnonzero(d.site_region == r)
        return (
            linear(
                0.0,
                [1.0] + [-1.0] * len(sites),
                [m.rack_it_region[r, t]] + [m.rack_it[s, t] for s in sites],
            )
            == 0.0
        )

    m.racks_region_sum = pyo.Constraint(m.R, m.T, rule=region_rule)


def add_capacity_constraints(m: pyo.ConcreteModel, d: ModelData) -> None:
    """IT capacity per site shared by leases, racks and the market; market IT MW total."""
    by_site: dict[tuple[int, int], list[int]] = {}
    for l, e, t in m.LET:
        by_site.setdefault((e, t), []).append(l)

    def site_rule(_, s, t):
        leases = by_site.get((s, t), [])
        return (
            linear(
                0.0,
                [1.0] * len(leases) + [1.0, -1.0],
                [m.deliver[l, s, t] for l in leases] + [m.rack_it[s, t], m.it_online[s, t]],
            )
            <= 0.0
        )

    m.it_capacity = pyo.Constraint(m.S, m.T, rule=site_rule)

    def market_rule(_, t):
        lets = [(l, e) for (l, e) in m.LE if d.active[l, t]]
        terms = [m.market_it[t]] + [m.it_online[s, t] for s in m.S] + [m.rack_it[s, t] for s in m.S]
        coefs = [1.0] + [-1.0] * d.n_sites + [1.0] * d.n_sites
        terms += [m.deliver[l, e, t] for (l, e) in lets]
        coefs += [1.0] * len(lets)
        return linear(0.0, coefs, terms) == 0.0

    m.market_it_def = pyo.Constraint(m.T, rule=market_rule)


def add_lease_constraints(m: pyo.ConcreteModel, d: ModelData) -> None:
    """Signing, single-campus choice, delivery limits, hard deadlines."""
    sc = d.sc
    it_mw = [lo.it_mw for lo in sc.lease_offers]
    sites_of = {l: [e for (ll, e) in m.LE if ll == l] for l in m.L}
    m.campus_choice = pyo.Constraint(
        m.L,
        rule=lambda _, l: (
            linear(
                0.0,
                [1.0] * len(sites_of[l]) + [-1.0],
                [m.campus[l, e] for e in sites_of[l]] + [m.sign[l]],
            )
            == 0.0
        ),
    )
    m.deliver_at_campus = pyo.Constraint(
        m.LET,
        rule=lambda _, l, e, t: (
            linear(0.0, [1.0, -it_mw[l]], [m.deliver[l, e, t], m.campus[l, e]]) <= 0.0
        ),
    )

    def total_rule(_, l, t):
        if not d.active[l, t]:
            return linear(0.0, [1.0], [m.delivered[l, t]]) == 0.0
        sites = sites_of[l]
        return (
            linear(
                0.0,
                [1.0] + [-1.0] * len(sites),
                [m.delivered[l, t]] + [m.deliver[l, e, t] for e in sites],
            )
            == 0.0
        )

    m.delivered_def = pyo.Constraint(m.L, m.T, rule=total_rule)
    m.delivered_limit = pyo.Constraint(
        m.L,
        m.T,
        rule=lambda _, l, t: linear(0.0, [1.0, -it_mw[l]], [m.delivered[l, t], m.sign[l]]) <= 0.0,
    )
    hard = [(l, t) for l in m.L for t in m.T if sc.lease_offers[l].hard_deadline and d.late[l, t]]
    m.hard_deadline = pyo.Constraint(
        pyo.Set(initialize=hard, dimen=2),
        rule=lambda _, l, t: linear(0.0, [1.0, -it_mw[l]], [m.delivered[l, t], m.sign[l]]) == 0.0,
    )


def add_debt_constraints(m: pyo.ConcreteModel, d: ModelData) -> None:
    """Facility sizes, balances, debt service, treasury limits and the financing cash flow."""
    sc = d.sc
    dt = sc.horizon.dt_years
    m.total_draw_def = pyo.Constraint(
        m.F,
        rule=lambda _, f: (
            linear(
                0.0, [1.0] + [-1.0] * d.n_periods, [m.total_draw[f]] + [m.draw[f, t] for t in m.T]
            )
            == 0.0
        ),
    )
    m.facility_size = pyo.Constraint(
        m.F,
        rule=lambda _, f: (
            linear(0.0, [1.0], [m.total_draw[f]]) <= sc.debt_facilities[f].size_usd / MONEY
        ),
    )

    def balance_rule(_, f, t):
        terms = [m.balance[f, t], m.draw[f, t], m.total_draw[f]]
        coefs = [1.0, -1.0, float(d.repay_share[f, t])]
        if t:
            terms.append(m.balance[f, t - 1])
            coefs.append(-1.0)
        return linear(0.0, coefs, terms) == 0.0

    m.debt_balance = pyo.Constraint(m.F, m.T, rule=balance_rule)
    rates = [f.rate_per_year * dt for f in sc.debt_facilities]

    def service_rule(_, t):
        terms, coefs = [m.debt_service[t]], [1.0]
        for f in m.F:
            if t:
                terms.append(m.balance[f, t - 1])
                coefs.append(-rates[f])
            terms.append(m.total_draw[f])
            coefs.append(-float(d.repay_share[f, t]))
        return linear(0.0, coefs, terms) == 0.0

    m.debt_service_def = pyo.Constraint(m.T, rule=service_rule)
    amortising = [f.repayment == "linear" for f in sc.debt_facilities]

    def scheduled_rule(_, t):
        terms, coefs = [m.scheduled_service[t]], [1.0]
        for f in m.F:
            if t:
                terms.append(m.balance[f, t - 1])
                coefs.append(-rates[f])
            if amortising[f]:
                terms.append(m.total_draw[f])
                coefs.append(-float(d.repay_share[f, t]))
        return linear(0.0, coefs, terms) == 0.0

    m.scheduled_service_def = pyo.Constraint(m.T, rule=scheduled_rule)
    spread = np.maximum(d.lead, 1)
    capex_per_block = (
        np.array(
            [
                s.conversion.capex_usd_per_it_mw * d.rho[i] * d.block_mw[i]
                for i, s in enumerate(sc.sites)
            ]
        )
        / MONEY
    )
    salvage_per_block = (
        np.array([s.asic_salvage_usd_per_mw * d.block_mw[i] for i, s in enumerate(sc.sites)])
        / MONEY
    )
    rack_capex = sc.gpu_racks.capex_usd_per_rack / MONEY
    fees = [1.0 - f.upfront_fee_share for f in sc.debt_facilities]

    def financing_rule(_, t):
        terms = [m.financing[t], m.debt_service[t]]
        coefs = [1.0, 1.0]
        for f in m.F:
            terms.append(m.draw[f, t])
            coefs.append(-fees[f])
        for s in m.S:
            for tau in range(max(0, t - spread[s] + 1), t + 1):
                terms.append(m.blocks[s, tau])
                coefs.append(
                    capex_per_block[s] / spread[s] - (salvage_per_block[s] if tau == t else 0.0)
                )
            terms.append(m.racks_new[s, t])
            coefs.append(rack_capex)
        return linear(0.0, coefs, terms) == 0.0

    m.financing_def = pyo.Constraint(m.T, rule=financing_rule)
    spare = sc.treasury.btc_held - sc.treasury.btc_floor
    m.btc_floor = pyo.Constraint(
        rule=linear(0.0, [1.0] * d.n_periods, [m.btc_sold[t] for t in m.T]) <= spare
    )
    m.it_opex_def = pyo.Constraint(
        m.T,
        rule=lambda _, t: (
            linear(
                0.0,
                [1.0] + (-d.it_opex).tolist(),
                [m.it_opex[t]] + [m.it_online[s, t] for s in m.S],
            )
            == 0.0
        ),
    )


def _ocf_terms(m: pyo.ConcreteModel, d: ModelData, k: int, t: int, *, penalties: bool = True):
    """Coefficients and variables of OCF[k,t] (penalties optional: AI NOI excludes them)."""
    coefs = d.mining_coef[k, :, t].tolist()
    terms = [m.asic[s, t] for s in m.S]
    for l in m.L:
        if d.active[l, t]:
            coefs.append(
                float(d.lease_coef[k, l, t])
                if penalties
                else float(d.lease_coef[k, l, t] - d.penalty[l] * d.late[l, t])
            )
            terms.append(m.delivered[l, t])
            if penalties and d.late[l, t] and d.penalty[l] > 0:
                coefs.append(-float(d.penalty[l] * d.sc.lease_offers[l].it_mw))
                terms.append(m.sign[l])
    per_mw = d.rack_coef[k, :, t] / (d.sc.gpu_racks.rack_kw / 1000.0)  # M$ per rack IT MW
    coefs += per_mw.tolist() + [float(d.market_coef[k, t]), -1.0]
    terms += [m.rack_it_region[r, t] for r in m.R] + [m.market_it[t], m.it_opex[t]]
    return coefs, terms


def add_chance_budget(m: pyo.ConcreteModel, d: ModelData) -> None:
    """The excused scenarios z_k of the chance constraint (minimum cash and covenants share
    them) and their budget Σ_k p_k·z_k ≤ 1 − confidence; nothing when confidence is 1. A
    scenario heavier than the budget can never be excused: its z_k is fixed to 0 (every
    scenario of a wait-and-see solve, K = 1)."""
    cov = d.sc.covenants
    if hasattr(m, "excused") or cov.confidence >= 1.0:
        return
    excusable = excusable_scenarios(d)
    m.excused = pyo.Var(m.K, within=pyo.Binary, bounds=lambda _, k: (0, 1 if excusable[k] else 0))
    m.chance_limit = pyo.Constraint(
        rule=linear(0.0, d.weights, [m.excused[k] for k in m.K]) <= 1.0 - cov.confidence + 1e-12
    )


def excusable_scenarios(d: ModelData) -> np.ndarray:
    """Scenarios whose weight fits within the chance budget 1 − confidence, (K,) bool."""
    return d.weights <= 1.0 - d.sc.covenants.confidence + 1e-12


def add_cash_constraints(m: pyo.ConcreteModel, d: ModelData) -> None:
    """Operating cash flow and cash balance per scenario; minimum cash as a chance row
    cash[k,t] ≥ min − Mc_kt·z_k (:func:`cash_big_m`), a plain bound where Mc_kt ≤ 0 or the
    confidence is 1."""

    def ocf_rule(_, k, t):
        coefs, terms = _ocf_terms(m, d, k, t)
        return linear(0.0, [1.0] + [-c for c in coefs], [m.ocf[k, t]] + terms) == 0.0

    m.ocf_def = pyo.Constraint(m.K, m.T, rule=ocf_rule)
    growth = 1.0 + d.sc.horizon.cash_interest_rate * d.sc.horizon.dt_years
    cash0 = d.sc.treasury.cash_usd / MONEY

    def cash_rule(_, k, t):
        terms = [m.cash[k, t], m.ocf[k, t], m.financing[t], m.btc_sold[t]]
        coefs = [1.0, -1.0, -1.0, -float(d.btc_price[k, t])]
        if t:
            terms.append(m.cash[k, t - 1])
            coefs.append(-growth)
        return linear(0.0, coefs, terms) == (0.0 if t else growth * cash0)

    m.cash_balance = pyo.Constraint(m.K, m.T, rule=cash_rule)
    if d.sc.covenants.confidence >= 1.0:
        return
    add_chance_budget(m, d)
    floor = d.sc.covenants.min_cash_usd / MONEY
    big_m = cash_big_m(d)
    rows = []
    excusable = excusable_scenarios(d)
    for k in range(d.n_scenarios):
        for t in range(d.n_periods):
            if big_m[k, t] <= 0.0 or not excusable[k]:
                m.cash[k, t].setlb(floor)  # holds in every feasible plan
            else:
                rows.append((k, t))
    m.min_cash_rows = pyo.Set(initialize=rows, dimen=2)
    m.min_cash = pyo.Constraint(
        m.min_cash_rows,
        rule=lambda _, k, t: (
            linear(
                0.0,
                [1.0, float(big_m[k, t]) * BIG_M_MARGIN + 1e-3],
                [m.cash[k, t], m.excused[k]],
            )
            >= floor
        ),
    )


def ocf_lower_bounds(d: ModelData) -> np.ndarray:
    """Lower bounds of OCF[k,t] over every plan, (K, T) [M$/period] (for big-M constants)."""
    sc = d.sc
    asic0 = np.array([s.asic_mw for s in sc.sites])
    low = (np.minimum(d.mining_coef, 0.0) * asic0[None, :, None]).sum(axis=1)
    it_max = np.array([s.convertible_mw * s.conversion.it_mw_per_utility_mw for s in sc.sites])
    low -= float((d.it_opex * it_max).sum())
    pen = np.array([d.penalty[l] * lo.it_mw for l, lo in enumerate(sc.lease_offers)])
    low -= (pen[:, None] * d.late).sum(axis=0)[None] if d.n_leases else 0.0
    if sc.gpu_racks.enabled:
        racks = it_max.sum() * 1000.0 / sc.gpu_racks.rack_kw
        low += np.minimum(d.rack_coef.min(axis=1), 0.0) * racks
    return low


def debt_upper_bounds(d: ModelData, *, bullets: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds of scheduled debt service (with ``bullets``: of all debt service, bullet
    principal included) and of total balance per period, (T,) each [M$]."""
    sc = d.sc
    dt = sc.horizon.dt_years
    ds = np.zeros(d.n_periods)
    bal = np.zeros(d.n_periods)
    for f, fac in enumerate(sc.debt_facilities):
        size = fac.size_usd / MONEY
        opened = np.cumsum(d.draw_allowed[f]) > 0
        repaid = np.cumsum(d.repay_share[f])
        owed = np.where(opened, np.clip(1.0 - np.concatenate([[0.0], repaid[:-1]]), 0.0, 1.0), 0.0)
        # scheduled service: no bullets
        amortising = 1.0 if bullets or fac.repayment == "linear" else 0.0
        ds += size * (fac.rate_per_year * dt * owed + amortising * d.repay_share[f])
        bal += size * np.where(opened, np.clip(1.0 - repaid, 0.0, 1.0), 0.0)
    return ds, bal


def _use_differences(d: ModelData, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Δm, Δuse⁺), (K, S, T) each [M$/MW/period]: the mining coefficient of every scenario j
    less scenario k's, and the best positive difference among the uses of a site's IT MW (its
    eligible leases while active, racks of its region, the market)."""
    sc = d.sc
    use = (d.market_coef - d.market_coef[k])[:, None, :].repeat(d.n_sites, axis=1)
    if sc.gpu_racks.enabled:
        rack = (d.rack_coef - d.rack_coef[k]) / (sc.gpu_racks.rack_kw / 1000.0)
        use = np.maximum(use, rack[:, d.site_region, :])
    lease = (d.lease_coef - d.lease_coef[k]) * d.active[None]
    for l, e in _eligible(d):
        use[:, e] = np.maximum(use[:, e], np.where(d.active[l], lease[:, l], -np.inf))
    return d.mining_coef - d.mining_coef[k], np.maximum(use, 0.0)


def _shifted(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """y[..., s, t] = x[..., s, t + shift_s] where that period exists, else 0."""
    n_t = x.shape[-1]
    y = np.zeros_like(x)
    for n in np.unique(shift):  # a few lead times: one slice each
        sites = np.flatnonzero(shift == n)
        if 0 <= n < n_t:
            y[..., sites, : n_t - n] = x[..., sites, n:]
        elif -n_t < n < 0:
            y[..., sites, -n:] = x[..., sites, : n_t + n]
    return y


def period_weights(n_t: int, *, growth: float = 1.0, window: int | None = None) -> np.ndarray:
    """w[t, u] = growth^{t−u} for the ``window`` periods u up to t (None: every one), else 0,
    (T, T): what a flow of period u adds to a trailing sum (growth 1) or to cash (growth > 1)
    at the end of period t."""
    t = np.arange(n_t)
    span = n_t if window is None else window
    inside = (t[None, :] <= t[:, None]) & (t[None, :] > t[:, None] - span)
    return np.where(inside, float(growth) ** np.maximum(t[:, None] - t[None, :], 0), 0.0)


def conversion_bound(
    dm: np.ndarray,
    use: np.ndarray,
    asic_mw: np.ndarray,
    convertible_mw: np.ndarray,
    rho: np.ndarray,
    lead: np.ndarray,
    *,
    growth: float = 1.0,
    window: int | None = None,
) -> np.ndarray:
    """Upper bound of Σ_u w[t,u]·Σ_s (Δm[j,s,u]·A[s,u] + Δuse[j,s,u]·IT[s,u]) over every
    conversion of the sites, (J, T) [M$], with w[t,u] = growth^{t−u} for the ``window``
    periods up to t (None: every period up to t).

    Per site s, with c_v the MW converted by period v (non-decreasing, at most
    ``convertible_mw``), A_u = asic_s − c_u and IT_u ≤ ρ_s·c_{u−lead_s}, so the sum is at most
        asic_s·Σ_u w[t,u]·Δm_u + Σ_v c_v·g_t[v],  g_t[v] = ρ_s·w[t,v+lead_s]·Δuse_{v+lead_s}
                                                          − w[t,v]·Δm_v,
    and over non-decreasing c in [0, convertible_s] (mixtures of steps convertible_s·1[v ≥ τ])
    the second sum is at most convertible_s·max(0, max_τ Σ_{v≥τ} g_t[v]). With a window the
    suffix sums run over the window and the lead before it; without, a discounted Kadane
    recursion over τ ≤ t − lead_s and the last lead_s periods apart: O(T·lead) a site, where
    the sums over every τ would be O(T²).

    Parameters
    ----------
    dm, use
        (J, S, T) coefficient differences [M$/MW/period]; ``use`` ≥ 0 (IT MW may earn less
        than this, never more).
    asic_mw, convertible_mw, rho, lead
        (S,) per site [MW], [MW], [IT MW/MW], [periods].
    growth, window
        The weights w (cash compounding: growth > 1, no window; a trailing year: 1, ppy).
    """
    n_t = dm.shape[-1]
    lead = np.asarray(lead, dtype=np.int64)
    t = np.arange(n_t)
    w = period_weights(n_t, growth=growth, window=window)
    base = (np.einsum("jsu,s->ju", dm, asic_mw)) @ w.T  # asic_s·Σ_u w[t,u]·Δm_u
    best = np.zeros(dm.shape)  # max(0, largest suffix sum), (J, S, T)
    if window is not None:
        # g_t[t − o] for o = 0, 1, ... until both weights have left the window
        acc = np.zeros(dm.shape)
        for o in range(min(n_t, window + int(lead.max(initial=0)))):
            term = np.zeros(dm.shape)
            if o < window:
                term[..., o:] -= growth**o * dm[..., : n_t - o]
            lease_o = o - lead  # IT of the conversion at t − o is online from t − o + lead
            on = (lease_o >= 0) & (lease_o < window)
            if on.any():
                shifted = _shifted(use, -(o - lead))  # use[t − o + lead]
                term += (on * rho * growth ** np.maximum(lease_o, 0))[:, None] * shifted
            term[..., :o] = 0.0
            acc += term
            best = np.maximum(best, acc)
    else:
        # τ ≤ t − lead: discounted Kadane on a_v = ρ·g^{−lead}·Δuse_{v+lead} − Δm_v
        a = (rho * float(growth) ** (-lead.astype(np.float64)))[:, None] * _shifted(use, lead)
        a -= dm
        kad = np.empty(dm.shape)
        run = np.zeros(dm.shape[:-1])
        for v in range(n_t):
            run = a[..., v] + growth * np.maximum(run, 0.0) if v else a[..., v]
            kad[..., v] = run
        tail = np.zeros(dm.shape)  # Σ_{v > t − lead} g^{t−v}·(−Δm_v)
        for o in range(min(n_t, int(lead.max(initial=0)))):
            step = np.zeros(dm.shape)
            step[..., o:] = -(growth**o) * dm[..., : n_t - o]
            step *= (o < lead)[:, None]
            tail += step
            best = np.maximum(best, tail)
        earlier = _shifted(kad, -lead) * (float(growth) ** lead.astype(np.float64))[:, None]
        reach = t[None, :] >= lead[:, None]  # some τ ≤ t − lead exists
        best = np.maximum(best, np.where(reach, tail + earlier, 0.0))
    return base + np.einsum("jst,s->jt", best, convertible_mw)


def ocf_pairwise_bounds(d: ModelData, *, cash: bool = False) -> np.ndarray:
    """Upper bounds of Σ_{u∈W_t}(OCF[j,u] − OCF[k,u]) over every plan, (K, K, T) [M$], on the
    trailing year W_t; with ``cash``, of Σ_{u≤t} g^{t−u}·(OCF[j,u] − OCF[k,u]) instead (g = 1
    + cash interest a period): what the difference adds to cash.

    Debt, opex and penalties cancel in the difference; what is left is linear in ASIC MW and
    the IT MW put to leases, racks and the market (:func:`_use_differences`), bounded over
    every conversion by :func:`conversion_bound`. Conversion is irreversible and IT comes
    online lead periods after it: a bound per period that lets a site mine and lease in turn,
    with IT online at once, was about twice as large on the cash rows of demo's gap batches,
    whose branch and bound took ~40 % longer with it.
    """
    asic = np.array([s.asic_mw for s in d.sc.sites])
    conv = np.array([s.convertible_mw for s in d.sc.sites])
    h = d.sc.horizon
    shape = {"growth": 1.0 + h.cash_interest_rate * h.dt_years} if cash else {"window": d.ppy}
    out = np.empty((d.n_scenarios, d.n_scenarios, d.n_periods))
    for k in range(d.n_scenarios):
        dm, use = _use_differences(d, k)
        out[k] = conversion_bound(dm, use, asic, conv, d.rho, d.lead, **shape)
    return out


def btc_sale_pairwise_bounds(d: ModelData) -> np.ndarray:
    """Upper bounds of Σ_{u≤t} g^{t−u}·(P[j,u] − P[k,u])·b[u] over every sale plan b, (K, K, T)
    [M$]: at most max_sale a period and held₀ − floor in all, none in the last period, so the
    largest positive terms first (a fractional knapsack with equal caps)."""
    tr, h = d.sc.treasury, d.sc.horizon
    n_t = d.n_periods
    weights = period_weights(n_t, growth=1.0 + h.cash_interest_rate * h.dt_years)
    weights[:, -1] = 0.0
    sale = tr.max_btc_sale_per_period
    amounts = np.clip(max(0.0, tr.btc_held - tr.btc_floor) - np.arange(n_t) * sale, 0.0, sale)
    out = np.empty((d.n_scenarios, d.n_scenarios, n_t))
    for k in range(d.n_scenarios):
        gain = np.maximum(d.btc_price - d.btc_price[k], 0.0)[:, None, :] * weights[None]
        out[k] = -np.sort(-gain, axis=-1) @ amounts
    return out


def _quantile_big_m(delta: np.ndarray, weights: np.ndarray, room: float) -> np.ndarray:
    """Per (k, t), the smallest delta[k, j, t] left after dropping the lowest ones of total
    weight ≤ ``room``: some scenario j held to its row has delta[k, j, t] at most this.
    +inf where every scenario fits within ``room`` (none need be held: no bound from them)."""
    if float(weights.sum()) <= room:
        return np.full((delta.shape[0], delta.shape[2]), np.inf)
    order = np.argsort(delta, axis=1, kind="stable")
    ranked = np.take_along_axis(delta, order, axis=1)
    dropped = np.cumsum(weights[order], axis=1) <= room
    first_kept = np.argmax(~dropped, axis=1)  # (k, t)
    return np.take_along_axis(ranked, first_kept[:, None, :], axis=1)[:, 0, :]


def cash_big_m(d: ModelData) -> np.ndarray:
    """Big-M of the excused scenario in each minimum-cash row, (K, T) [M$].

    Financing and capex are common to all scenarios, so cash[j,t] − cash[k,t] =
    Σ_{u≤t} g^{t−u}·(OCF[j,u] − OCF[k,u] + (P[j,u] − P[k,u])·b[u]) ≤ Δc[k,j,t], the sum of
    :func:`ocf_pairwise_bounds` (``cash``) and :func:`btc_sale_pairwise_bounds`; scenarios
    held to the minimum weigh ≥ confidence, so cash[k,t] ≥ min − (the quantile of Δc[k,·,t]
    as in :func:`excuse_big_m`). Where no scenario need be held (confidence 0: every scenario
    may be excused, as in the Latin hypercube gap batches), min − :func:`cash_lower_bounds`.
    Rows where this is ≤ 0 hold in every feasible plan.
    """
    sc = d.sc
    delta = ocf_pairwise_bounds(d, cash=True) + btc_sale_pairwise_bounds(d)
    big_m = _quantile_big_m(delta, d.weights, 1.0 - sc.covenants.confidence + 1e-12)
    free = ~np.isfinite(big_m)
    if free.any():
        floor = sc.covenants.min_cash_usd / MONEY
        big_m[free] = (floor - cash_lower_bounds(d))[free]
    return big_m


def cash_lower_bounds(d: ModelData) -> np.ndarray:
    """Lower bounds of cash[k,t] over every plan, (K, T) [M$]: the opening cash grown, OCF at
    :func:`ocf_lower_bounds`, no draws and no BTC sold, the largest debt service (bullets
    included) and the largest capex (every site's blocks of a capex window at their limits,
    the most racks a period allows; ASIC salvage left out)."""
    sc = d.sc
    growth = 1.0 + sc.horizon.cash_interest_rate * sc.horizon.dt_years
    ds_max, _ = debt_upper_bounds(d, bullets=True)
    spread = np.maximum(d.lead, 1)
    capex = 0.0
    for i, s in enumerate(sc.sites):
        per_block = s.conversion.capex_usd_per_it_mw * d.rho[i] * d.block_mw[i] / MONEY
        blocks = min(
            s.convertible_mw / d.block_mw[i], spread[i] * s.conversion.max_blocks_per_period
        )
        capex += per_block / spread[i] * blocks
    if sc.gpu_racks.enabled:
        capex += sc.gpu_racks.capex_usd_per_rack / MONEY * sc.gpu_racks.max_racks_per_period
    step = ocf_lower_bounds(d) - (ds_max + capex)[None, :]
    out = np.empty_like(step)
    acc = np.full(d.n_scenarios, growth * sc.treasury.cash_usd / MONEY)
    for t in range(d.n_periods):
        acc = (acc if t == 0 else acc * growth) + step[:, t]
        out[:, t] = acc
    return out


def excuse_big_m(d: ModelData) -> np.ndarray:
    """Big-M of the excused scenario in each trailing-year covenant row, (K, T) [M$ of OCF].

    In every feasible plan the scenarios held to the covenants weigh ≥ confidence, and for each
    of them, j, the covenant gap of scenario k exceeds j's by at most Δ[k,j] (the bound of
    :func:`ocf_pairwise_bounds` on the trailing year: debt service and balance are common to
    all scenarios). So k's DSCR row is violated by at most the smallest Δ[k,j] left after
    dropping the lowest ones of total weight ≤ 1 − confidence (Qiu et al. 2014 and Luedtke
    2014 tighten big-M constants the same way); for leverage, times max_leverage·ppy/|W_t|.
    Rows where this is ≤ 0 hold in every feasible plan.
    """
    room = 1.0 - d.sc.covenants.confidence + 1e-12
    return _quantile_big_m(ocf_pairwise_bounds(d), d.weights, room)


def covenant_regimes(d: ModelData) -> list[tuple[bool, ...]]:
    """Every combination of drawn/undrawn facilities with covenants (drawn ones put them in
    force); the optimum is the best over these, so each can be solved without the big-M link
    between drawing and covenants. ``[]`` when there are more than ``MAX_REGIME_FACILITIES``."""
    n = int(covenant_windows(d.sc).any(axis=1).sum())
    if n > MAX_REGIME_FACILITIES:
        return []
    regimes = [tuple(bool(b >> i & 1) for i in range(n)) for b in range(2**n)]
    return sorted(regimes, key=sum)  # fewest covenant facilities (the fastest) first


def add_covenant_constraints(m: pyo.ConcreteModel, d: ModelData) -> None:
    """DSCR and leverage per scenario as chance constraints.

    A facility with covenants that is drawn at all (u_f = 1, TD_f ≤ size_f·u_f) puts them in
    force over its window (draw start to maturity); δ_t ≥ u_f for every window covering t, and
    the rows are relaxed by G·(1 − δ_t) where no drawn facility's covenants apply, and by
    M_kt·z_k in excused scenarios (M_kt from :func:`excuse_big_m`). Fixing u per regime
    (:func:`covenant_regimes`) fixes δ where it matters and leaves no big-M link between
    drawing and covenants.
    """
    sc = d.sc
    cov = sc.covenants
    ppy = d.ppy
    windows = covenant_windows(sc)
    with_cov = [f for f in range(d.n_facilities) if windows[f].any()]
    covered = windows.any(axis=0) if windows.size else np.zeros(d.n_periods, bool)
    tested = [t for t in range(d.n_periods) if t >= ppy - 1 and covered[t]]
    if not tested:
        return
    m.covenant_periods = pyo.Set(initialize=tested)
    excusable = cov.confidence < 1.0
    add_chance_budget(m, d)
    if not excusable:
        m.excused = pyo.Var(m.K, within=pyo.Binary, bounds=(0, 0))
    m.covenant_facilities = pyo.Set(initialize=with_cov)
    m.facility_used = pyo.Var(m.covenant_facilities, within=pyo.Binary)
    m.covenants_live = pyo.Var(m.covenant_periods, bounds=(0, 1))
    size = {f: sc.debt_facilities[f].size_usd / MONEY for f in with_cov}
    m.facility_used_link = pyo.Constraint(
        m.covenant_facilities,
        rule=lambda _, f: (
            linear(0.0, [1.0, -size[f]], [m.total_draw[f], m.facility_used[f]]) <= 0.0
        ),
    )
    pairs = [(t, f) for t in tested for f in with_cov if windows[f, t]]
    m.covenants_live_link = pyo.Constraint(
        pyo.Set(initialize=pairs, dimen=2),
        rule=lambda _, t, f: (
            linear(0.0, [1.0, -1.0], [m.covenants_live[t], m.facility_used[f]]) >= 0.0
        ),
    )
    window = {t: list(range(max(0, t - ppy + 1), t + 1)) for t in tested}
    ds_max, bal_max = debt_upper_bounds(d)
    ds_trail = {t: float(ds_max[window[t]].sum()) for t in tested}
    low = ocf_lower_bounds(d)
    ocf_low = {(k, t): float(low[k, window[t]].sum()) for k in range(d.n_scenarios) for t in tested}
    excuse_m = excuse_big_m(d) if excusable else np.zeros((d.n_scenarios, d.n_periods))

    def relaxed(v_coefs, v_terms, k, t, g, mz):
        # v ≤ mz·z_k + g·(1 − δ_t), with mz no larger than g
        mz = min(g, max(0.0, mz) * BIG_M_MARGIN + 1e-3)
        coefs = v_coefs + [-mz, g]
        return linear(0.0, coefs, v_terms + [m.excused[k], m.covenants_live[t]]) <= g

    def dscr_rule(_, k, t):
        w = window[t]
        g = (cov.min_dscr * ds_trail[t] + max(0.0, -ocf_low[k, t])) * BIG_M_MARGIN + 1e-3
        coefs = [cov.min_dscr] * len(w) + [-1.0] * len(w)
        terms = [m.scheduled_service[u] for u in w] + [m.ocf[k, u] for u in w]
        return relaxed(coefs, terms, k, t, g, excuse_m[k, t])

    m.dscr_covenant = pyo.Constraint(m.K, m.covenant_periods, rule=dscr_rule)

    def leverage_rule(_, k, t):
        w = window[t]
        scale = cov.max_leverage * ppy / len(w)
        g = (bal_max[t] + scale * max(0.0, -ocf_low[k, t])) * BIG_M_MARGIN + 1e-3
        coefs = [1.0] * d.n_facilities + [-scale] * len(w)
        terms = [m.balance[f, t] for f in m.F] + [m.ocf[k, u] for u in w]
        return relaxed(coefs, terms, k, t, g, scale * excuse_m[k, t])

    m.leverage_covenant = pyo.Constraint(m.K, m.covenant_periods, rule=leverage_rule)


def _equity_row(m: pyo.ConcreteModel, d: ModelData, k: int, equity, cash_last):
    """The row defining W_k (``equity``) from the last period's cash ``cash_last`` and the plan."""
    sc = d.sc
    last = d.n_periods - 1
    ppy = d.ppy
    v = sc.valuation
    held0 = sc.treasury.btc_held
    salvage = np.array([s.asic_salvage_usd_per_mw for s in sc.sites]) / MONEY
    conv = np.array([s.convertible_mw for s in sc.sites])
    # dilution of convertibles on the opening balances, compounded like cash to the horizon
    h = sc.horizon
    growth = 1.0 + h.cash_interest_rate * h.dt_years
    dil = [f.dilution_per_year * h.dt_years for f in sc.debt_facilities]
    dil_terms = [
        (d.discount * growth ** (last - t) * dil[f], m.balance[f, t - 1])
        for f in range(d.n_facilities)
        if dil[f] > 0
        for t in range(1, d.n_periods)
    ]
    ai_coefs, ai_terms = _ocf_terms(m, d, k, last, penalties=False)
    n_min = d.n_sites
    coefs = [v.mining_margin_multiple * ppy * c for c in ai_coefs[:n_min]]
    coefs += [v.ai_noi_multiple * ppy * c for c in ai_coefs[n_min:]]
    terms = list(ai_terms)
    coefs = [d.discount * c for c in coefs]
    coefs += [d.discount] + (d.discount * salvage).tolist()
    terms += [cash_last] + [m.asic[s, last] for s in m.S]
    coefs += [-d.discount * float(d.btc_price[k, last])] * d.n_periods
    terms += [m.btc_sold[t] for t in m.T]
    coefs += [-d.discount] * d.n_facilities
    terms += [m.balance[f, last] for f in m.F]
    coefs += [-c for c, _ in dil_terms]
    terms += [b for _, b in dil_terms]
    # option to convert per convertible MW still mining (M$/MW), on blocks never started
    for s in m.S:
        coefs += [-d.discount * d.option[k, s] * d.block_mw[s]] * d.n_periods
        terms += [m.blocks[s, t] for t in m.T]
    constant = d.discount * float(d.btc_price[k, last]) * held0
    constant += d.discount * float(d.option[k] @ conv)
    return linear(-constant, [1.0] + [-c for c in coefs], [equity] + terms) == 0.0


def add_expectation(m: pyo.ConcreteModel, e: ModelData) -> pyo.Var:
    """OCF, cash and W of the averaged scenario ``e`` (:attr:`ModelData.expectation`): the
    same rows as one scenario's, without minimum cash, covenants or CVaR (it is a mean over
    paths, not a path). Returns its W."""
    growth = 1.0 + e.sc.horizon.cash_interest_rate * e.sc.horizon.dt_years
    cash0 = e.sc.treasury.cash_usd / MONEY
    m.mean_ocf = pyo.Var(m.T, within=pyo.Reals)
    m.mean_cash = pyo.Var(m.T, within=pyo.Reals)
    m.mean_equity = pyo.Var(within=pyo.Reals)

    def ocf_rule(_, t):
        coefs, terms = _ocf_terms(m, e, 0, t)
        return linear(0.0, [1.0] + [-c for c in coefs], [m.mean_ocf[t]] + terms) == 0.0

    def cash_rule(_, t):
        terms = [m.mean_cash[t], m.mean_ocf[t], m.financing[t], m.btc_sold[t]]
        coefs = [1.0, -1.0, -1.0, -float(e.btc_price[0, t])]
        if t:
            terms.append(m.mean_cash[t - 1])
            coefs.append(-growth)
        return linear(0.0, coefs, terms) == (0.0 if t else growth * cash0)

    m.mean_ocf_def = pyo.Constraint(m.T, rule=ocf_rule)
    m.mean_cash_balance = pyo.Constraint(m.T, rule=cash_rule)
    last = e.n_periods - 1
    m.mean_equity_def = pyo.Constraint(expr=_equity_row(m, e, 0, m.mean_equity, m.mean_cash[last]))
    return m.mean_equity


def add_objective(m: pyo.ConcreteModel, d: ModelData) -> None:
    """Terminal equity per scenario and E[W] − λ·CVaR_α(−W) (Rockafellar–Uryasev); E[W] on
    the averaged scenario where :attr:`ModelData.expectation` is set."""
    sc = d.sc
    last = d.n_periods - 1

    def equity_rule(_, k):
        return _equity_row(m, d, k, m.equity[k], m.cash[k, last])

    m.equity_def = pyo.Constraint(m.K, rule=equity_rule)
    lam = sc.risk.cvar_weight
    if d.expectation is not None:
        mean = add_expectation(m, d.expectation)
    else:
        mean = linear(0.0, d.weights, [m.equity[k] for k in m.K])
    if lam > 0:
        m.var_level = pyo.Var(within=pyo.Reals)
        m.shortfall = pyo.Var(m.K, within=pyo.NonNegativeReals)
        m.shortfall_def = pyo.Constraint(
            m.K,
            rule=lambda _, k: (
                linear(0.0, [1.0, 1.0, 1.0], [m.shortfall[k], m.equity[k], m.var_level]) >= 0.0
            ),
        )
        tail = 1.0 - sc.risk.cvar_alpha
        m.cvar = pyo.Expression(
            expr=linear(
                0.0,
                [1.0] + (d.weights / tail).tolist(),
                [m.var_level] + [m.shortfall[k] for k in m.K],
            )
        )
        value = mean - lam * m.cvar
    else:
        value = mean
    if d.breach_price > 0 and hasattr(m, "excused"):
        value = value - linear(0.0, d.breach_price * d.weights, [m.excused[k] for k in m.K])
    m.objective = pyo.Objective(expr=value, sense=pyo.maximize)


def build_model(
    d: ModelData, *, covenants: bool = True, hard_deadlines: bool = True, cuts: bool = True
) -> pyo.ConcreteModel:
    """The full MILP; ``covenants`` and ``hard_deadlines`` switch families off for diagnosis,
    ``cuts`` the valid inequalities (same optimum, weaker LP without them)."""
    m = pyo.ConcreteModel(name=f"hashpivot:{d.sc.name}")
    add_variables(m, d)
    add_conversion_constraints(m, d)
    if cuts:
        add_block_count_cuts(m, d)
    add_rack_constraints(m, d)
    add_capacity_constraints(m, d)
    add_lease_constraints(m, d)
    if not hard_deadlines:
        m.hard_deadline.deactivate()
    add_debt_constraints(m, d)
    add_cash_constraints(m, d)
    if covenants:
        add_covenant_constraints(m, d)
    add_objective(m, d)
    return m
