"""Baseline policies the optimized plan is judged against (each passes the plan checker).

``stay_mining``
    Convert nothing, sign nothing, borrow and sell nothing.
``convert_all``
    Start every convertible block as fast as the per-site and fleet limits allow (sites in
    file order), sign every offer that some eligible campus can deliver by its deadline, and
    fund the capex by drawing facilities as needed to keep expected cash at the minimum.
``greedy``
    Rank sites by AI value minus mining value per utility MW (expected market lease income
    or the best offer's rent, less the capex annuity, against the expected mining margin);
    convert the positive ones in that order while expected cash, with every facility drawn,
    stays above the minimum; sign the offers their capacity can deliver.

Funding uses the expected (probability-weighted) scenario: draws fill expected cash
shortfalls in the period they occur, from facilities whose window is open, in file order.
"""

from __future__ import annotations

import numpy as np

from hashpivot.kernels.cashflow import cash_flows
from hashpivot.kernels.plan import Plan, debt_terms, lease_terms, schedule
from hashpivot.kernels.reduce import ReducedScenarios
from hashpivot.scenarios import Scenario

POLICIES = ("stay_mining", "convert_all", "greedy")


def _mean_coefficients(red: ReducedScenarios) -> dict[str, np.ndarray]:
    return {
        k: np.tensordot(red.weights, v, axes=1)[None] for k, v in red.coefficient_arrays().items()
    }


def _assign_leases(sc: Scenario, plan: Plan) -> None:
    """Sign each offer some eligible campus can fully deliver by its deadline with capacity not
    yet promised, and deliver as much as is online over its term."""
    sch = schedule(sc, plan)
    free = sch.it_online_mw - sch.rack_it_mw
    names = [s.name for s in sc.sites]
    _, active, _ = lease_terms(sc)
    plan.lease_signed[:] = False
    plan.lease_it_mw[:] = 0.0
    for l, lo in enumerate(sc.lease_offers):
        best, best_cap = None, -1.0
        for e in (names.index(x) for x in lo.eligible_sites):
            cap = free[e, lo.deliver_by_period]
            if cap >= lo.it_mw - 1e-9 and cap > best_cap:
                best, best_cap = e, cap
        if best is None and not lo.committed:
            continue
        if best is None:  # committed: deliver what the best campus can
            best = max((names.index(x) for x in lo.eligible_sites), key=lambda e: free[e].sum())
        give = np.where(active[l], np.minimum(lo.it_mw, np.maximum(free[best], 0.0)), 0.0)
        if (
            lo.hard_deadline
            and not lo.committed
            and np.any(give[active[l]][lo.deliver_by_period :] < lo.it_mw - 1e-9)
        ):
            continue
        plan.lease_signed[l] = True
        plan.lease_it_mw[l, best] = give
        free[best] -= give


def _fund(sc: Scenario, plan: Plan, red: ReducedScenarios) -> None:
    """Draw facilities to keep expected cash at the minimum, period by period."""
    allowed, _ = debt_terms(sc)
    mean = _mean_coefficients(red)
    plan.draws_usd[:] = 0.0
    floor = sc.covenants.min_cash_usd
    for t in range(sc.horizon.n_periods):
        for f, fac in enumerate(sc.debt_facilities):
            if not allowed[f, t]:
                continue
            cash = cash_flows(sc, plan, mean).cash_usd[0]
            short = floor - cash[t:].min()
            left = fac.size_usd - plan.draws_usd[f].sum()
            if short > 0 and left > 0:
                plan.draws_usd[f, t] += min(left, short / (1.0 - fac.upfront_fee_share) * 1.001)


def _fast_blocks(
    sc: Scenario, sites: list[int], plan: Plan, limit: dict[int, int] | None = None
) -> None:
    """Start blocks at ``sites`` as early as the limits allow (up to ``limit`` blocks each)."""
    n_t = sc.horizon.n_periods
    left = {
        i: int(sc.sites[i].convertible_mw // sc.sites[i].conversion.block_mw)
        - int(plan.blocks[i].sum())
        for i in sites
    }
    if limit:
        left = {i: min(left[i], limit.get(i, left[i])) for i in sites}
    for t in range(n_t):
        fleet = sc.construction.max_blocks_per_period - int(plan.blocks[:, t].sum())
        for i in sites:
            c = sc.sites[i].conversion
            if t + c.lead_time_periods > n_t - 1:
                continue  # would come online after the horizon
            take = min(left[i], c.max_blocks_per_period - int(plan.blocks[i, t]), fleet)
            if take > 0:
                plan.blocks[i, t] += take
                left[i] -= take
                fleet -= take


def stay_mining(sc: Scenario, red: ReducedScenarios | None = None) -> Plan:
    """Keep mining: the empty plan."""
    plan = Plan.empty(sc)
    if any(lo.committed for lo in sc.lease_offers):
        _assign_leases(sc, plan)
    return plan


def convert_all(sc: Scenario, red: ReducedScenarios) -> Plan:
    """Convert everything as fast as allowed, sign what can be delivered, fund by borrowing."""
    plan = Plan.empty(sc)
    _fast_blocks(sc, list(range(len(sc.sites))), plan)
    _assign_leases(sc, plan)
    _fund(sc, plan, red)
    return plan


def site_scores(sc: Scenario, red: ReducedScenarios) -> np.ndarray:
    """AI value minus mining value per utility MW of each site over the horizon [$/MW]."""
    h = sc.horizon
    dt = h.dt_years
    mean = _mean_coefficients(red)
    disc = (1 + h.discount_rate) ** (-(np.arange(h.n_periods) + 1) * dt)
    market = mean["lease_x_occupancy"][0] * 1000 * 12 * dt  # $/IT MW/period
    rent, _, _ = lease_terms(sc)
    out = np.zeros(len(sc.sites))
    for i, s in enumerate(sc.sites):
        c = s.conversion
        best_rent = max(
            [rent[l] for l, lo in enumerate(sc.lease_offers) if s.name in lo.eligible_sites],
            key=lambda r: r.sum(),
            default=np.zeros(h.n_periods),
        )
        ai = np.maximum(market, best_rent) - c.opex_usd_per_it_mw_year * dt
        online = np.arange(h.n_periods) >= c.lead_time_periods
        ai_value = (ai * online * disc).sum() * c.it_mw_per_utility_mw
        # terminal value: the multiple of the last period's annualised NOI
        ai_value += disc[-1] * sc.valuation.ai_noi_multiple * ai[-1] / dt * c.it_mw_per_utility_mw
        net_mining = mean["margin_usd_per_mw"][0, i] - s.fixed_opex_usd_per_mw_year * dt
        mining = (net_mining * disc).sum() + disc[
            -1
        ] * sc.valuation.mining_margin_multiple * net_mining[-1] / dt
        out[i] = (
            ai_value
            - mining
            - c.capex_usd_per_it_mw * c.it_mw_per_utility_mw
            + s.asic_salvage_usd_per_mw
        )
    return out


def greedy(sc: Scenario, red: ReducedScenarios) -> Plan:
    """Convert sites in order of AI-minus-mining value while funding lasts."""
    plan = Plan.empty(sc)
    scores = site_scores(sc, red)
    mean = _mean_coefficients(red)
    floor = sc.covenants.min_cash_usd
    for i in np.argsort(-scores):
        if scores[i] <= 0:
            break
        n_blocks = int(sc.sites[i].convertible_mw // sc.sites[i].conversion.block_mw)
        for k in range(n_blocks, 0, -1):  # as many blocks as the money allows
            trial = Plan(
                **{
                    **plan.__dict__,
                    "blocks": plan.blocks.copy(),
                    "lease_signed": plan.lease_signed.copy(),
                    "lease_it_mw": plan.lease_it_mw.copy(),
                    "draws_usd": plan.draws_usd.copy(),
                }
            )
            _fast_blocks(sc, [int(i)], trial, {int(i): k})
            _assign_leases(sc, trial)
            _fund(sc, trial, red)
            if cash_flows(sc, trial, mean).cash_usd[0].min() >= floor - 1.0:
                plan = trial
                break
    _assign_leases(sc, plan)
    _fund(sc, plan, red)
    return plan


def baseline(name: str, sc: Scenario, red: ReducedScenarios) -> Plan:
    """The baseline plan called ``name`` (one of :data:`POLICIES`)."""
    if name == "stay_mining":
        return stay_mining(sc, red)
    if name == "convert_all":
        return convert_all(sc, red)
    if name == "greedy":
        return greedy(sc, red)
    raise ValueError(f"policy: must be one of {', '.join(POLICIES)} (got {name!r})")
