r"""Statistical validation of a plan: SAA replications, calibration of the covenant chance
constraint, the optimality-gap interval, the out-of-sample covenant guarantee, VSS and EVPI.

Notation: J(x) = E[W(x)] − λ·CVaR_α(−W(x)), the objective of plan x (:mod:`hashpivot.kernels.stats`);
ε = 1 − covenants.confidence, the share of paths allowed to breach a covenant or minimum cash.
Every random stream below has its own seed derived from the run's seed (:func:`derived_seed`),
so the numbers depend only on the seed, never on the executor or its number of workers.

Replications (Kleywegt, Shapiro & Homem-de-Mello 2002)
    R independent path sets (replication 0 is the run's own) are reduced to K scenarios each
    and solved: R candidate plans. All are judged on the same M_sel *selection* paths (a stream
    apart from the evaluation paths) and the best objective is kept. Choosing on the evaluation
    paths would bias the reported objective upward (the winner's curse); the final evaluation
    uses paths no decision has seen.

Calibration of the chance constraint and of the covenant headroom
    The MILP keeps the covenants and minimum cash in all but a weight ε of its K scenarios; a
    finite reduced sample underrates the tail, so out of sample the plan may breach more often.
    Out of sample a breach is not free: the lender accelerates (or charges a waiver) and a path
    that cannot pay defaults, W = 0. Where the downside's operating cash flow is set by
    contracted rent, P(breach) jumps once the debt service crosses rent/min_dscr, and a plan
    solved at the edge of its K scenarios sits at that cliff: on demo, 2% more debt (167.8 →
    171.2 $M) raised P(default) from 2.7% to 4.3% and cost $15M of objective; 5% more, 15.9%
    and $57M. The in-sample objective cannot see this, so the cushion is chosen out of sample.
    Let u(x) be the Clopper–Pearson one-sided 95% upper bound on P(breach) of x from its
    breaches on the selection paths, and J_sel(x) its objective there (with recourse). Round 0
    is the plan as solved. *Headroom rounds* re-solve with the MILP's covenants tested with a
    cushion h (DSCR ≥ min_dscr·(1+h), leverage ≤ max_leverage/(1+h); :func:`with_headroom`),
    h climbing ``HEADROOM_LADDER``, until a round that holds (u ≤ ε) has a lower J_sel than the
    best round that held before it (the value has peaked; at least one round is always tried).
    While no round holds, the ladder leaves the last round to *guarantee rounds*: at the
    in-sample confidence c' = 1 (no scenario excused) and the cushion of the round with the
    lowest bound, each adds ``HOLD_PER_ROUND`` *hold paths* (:func:`hold_paths`) from a further
    i.i.d. sample, paths the plan with the lowest bound so far breaks at the edge of the share
    1 − HOLD_MARGIN·ε it must keep, as scenarios of weight ``HOLD_WEIGHT`` kept at c' = 1 (a
    cutting-plane scheme, as in Luedtke & Ahmed 2008's sample-and-check): the plan must keep
    them too, and the objective barely moves. (On texas_hybrid the ladder took the bound from 44.5%
    to 26.6% and 14.3% at 5% and 10% headroom, and confidence 1 alone gives 13% at 10%; the
    guarantee round, 16 hold paths at 10% headroom, 4.9%, and the best objective of the four.)
    The plan kept is the best selection objective among rounds that hold (else the round with
    the lowest bound, and the summary says the guarantee was not reached and why). Measured on
    demo (seeds 1–3, each seed's first replication solved at confidence 90%, the plans judged
    on 50,000 common paths): without a cushion they scored 407.2, 300.6 and 356.5 $M (at
    confidence 1: 412.0, 413.6, 423.5); with h = 0.05, 428.5, 428.8 and 429.3 $M.

Out-of-sample guarantee
    On the M evaluation paths (which calibration never saw): Clopper–Pearson one-sided 95%
    upper bounds on P(breach) — any (a covenant or minimum cash: what the chance constraint
    bounds), per covenant, per facility — and on P(default). It holds when the bound on "any"
    is ≤ ε.

Optimality gap (Mak, Morton & Wood 1999), for a chance-constrained maximisation
    B batches of N i.i.d. equally weighted scenarios. On batch b the MILP is solved with the
    risk level relaxed to γ = q/N, q the (1 − δ) quantile of Binomial(N, ε): an optimal plan
    x* with P(breach) ≤ ε breaches at most q of N i.i.d. scenarios with probability ≥ 1 − δ,
    so x* is feasible for the batch problem and its optimum v̂_b ≥ Ĵ_b(x*) (Pagnoncelli, Ahmed &
    Shapiro 2009, §3; Luedtke & Ahmed 2008). The batch objective also prices excused
    probability at β (a Lagrangian term, β = ``BREACH_PRICE_SHARE``·|objective of the run's
    first solve|, fixed before any batch is drawn): v̂_b = max Ĵ_b(x) − β·P̂_b(x) + β·ε, and at x* the added terms have
    mean β·(ε − P(x*)) ≥ 0, so the bound stays valid while the batch optimum can no longer
    excuse its q worst scenarios for free. v̂_b is the solver's dual bound (plus β·ε), valid
    even where the node budget stops the search. v̂_b does not depend on the plan judged, so
    the batches are solved beside the replications, before the plan is chosen (the first
    solve's plan warm-starts them).
    The batch's E[W] is not the mean over its N scenarios but over ``BATCH_MEAN_PATHS``
    further i.i.d. paths of the batch (:func:`~hashpivot.optimizer.model.averaged`: W is linear
    in the scenario coefficients for a fixed plan, so one averaged scenario gives the mean of
    W over those paths exactly, for every plan); the N scenarios carry the CVaR and the chance
    constraint. Every term of Ĵ_b(x) stays unbiased for its expectation at each fixed x, so
    E[v̂_b] ≥ J(x*) as before, while the batch optimum can no longer fit its plan to the
    sample mean of N paths: on demo (N = 32, B = 5, β = $100M, the same batches) Ḡ fell from
    3.0% to 1.9% and s from 1.5% to 0.7% of the objective; with N = 64 and β = 0.05·objective
    the upper bound is 0.49% (Ḡ 0.26%, s 0.24%).
    The chosen plan x̂ is scored on the same
    scenarios with its CVaR threshold η̂ fixed in advance (the VaR of −W(x̂) on
    ``ETA_SCENARIOS`` further i.i.d. scenarios): Ĵ_b(x̂; η̂) = mean W − λ·(η̂ + mean
    (−W − η̂)⁺/(1 − α)), mean W over the averaging paths and the shortfall over the N
    scenarios, is unbiased for J(x̂; η̂) ≤ J(x̂) (Rockafellar–Uryasev:
    J(x) = max_η J(x; η)). Hence E[G_b] = E[v̂_b − Ĵ_b(x̂; η̂)] ≥ J(x*) − J(x̂) up to the δ
    event, and the one-sided bound
    Ḡ + t_{0.95, B−1}·s/√B (s with ddof = 1) covers the gap with about 95% confidence. The gap
    is that of the MILP's own model of cash (no recourse); it is expressed relative to the
    plan's out-of-sample objective.

VSS and EVPI (Birge 1982), under the same objective
    RP = J(plan) and EEV = J(expected-value plan), both out of sample with recourse on common
    paths: VSS = RP − EEV with the paired standard error (CVaR term included).
    WS: each of n i.i.d. scenarios solved alone (K = 1, perfect foresight, covenants kept in it);
    WS = Ĵ of those optima, RP on the same scenarios = Ĵ of the plan's W, both by the plug-in
    objective; EVPI = WS − RP with the paired standard error of the influence functions.
    Intervals are two-sided 95% (t with n − 1 degrees of freedom for EVPI, normal for VSS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as _st

from hashpivot.kernels import philox
from hashpivot.kernels.backend import get_backend
from hashpivot.kernels.cashflow import breach_severity, cash_flows, chance_breach
from hashpivot.kernels.evaluate import EvalStats, Evaluation, evaluate_plans
from hashpivot.kernels.plan import Plan
from hashpivot.kernels.reduce import ReducedScenarios, reduce_scenarios, sample_scenarios
from hashpivot.kernels.stats import (
    CONFIDENCE,
    clopper_pearson_upper,
    mmw_gap_interval,
    objective_influence,
)
from hashpivot.scenarios import Scenario

from .baselines import baseline_plans, start_plans
from .model import MONEY, averaged, model_data
from .solve import NoSolutionError, SolveResult, solve
from .validation_settings import (
    BATCH_FEASIBILITY_RISK,
    Settings,
)

#: A gap batch's wall-clock safety net, as a multiple of the run's solver time limit: the node
#: budget (``VALIDATION_MAX_NODES``) ends a batch; a wall-clock stop would make its bound, and
#: so the reported gap, depend on machine load (demo's batches take 10–26 CPU-s against a
#: 120 s limit; with a texas_hybrid run sharing the 2 cores, seeds 3 and 5 kept their plans
#: but reported bounds of $10.9M and $6.5M instead of $3.4M and $6.1M, this limit being the
#: only load-dependent stop).
BATCH_TIME_LIMIT_FACTOR = 10.0
#: I.i.d. scenarios fixing the plan's CVaR threshold η̂ in the batches.
ETA_SCENARIOS = 4000
#: I.i.d. paths per gap batch on which E[W] is taken (the batch's N scenarios carry the CVaR
#: and the chance constraint): the batch optimum can no longer fit its plan to the N paths'
#: sample mean, the main share of the SAA optimism (module docstring).
BATCH_MEAN_PATHS = 4000
#: Node budget of a batch or wait-and-see solve (the dual bound stays valid at the budget).
VALIDATION_MAX_NODES = 500
#: Price of excused probability in the gap batches, as a share of the plan's objective
#: [$ per unit of probability per $]. With E[W] on the averaging paths the add-back β·ε is
#: most of Ḡ at a large price: on demo (N = 32, 5 batches, the same batches) the upper bound is
#: 2.78% at 0.25, 1.27% at 0.1, 1.25% at 0 (unpriced: 3× slower solves, a wider spread); at
#: 8 batches 1.06% at 0.05 and 1.15% at 0.02.
BREACH_PRICE_SHARE = 0.05
#: HiGHS threads per validation solve: fixed, so results do not depend on the executor.
VALIDATION_THREADS = 1
#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054

#: A batch's few scenarios are drawn on the CPU, silently, in any worker.
NUMPY = "numpy"
#: I.i.d. paths from which the calibration picks the paths a plan must hold (hold paths).
HOLD_SAMPLE_PATHS = 2000
#: Hold paths added per calibration round once confidence 1 in sample is not enough.
HOLD_PER_ROUND = 16
#: Objective weight of each hold path: they constrain the plan, they do not value it.
HOLD_WEIGHT = 1e-6
#: Covenant headroom of the calibration's headroom rounds, in the order tried [-].
HEADROOM_LADDER = (0.05, 0.10, 0.20, 0.40)
#: The hold paths are taken at the (1 − HOLD_MARGIN·ε) quantile of the plan's breach severity
#: on the hold sample: the plan is asked to keep a share 1 − HOLD_MARGIN·ε of fresh paths.
HOLD_MARGIN = 0.8

# purposes of derived seeds
_REPLICATION, _SELECT, _BATCH, _ETA, _WS, _HOLD = 1, 2, 3, 4, 5, 6


def derived_seed(seed: int, purpose: int, index: int = 0) -> int:
    """A 63-bit seed for stream ``purpose`` (and ``index``) of a run's ``seed``."""
    words = np.random.SeedSequence([int(seed) & (2**63 - 1), purpose, index]).generate_state(2)
    return (int(words[0]) | (int(words[1]) << 32)) & (2**63 - 1)


def with_confidence(sc: Scenario, confidence: float) -> Scenario:
    """``sc`` with the covenants' in-sample confidence replaced (the MILP's chance budget)."""
    cov = sc.covenants.model_copy(update={"confidence": float(confidence)})
    return sc.model_copy(update={"covenants": cov})


def with_headroom(sc: Scenario, headroom: float) -> Scenario:
    """``sc`` with its covenants tightened by a cushion ``headroom`` h [-]: DSCR ≥
    min_dscr·(1 + h) and leverage ≤ max_leverage/(1 + h) (what the MILP is asked to keep)."""
    if headroom == 0.0:
        return sc
    c = sc.covenants
    cov = c.model_copy(
        update={
            "min_dscr": c.min_dscr * (1.0 + headroom),
            "max_leverage": c.max_leverage / (1.0 + headroom),
        }
    )
    return sc.model_copy(update={"covenants": cov})


def subset(red: ReducedScenarios, idx: np.ndarray) -> ReducedScenarios:
    """Scenarios ``idx`` of ``red``, reweighted to sum to one."""
    arrays = {k: v[idx] for k, v in red.coefficient_arrays().items()}
    w = red.weights[idx]
    return ReducedScenarios(
        weights=w / w.sum(),
        is_tail=red.is_tail[idx],
        path_counts=red.path_counts[idx],
        paths=int(red.path_counts[idx].sum()),
        seed=red.seed,
        **arrays,
    )


def with_hold(red: ReducedScenarios, hold: ReducedScenarios) -> ReducedScenarios:
    """``red``'s scenarios followed by ``hold``'s, each of these weighing ``HOLD_WEIGHT`` (the
    weights still sum to one): scenarios the plan must keep at in-sample confidence 1 that
    barely move the objective."""
    a, b = red.coefficient_arrays(), hold.coefficient_arrays()
    n = hold.n_scenarios
    w = np.concatenate([red.weights * (1.0 - n * HOLD_WEIGHT), np.full(n, HOLD_WEIGHT)])
    return ReducedScenarios(
        weights=w,
        is_tail=np.concatenate([red.is_tail, hold.is_tail]),
        path_counts=np.concatenate([red.path_counts, hold.path_counts]),
        paths=red.paths + hold.paths,
        seed=red.seed,
        **{k: np.concatenate([a[k], b[k]]) for k in a},
    )


def hold_paths(
    sc: Scenario, plan: Plan, sample: ReducedScenarios, held: np.ndarray, n: int
) -> np.ndarray:
    """Indices of ``n`` scenarios of ``sample`` (not yet ``held``) for the plan to hold next.

    Those breaching ``plan`` (the MILP's model of cash) nearest below the
    (1 − HOLD_MARGIN·ε) quantile of its breach severity
    (:func:`~hashpivot.kernels.cashflow.breach_severity`): the plan is asked to keep the
    paths at the edge of the share it must keep, not the extreme ones no plan keeps.
    """
    sev = breach_severity(sc, plan, cash_flows(sc, plan, sample.coefficient_arrays()))
    eps = 1.0 - sc.covenants.confidence
    order = np.argsort(sev, kind="stable")
    edge = min(len(order) - 1, int(math.ceil((1.0 - HOLD_MARGIN * eps) * len(order))) - 1)
    below = [k for k in order[: edge + 1][::-1] if sev[k] > 0 and not held[k]]
    if len(below) < n:  # the edge keeps already: the least severe breaches above it
        below += [k for k in order[edge + 1 :] if sev[k] > 0 and not held[k]]
    return np.array(below[:n], dtype=np.int64)


def terminal_equity(sc: Scenario, plan: Plan, red: ReducedScenarios) -> np.ndarray:
    """W of ``plan`` in each scenario of ``red`` (the MILP's model of cash, no recourse) [$]."""
    return np.asarray(cash_flows(sc, plan, red.coefficient_arrays()).terminal_equity_usd)


def in_sample_breach(sc: Scenario, plan: Plan, red: ReducedScenarios) -> float:
    """Weight of ``red``'s scenarios where ``plan`` breaches a covenant or minimum cash."""
    cf = cash_flows(sc, plan, red.coefficient_arrays())
    return float(red.weights[chance_breach(sc, cf)].sum())


def fixed_eta_objective(
    sc: Scenario, w: np.ndarray, eta_usd: float, mean_usd: float | None = None
) -> float:
    """Ĵ(x; η) = mean W − λ·(η + mean (−W − η)⁺/(1 − α)) with the threshold η fixed [$];
    ``mean_usd``, where given, replaces mean W (the mean over a batch's averaging paths)."""
    a, lam = sc.risk.cvar_alpha, sc.risk.cvar_weight
    mean = float(w.mean()) if mean_usd is None else float(mean_usd)
    return mean - lam * (eta_usd + float(np.maximum(-w - eta_usd, 0.0).mean()) / (1.0 - a))


def batch_confidence(sc: Scenario, n: int) -> tuple[float, int]:
    """(in-sample confidence 1 − q/n, q) of a batch of ``n`` i.i.d. scenarios (γ = q/n)."""
    eps = 1.0 - sc.covenants.confidence
    q = int(_st.binom.ppf(1.0 - BATCH_FEASIBILITY_RISK, n, eps)) if eps > 0 else 0
    return 1.0 - q / n, q


# --------------------------------------------------------------------------- tasks
def replication_task(
    sc: Scenario,
    paths: int,
    k: int,
    seed: int,
    mip_gap: float | None,
    time_limit_s: float,
    backend: str = "numpy",
) -> tuple[ReducedScenarios, SolveResult]:
    """Reduce an independent path set on ``backend`` and solve it (one SAA replication)."""
    red = reduce_scenarios(sc, paths, k, seed, backend=get_backend(backend, notify=False))
    res = solve(
        model_data(sc, red),
        starts=start_plans(sc, red),
        mip_gap=mip_gap,
        time_limit_s=time_limit_s,
        threads=VALIDATION_THREADS,
    )
    return red, res


def batch_samples(sc: Scenario, n: int, seed: int) -> tuple[ReducedScenarios, ReducedScenarios]:
    """A gap batch's ``n`` i.i.d. scenarios and its ``BATCH_MEAN_PATHS`` averaging paths (the same
    stream past the batch's own: disjoint, independent), as equally weighted scenarios."""
    batch = sample_scenarios(sc, n, seed, tag=philox.TAG_BATCH, backend=NUMPY)
    mean_sample = sample_scenarios(
        sc, BATCH_MEAN_PATHS, seed, tag=philox.TAG_BATCH, backend=NUMPY, offset=n
    )
    return batch, mean_sample


def breach_price_usd(objective_usd: float) -> float:
    """β of the gap batches [$ per unit of probability]: ``BREACH_PRICE_SHARE``·|objective|."""
    return BREACH_PRICE_SHARE * abs(objective_usd)


def batch_task(
    sc: Scenario,
    n: int,
    seed: int,
    mip_gap: float | None,
    time_limit_s: float,
    breach_price_usd: float = 0.0,
    start: Plan | None = None,
) -> dict[str, Any]:
    """Solve one MMW batch at the relaxed risk level, E[W] on its averaging paths, excused
    probability priced at ``breach_price_usd`` [$ per unit of probability]. ``bound_usd`` is
    the batch optimum's upper bound with the price's β·ε added back. It does not depend on the
    plan being judged (so batches can run before that plan is chosen): ``start`` only gives the
    search an incumbent."""
    batch, mean_sample = batch_samples(sc, n, seed)
    conf, q = batch_confidence(sc, n)
    out: dict[str, Any] = {"excusable": q}
    sc_b = with_confidence(sc, conf)
    d = replace(
        model_data(sc_b, batch),
        breach_price=breach_price_usd / MONEY,
        expectation=averaged(model_data(sc_b, mean_sample)),
    )
    try:
        res = solve(
            d,
            mip_gap=mip_gap,
            time_limit_s=time_limit_s,
            threads=VALIDATION_THREADS,
            max_nodes=VALIDATION_MAX_NODES,
            start=start,
        )
    except NoSolutionError as e:  # the relaxed batch problem has no plan: no bound from it
        return out | {"bound_usd": None, "error": str(e)}
    back = breach_price_usd * (1.0 - sc.covenants.confidence)
    return out | {
        "bound_usd": res.bound_usd + back,
        "objective_usd": res.objective_usd + back,
        "status": str(res.status),
        "time_limited": res.time_limited,
    }


def batch_tasks(
    sc: Scenario,
    settings: Settings,
    seed: int,
    price_usd: float,
    solve_kwargs: dict[str, Any],
    start: Plan | None = None,
) -> list[tuple]:
    """Arguments of :func:`batch_task` for each of the run's gap batches."""
    return [
        (
            sc,
            settings.batch_scenarios,
            derived_seed(seed, _BATCH, b),
            solve_kwargs.get("mip_gap"),
            solve_kwargs["time_limit_s"] * BATCH_TIME_LIMIT_FACTOR,
            price_usd,
            start,
        )
        for b in range(settings.batches)
    ]


def wait_and_see_task(
    sc: Scenario, sample: ReducedScenarios, index: int, time_limit_s: float
) -> tuple[float, bool]:
    """(W of the perfect-foresight optimum of scenario ``index``, whether its covenants could be
    kept); where no plan keeps them, the optimum without covenants."""
    one = subset(sample, np.array([index]))
    try:
        res = solve(
            model_data(sc, one),
            time_limit_s=time_limit_s,
            threads=VALIDATION_THREADS,
            max_nodes=VALIDATION_MAX_NODES,
        )
        kept = True
    except NoSolutionError:
        res = solve(
            model_data(sc, one),
            time_limit_s=time_limit_s,
            threads=VALIDATION_THREADS,
            max_nodes=VALIDATION_MAX_NODES,
            covenants=False,
        )
        kept = False
    return float(terminal_equity(sc, res.plan, one)[0]), kept


# --------------------------------------------------------------------------- results
def _finite(x: float) -> float | None:
    """``x``, or None where it was not estimated (JSON has no NaN)."""
    return float(x) if math.isfinite(x) else None


@dataclass
class Candidate:
    """One SAA replication's plan."""

    replication: int
    seed: int
    reduced: ReducedScenarios = field(repr=False)
    solve: SolveResult = field(repr=False)
    selection_objective_usd: float = math.nan
    selection_stderr_usd: float = math.nan
    diff_vs_chosen_usd: float = 0.0
    diff_stderr_usd: float = 0.0

    def to_json(self, sc: Scenario) -> dict[str, Any]:
        plan = self.solve.plan
        block_mw = np.array([s.conversion.block_mw for s in sc.sites])
        return {
            "replication": self.replication,
            "seed": self.seed,
            "in_sample_objective_usd": self.solve.objective_usd,
            "selection_objective_usd": _finite(self.selection_objective_usd),
            "selection_stderr_usd": _finite(self.selection_stderr_usd),
            "diff_vs_chosen_usd": self.diff_vs_chosen_usd,
            "diff_stderr_usd": self.diff_stderr_usd,
            "converted_mw": float((plan.blocks.sum(axis=1) * block_mw).sum()),
            "leases_signed": [
                lo.name for lo, y in zip(sc.lease_offers, plan.lease_signed, strict=True) if y
            ],
            "gap": self.solve.gap,
        }


@dataclass
class CalibrationRound:
    """One solve of the calibration: its in-sample confidence, covenant headroom and
    out-of-sample breaches."""

    round: int
    in_sample_confidence: float
    in_sample_p_breach: float
    oos_events: int
    paths: int
    oos_upper95: float
    objective_usd: float
    plan: Plan = field(repr=False)
    solve: SolveResult = field(repr=False)
    accepted: bool = False
    held: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """Indices into the hold sample of the paths the plan was made to keep (:func:`hold_paths`)."""
    headroom: float = 0.0
    """Covenant cushion h the MILP kept in its scenarios (:func:`with_headroom`) [-]."""

    limit: float = 0.0
    """The limit ε = 1 − covenants.confidence the bound is held to."""

    @property
    def holds(self) -> bool:
        """Whether the out-of-sample bound meets the limit ε."""
        return self.oos_upper95 <= self.limit

    @property
    def hold_paths(self) -> int:
        """How many fresh paths the plan was made to keep besides the scenarios."""
        return len(self.held)

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "in_sample_confidence": self.in_sample_confidence,
            "excuse_budget": 1.0 - self.in_sample_confidence,
            "headroom": self.headroom,
            "in_sample_p_breach": self.in_sample_p_breach,
            "oos_p_breach": self.oos_events / self.paths,
            "oos_upper95": self.oos_upper95,
            "paths": self.paths,
            "objective_usd": self.objective_usd,
            "hold_paths": self.hold_paths,
            "accepted": self.accepted,
        }


def breach_events(st: EvalStats) -> int:
    """Paths that breached a covenant or minimum cash (what the chance constraint bounds)."""
    return int(st.breach_events["any"])


def covenant_bound(sc: Scenario, st: EvalStats, why: str | None = None) -> dict[str, Any]:
    """The Clopper–Pearson guarantee block of ``summary.json`` from out-of-sample stats."""
    m = st.paths
    target = 1.0 - sc.covenants.confidence

    def entry(events: int) -> dict[str, float]:
        return {"p": events / m, "upper95": clopper_pearson_upper(events, m)}

    ev = st.breach_events
    upper = clopper_pearson_upper(ev["any"], m)
    holds = upper <= target + 1e-12
    if not holds and why is None:
        why = (
            f"out of sample the plan breaches on {ev['any'] / m:.1%} of {m:,} paths; the 95% "
            f"bound {upper:.1%} exceeds the {target:.0%} allowed"
        )
    return {
        "confidence": CONFIDENCE,
        "target": target,
        "paths": m,
        "p_breach": ev["any"] / m,
        "upper95": upper,
        # (the GPU kernel without a breach mask counts no DSCR/leverage split: left out)
        "per_covenant": {k: entry(ev[k]) for k in ("dscr", "leverage", "min_cash") if k in ev},
        "per_facility": {name: entry(n) for name, n in st.facility_breach_events.items()},
        "p_default": st.default_events / m,
        "p_default_upper95": clopper_pearson_upper(st.default_events, m),
        "holds": holds,
        "why": None if holds else why,
    }


def interval(diff: float, se: float, q: float) -> dict[str, float]:
    """{estimate, s.e., lower and upper bound} of a two-sided interval with quantile ``q``."""
    return {"stderr_usd": se, "lower95_usd": diff - q * se, "upper95_usd": diff + q * se}


@dataclass
class Validation:
    """What ``summary.json``'s ``validation`` block says (see the module docstring)."""

    candidates: list[Candidate]
    chosen: int
    selection_paths: int
    rounds: list[CalibrationRound]
    calibration_why: str | None = None
    covenant: dict[str, Any] | None = None
    gap: dict[str, Any] | None = None
    vss: dict[str, Any] | None = None
    evpi: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)

    def to_json(self, sc: Scenario) -> dict[str, Any]:
        finite = [
            c.selection_objective_usd
            for c in self.candidates
            if math.isfinite(c.selection_objective_usd)
        ]
        return {
            "replications": {
                "count": len(self.candidates),
                "chosen": self.chosen,
                "selection_paths": self.selection_paths,
                "spread_usd": (max(finite) - min(finite)) if finite else 0.0,
                "candidates": [c.to_json(sc) for c in self.candidates],
            },
            "gap_ci": self.gap,
            "covenant_bound": self.covenant,
            "calibration_rounds": [r.to_json() for r in self.rounds],
            "vss": self.vss,
            "evpi": self.evpi,
        }


# --------------------------------------------------------------------------- stages
def select_candidate(
    sc: Scenario,
    candidates: list[Candidate],
    paths: int,
    seed: int,
    backend: Any,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, Evaluation]:
    """Judge every candidate on the same selection paths; the index of the best."""
    plans = {f"r{c.replication}": c.solve.plan for c in candidates}
    ev = evaluate_plans(
        sc, plans, paths, derived_seed(seed, _SELECT), backend=backend, progress=progress
    )
    names = list(plans)
    est = ev.objectives
    best = int(np.argmax(est.objective_usd))
    for i, c in enumerate(candidates):
        c.selection_objective_usd = float(est.objective_usd[i])
        c.selection_stderr_usd = float(est.stderr_usd[i])
        c.diff_vs_chosen_usd, c.diff_stderr_usd = est.diff(names[i], names[best])
    return best, ev


def calibrate(
    sc: Scenario,
    red: ReducedScenarios,
    first: SolveResult,
    first_stats: EvalStats,
    rounds: int,
    paths: int,
    seed: int,
    backend: Any,
    solve_kwargs: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
    ladder: tuple[float, ...] = HEADROOM_LADDER,
) -> tuple[list[CalibrationRound], int, str | None]:
    """Calibration rounds (module docstring); returns them, the index kept and why not held.

    ``ladder``: the covenant headroom of the headroom rounds, in the order tried.
    """
    target = 1.0 - sc.covenants.confidence
    sel_seed = derived_seed(seed, _SELECT)

    def record(i: int, conf: float, h: float, res: SolveResult, st: EvalStats) -> CalibrationRound:
        ev = breach_events(st)
        return CalibrationRound(
            round=i,
            in_sample_confidence=conf,
            in_sample_p_breach=in_sample_breach(sc, res.plan, red),
            oos_events=ev,
            paths=st.paths,
            oos_upper95=clopper_pearson_upper(ev, st.paths),
            objective_usd=st.objective_usd,
            plan=res.plan,
            solve=res,
            headroom=h,
            limit=target,
        )

    out = [record(0, sc.covenants.confidence, 0.0, first, first_stats)]
    why: str | None = None

    def run(conf: float, h: float, data: ReducedScenarios, held: np.ndarray) -> str | None:
        """Solve and judge one round; where no plan exists, why (in words)."""
        try:
            res = solve(
                model_data(with_confidence(with_headroom(sc, h), conf), data),
                start=out[-1].plan,
                **solve_kwargs,
            )
        except NoSolutionError as e:
            if held.any():
                return (
                    f"no plan keeps the covenants in every scenario and on {int(held.sum())} "
                    f"fresh paths that the previous plan broke: {e}"
                )
            cushion = f" with {h:.0%} covenant headroom" if h else ""
            return f"no plan keeps the covenants at in-sample confidence {conf:.4g}{cushion}: {e}"
        ev = evaluate_plans(sc, {"c": res.plan}, paths, sel_seed, backend=backend)
        rnd = record(len(out), conf, h, res, ev.stats["c"])
        rnd.held = np.flatnonzero(held)
        out.append(rnd)
        if progress:
            progress(len(out) - 1, rounds)
        return None

    none = np.zeros(0, bool)
    # headroom rounds: climb the ladder until a round that holds is worth less than the best
    # round that held before it; a cushion no plan can keep ends the climb; while no round
    # holds, the last round is left to the guarantee rounds below
    for h in ladder:
        holding = any(r.holds for r in out)
        if len(out) > rounds or (not holding and len(out) == rounds):
            break
        before = [r.objective_usd for r in out if r.holds]
        if run(sc.covenants.confidence, h, red, none) is not None:
            break
        if out[-1].holds and before and out[-1].objective_usd < max(before):
            break
    # guarantee rounds, while no round holds: confidence 1, with the headroom of the round
    # with the lowest bound, holding 16 more fresh paths each round that the plan with the
    # lowest bound so far breaks
    sample: ReducedScenarios | None = None  # the hold sample, drawn when first needed
    held = np.zeros(HOLD_SAMPLE_PATHS, bool)
    h = min(out, key=lambda r: r.oos_upper95).headroom
    while why is None and len(out) <= rounds and not any(r.holds for r in out):
        if sample is None:
            sample = sample_scenarios(
                sc,
                HOLD_SAMPLE_PATHS,
                derived_seed(seed, _HOLD),
                tag=philox.TAG_BATCH,
                backend=NUMPY,
            )
        base = min(out, key=lambda r: r.oos_upper95).plan
        new = hold_paths(with_headroom(sc, h), base, sample, held, HOLD_PER_ROUND)
        if not len(new):
            why = "the plan breaks none of the hold sample's paths the model can see"
            break
        held[new] = True
        why = run(1.0, h, with_hold(red, subset(sample, np.flatnonzero(held))), held)
    ok = [r for r in out if r.holds]
    if not ok and why is None:
        if out[-1].in_sample_confidence >= 1.0:
            why = (
                f"even with every scenario kept to the covenants in sample (confidence 1, "
                f"headroom {h:.0%}) and {int(held.sum())} fresh paths the plans broke held, "
                f"the plan breaches on {out[-1].oos_events / out[-1].paths:.1%} of fresh paths "
                f"(95% bound {out[-1].oos_upper95:.1%} > {target:.0%}): the "
                f"{red.n_scenarios} reduced scenarios underrate the tail; raise "
                "--calibration-rounds or --scenarios"
            )
        else:
            why = f"not reached within {rounds} calibration rounds (raise --calibration-rounds)"
    kept = max(ok, key=lambda r: r.objective_usd) if ok else min(out, key=lambda r: r.oos_upper95)
    kept.accepted = True
    return out, out.index(kept), why


def gap_interval(
    sc: Scenario,
    plan: Plan,
    objective_usd: float,
    settings: Settings,
    seed: int,
    rows: list[dict[str, Any]],
    price_usd: float,
) -> dict[str, Any]:
    """The Mak–Morton–Wood block of ``summary.json`` (module docstring) from the batches'
    :func:`batch_task` results ``rows`` (in batch order): ``plan`` is scored on each batch's
    scenarios and averaging paths, drawn again from their seeds."""
    eta_sample = sample_scenarios(
        sc, ETA_SCENARIOS, derived_seed(seed, _ETA), tag=philox.TAG_BATCH, backend=NUMPY
    )
    w_eta = terminal_equity(sc, plan, eta_sample)
    eta = float(np.quantile(-w_eta, sc.risk.cvar_alpha, method="inverted_cdf"))
    n = settings.batch_scenarios
    v, f = [], []
    for b, row in enumerate(rows):
        if row["bound_usd"] is None:
            continue
        batch, mean_sample = batch_samples(sc, n, derived_seed(seed, _BATCH, b))
        w_mean = float(terminal_equity(sc, plan, mean_sample).mean())
        v.append(row["bound_usd"])
        f.append(fixed_eta_objective(sc, terminal_equity(sc, plan, batch), eta, w_mean))
    if len(v) < 2:
        return {"error": "fewer than 2 batches had a feasible plan", "batches": len(v)}
    gi = mmw_gap_interval(np.array(v), np.array(f), objective_usd)
    conf, q = batch_confidence(sc, n)
    return gi.to_json() | {
        "batch_scenarios": n,
        "batch_mean_paths": BATCH_MEAN_PATHS,
        "batch_excusable": q,
        "breach_price_usd": price_usd,
        "eta_usd": eta,
        "per_batch_usd": [float(x) for x in np.array(v) - np.array(f)],
        "time_limited": any(r.get("time_limited") for r in rows),
    }


def evpi_interval(
    sc: Scenario, plan: Plan, sample: ReducedScenarios, ws: list[tuple[float, bool]]
) -> dict[str, Any]:
    """EVPI = WS − RP on the wait-and-see sample, paired by influence functions."""
    a, lam = sc.risk.cvar_alpha, sc.risk.cvar_weight
    w_ws = np.array([w for w, _ in ws])
    w_rp = terminal_equity(sc, plan, sample)
    j_ws, psi_ws = objective_influence(w_ws, a, lam)
    j_rp, psi_rp = objective_influence(w_rp, a, lam)
    n = len(w_ws)
    se = float(np.std(psi_ws - psi_rp, ddof=1) / math.sqrt(n))
    diff = j_ws - j_rp
    return {
        "ws_usd": j_ws,
        "rp_usd": j_rp,
        "evpi_usd": diff,
        **interval(diff, se, float(_st.t.ppf(0.975, n - 1))),
        "scenarios": n,
        "covenants_unkeepable": int(sum(not k for _, k in ws)),
    }


def vss_interval(ev: Evaluation, plan: str = "plan", eev: str = "expected_value") -> dict:
    """VSS = RP − EEV out of sample on common paths, with its paired standard error."""
    diff, se = ev.paired[(plan, eev)]
    return {
        "rp_usd": ev.stats[plan].objective_usd,
        "eev_usd": ev.stats[eev].objective_usd,
        "vss_usd": diff,
        **interval(diff, se, Z95),
    }


#: The validation tasks by kind (one executor map can mix them).
TASKS: dict[str, Callable[..., Any]] = {
    "replication": replication_task,
    "batch": batch_task,
    "ws": wait_and_see_task,
    "baselines": baseline_plans,
}


def warm_worker() -> None:
    """Nothing: a worker that unpickles it imports this module, the solver and Pyomo."""


def run_task(kind: str, args: tuple) -> Any:
    """Run validation task ``kind`` with ``args`` (picklable: a module-level function)."""
    return TASKS[kind](*args)
