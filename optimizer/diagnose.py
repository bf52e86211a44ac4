"""Say in words why no plan is feasible.

Arithmetic only, no solver (diagnosis never re-enters ``solve``): what each hard-deadline lease
needs against what its eligible sites can bring online in time; whether the committed leases'
cheapest just-in-time conversion can be funded; and minimum cash against the most cash
reachable, each against the chance budget 1 − confidence that minimum cash and the covenants
share.
"""

from __future__ import annotations

import numpy as np

from hashpivot.kernels.cashflow import CASH_TOL_USD
from hashpivot.kernels.plan import Plan, debt_terms, lease_terms, schedule
from hashpivot.scenarios import Scenario

from .model import ModelData


def max_it_online_by(sc: Scenario, site: int, period: int) -> float:
    """Most IT MW site ``site`` can have online at ``period`` [IT MW]."""
    s = sc.sites[site]
    c = s.conversion
    starts = period - c.lead_time_periods + 1  # periods 0..period−lead can start blocks
    if starts <= 0:
        return 0.0
    blocks = min(starts * c.max_blocks_per_period, int(s.convertible_mw // c.block_mw + 1e-9))
    blocks = min(blocks, starts * sc.construction.max_blocks_per_period)
    return blocks * c.block_mw * c.it_mw_per_utility_mw


def _deadline_shortfall(sc: Scenario, lo) -> str | None:
    """Why offer ``lo`` cannot be delivered by its hard deadline, or None if it can."""
    names = [s.name for s in sc.sites]
    caps = [max_it_online_by(sc, names.index(e), lo.deliver_by_period) for e in lo.eligible_sites]
    best = max(caps) if lo.single_campus else sum(caps)
    if best + 1e-9 >= lo.it_mw:
        return None
    where = "one eligible campus" if lo.single_campus else "the eligible sites together"
    return (
        f"lease '{lo.name}' needs {lo.it_mw:g} IT MW by period {lo.deliver_by_period}; "
        f"{where} can bring online at most {best:g}"
    )


def lease_deadline_problems(sc: Scenario) -> list[str]:
    """Committed hard-deadline leases that no campus can deliver in time."""
    out = []
    for lo in sc.lease_offers:
        if lo.hard_deadline and lo.committed:
            line = _deadline_shortfall(sc, lo)
            if line:
                out.append(line)
    return out


def undeliverable_offer_warnings(sc: Scenario) -> list[str]:
    """One line per uncommitted hard-deadline offer no eligible site can deliver in time (the
    plan cannot sign it; said, not silently dropped)."""
    out = []
    for lo in sc.lease_offers:
        if lo.hard_deadline and not lo.committed:
            line = _deadline_shortfall(sc, lo)
            if line:
                out.append(f"offer left unsigned: {line}")
    return out


def _funding_upper_bound(d: ModelData, plan: Plan) -> np.ndarray:
    """Most cash ``plan`` can have per scenario and period, (K, T) [$]: every facility drawn in
    full at its first draw period (interest and repayment ignored) and all allowed BTC sold."""
    from hashpivot.kernels.cashflow import cash_flows  # noqa: PLC0415

    sc = d.sc
    allowed, _ = debt_terms(sc)
    cf = cash_flows(sc, plan, d.red.coefficient_arrays())
    extra = np.zeros(d.n_periods)
    for f, fac in enumerate(sc.debt_facilities):
        first = np.flatnonzero(allowed[f])
        if first.size:
            extra[first[0] :] += fac.size_usd * (1 - fac.upfront_fee_share)
    spare = max(0.0, sc.treasury.btc_held - sc.treasury.btc_floor)
    sold = np.minimum(np.cumsum(np.full(d.n_periods, sc.treasury.max_btc_sale_per_period)), spare)
    return np.asarray(cf.cash_usd) + extra[None] + d.red.btc_price_usd * sold[None]


def _shortfall_line(d: ModelData, upper: np.ndarray) -> str | None:
    """'short of minimum cash by up to $S (scenario k, period t) in N scenarios of weight w (more
    than the 1 − confidence excused)' when minimum cash fails beyond the chance budget."""
    cov = d.sc.covenants
    gap = cov.min_cash_usd - upper
    short = (gap > CASH_TOL_USD).any(axis=1)
    weight = float(d.weights[short].sum())
    allowed = 1.0 - cov.confidence
    if weight <= allowed + 1e-9:
        return None
    k, t = np.unravel_index(int(np.argmax(gap)), gap.shape)
    return (
        f"short of minimum cash ${cov.min_cash_usd:,.0f} by up to ${gap[k, t]:,.0f} (scenario "
        f"{k}, period {t}) in {int(short.sum())} of {d.n_scenarios} scenarios, of weight "
        f"{weight:.3f} (more than the {allowed:.3f} that confidence {cov.confidence:g} excuses)"
    )


def committed_plan(sc: Scenario) -> tuple[Plan, list[str]]:
    """The cheapest way to deliver every committed hard-deadline lease in time: the blocks each
    needs at its cheapest eligible site that can deliver, started as late as the lead time
    allows (capex as late as possible), and the lease names placed."""
    plan = Plan.empty(sc)
    names = [s.name for s in sc.sites]
    placed = []
    fleet_left = np.full(sc.horizon.n_periods, sc.construction.max_blocks_per_period)
    it_used = np.zeros((len(sc.sites), sc.horizon.n_periods))
    _, active, _ = lease_terms(sc)
    for l, lo in enumerate(sc.lease_offers):
        if not (lo.committed and lo.hard_deadline) or _deadline_shortfall(sc, lo):
            continue
        sites = sorted(
            (names.index(e) for e in lo.eligible_sites),
            key=lambda i: sc.sites[i].conversion.capex_usd_per_it_mw,
        )
        for i in sites:
            c = sc.sites[i].conversion
            per_block = c.block_mw * c.it_mw_per_utility_mw
            need = int(np.ceil(lo.it_mw / per_block - 1e-9))
            trial = plan.blocks[i].copy()
            left = fleet_left.copy()
            t = lo.deliver_by_period - c.lead_time_periods
            while need > 0 and t >= 0:
                room = min(c.max_blocks_per_period - trial[t], left[t], need)
                trial[t] += max(room, 0)
                left[t] -= max(room, 0)
                need -= max(room, 0)
                t -= 1
            if need > 0:
                continue
            plan.blocks[i] = trial
            fleet_left = left
            plan.lease_signed[l] = True
            online = schedule(sc, plan).it_online_mw[i]
            take = np.where(active[l], np.minimum(lo.it_mw, online - it_used[i]), 0.0)
            take = np.maximum(take, 0.0)
            plan.lease_it_mw[l, i] = take
            it_used[i] += take
            placed.append(f"'{lo.name}' at '{sc.sites[i].name}'")
            break
    return plan, placed


def committed_funding_problems(d: ModelData) -> list[str]:
    """Committed hard-deadline leases that can be built in time but not paid for: even the
    cheapest just-in-time conversion for them, with every facility drawn and all allowed BTC
    sold, leaves cash below the minimum beyond the chance budget."""
    plan, placed = committed_plan(d.sc)
    if not placed:
        return []
    line = _shortfall_line(d, _funding_upper_bound(d, plan))
    if line is None:
        return []
    capex = float(schedule(d.sc, plan).capex_usd.sum())
    what = ", ".join(placed)
    return [
        f"committed lease {what} can be built in time but not funded: its conversion "
        f"(${capex:,.0f} of capex, started as late as the lead time allows), even with every "
        f"facility drawn in full and all allowed BTC sold, leaves cash {line}; the funding "
        "shortfall is the amount short: add funding, or do not commit the lease"
    ]


def min_cash_problems(d: ModelData) -> list[str]:
    """Minimum cash out of reach when converting nothing but borrowing every facility at once
    and selling all the BTC allowed, in scenarios weighing more than the chance budget
    (reported only after the solver found the model infeasible)."""
    line = _shortfall_line(d, _funding_upper_bound(d, Plan.empty(d.sc)))
    if line is None:
        return []
    return [
        f"minimum cash is out of reach even without converting, with every facility drawn and "
        f"all allowed BTC sold, cash is {line}; lower minimum cash or the confidence"
    ]


def explain_infeasibility(d: ModelData) -> list[str]:
    """One line per reason the MILP has no feasible plan, from arithmetic only: it never
    re-enters the solver (a relaxed re-solve can be as hard as the model itself)."""
    reasons = lease_deadline_problems(d.sc) + committed_funding_problems(d) + min_cash_problems(d)
    if reasons:
        return reasons
    cov = d.sc.covenants
    committed = [lo.name for lo in d.sc.lease_offers if lo.committed]
    tail = f" and the committed leases ({', '.join(committed)})" if committed else ""
    return [
        f"no plan meets minimum cash ${cov.min_cash_usd:,.0f} and the covenants (DSCR ≥ "
        f"{cov.min_dscr:g}, leverage ≤ {cov.max_leverage:g}) in scenarios of weight ≥ "
        f"confidence {cov.confidence:g} together with the lease deadlines{tail}: lower the "
        "confidence or minimum cash, or add funding"
    ]
