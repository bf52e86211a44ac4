"""Say in words why no plan is feasible.

First, arithmetic that needs no solver: what each hard-deadline lease needs against what its
eligible sites can bring online in time, and minimum cash against the most cash reachable.
Then, if nothing was found, re-solve with one family of constraints relaxed at a time
(covenants, hard deadlines) to name the family that makes the model infeasible.
"""

from __future__ import annotations

import numpy as np

from hashpivot.kernels.plan import Plan, debt_terms
from hashpivot.scenarios import Scenario

from .model import ModelData

#: Time limit of each relaxed re-solve [s].
RELAXED_TIME_LIMIT_S = 30.0


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


def lease_deadline_problems(sc: Scenario) -> list[str]:
    """Committed hard-deadline leases that no campus can deliver in time (an unsigned offer
    that cannot be delivered is simply left unsigned)."""
    names = [s.name for s in sc.sites]
    out = []
    for lo in sc.lease_offers:
        if not (lo.hard_deadline and lo.committed):
            continue
        caps = [
            max_it_online_by(sc, names.index(e), lo.deliver_by_period) for e in lo.eligible_sites
        ]
        best = max(caps) if lo.single_campus else sum(caps)
        if best + 1e-9 < lo.it_mw:
            where = "one eligible campus" if lo.single_campus else "the eligible sites together"
            out.append(
                f"lease '{lo.name}' needs {lo.it_mw:g} IT MW by period {lo.deliver_by_period}; "
                f"{where} can bring online at most {best:g}"
            )
    return out


def min_cash_problems(d: ModelData) -> list[str]:
    """A scenario and period where minimum cash fails when converting nothing but borrowing every
    facility at once and selling all the BTC allowed (most plans that cannot fund themselves
    fail there first; reported only after the solver found the model infeasible)."""
    from hashpivot.kernels.cashflow import cash_flows  # noqa: PLC0415

    sc = d.sc
    plan = Plan.empty(sc)
    allowed, _ = debt_terms(sc)
    cf = cash_flows(sc, plan, d.red.coefficient_arrays())
    extra = np.zeros(d.n_periods)
    for f, fac in enumerate(sc.debt_facilities):
        first = np.flatnonzero(allowed[f])
        if first.size:
            extra[first[0] :] += fac.size_usd * (1 - fac.upfront_fee_share)
    spare = sc.treasury.btc_held - sc.treasury.btc_floor
    sold = np.minimum(np.cumsum(np.full(d.n_periods, sc.treasury.max_btc_sale_per_period)), spare)
    upper = cf.cash_usd + extra[None] + d.red.btc_price_usd * sold[None]
    short = upper < sc.covenants.min_cash_usd - 1.0
    if not short.any():
        return []
    k, t = np.argwhere(short)[0]
    return [
        f"minimum cash ${sc.covenants.min_cash_usd:,.0f} is out of reach in scenario {k} "
        f"(weight {d.weights[k]:.3f}) at period {t}: without converting, even with every facility "
        f"drawn and all allowed BTC sold, cash is ${upper[k, t]:,.0f} there (minimum cash must "
        "hold in every scenario: lower it, or use fewer scenarios so that extreme paths are merged)"
    ]


def explain_infeasibility(d: ModelData) -> list[str]:
    """One line per reason the MILP has no feasible plan."""
    from .solve import NoSolutionError, solve  # noqa: PLC0415

    reasons = lease_deadline_problems(d.sc) + min_cash_problems(d)
    if reasons:
        return reasons
    for kwargs, message in (
        (
            {"covenants": False},
            f"the covenants (DSCR ≥ {d.sc.covenants.min_dscr:g}, leverage ≤ "
            f"{d.sc.covenants.max_leverage:g}) cannot hold with confidence "
            f"{d.sc.covenants.confidence:g}: lower the confidence or the debt needed",
        ),
        (
            {"hard_deadlines": False},
            "hard lease deadlines cannot all be met together with the cash and covenant limits",
        ),
    ):
        try:
            solve(d, time_limit_s=RELAXED_TIME_LIMIT_S, **kwargs)
        except NoSolutionError:
            continue
        return [message]
    return ["no plan meets minimum cash, covenants and lease deadlines together in every scenario"]
