"""Baseline policies the optimized plan is judged against.

The baselines of :data:`POLICIES` follow the rules the plan must follow: minimum cash and the
covenants hold in the reduced scenarios at the scenario's confidence (the chance constraint the
checker applies, :func:`~hashpivot.optimizer.checker.check_plan` with scenarios). Each is funded
by :func:`_fund_rules` and, where it still breaks the rules, shrunk and delayed by
:func:`abide` (the most of its blocks, earliest first, that keep the rules; then the blocks
left out tried again later; leases re-assigned and funding redone) until it does not.

``stay_mining``
    Convert nothing, sign nothing; sell BTC or borrow only where cash would fall short.
``convert_all``
    Start every convertible block as fast as the per-site and fleet limits allow (sites in
    file order), sign every offer that some eligible campus can deliver by its deadline, fund
    the capex by borrowing; shrunk until it keeps the rules.
``greedy``
    Rank sites by AI value minus mining value per utility MW (expected market lease income
    or the best offer's rent, less the capex annuity, against the expected mining margin);
    convert the positive ones in that order while expected cash, with every facility drawn,
    stays above the minimum; sign the offers their capacity can deliver; then delayed or
    shrunk until it keeps the rules.
``expected_value``
    The MILP solved on the single mean scenario (the EV plan: the weighted means of every
    coefficient, :func:`mean_scenario`), then made to keep the rules in the reduced scenarios.

Funding (:func:`_fund_rules`): per period, sell treasury BTC (above the floor, within the
per-period cap, never in the last period), then draw from facilities whose window is open in
file order, to cover the shortfall below minimum cash in that period (at a window's last
period, all shortfalls to come) that is left after excusing the worst scenarios of weight
≤ 1 − confidence.

The naive rules of earlier versions, which keep only *expected* cash at the minimum and ignore
the covenants, stay available for comparison as ``convert_all_expected_cash`` and
``greedy_expected_cash`` (:data:`NAIVE_POLICIES`); the verdict never compares with them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hashpivot.kernels.cashflow import CASH_TOL_USD, cash_flows
from hashpivot.kernels.plan import Plan, debt_terms, lease_terms, schedule
from hashpivot.kernels.reduce import ReducedScenarios
from hashpivot.scenarios import Scenario

from .checker import check_plan

#: Rule-abiding baselines (evaluated beside every plan; the verdict compares with these).
POLICIES = ("stay_mining", "convert_all", "greedy", "expected_value")
#: The earlier rules that keep only expected cash at the minimum (for comparison only).
NAIVE_POLICIES = ("convert_all_expected_cash", "greedy_expected_cash")
#: Funding trials spent delaying blocks that do not fit where they were started.
MAX_DELAY_TRIES = 12
#: Funding passes: per-period excuses first, then one fixed excused set (and a second try).
FUND_PASSES = 3
#: Blocks the EV plan may lose before its financing is re-solved by the MILP (then abide).
EV_REPAIR_STEPS = 4
#: Share of the solver time limit given to the EV plan's MILP (and to its repair) ...
EV_TIME_SHARE = 0.25
#: ... and at most this [s]: a baseline, not the plan.
EV_TIME_LIMIT_S = 30.0


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


def _excused_quantile(values: np.ndarray, weights: np.ndarray, room: float) -> float:
    """The largest of ``values`` left after excusing the largest ones of total weight ≤
    ``room``."""
    order = np.argsort(-values, kind="stable")
    dropped = np.cumsum(weights[order]) <= room + 1e-12
    kept = order[~dropped]
    return float(values[kept[0]]) if kept.size else -np.inf


def _fund_rules(sc: Scenario, plan: Plan, red: ReducedScenarios) -> None:
    """Sell treasury BTC, then draw facilities, so that cash stays at the minimum in the
    scenarios held to the rules (see the module docstring). The excused scenarios must be the
    same in every period: a first pass excuses per period, then the scenarios that still fail
    worst (within the budget) are excused throughout and the funding redone."""
    room = 1.0 - sc.covenants.confidence
    excused = None
    for _ in range(FUND_PASSES):
        _fund_pass(sc, plan, red, excused)
        cf = cash_flows(sc, plan, red.coefficient_arrays())
        gap = np.maximum(sc.covenants.min_cash_usd - np.asarray(cf.cash_usd), 0.0).max(axis=1)
        failing = (gap > CASH_TOL_USD) | np.asarray(cf.covenant_breach)
        if red.weights[failing].sum() <= room + 1e-9:
            return
        severity = np.where(failing, gap + 1.0, 0.0)
        excused = np.zeros(red.n_scenarios, dtype=bool)
        used = 0.0
        for k in np.argsort(-severity, kind="stable"):
            if severity[k] > 0 and used + red.weights[k] <= room + 1e-12:
                excused[k] = True
                used += red.weights[k]


def _fund_pass(sc: Scenario, plan: Plan, red: ReducedScenarios, excused: np.ndarray | None) -> None:
    """One funding pass: per period, the shortfall of the worst scenario held to the rules
    (``excused`` fixed, or per period the worst after excusing weight ≤ 1 − confidence)."""
    allowed, _ = debt_terms(sc)
    co = red.coefficient_arrays()
    plan.draws_usd[:] = 0.0
    plan.btc_sold[:] = 0.0
    floor = sc.covenants.min_cash_usd
    room = 1.0 - sc.covenants.confidence
    tr = sc.treasury
    spare = max(0.0, tr.btc_held - tr.btc_floor)
    last = sc.horizon.n_periods - 1
    last_draw = [int(np.flatnonzero(a)[-1]) if a.any() else -1 for a in allowed]

    def worst(values: np.ndarray) -> float:
        if excused is None:
            return _excused_quantile(values, red.weights, room)
        return float(values[~excused].max()) if (~excused).any() else -np.inf

    for t in range(last + 1):
        if spare > plan.btc_sold.sum() and t < last and tr.max_btc_sale_per_period > 0:
            cash = np.asarray(cash_flows(sc, plan, co).cash_usd)
            sell = worst(np.maximum(floor - cash[:, t], 0.0) / red.btc_price_usd[:, t])
            if sell > 0:
                left = spare - plan.btc_sold.sum()
                plan.btc_sold[t] = min(sell * 1.001, tr.max_btc_sale_per_period, left)
        for f, fac in enumerate(sc.debt_facilities):
            if not allowed[f, t]:
                continue
            cash = np.asarray(cash_flows(sc, plan, co).cash_usd)
            # just in time while the window stays open; at its last period, all that is to come
            ahead = cash[:, t:].min(axis=1) if t == last_draw[f] else cash[:, t]
            short = worst(floor - ahead)
            left = fac.size_usd - plan.draws_usd[f].sum()
            if short > 0 and left > 0:
                plan.draws_usd[f, t] += min(left, short / (1.0 - fac.upfront_fee_share) * 1.001)


def _fit_racks(sc: Scenario, plan: Plan) -> None:
    """Drop the latest rack installs of a site whose racks outgrow its IT MW online."""
    for i in range(len(sc.sites)):
        while plan.racks_new[i].sum() > 0:
            sch = schedule(sc, plan)
            if np.all(sch.rack_it_mw[i] <= sch.it_online_mw[i] + 1e-9):
                break
            t = int(np.flatnonzero(plan.racks_new[i])[-1])
            plan.racks_new[i, t] -= 1


def _copy(plan: Plan) -> Plan:
    return Plan(
        **{k: v.copy() if isinstance(v, np.ndarray) else v for k, v in plan.__dict__.items()}
    )


def _refit(sc: Scenario, plan: Plan, red: ReducedScenarios) -> list[str]:
    """Racks that fit, leases re-assigned, funding redone; the checker's lines."""
    _fit_racks(sc, plan)
    _assign_leases(sc, plan)
    _fund_rules(sc, plan, red)
    return check_plan(sc, plan, red)


def _block_order(plan: Plan) -> list[tuple[int, int]]:
    """The plan's blocks one by one, (site, start period), earliest start first."""
    return sorted(
        (
            (int(s), int(t))
            for s, t in np.argwhere(plan.blocks > 0)
            for _ in range(plan.blocks[s, t])
        ),
        key=lambda st: (st[1], st[0]),
    )


def _with_blocks(plan: Plan, blocks: list[tuple[int, int]]) -> Plan:
    out = _copy(plan)
    out.blocks[:] = 0
    for s, t in blocks:
        out.blocks[s, t] += 1
    return out


def abide(sc: Scenario, plan: Plan, red: ReducedScenarios, *, refund: bool = True) -> Plan:
    """``plan`` made to keep minimum cash and the covenants in ``red`` at the scenario's
    confidence: funded by :func:`_fund_rules` (unless ``refund`` is false and it already keeps
    them); if it still breaks them, the most of its blocks, earliest started first, that keep
    them (bisection on their number); then the first block left out, delayed by 1, 2, 4, …
    periods while it still comes online in the horizon, is added back where that keeps them
    (at most ``MAX_DELAY_TRIES`` tries). Racks that no longer fit are dropped, leases
    re-assigned and the funding redone for every candidate."""
    plan = _copy(plan)
    if not refund and not check_plan(sc, plan, red):
        return plan
    _fund_rules(sc, plan, red)
    if not check_plan(sc, plan, red) or plan.blocks.sum() == 0:
        return plan
    order = _block_order(plan)

    def keeps(blocks: list[tuple[int, int]]) -> Plan | None:
        trial = _with_blocks(plan, blocks)
        return None if _refit(sc, trial, red) else trial

    lo, hi = 0, len(order)  # the first hi blocks break the rules
    best = keeps([])
    if best is None:  # even converting nothing breaks them: the least that can be done
        best = _with_blocks(plan, [])
        _refit(sc, best, red)
        return best
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = keeps(order[:mid])
        if trial is None:
            hi = mid
        else:
            lo, best = mid, trial
    kept = order[:lo]
    n_t = sc.horizon.n_periods
    tries = 0
    for s, t in order[lo:]:
        latest = n_t - 1 - sc.sites[s].conversion.lead_time_periods
        step = 1
        while t + step <= latest and tries < MAX_DELAY_TRIES:
            tries += 1
            trial = keeps(kept + [(s, t + step)])
            if trial is not None:
                kept, best = kept + [(s, t + step)], trial
                break
            step *= 2
        if tries >= MAX_DELAY_TRIES:
            break
    return best


def mean_scenario(red: ReducedScenarios) -> ReducedScenarios:
    """One scenario of weight 1 holding the weighted means of every coefficient."""
    mean = red.weighted_means()
    return ReducedScenarios(
        weights=np.ones(1),
        is_tail=np.zeros(1, dtype=bool),
        path_counts=np.array([max(red.paths, 1)]),
        **{k: v[None] for k, v in mean.items()},
        paths=red.paths,
        seed=red.seed,
        full_means=red.full_means,
    )


def expected_value(sc: Scenario, red: ReducedScenarios) -> Plan:
    """The EV plan (the MILP on the mean scenario) made to keep the rules in ``red``: as it is
    if it keeps them, else its conversion (less up to ``EV_REPAIR_STEPS − 1`` of its
    latest-started blocks), racks and leases with the financing re-solved on ``red``
    (:func:`~hashpivot.optimizer.solve.repair_financing`), else delayed or shrunk by
    :func:`abide`; the stay-mining baseline if the mean scenario has no feasible plan."""
    from .model import model_data  # noqa: PLC0415
    from .solve import NoSolutionError, repair_financing, solve  # noqa: PLC0415

    limit = min(EV_TIME_SHARE * sc.defaults.solver_time_limit_s, EV_TIME_LIMIT_S)
    try:
        plan = solve(model_data(sc, mean_scenario(red)), time_limit_s=limit).plan
    except NoSolutionError:
        return stay_mining(sc, red)
    if not check_plan(sc, plan, red):
        return plan
    # its conversion less 0, 1, … of the latest-started blocks, financed by the MILP
    candidates = []
    trial = _copy(plan)
    for _ in range(EV_REPAIR_STEPS):
        candidates.append(_copy(trial))
        if trial.blocks.sum() == 0:
            break
        started = np.argwhere(trial.blocks > 0)
        s, t = max(started.tolist(), key=lambda st: (st[1], st[0]))
        trial.blocks[s, t] -= 1
        _fit_racks(sc, trial)
        _assign_leases(sc, trial)
    repaired = repair_financing(model_data(sc, red), candidates, time_limit_s=limit)
    if repaired is not None and not check_plan(sc, repaired, red):
        return repaired
    return abide(sc, plan, red, refund=False)


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
    """Keep mining: the empty plan (borrowing only where cash would fall short)."""
    plan = Plan.empty(sc)
    if any(lo.committed for lo in sc.lease_offers):
        _assign_leases(sc, plan)
    if red is not None and check_plan(sc, plan, red):
        _fund_rules(sc, plan, red)
    return plan


def convert_all_expected_cash(sc: Scenario, red: ReducedScenarios) -> Plan:
    """Convert everything as fast as allowed, sign what can be delivered, fund by borrowing to
    keep *expected* cash at the minimum (naive: ignores the scenarios and the covenants)."""
    plan = Plan.empty(sc)
    _fast_blocks(sc, list(range(len(sc.sites))), plan)
    _assign_leases(sc, plan)
    _fund(sc, plan, red)
    return plan


def convert_all(sc: Scenario, red: ReducedScenarios) -> Plan:
    """Convert everything as fast as allowed, then shrink until the rules hold."""
    return abide(sc, convert_all_expected_cash(sc, red), red)


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
    """The greedy rule's conversion, delayed or shrunk until it keeps minimum cash and the
    covenants in ``red`` at the scenario's confidence."""
    return abide(sc, greedy_expected_cash(sc, red), red)


def greedy_expected_cash(sc: Scenario, red: ReducedScenarios) -> Plan:
    """Convert sites in order of AI-minus-mining value while *expected* cash stays at the
    minimum (naive: ignores the scenarios and the covenants)."""
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
    """The baseline plan called ``name`` (one of :data:`POLICIES` or :data:`NAIVE_POLICIES`)."""
    rules = {
        "stay_mining": stay_mining,
        "convert_all": convert_all,
        "greedy": greedy,
        "expected_value": expected_value,
        "convert_all_expected_cash": convert_all_expected_cash,
        "greedy_expected_cash": greedy_expected_cash,
    }
    if name not in rules:
        names = ", ".join(POLICIES + NAIVE_POLICIES)
        raise ValueError(f"policy: must be one of {names} (got {name!r})")
    return rules[name](sc, red)


#: Baselines handed to a fleet-sized MILP as warm starts (``solve``'s ``starts``): cheap to
#: compute, and they keep the rules, so their financing re-solved is a feasible plan.
START_POLICIES = ("greedy",)


class BaselinePlans:
    """The baseline plans of one scenario on one set of reduced scenarios, each computed on
    first use and kept: the fleet-sized MILP's warm start and the report's baselines share
    them (the greedy rule takes ~16 s on a 50-site fleet)."""

    def __init__(self, sc: Scenario, red: ReducedScenarios) -> None:
        self.sc = sc
        self.red = red
        self._plans: dict[str, Plan] = {}

    def __getitem__(self, name: str) -> Plan:
        if name not in self._plans:
            self._plans[name] = baseline(name, self.sc, self.red)
        return self._plans[name]

    def computed(self) -> tuple[str, ...]:
        """Names of the plans computed so far."""
        return tuple(self._plans)

    def fill(self, plans: dict[str, Plan]) -> None:
        """Keep plans computed elsewhere (:func:`baseline_plans` on a worker)."""
        self._plans.update(plans)

    def starts(self) -> list[Plan]:
        """The plans of :data:`START_POLICIES` (``solve``'s ``starts``)."""
        return [self[name] for name in START_POLICIES]


def baseline_plans(
    sc: Scenario, red: ReducedScenarios, names: list[str] | tuple[str, ...]
) -> dict[str, Plan]:
    """The baseline plans ``names`` on ``red`` (a worker's task: picklable arguments)."""
    return {name: baseline(name, sc, red) for name in names}


def start_plans(sc: Scenario, red: ReducedScenarios) -> Callable[[], list[Plan]]:
    """The plans of :data:`START_POLICIES` on ``red``, computed only when called."""
    return BaselinePlans(sc, red).starts
