"""The MILP against brute force, hand-checkable cases, and a property test with the checker."""

from __future__ import annotations

import dataclasses
import itertools
from functools import cache

import numpy as np
import pyomo.environ as pyo
import pytest
from helpers import deep_update, tiny, tiny_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashpivot.kernels.cashflow import CASH_TOL_USD, cash_flows, objective
from hashpivot.kernels.plan import Plan, lease_terms, schedule
from hashpivot.kernels.reduce import ReducedScenarios, reduce_scenarios
from hashpivot.optimizer.checker import check_plan
from hashpivot.optimizer.model import (
    MONEY,
    averaged,
    btc_sale_pairwise_bounds,
    build_model,
    cash_lower_bounds,
    conversion_bound,
    model_data,
    ocf_pairwise_bounds,
)
from hashpivot.optimizer.solve import NoSolutionError, Termination, solve
from hashpivot.scenarios import Scenario, load_scenario, validate_data

#: MILP optimum against the best enumerated plan.
ENUM_RTOL = 1e-6
#: Gap asked of HiGHS in exact comparisons.
EXACT_GAP = 1e-9
#: Float tolerance of a pairwise bound against the flows it bounds [$].
BOUND_TOL_USD = 1e-3


def reduced(sc: Scenario, k: int = 4, paths: int = 400, seed: int = 3) -> ReducedScenarios:
    return reduce_scenarios(sc, paths, k, seed, backend="numpy", pilot_paths=paths)


# --------------------------------------------------------------------------- brute force
def _block_sequences(sc: Scenario, site: int) -> list[tuple[int, ...]]:
    s = sc.sites[site]
    cap = int(s.convertible_mw // s.conversion.block_mw)
    per = range(s.conversion.max_blocks_per_period + 1)
    return [seq for seq in itertools.product(per, repeat=sc.horizon.n_periods) if sum(seq) <= cap]


def _deliveries(sc: Scenario, plan: Plan, campus: list[int]) -> None:
    """Greedy delivery: as much of each signed lease as its campus has online (optimal when the
    lease pays more per MW than the market, which :func:`_lease_dominates` checks)."""
    sch = schedule(sc, plan)
    _, active, _ = lease_terms(sc)
    plan.lease_it_mw[:] = 0.0
    for l, lo in enumerate(sc.lease_offers):
        if plan.lease_signed[l]:
            e = campus[l]
            plan.lease_it_mw[l, e] = np.where(
                active[l], np.minimum(lo.it_mw, sch.it_online_mw[e]), 0.0
            )


def _lease_dominates(sc: Scenario, red: ReducedScenarios) -> bool:
    rent, active, _ = lease_terms(sc)
    mu = red.lease_x_occupancy * 1000 * 12 * sc.horizon.dt_years
    lease = rent[None] * red.tenant_survival + mu[:, None] * red.tenant_relet
    return bool(np.all((lease - mu[:, None])[:, active] >= 0))


def _feasible(sc: Scenario, plan: Plan, red: ReducedScenarios) -> bool:
    return not check_plan(sc, plan, red)


def _best_continuation(sc: Scenario, plan: Plan, red: ReducedScenarios) -> float | None:
    """Exact best objective over the single draw of the facility (0 if there is none).

    Cash and W are affine in the draw x; E[W] − λ·CVaR is concave and piecewise linear with
    breaks where two scenarios' W cross, so its maximum over the feasible interval is at an end
    or at a crossing.
    """
    co = red.coefficient_arrays()
    if not sc.debt_facilities:
        return (
            objective(sc, cash_flows(sc, plan, co), red.weights)[0]
            if _feasible(sc, plan, red)
            else None
        )
    size = sc.debt_facilities[0].size_usd

    def with_draw(x: float) -> Plan:
        p = Plan(**{**plan.__dict__})
        p.draws_usd = np.zeros_like(plan.draws_usd)
        p.draws_usd[0, 0] = x
        return p

    c0, c1 = cash_flows(sc, with_draw(0.0), co), cash_flows(sc, with_draw(size), co)
    # minimum cash and the covenants are one chance constraint: the feasible draws are a union of
    # intervals whose ends are where a scenario's cash meets the minimum or its covenants break
    slope = (c1.cash_usd - c0.cash_usd) / size
    need = sc.covenants.min_cash_usd - c0.cash_usd
    with np.errstate(divide="ignore", invalid="ignore"):
        ends = (need / slope)[slope != 0]
    thresholds = _covenant_thresholds(sc, c0, c1, with_draw(size))
    a = c0.terminal_equity_usd
    b = (c1.terminal_equity_usd - a) / size
    cands = {0.0, size} | {float(x) for x in np.concatenate([ends, thresholds])}
    for i, j in itertools.combinations(range(len(a)), 2):
        if abs(b[i] - b[j]) > 1e-18:
            cands.add(float((a[j] - a[i]) / (b[i] - b[j])))
    best = None
    for x in cands:
        if not (0.0 <= x <= size) or not np.isfinite(x):
            continue
        p = with_draw(x)
        if not _feasible(sc, p, red):
            continue
        val = objective(sc, cash_flows(sc, p, co), red.weights)[0]
        best = val if best is None else max(best, val)
    return best


def _covenant_thresholds(sc: Scenario, c0, c1, full: Plan) -> np.ndarray:
    """Per scenario, the draw x > 0 above which its covenants break (scheduled debt service and
    balances scale with x; OCF does not depend on it); finite ones only."""
    from hashpivot.kernels.cashflow import covenant_terms  # noqa: PLC0415

    size = sc.debt_facilities[0].size_usd
    ct = covenant_terms(sc, full, c1.schedule, c0.ocf_usd)
    tested = ct.tested
    if not tested.any():
        return np.zeros(0)
    ocf, limit = ct.ocf_trail_usd[:, tested], ct.debt_cap_usd[:, tested]
    need = ct.required_ocf_usd[tested] / size  # per $ drawn
    debt = ct.debt_usd[tested] / size
    with np.errstate(divide="ignore", invalid="ignore"):
        x_dscr = np.where(need > 0, ocf / need, np.where(ocf >= 0, np.inf, -np.inf))
        x_lev = np.where(debt > 0, limit / debt, np.where(limit >= 0, np.inf, -np.inf))
    thresholds = np.minimum(x_dscr, x_lev).min(axis=1)
    return thresholds[np.isfinite(thresholds)]


def brute_force(sc: Scenario, red: ReducedScenarios) -> float:
    """Best objective over every plan: all block sequences, lease choices, and the best draw."""
    assert _lease_dominates(sc, red)
    per_site = [_block_sequences(sc, s) for s in range(len(sc.sites))]
    lease_options: list[tuple] = [()]
    for lo in sc.lease_offers:
        names = [s.name for s in sc.sites]
        lease_options = [
            o + (c,)
            for o in lease_options
            for c in [None] + [names.index(e) for e in lo.eligible_sites]
        ]
    best = -np.inf
    for blocks in itertools.product(*per_site):
        plan = Plan.empty(sc)
        plan.blocks = np.array(blocks, dtype=np.int64).reshape(len(sc.sites), -1)
        if np.any(plan.blocks.sum(axis=0) > sc.construction.max_blocks_per_period):
            continue
        for choice in lease_options:
            plan.lease_signed = np.array([c is not None for c in choice], dtype=bool)
            _deliveries(sc, plan, [c if c is not None else 0 for c in choice])
            val = _best_continuation(sc, plan, red)
            if val is not None:
                best = max(best, val)
    return best


INSTANCES = {
    "blocks_only": dict(n_sites=1, n_periods=4),
    "with_lease": dict(n_sites=1, n_periods=4, lease=True),
    "two_sites_lease_cvar": dict(n_sites=2, n_periods=3, lease=True, cvar_weight=0.5),
    "lease_and_facility": dict(
        n_sites=1, n_periods=4, lease=True, facility=True, treasury={"cash_usd": 6.0e7}
    ),
    "facility_cvar": dict(
        n_sites=2, n_periods=3, facility=True, cvar_weight=1.0, treasury={"cash_usd": 8.0e7}
    ),
    "chance_covenants": dict(
        n_sites=1,
        n_periods=6,
        facility=True,
        treasury={"cash_usd": 6.0e7},
        covenants={"min_dscr": 1.0, "max_leverage": 3.0, "confidence": 0.75, "min_cash_usd": 1e7},
    ),
    "hard_deadline": dict(
        n_sites=1,
        n_periods=4,
        lease=True,
        lease_offers=[
            {
                "name": "H",
                "it_mw": 14.0,
                "rate_usd_per_kw_month": 160.0,
                "term_years": 10,
                "earliest_start_period": 2,
                "deliver_by_period": 2,
                "hard_deadline": True,
                "eligible_sites": ["s0"],
                "tenant_default_prob_per_year": 0.0,
            }
        ],
    ),
}


@pytest.mark.parametrize("name", list(INSTANCES))
def test_milp_equals_enumeration(name: str) -> None:
    sc = tiny(**INSTANCES[name])
    red = reduced(sc)
    d = model_data(sc, red)
    res = solve(d, mip_gap=EXACT_GAP, time_limit_s=120)
    best = brute_force(sc, red)
    assert res.status == Termination.OPTIMAL
    assert res.objective_usd == pytest.approx(best, rel=ENUM_RTOL)
    # the MILP's plan is feasible and its objective is what the evaluator computes
    assert check_plan(sc, res.plan, red) == []
    val = objective(sc, cash_flows(sc, res.plan, red.coefficient_arrays()), red.weights)[0]
    assert val == pytest.approx(res.objective_usd, rel=ENUM_RTOL)


def test_chance_covenants_instance_binds_and_excuses() -> None:
    """The chance_covenants instance tests what it should: the covenants cost value, the best
    plan draws part of the facility and breaks the covenants in excused scenarios."""
    kw = INSTANCES["chance_covenants"]
    sc = tiny(**kw)
    free = tiny(**{k: v for k, v in kw.items() if k != "covenants"})
    red = reduced(sc)
    assert brute_force(sc, red) < brute_force(free, red) - 1e6
    res = solve(model_data(sc, red), mip_gap=EXACT_GAP, time_limit_s=60)
    assert 0 < res.plan.draws_usd.sum() < sc.debt_facilities[0].size_usd
    assert res.excused.any()
    breach = np.asarray(cash_flows(sc, res.plan, red.coefficient_arrays()).covenant_breach)
    assert breach.any() and red.weights[breach].sum() <= 1 - sc.covenants.confidence + 1e-9


# --------------------------------------------------------------------------- big-M bounds
def test_conversion_bound_by_hand() -> None:
    """One site, 3 quarters, lead 1: 10 ASIC MW, all convertible at ρ = 0.5; scenario j mines
    better in quarter 0 (Δm = 1) and worse after (−2), its IT earns 4 more from quarter 1.
    By conversion date (never, 0, 1, 2) the cumulative differences are t=0: 10, 0, 10, 10;
    t=1: −10, 20, 10, −10; t=2: −30, 40, 30, −10; the bound is the best: 10, 20, 40 (a bound
    that lets each quarter mine or lease with IT online at once says 50 at t=2). On the trailing
    two quarters t=2 sums over quarters 1–2: −40, 40, 20, −20, so 40."""
    dm = np.array([[[1.0, -2.0, -2.0]]])
    use = np.array([[[0.0, 4.0, 4.0]]])
    one = np.array([10.0]), np.array([10.0]), np.array([0.5]), np.array([1])
    np.testing.assert_allclose(conversion_bound(dm, use, *one)[0], [10.0, 20.0, 40.0])
    np.testing.assert_allclose(conversion_bound(dm, use, *one, window=2)[0, 2], 40.0)


def _best_conversion_date(dm, use, asic, conv, rho, lead, growth, window) -> np.ndarray:
    """Σ over sites of the best single conversion date (or none) by enumeration, (J, T): the
    exact weighted flow difference of each date, all IT put to its use."""
    n_j, n_s, n_t = dm.shape
    t = np.arange(n_t)
    span = n_t if window is None else window
    w = np.where(
        (t[None] <= t[:, None]) & (t[None] > t[:, None] - span),
        growth ** np.maximum(t[:, None] - t[None], 0),
        0.0,
    )
    total = np.zeros((n_j, n_t))
    for s in range(n_s):
        values = []
        for tau in range(n_t + 1):  # n_t: never
            mining = asic[s] - conv[s] * (t >= tau)
            it = rho[s] * conv[s] * (t >= tau + lead[s])
            values.append((dm[:, s] * mining + use[:, s] * it) @ w.T)
        total += np.max(values, axis=0)
    return total


@pytest.mark.parametrize("window,growth", [(None, 1.009), (None, 1.0), (4, 1.0), (3, 1.02)])
def test_conversion_bound_equals_the_best_conversion_date(
    window: int | None, growth: float
) -> None:
    """The bound is a maximum over mixtures of conversion dates, a linear function: it equals
    the best single date found by enumeration (random coefficients, leads 0 to past the
    horizon, with and without a window)."""
    rng = np.random.default_rng(7)
    n_j, n_t = 5, 9
    lead = np.array([0, 1, 3, 4, 12])
    dm = rng.normal(0.0, 1.0, (n_j, len(lead), n_t))
    use = np.maximum(rng.normal(0.5, 1.0, (n_j, len(lead), n_t)), 0.0)
    asic = rng.uniform(10, 100, len(lead))
    conv = asic * rng.uniform(0.2, 1.0, len(lead))
    rho = rng.uniform(0.6, 0.8, len(lead))
    got = conversion_bound(dm, use, asic, conv, rho, lead, growth=growth, window=window)
    want = _best_conversion_date(dm, use, asic, conv, rho, lead, growth, window)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


def _random_plan(sc: Scenario, rng: np.random.Generator) -> Plan:
    """A plan within every structural rule: random blocks, racks in spare IT, a lease signed
    at a random campus and delivered what is online, random draws and BTC sales."""
    plan = Plan.empty(sc)
    n_t = sc.horizon.n_periods
    left = [int(s.convertible_mw // s.conversion.block_mw) for s in sc.sites]
    for t in range(n_t):
        room = sc.construction.max_blocks_per_period
        for i, s in enumerate(sc.sites):
            n = int(rng.integers(0, min(s.conversion.max_blocks_per_period, left[i], room) + 1))
            n = n if rng.random() < 0.3 else 0
            plan.blocks[i, t], left[i], room = n, left[i] - n, room - n
    campus = [int(rng.integers(len(lo.eligible_sites))) for lo in sc.lease_offers]
    plan.lease_signed = rng.random(len(sc.lease_offers)) < 0.5
    names = [s.name for s in sc.sites]
    _deliveries(
        sc,
        plan,
        [names.index(lo.eligible_sites[c]) for lo, c in zip(sc.lease_offers, campus, strict=True)],
    )
    if sc.gpu_racks.enabled and rng.random() < 0.5:
        spare = schedule(sc, plan).it_online_mw - plan.lease_it_mw.sum(axis=0)
        kw = sc.gpu_racks.rack_kw / 1000.0
        # racks live past the horizon here: install where spare IT stays from then on
        fit = np.floor(np.minimum.accumulate(spare[:, ::-1], axis=1)[:, ::-1] / kw)
        t0 = int(rng.integers(n_t))
        plan.racks_new[:, t0] = np.minimum(fit[:, t0], sc.gpu_racks.max_racks_per_period // 2)
    for f, fac in enumerate(sc.debt_facilities):
        plan.draws_usd[f, fac.draw_start_period] = rng.uniform(0.0, fac.size_usd)
    tr = sc.treasury
    sold = rng.uniform(0.0, tr.max_btc_sale_per_period, n_t) * (rng.random(n_t) < 0.4)
    sold[-1] = 0.0
    plan.btc_sold = sold * min(1.0, (tr.btc_held - tr.btc_floor) / max(sold.sum(), 1e-9))
    return plan


def test_pairwise_bounds_hold_for_every_plan() -> None:
    """On demo's scenarios (two sites, a lease, racks, a facility, BTC sales), for random plans
    within every structural rule, the flows the independent evaluator computes differ between
    any two scenarios by no more than the big-M bounds say: on the trailing year of OCF, and in
    cash (OCF compounded, plus BTC sold at the two prices)."""
    sc = load_scenario("demo")
    red = reduced(sc, k=6)
    d = model_data(sc, red)
    trailing = ocf_pairwise_bounds(d) * MONEY
    cash = (ocf_pairwise_bounds(d, cash=True) + btc_sale_pairwise_bounds(d)) * MONEY
    rng = np.random.default_rng(11)
    co = red.coefficient_arrays()
    for _ in range(40):
        plan = _random_plan(sc, rng)
        assert check_plan(sc, plan) == []
        cf = cash_flows(sc, plan, co)
        window = np.cumsum(cf.ocf_usd, axis=1)
        window[:, d.ppy :] -= np.cumsum(cf.ocf_usd, axis=1)[:, : -d.ppy]
        for got, bound in ((window, trailing), (cf.cash_usd, cash)):
            diff = got[None, :, :] - got[:, None, :]  # [k, j, t] = j's − k's
            assert np.all(diff <= bound + BOUND_TOL_USD)


def test_confidence_zero_excuses_every_scenario_of_every_plan() -> None:
    """At in-sample confidence 0 (the Latin hypercube gap batches) no scenario need be held,
    so the big-M constants cannot come from a held one: the rows fall back on bounds valid for
    every plan, and the optimum is the brute-force optimum with nothing enforced (which the
    old quantile, taken from the smallest difference, cut off: it held every scenario)."""
    sc = tiny(**INSTANCES["chance_covenants"])
    zero = sc.model_copy(update={"covenants": sc.covenants.model_copy(update={"confidence": 0.0})})
    red = reduced(sc)
    d = model_data(zero, red)
    res = solve(d, mip_gap=EXACT_GAP)
    assert res.objective_usd == pytest.approx(brute_force(zero, red), rel=ENUM_RTOL)
    held = solve(model_data(sc, red), mip_gap=EXACT_GAP)
    assert res.objective_usd > held.objective_usd + 1e5  # the covenants no longer bind
    # the cash floor of the fallback is below the cash of very different plans
    full = Plan.empty(sc)
    full.blocks[0, 0] = sc.sites[0].conversion.max_blocks_per_period
    full.draws_usd[0, 0] = sc.debt_facilities[0].size_usd
    low = cash_lower_bounds(d) * MONEY
    for plan in (Plan.empty(sc), full, res.plan):
        cash = np.asarray(cash_flows(sc, plan, red.coefficient_arrays()).cash_usd)
        assert np.all(low <= cash + CASH_TOL_USD)


def test_breach_price_is_charged_on_excused_probability() -> None:
    """The gap batches' Lagrangian term: the priced optimum's objective is its cash-flow
    objective less β times the weight it excuses; a price above any gain from excusing gives
    the optimum of keeping every scenario (confidence 1)."""
    sc = tiny(**INSTANCES["chance_covenants"])
    red = reduced(sc)
    d = model_data(sc, red)
    beta_usd = 2.0e7
    res = solve(dataclasses.replace(d, breach_price=beta_usd / MONEY), mip_gap=EXACT_GAP)
    val = objective(sc, cash_flows(sc, res.plan, red.coefficient_arrays()), red.weights)[0]
    charged = beta_usd * red.weights[res.excused].sum()
    assert res.objective_usd == pytest.approx(val - charged, rel=ENUM_RTOL)
    free = solve(d, mip_gap=EXACT_GAP)
    assert res.objective_usd <= free.objective_usd * (1 + ENUM_RTOL)
    high = solve(dataclasses.replace(d, breach_price=1e5), mip_gap=EXACT_GAP)  # 1e11 $
    strict = tiny(**deep_update(INSTANCES["chance_covenants"], {"covenants": {"confidence": 1.0}}))
    kept = solve(model_data(strict, red), mip_gap=EXACT_GAP)
    assert not high.excused.any()
    assert high.objective_usd == pytest.approx(kept.objective_usd, rel=ENUM_RTOL)


def test_averaged_scenario_is_the_weighted_mean_of_w() -> None:
    """E[W] on the averaged scenario of the same scenarios is Σ_k p_k·W_k for every plan, so
    the optimum is the same; on another sample's average, the objective is that sample's mean W
    (the cash-flow kernel) less λ·CVaR on the model's own scenarios."""
    sc = tiny(**INSTANCES["chance_covenants"])
    red = reduced(sc)
    d = model_data(sc, red)
    plain = solve(d, mip_gap=EXACT_GAP)
    same = solve(dataclasses.replace(d, expectation=averaged(d)), mip_gap=EXACT_GAP)
    assert same.objective_usd == pytest.approx(plain.objective_usd, rel=ENUM_RTOL)
    other = reduced(sc, k=6, paths=600, seed=11)
    res = solve(
        dataclasses.replace(d, expectation=averaged(model_data(sc, other))), mip_gap=EXACT_GAP
    )
    w_other = np.asarray(cash_flows(sc, res.plan, other.coefficient_arrays()).terminal_equity_usd)
    _, _, risk = objective(sc, cash_flows(sc, res.plan, red.coefficient_arrays()), red.weights)
    expected = float(other.weights @ w_other) - sc.risk.cvar_weight * risk
    assert res.objective_usd == pytest.approx(expected, rel=ENUM_RTOL)
    assert abs(res.objective_usd - plain.objective_usd) > 1e-3 * abs(plain.objective_usd)


# --------------------------------------------------------------------------- hand-checkable
def test_rich_lease_is_signed_and_delivered_on_time() -> None:
    sc = tiny(
        n_sites=1,
        n_periods=6,
        lease=True,
        lease_offers=[
            {
                "name": "rich",
                "it_mw": 28.0,
                "rate_usd_per_kw_month": 400.0,
                "term_years": 10,
                "earliest_start_period": 1,
                "deliver_by_period": 3,
                "late_penalty_usd_per_mw_period": 1e5,
                "eligible_sites": ["s0"],
                "tenant_default_prob_per_year": 0.0,
            }
        ],
        treasury={"cash_usd": 5.0e8},
    )
    red = reduced(sc)
    res = solve(model_data(sc, red), mip_gap=1e-6)
    assert res.plan.lease_signed[0]
    delivered = res.plan.lease_it_mw[0].sum(axis=0)
    assert np.all(delivered[3:] >= 28.0 - 1e-6)


def _too_soon(committed: bool) -> Scenario:
    return tiny(
        n_sites=1,
        n_periods=4,
        lease=True,
        lease_offers=[
            {
                "name": "too-soon",
                "it_mw": 40.0,
                "rate_usd_per_kw_month": 150.0,
                "term_years": 10,
                "earliest_start_period": 1,
                "deliver_by_period": 1,
                "hard_deadline": True,
                "committed": committed,
                "eligible_sites": ["s0"],
            }
        ],
    )


def test_impossible_committed_hard_deadline_names_the_lease() -> None:
    sc = _too_soon(committed=True)
    with pytest.raises(NoSolutionError) as info:
        solve(model_data(sc, reduced(sc)))
    assert info.value.status == Termination.INFEASIBLE
    assert info.value.reasons == [
        "lease 'too-soon' needs 40 IT MW by period 1; one eligible campus can bring online at most 28"
    ]


def test_impossible_offer_is_left_unsigned() -> None:
    sc = _too_soon(committed=False)
    res = solve(model_data(sc, reduced(sc)))
    assert not res.plan.lease_signed[0]
    assert res.warnings == [
        "offer left unsigned: lease 'too-soon' needs 40 IT MW by period 1; one eligible campus "
        "can bring online at most 28"
    ]


def test_facility_drawn_only_when_cash_would_fall_short() -> None:
    rich = tiny(n_sites=1, n_periods=4, lease=True, facility=True, treasury={"cash_usd": 5.0e8})
    red = reduced(rich)
    res = solve(model_data(rich, red), mip_gap=1e-9)
    assert res.plan.draws_usd.sum() == pytest.approx(0.0, abs=1.0)
    assert res.plan.blocks.sum() > 0
    poor = validate_data(
        tiny_data(n_sites=1, n_periods=4, lease=True, facility=True, treasury={"cash_usd": 6.0e7})
    )
    red = reduced(poor)
    res = solve(model_data(poor, red), mip_gap=1e-9)
    assert res.plan.draws_usd.sum() > 1.0
    cf = cash_flows(poor, res.plan, red.coefficient_arrays())
    # drawn no more than needed: the tightest scenario-period sits at the minimum cash
    assert cf.cash_usd.min() == pytest.approx(poor.covenants.min_cash_usd, rel=1e-6)


def test_raising_lambda_never_raises_cvar() -> None:
    cvars = []
    for lam in (0.0, 0.5, 2.0, 8.0):
        sc = tiny(n_sites=2, n_periods=4, lease=True, cvar_weight=lam)
        red = reduced(sc, k=6)
        res = solve(model_data(sc, red), mip_gap=1e-9)
        cf = cash_flows(sc, res.plan, red.coefficient_arrays())
        cvars.append(objective(sc, cf, red.weights)[2])
    assert all(b <= a + 1e-6 * abs(a) for a, b in zip(cvars, cvars[1:], strict=False)), cvars


# --------------------------------------------------------------------------- property
@cache
def _reduced_for(key: tuple) -> tuple[Scenario, ReducedScenarios]:
    n_sites, n_periods, lease, facility, lam, conf, dscr = key
    sc = tiny(
        n_sites=n_sites,
        n_periods=n_periods,
        lease=lease,
        facility=facility,
        cvar_weight=lam,
        covenants={"confidence": conf, "min_dscr": dscr, "max_leverage": 6.0},
        treasury={"cash_usd": 9.0e7, "btc_held": 300.0, "max_btc_sale_per_period": 100.0},
    )
    return sc, reduced(sc, k=5)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_sites=st.integers(1, 2),
    n_periods=st.integers(4, 8),
    lease=st.booleans(),
    facility=st.booleans(),
    lam=st.sampled_from([0.0, 0.3, 2.0]),
    conf=st.sampled_from([1.0, 0.8]),
    dscr=st.sampled_from([0.0, 1.2]),
)
def test_every_milp_plan_passes_the_checker(
    n_sites, n_periods, lease, facility, lam, conf, dscr
) -> None:
    sc, red = _reduced_for((n_sites, n_periods, lease, facility, lam, conf, dscr))
    try:
        res = solve(model_data(sc, red), mip_gap=1e-6, time_limit_s=60)
    except NoSolutionError as exc:
        assert exc.reasons  # infeasible instances say why
        return
    assert check_plan(sc, res.plan, red) == []
    val = objective(sc, cash_flows(sc, res.plan, red.coefficient_arrays()), red.weights)[0]
    assert val == pytest.approx(res.objective_usd, rel=1e-6, abs=1.0)


def test_convertible_dilution_in_milp_equals_evaluator() -> None:
    """A convertible drawn to fund conversion: the MILP's objective (dilution on its balances,
    option on unconverted MW) is what the independent cash flows give for its plan."""
    fac = {
        "name": "CB",
        "kind": "convertible",
        "size_usd": 2.0e8,
        "rate_per_year": 0.0,
        "draw_start_period": 0,
        "draw_end_period": 1,
        "tenor_years": 1,
        "repayment": "bullet",
        "upfront_fee_share": 0.0,
        "covenants": False,
    }
    sc = validate_data(
        tiny_data(
            n_sites=1, n_periods=4, lease=True, debt_facilities=[fac], treasury={"cash_usd": 6.0e7}
        )
    )
    assert sc.debt_facilities[0].dilution_per_year > 0
    red = reduced(sc)
    res = solve(model_data(sc, red), mip_gap=EXACT_GAP)
    assert res.plan.draws_usd.sum() > 1.0
    cf = cash_flows(sc, res.plan, red.coefficient_arrays())
    assert objective(sc, cf, red.weights)[0] == pytest.approx(res.objective_usd, rel=ENUM_RTOL)
    # drawn no more than needed: dilution makes every idle dollar cost something
    assert cf.cash_usd.min() == pytest.approx(sc.covenants.min_cash_usd, rel=1e-6)


def test_last_period_btc_sale_is_not_a_decision() -> None:
    sc = tiny(
        n_sites=1, n_periods=4, treasury={"btc_held": 300.0, "max_btc_sale_per_period": 100.0}
    )
    m = build_model(model_data(sc, reduced(sc)))
    assert m.btc_sold[3].ub == 0 and m.btc_sold[2].ub == 100.0


def test_minimum_cash_is_excused_within_the_chance_budget() -> None:
    """Staying as it is (no cash, BTC that may not be sold), the poorest scenario's cash falls
    below a minimum set between the two lowest; no plan does better (converting costs capex).
    At confidence 1 no plan is feasible and the reason names the scenarios, their weight and the
    shortfall; at a confidence that excuses that scenario's weight the MILP returns a plan whose
    only shortfall lies in that (excused) scenario."""
    data = tiny_data(
        n_sites=1,
        n_periods=4,
        horizon={"cash_interest_rate": 0.0},
        treasury={"cash_usd": 0.0, "btc_held": 100.0, "max_btc_sale_per_period": 0.0},
        covenants={"min_cash_usd": 0.0},
    )
    red = reduced(validate_data(data), k=6)
    cash = np.asarray(
        cash_flows(
            validate_data(data), Plan.empty(validate_data(data)), red.coefficient_arrays()
        ).cash_usd
    )
    low = cash.min(axis=1)
    k_min = int(np.argmin(low))
    first, second = np.sort(low)[:2]
    assert second - first > 1e5  # a clear gap to put the minimum in
    floor = 0.5 * (first + second)

    def with_conf(conf: float) -> Scenario:
        return validate_data(
            deep_update(data, {"covenants": {"min_cash_usd": floor, "confidence": conf}})
        )

    strict = with_conf(1.0)
    with pytest.raises(NoSolutionError) as info:
        solve(model_data(strict, red), mip_gap=1e-6)
    line = info.value.reasons[0]
    assert f"by up to ${floor - first:,.0f} (scenario {k_min}, period" in line
    assert f"in 1 of 6 scenarios, of weight {red.weights[k_min]:.3f}" in line
    loose = with_conf(1.0 - red.weights[k_min] - 1e-6)
    res = solve(model_data(loose, red), mip_gap=1e-6)
    assert check_plan(loose, res.plan, red) == []
    cf = cash_flows(loose, res.plan, red.coefficient_arrays())
    short = (np.asarray(cf.cash_usd) < floor - CASH_TOL_USD).any(axis=1)
    assert short[k_min] and short.sum() == 1 and res.excused[k_min]


# --------------------------------------------------------------------------- valid inequalities
def _relaxed_and_integer(convertible_mw: float, *, cuts: bool) -> tuple[float, float]:
    """(LP relaxation, MIP optimum) of a one-site tiny instance with ample cash [M$]."""
    from pyomo.contrib.solver.solvers.highs import Highs  # noqa: PLC0415

    data = tiny_data(n_sites=1, n_periods=4, treasury={"cash_usd": 1.0e9})
    data["sites"][0]["convertible_mw"] = convertible_mw
    sc = validate_data(data)
    d = model_data(sc, reduced(sc))
    out = []
    for relax in (True, False):
        m = build_model(d, cuts=cuts)
        if relax:
            pyo.TransformationFactory("core.relax_integer_vars").apply_to(m)
        Highs().solve(m, solver_options={"mip_rel_gap": EXACT_GAP})
        out.append(pyo.value(m.objective))
    return out[0], out[1]


def test_block_count_cut_keeps_the_optimum_and_cuts_the_half_block() -> None:
    """50 MW convertible in 20 MW blocks: the convertible row lets the LP start 2.5 blocks, the
    cut Σ_t n ≤ 2 does not. The optimum is the same with and without the cut; with it the LP is
    integral (LP = MIP); without it the LP takes half of the third block, so by linearity (cash
    never binds, no CVaR) its value is the midpoint of the optima at 40 MW (2 blocks) and 60 MW
    (3 blocks, the third started where the LP starts its half)."""
    lp_plain, mip_plain = _relaxed_and_integer(50.0, cuts=False)
    lp_cut, mip_cut = _relaxed_and_integer(50.0, cuts=True)
    assert mip_cut == pytest.approx(mip_plain, rel=ENUM_RTOL)
    assert lp_cut == pytest.approx(mip_cut, rel=ENUM_RTOL)
    _, mip_two = _relaxed_and_integer(40.0, cuts=True)
    _, mip_three = _relaxed_and_integer(60.0, cuts=True)
    assert lp_plain == pytest.approx(0.5 * (mip_two + mip_three), rel=ENUM_RTOL)
    assert lp_plain - lp_cut > 0.5  # the half block is worth ~0.78 M$ here: a real cut
