"""Check any plan against every constraint of a scenario, independently of the MILP's rows.

Structural rules are checked from the scenario alone; with scenarios (coefficient
trajectories and weights) the cash and covenant rules are checked on them through
:func:`hashpivot.kernels.cashflow.cash_flows`. Each violation is one readable line naming the
site, lease, facility and period.
"""

from __future__ import annotations

import re

import numpy as np

from hashpivot.kernels.cashflow import CASH_TOL_USD, cash_flows
from hashpivot.kernels.plan import Plan, debt_terms, lease_terms, rack_life_periods, schedule
from hashpivot.kernels.reduce import ReducedScenarios
from hashpivot.scenarios import Scenario

#: Tolerance on MW and BTC quantities.
QTY_TOL = 1e-6
#: Violations listed per rule before the rest are counted.
MAX_PER_RULE = 5
#: The line that counts a rule's violations past :data:`MAX_PER_RULE`.
_MORE = re.compile(r"^\.\.\. and (\d+) more '.*' violations$")


def _shape_problems(sc: Scenario, plan: Plan) -> list[str]:
    s, t = len(sc.sites), sc.horizon.n_periods
    expect = {
        "sites": (plan.site_names, tuple(x.name for x in sc.sites)),
        "lease_offers": (plan.lease_names, tuple(x.name for x in sc.lease_offers)),
        "debt_facilities": (plan.facility_names, tuple(x.name for x in sc.debt_facilities)),
    }
    out = [
        f"plan.{k}: must be {list(want)} (got {list(got)})"
        for k, (got, want) in expect.items()
        if got != want
    ]
    if plan.n_periods != t:
        out.append(f"plan.periods: must be {t} (got {plan.n_periods})")
    if out:
        return out
    if plan.blocks.shape != (s, t) or plan.racks_new.shape != (s, t):
        out.append("plan: blocks and racks_new must be site × period arrays")
    return out


class _Collector:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.counts: dict[str, int] = {}

    def add(self, rule: str, line: str) -> None:
        n = self.counts.get(rule, 0)
        self.counts[rule] = n + 1
        if n < MAX_PER_RULE:
            self.lines.append(line)

    def result(self) -> list[str]:
        extra = [
            f"... and {n - MAX_PER_RULE} more '{r}' violations"
            for r, n in self.counts.items()
            if n > MAX_PER_RULE
        ]
        return self.lines + extra


def violation_count(lines: list[str]) -> int:
    """Violations behind the lines of :func:`check_plan`: one per line, and ``N`` for each
    ``... and N more '<rule>' violations`` line."""
    n = 0
    for line in lines:
        m = _MORE.match(line)
        n += int(m.group(1)) if m else 1
    return n


def check_plan(sc: Scenario, plan: Plan, scenarios: ReducedScenarios | None = None) -> list[str]:
    """Every violated constraint of ``plan``, one line each (empty when the plan is feasible).

    Parameters
    ----------
    sc
        The scenario.
    plan
        Any plan (from the MILP, a baseline, or edited by hand).
    scenarios
        If given, also check minimum cash in every scenario and the covenants' confidence.
    """
    shape = _shape_problems(sc, plan)
    if shape:
        return shape
    c = _Collector()
    names = [s.name for s in sc.sites]
    n_t = sc.horizon.n_periods
    # conversion
    for i, s in enumerate(sc.sites):
        b = plan.blocks[i]
        for t in np.flatnonzero(b < 0):
            c.add("blocks", f"site '{s.name}' period {t}: blocks must be >= 0 (got {b[t]})")
        for t in np.flatnonzero(b > s.conversion.max_blocks_per_period):
            c.add(
                "blocks",
                f"site '{s.name}' period {t}: {b[t]} blocks started, at most "
                f"{s.conversion.max_blocks_per_period} per period",
            )
        converted = np.cumsum(b) * s.conversion.block_mw
        for t in np.flatnonzero(converted > s.convertible_mw + QTY_TOL)[:1]:
            c.add(
                "convertible",
                f"site '{s.name}' period {t}: converts {converted[t]:g} MW, more than "
                f"its {s.convertible_mw:g} convertible MW",
            )
        for t in np.flatnonzero(converted > s.asic_mw + QTY_TOL)[:1]:
            c.add(
                "asic",
                f"site '{s.name}' period {t}: converts {converted[t]:g} MW, more than its "
                f"{s.asic_mw:g} ASIC MW",
            )
    fleet = plan.blocks.sum(axis=0)
    for t in np.flatnonzero(fleet > sc.construction.max_blocks_per_period):
        c.add(
            "fleet",
            f"period {t}: {fleet[t]} blocks started fleet-wide, at most "
            f"{sc.construction.max_blocks_per_period}",
        )
    # racks
    g = sc.gpu_racks
    if np.any(plan.racks_new < 0):
        c.add("racks", "racks_new must be >= 0")
    if not g.enabled and plan.racks_new.any():
        c.add("racks", "gpu_racks are disabled, but the plan installs racks")
    per = plan.racks_new.sum(axis=0)
    for t in np.flatnonzero(per > g.max_racks_per_period):
        c.add("racks", f"period {t}: {per[t]} racks installed, at most {g.max_racks_per_period}")
    sch = schedule(sc, plan)
    # capacity
    for i, t in np.argwhere(sch.market_it_mw < -QTY_TOL):
        c.add(
            "capacity",
            f"site '{names[i]}' period {t}: leases and racks use "
            f"{sch.it_online_mw[i, t] - sch.market_it_mw[i, t]:g} IT MW, only "
            f"{sch.it_online_mw[i, t]:g} online",
        )
    # leases
    _, active, late = lease_terms(sc)
    for l, lo in enumerate(sc.lease_offers):
        d = plan.lease_it_mw[l]
        if np.any(d < -QTY_TOL):
            c.add("lease", f"lease '{lo.name}': delivered IT MW must be >= 0")
        used = np.flatnonzero(d.sum(axis=1) > QTY_TOL)
        if lo.committed and not plan.lease_signed[l]:
            c.add("lease", f"lease '{lo.name}' is committed (already signed) and must be delivered")
        if not plan.lease_signed[l]:
            if used.size:
                c.add("lease", f"lease '{lo.name}' is not signed but receives IT MW")
            continue
        for i in used:
            if names[i] not in lo.eligible_sites:
                c.add("lease", f"lease '{lo.name}': site '{names[i]}' is not eligible")
        if lo.single_campus and used.size > 1:
            c.add(
                "lease", f"lease '{lo.name}' is single-campus but uses {[names[i] for i in used]}"
            )
        total = d.sum(axis=0)
        for t in np.flatnonzero(total > lo.it_mw + QTY_TOL):
            c.add(
                "lease",
                f"lease '{lo.name}' period {t}: {total[t]:g} IT MW delivered, more than {lo.it_mw:g}",
            )
        for t in np.flatnonzero((total > QTY_TOL) & ~active[l]):
            c.add("lease", f"lease '{lo.name}' period {t}: delivery outside the lease term")
        if lo.hard_deadline:
            for t in np.flatnonzero(late[l] & (total < lo.it_mw - QTY_TOL)):
                c.add(
                    "deadline",
                    f"lease '{lo.name}' period {t}: {total[t]:g} of {lo.it_mw:g} IT MW "
                    f"delivered after its hard deadline (period {lo.deliver_by_period})",
                )
    # debt
    allowed, _ = debt_terms(sc)
    for f, fac in enumerate(sc.debt_facilities):
        dr = plan.draws_usd[f]
        if np.any(dr < -CASH_TOL_USD):
            c.add("debt", f"facility '{fac.name}': draws must be >= 0")
        for t in np.flatnonzero((np.abs(dr) > CASH_TOL_USD) & ~allowed[f]):
            c.add(
                "debt",
                f"facility '{fac.name}' period {t}: draw outside the window "
                f"{fac.draw_start_period}–{fac.draw_end_period}",
            )
        if dr.sum() > fac.size_usd * (1 + 1e-9) + CASH_TOL_USD:
            c.add(
                "debt",
                f"facility '{fac.name}': draws ${dr.sum():,.0f} exceed its size ${fac.size_usd:,.0f}",
            )
    # treasury
    tr = sc.treasury
    for t in np.flatnonzero(plan.btc_sold < -QTY_TOL):
        c.add("treasury", f"period {t}: BTC sold must be >= 0")
    for t in np.flatnonzero(plan.btc_sold > tr.max_btc_sale_per_period + QTY_TOL):
        c.add(
            "treasury",
            f"period {t}: {plan.btc_sold[t]:g} BTC sold, at most {tr.max_btc_sale_per_period:g}",
        )
    for t in np.flatnonzero(sch.btc_held < tr.btc_floor - QTY_TOL)[:1]:
        c.add(
            "treasury", f"period {t}: BTC held {sch.btc_held[t]:g} below the floor {tr.btc_floor:g}"
        )
    if rack_life_periods(sc) <= 0:  # pragma: no cover - schema guarantees a positive life
        c.add("racks", "rack life must be positive")
    if scenarios is not None and not c.lines:
        _check_cash(sc, plan, scenarios, c, n_t)
    return c.result()


def _check_cash(sc: Scenario, plan: Plan, red: ReducedScenarios, c: _Collector, n_t: int) -> None:
    """Minimum cash and the covenants as one chance constraint: the scenarios where either
    fails may weigh at most 1 − confidence (the MILP's excused scenarios z_k)."""
    cf = cash_flows(sc, plan, red.coefficient_arrays())
    short = np.asarray(cf.cash_usd) < sc.covenants.min_cash_usd - CASH_TOL_USD
    short_k = short.any(axis=1)
    breach = np.asarray(cf.covenant_breach)
    share = float(red.weights[short_k | breach].sum())
    allowed = 1.0 - sc.covenants.confidence
    if share <= allowed + 1e-9:
        return
    for k in np.flatnonzero(short_k):
        t = int(np.argmax(short[k]))
        c.add(
            "cash",
            f"scenario {k} (weight {red.weights[k]:.4f}) period {t}: cash "
            f"${cf.cash_usd[k, t]:,.0f} below the minimum ${sc.covenants.min_cash_usd:,.0f}",
        )
    what = {
        (True, True): "minimum cash or the covenants fail",
        (True, False): "minimum cash fails",
        (False, True): "covenants fail",
    }[(bool(short_k.any()), bool(breach.any()))]
    c.add(
        "chance",
        f"{what} in scenarios of weight {share:.4f}, more than the {allowed:.4f} allowed by "
        f"confidence {sc.covenants.confidence:g}",
    )
