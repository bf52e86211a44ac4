"""The pipeline: scenario → simulate → reduce → MILP → plan → evaluate → result.

``optimize`` and ``evaluate`` are the Python API behind ``hashpivot optimize`` and
``hashpivot evaluate``; they return the same numbers as the files they write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hashpivot.kernels import philox
from hashpivot.kernels.backend import Backend, get_backend
from hashpivot.kernels.cashflow import CASH_TOL_USD, cash_flows, objective
from hashpivot.kernels.evaluate import EvalStats, Evaluation, evaluate_plans
from hashpivot.kernels.plan import BTC_DECIMALS, MW_DECIMALS, USD_DECIMALS, Plan, schedule
from hashpivot.kernels.reduce import (
    ReducedScenarios,
    reduce_scenarios,
    sample_scenarios,
    simulate_and_reduce,
)
from hashpivot.kernels.simulate import SimulationResult
from hashpivot.scenarios import Scenario, load_scenario

from . import validation as V
from .baselines import POLICIES, BaselinePlans, baseline
from .checker import check_plan
from .executor import Executor, available_cores, gather, get_executor, submit_all
from .model import model_data
from .solve import LogCallback, ProgressCallback, SolveResult, solve
from .validation import Validation
from .validation_settings import Settings

Progress = Callable[[str, int, int], None]

#: Fewer evaluation paths than this: standard errors (and the z scores built on them) are
#: themselves too uncertain to rank plans.
MIN_EVAL_PATHS = 1000
#: The MILP needs at least this many times 1/(1 − confidence) reduced scenarios: with fewer,
#: no scenario is light enough to be excused, so the covenant chance constraint cannot
#: represent the tail it is about.
SCENARIOS_PER_TAIL = 1.0


def _num(x: float, decimals: int) -> float:
    """``x`` rounded to ``decimals``, without ``-0.0``."""
    return round(float(x), decimals) + 0.0


def no_negative_zero(obj: Any) -> Any:
    """``obj`` (JSON data) with every ``-0.0`` replaced by ``0.0``."""
    if isinstance(obj, float):
        return obj + 0.0
    if isinstance(obj, dict):
        return {k: no_negative_zero(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [no_negative_zero(v) for v in obj]
    return obj


def scenarios_warning(sc: Scenario, n_scenarios: int) -> str | None:
    """Too few reduced scenarios for the covenant confidence, in words; None when enough."""
    conf = sc.covenants.confidence
    need = SCENARIOS_PER_TAIL / max(1.0 - conf, 1e-12)
    if not any(f.covenants for f in sc.debt_facilities) or n_scenarios >= need - 1e-9:
        return None
    return (
        f"{n_scenarios} reduced scenarios are too few for covenants kept with confidence "
        f"{conf:g}: each scenario weighs about 1/{n_scenarios}, more than the {1 - conf:.0%} "
        "of weight allowed to breach, so the MILP cannot represent the breach tail and the "
        f"out-of-sample breach rate may be far from the target; use --scenarios "
        f"{int(np.ceil(need - 1e-9))} or more"
    )


def eval_paths_warning(eval_paths: int, flag: str = "--eval-paths") -> str | None:
    """Too few evaluation paths for reliable standard errors, in words (``flag`` sets them);
    None when enough."""
    if eval_paths >= MIN_EVAL_PATHS:
        return None
    return (
        f"{eval_paths} evaluation paths are too few for reliable standard errors (z scores "
        f"and the comparison with the baselines may mislead); use {flag} {MIN_EVAL_PATHS} or "
        "more"
    )


def input_warnings(sc: Scenario, n_scenarios: int, eval_paths: int) -> list[str]:
    """Warnings, in words, about settings that make results unreliable (empty when none)."""
    found = (scenarios_warning(sc, n_scenarios), eval_paths_warning(eval_paths))
    return [w for w in found if w]


def gap_warning(s: SolveResult, time_limit_s: float) -> str | None:
    """The warning for a final gap above the target, with what to do; None within it."""
    if s.gap_ok:
        return None
    worth = f"the plan may be worth up to {s.gap:.1%} less than the best plan for these scenarios"
    if s.time_limited:
        return (
            f"the solver stopped at a gap of {s.gap:.2%} (target {s.target_gap:.2%}) after "
            f"{time_limit_s:g} s, its time limit: {worth}; raise --time-limit, lower "
            "--scenarios, or accept a larger --mip-gap"
        )
    return (
        f"the solver stopped at a gap of {s.gap:.2%} (target {s.target_gap:.2%}) at its work "
        f"budget (node and iteration limits, so that any machine gets the same plan) after "
        f"{s.solve_seconds:.0f} s: {worth}; lower --scenarios or accept a larger --mip-gap"
    )


class PlanError(ValueError):
    """A plan that breaks the scenario's constraints; ``lines`` name each violation."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


def _version() -> str:
    try:
        return version("hashpivot")
    except PackageNotFoundError:  # pragma: no cover
        return "0+unknown"


def plan_frame(sc: Scenario, plan: Plan) -> pd.DataFrame:
    """Site × period table: blocks, MW converting, IT MW online, ASIC MW, racks, lease MW
    (``plan.csv``; MW to ``MW_DECIMALS`` decimals)."""
    sch = schedule(sc, plan)
    h = sc.horizon
    rows = []
    for i, s in enumerate(sc.sites):
        for t in range(h.n_periods):
            rows.append(
                {
                    "site": s.name,
                    "period": t,
                    "start": str(h.period_start(t)),
                    "blocks_started": int(plan.blocks[i, t]),
                    "converting_it_mw": _num(sch.converting_mw[i, t], MW_DECIMALS),
                    "it_online_mw": _num(sch.it_online_mw[i, t], MW_DECIMALS),
                    "asic_mw": _num(sch.asic_mw[i, t], MW_DECIMALS),
                    "racks_installed": int(plan.racks_new[i, t]),
                    "racks_active": int(sch.racks_active[i, t]),
                    "lease_it_mw": _num(plan.lease_it_mw[:, i, t].sum(), MW_DECIMALS),
                    "market_it_mw": _num(sch.market_it_mw[i, t], MW_DECIMALS),
                }
            )
    return pd.DataFrame(rows)


def financing_frame(sc: Scenario, plan: Plan) -> pd.DataFrame:
    """Period × facility table: draws, fees, interest, repayment, balance (``financing.csv``;
    USD to the cent). BTC sales are per period, in :func:`treasury_frame`."""
    sch = schedule(sc, plan)
    h = sc.horizon
    rows = []
    for t in range(h.n_periods):
        for f, fac in enumerate(sc.debt_facilities):
            rows.append(
                {
                    "period": t,
                    "start": str(h.period_start(t)),
                    "facility": fac.name,
                    "draw_usd": _num(plan.draws_usd[f, t], USD_DECIMALS),
                    "fee_usd": _num(sch.fees_usd[f, t], USD_DECIMALS),
                    "interest_usd": _num(sch.interest_usd[f, t], USD_DECIMALS),
                    "repayment_usd": _num(sch.principal_usd[f, t], USD_DECIMALS),
                    "balance_usd": _num(sch.balance_usd[f, t], USD_DECIMALS),
                }
            )
    columns = ["period", "start", "facility", "draw_usd", "fee_usd", "interest_usd"]
    return pd.DataFrame(rows, columns=columns + ["repayment_usd", "balance_usd"])


def treasury_frame(sc: Scenario, plan: Plan) -> pd.DataFrame:
    """Period table of the BTC treasury: BTC sold in the period and held at its end
    (``treasury.csv``; BTC to ``BTC_DECIMALS`` decimals). Sales in the last period are at the
    terminal valuation price (``terminal_sale`` is true): a valuation, not a decision."""
    sch = schedule(sc, plan)
    h = sc.horizon
    return pd.DataFrame(
        [
            {
                "period": t,
                "start": str(h.period_start(t)),
                "btc_sold": _num(plan.btc_sold[t], BTC_DECIMALS),
                "btc_held": _num(sch.btc_held[t], BTC_DECIMALS),
                "terminal_sale": t == h.n_periods - 1,
            }
            for t in range(h.n_periods)
        ]
    )


def breach_rule(sc: Scenario) -> dict[str, Any]:
    """What a covenant breach did out of sample (``summary.json`` key ``on_breach``)."""
    cov = sc.covenants
    out: dict[str, Any] = {"rule": cov.on_breach}
    if cov.on_breach == "waiver":
        out |= {"waiver_fee": cov.waiver_fee, "waiver_step_up_bp": cov.waiver_step_up_bp}
    return out


def in_sample_stats(sc: Scenario, plan: Plan, red: ReducedScenarios) -> dict[str, float]:
    """STATS of a plan on the MILP's own reduced scenarios (no recourse)."""
    cf = cash_flows(sc, plan, red.coefficient_arrays())
    obj, mean, risk = objective(sc, cf, red.weights)
    return {  # no standard error: the K weighted scenarios are not a sample of paths
        "objective_usd": obj,
        "mean_equity_usd": mean,
        "cvar_usd": risk,
        "p_default": float(red.weights[(np.asarray(cf.cash_usd) < 0).any(axis=1)].sum()),
        "p_breach": float(red.weights[np.asarray(cf.covenant_breach)].sum()),
        "p_min_cash_breach": float(
            red.weights[
                (np.asarray(cf.cash_usd) < sc.covenants.min_cash_usd - CASH_TOL_USD).any(axis=1)
            ].sum()
        ),
    }


@dataclass
class OptimizeResult:
    """Everything ``hashpivot optimize`` reports (and writes)."""

    scenario: Scenario
    seed: int
    backend: str
    device: str
    paths: int
    n_scenarios: int
    eval_paths: int
    simulation: SimulationResult
    reduced: ReducedScenarios
    solve: SolveResult
    plan: Plan
    plans: dict[str, Plan]
    in_sample: dict[str, float]
    evaluation: Evaluation
    timings: dict[str, float]
    """Wall seconds per stage of this process; ``replicate`` is the time it waited on the
    replication map (for the replications, then for what was left of the batches and
    wait-and-see solves after ``select`` and ``calibrate``, which run meanwhile)."""
    time_limit_s: float = 0.0
    version: str = field(default_factory=_version)
    baseline_rules: dict[str, list[str]] = field(default_factory=dict)
    """Per baseline, the checker's lines on the reduced scenarios (empty: it keeps minimum cash
    and the covenants at the scenario's confidence, as the plan must)."""
    validation: Validation | None = None
    """Replications, calibration, the gap interval, the covenant guarantee, VSS and EVPI."""

    @property
    def out_of_sample(self) -> EvalStats:
        return self.evaluation.stats["plan"]

    def plan_frame(self) -> pd.DataFrame:
        return plan_frame(self.scenario, self.plan)

    def financing_frame(self) -> pd.DataFrame:
        return financing_frame(self.scenario, self.plan)

    def treasury_frame(self) -> pd.DataFrame:
        return treasury_frame(self.scenario, self.plan)

    def warnings(self) -> list[str]:
        """Warnings in words: unreliable settings, undeliverable offers, a gap above the target,
        a covenant guarantee that does not hold."""
        out = input_warnings(self.scenario, self.n_scenarios, self.eval_paths)
        out += list(self.solve.warnings)  # offers no site can deliver, in words
        gap = gap_warning(self.solve, self.time_limit_s)
        out += [gap] if gap else []
        cov = self.validation.covenant if self.validation else None
        if cov and not cov["holds"]:
            out.append(
                f"the covenant guarantee does not hold: {cov['why']}; with 95% confidence the "
                f"plan breaches a covenant or minimum cash on up to {cov['upper95']:.1%} of "
                f"paths (limit {cov['target']:.0%})"
            )
        return out

    def baseline_winner(self) -> tuple[str, str] | None:
        """The best rule-abiding baseline and why, when one is not beaten by 3 standard errors
        (a baseline that breaks the rules in the reduced scenarios is not a fair comparison)."""
        worst = None
        for name in POLICIES:
            if self.baseline_rules.get(name):
                continue
            diff, se = self.evaluation.paired[("plan", name)]
            if diff <= 3.0 * se and (worst is None or diff < worst[1]):
                worst = (name, diff, se)
        if worst is None:
            return None
        name, diff, se = worst
        st = self.evaluation.stats
        plan, other = st["plan"], st[name]
        lead = (
            f"'{name}' is not beaten by 3 standard errors out of sample "
            f"(objective of plan − {name} = {diff / 1e6:,.1f} ± {se / 1e6:,.1f} $M)"
        )
        if other.p_breach > plan.p_breach + 0.01:
            why = (
                f"{lead}: both keep the covenants in the reduced scenarios at confidence "
                f"{self.scenario.covenants.confidence:g}, but out of sample it breaches them in "
                f"{other.p_breach:.1%} of paths against {plan.p_breach:.1%} for the plan "
                f"(breaches {self.scenario.covenants.on_breach!s}: "
                f"{'no cost' if self.scenario.covenants.on_breach == 'ignore' else 'priced'})"
            )
        elif other.p_default + 0.005 < plan.p_default:
            why = (
                f"{lead}: the plan defaults in {plan.p_default:.1%} of paths against "
                f"{other.p_default:.1%}; the MILP sees {self.n_scenarios} reduced scenarios without "
                "recourse and underrates the spread of fresh paths (raise --scenarios)"
            )
        else:
            why = (
                f"{lead}: on the MILP's {self.n_scenarios} reduced scenarios the plan is optimal, "
                "but fresh paths with recourse rank them differently (raise --scenarios or --paths)"
            )
        return name, why

    def summary(self) -> dict[str, Any]:
        """The content of ``summary.json`` (names are a public interface).

        ``solver.target_gap`` is the gap asked for, ``solver.gap_ok`` whether the final gap
        reached it; ``warnings`` lists, in words, what makes the results unreliable.
        """
        s = self.solve
        winner = self.baseline_winner()
        return no_negative_zero(
            {
                "version": self.version,
                "scenario": self.scenario.name,
                "seed": self.seed,
                "backend": self.backend,
                "device": self.device,
                "paths": self.paths,
                "scenarios": self.n_scenarios,
                "eval_paths": self.eval_paths,
                "on_breach": breach_rule(self.scenario),
                "solver": {
                    "status": str(s.status),
                    "objective_usd": s.objective_usd,
                    "bound_usd": s.bound_usd,
                    "gap": s.gap,
                    "target_gap": s.target_gap,
                    "gap_ok": s.gap_ok,
                    "time_limit_s": self.time_limit_s,
                    "build_seconds": s.build_seconds,
                    "solve_seconds": s.solve_seconds,
                    "transfer_seconds": s.transfer_seconds,
                    "rows": s.rows,
                    "columns": s.columns,
                    "nonzeros": s.nonzeros,
                    "nodes": s.nodes,
                    "lp_iterations": s.lp_iterations,
                    "time_limited": s.time_limited,
                    "runs": s.runs,
                },
                "plan": {
                    "in_sample": self.in_sample,
                    "out_of_sample": self.out_of_sample.to_json(),
                },
                "baselines": {name: self.evaluation.stats[name].to_json() for name in POLICIES},
                "vs_baselines": {
                    name: {"diff_usd": d, "stderr_usd": se}
                    for (_, name), (d, se) in self.evaluation.paired.items()
                },
                "best_baseline": {"name": winner[0], "why": winner[1]} if winner else None,
                "baseline_rules": {
                    name: {"keeps_rules": not self.baseline_rules.get(name), "problems": lines[:3]}
                    for name in POLICIES
                    for lines in [self.baseline_rules.get(name, [])]
                },
                "validation": self.validation.to_json(self.scenario) if self.validation else None,
                "timings_seconds": self.timings,
                "warnings": self.warnings(),
            }
        )


def _resolve(scenario: Scenario | str | Path) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def optimize(
    scenario: Scenario | str | Path,
    *,
    paths: int | None = None,
    n_scenarios: int | None = None,
    eval_paths: int | None = None,
    seed: int | None = None,
    backend: str | Backend | None = None,
    time_limit_s: float | None = None,
    mip_gap: float | None = None,
    threads: int = 2,
    tee: bool = False,
    replications: int | None = None,
    batches: int | None = None,
    calibration_rounds: int | None = None,
    validate: bool = True,
    batch_scenarios: int | None = None,
    ws_scenarios: int | None = None,
    executor: Executor | None = None,
    solver_pool: Executor | None = None,
    progress: Progress | None = None,
    solve_progress: ProgressCallback | None = None,
    solver_log: LogCallback | None = None,
    on_solved: Callable[[SolveResult], None] | None = None,
    hard_stop: Callable[[], None] | None = None,
    validation_progress: Callable[[str, int, int, str], None] | None = None,
) -> OptimizeResult:
    """Run the whole pipeline on a scenario (a :class:`Scenario`, a YAML path or a shipped name).

    Unset arguments take the scenario's ``defaults``. Raises :class:`NoSolutionError` when no
    plan is feasible, with the reasons in words. ``progress`` gets (stage, done, total) for
    simulate, reduce and evaluate; ``solve_progress`` and ``solver_log`` go to
    :func:`~hashpivot.optimizer.solve.solve` (as ``progress``, ``log``; ``hard_stop`` too);
    ``on_solved`` gets the first solve's result; ``validation_progress`` gets (stage, done,
    total, detail) for the validation stages.

    Validation (:mod:`hashpivot.optimizer.validation`): ``replications`` independent scenario
    sets are solved and the best plan on common selection paths is kept; ``calibration_rounds``
    re-solves (0: none) keep the covenants with more headroom, then hold fresh paths the plan
    broke, until the out-of-sample breach bound holds and the value peaks; with ``validate``,
    ``batches`` Mak–Morton–Wood batches bound the optimality gap (``batch_scenarios`` i.i.d.
    scenarios each), and VSS and EVPI are estimated (EVPI on ``ws_scenarios`` wait-and-see
    solves). The repeated solves run on ``executor`` (default: a local process pool); a given
    ``executor`` also runs the market pass's work items
    (:func:`~hashpivot.kernels.reduce.simulate_and_reduce`) and splits the evaluations' path
    blocks over its workers. ``solver_pool`` (where no ``executor`` is given): the executor of
    the repeated solves only, started (and warmed) and closed by the caller, e.g. before its
    own imports so that the workers' imports overlap them. Every number depends only on the
    seed, not on the executor.
    """
    sc = _resolve(scenario)
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    d = sc.defaults
    paths = paths or d.paths
    k = n_scenarios or d.scenarios
    m = eval_paths or d.eval_paths
    seed = d.seed if seed is None else seed
    given = {
        "replications": replications,
        "batches": batches,
        "calibration_rounds": calibration_rounds,
        "batch_scenarios": batch_scenarios,
        "ws_scenarios": ws_scenarios,
    }
    settings = Settings(
        **{key: v for key, v in given.items() if v is not None},
        validate=validate,
        selection_paths=max(MIN_EVAL_PATHS, m // 2),
    )
    if settings.replications < 1 or settings.calibration_rounds < 0:
        raise ValueError("replications must be >= 1 and calibration_rounds >= 0")
    if validate and (settings.batches < 2 or settings.ws_scenarios < 2):
        raise ValueError("batches and ws_scenarios must be >= 2")
    timings: dict[str, float] = {}

    def stage(name: str) -> Callable[[int, int], None] | None:
        return (lambda a, b: progress(name, a, b)) if progress else None

    def note(name: str, done: int, total: int, detail: str) -> None:
        if validation_progress is not None:
            validation_progress(name, done, total, detail)

    own = executor is None and solver_pool is None
    pool: Executor = executor or solver_pool or get_executor(None if available_cores() > 1 else 1)
    warm = getattr(pool, "warm", None)
    if own and validate and warm is not None:
        warm(V.warm_worker)  # the workers start while this process simulates and solves
    try:
        t = time.perf_counter()
        # one market pass: statistics and reduction; "reduce" is the clustering share of it
        sim, red = simulate_and_reduce(
            sc, paths, k, seed, backend=be, executor=executor, progress=stage("simulate")
        )
        timings["reduce"] = red.seconds
        timings["simulate"] = time.perf_counter() - t - red.seconds
        limit = d.solver_time_limit_s if time_limit_s is None else time_limit_s
        base = BaselinePlans(sc, red)
        res = solve(
            model_data(sc, red),
            starts=base.starts,
            time_limit_s=limit,
            mip_gap=mip_gap,
            threads=threads,
            tee=tee,
            progress=solve_progress,
            log=solver_log,
            hard_stop=hard_stop,
        )
        if on_solved is not None:
            on_solved(res)
        timings["build"] = res.build_seconds + res.transfer_seconds
        timings["solve"] = res.solve_seconds
        solve_kwargs = {"time_limit_s": limit, "mip_gap": mip_gap}

        # SAA replications, the gap batches and the wait-and-see solves: none depends on the
        # plan finally chosen, so one map runs them all, the replications first (selection and
        # calibration need them), then the long batch solves. The batches' price is fixed by
        # the first solve's objective, before any batch is drawn; its plan only warm-starts
        # them. While the workers solve the batches, this process selects and calibrates, then
        # runs the tasks no worker has started (:func:`~.executor.gather`). The short
        # wait-and-see solves come last: they fill the pool's tail (README, timings).
        t = time.perf_counter()
        waited = 0.0
        candidates = [V.Candidate(0, seed, red, res)]
        price = V.breach_price_usd(res.objective_usd)
        batch_args = (
            V.batch_tasks(sc, settings, seed, price, solve_kwargs, start=res.plan)
            if validate
            else []
        )
        tasks: list[tuple] = [
            (
                "replication",
                (sc, paths, k, V.derived_seed(seed, V._REPLICATION, r), mip_gap, limit, be.name),
            )
            for r in range(1, settings.replications)
        ]
        tasks += [("batch", a) for a in batch_args]
        ws_sample = None
        if validate:
            ws_sample = sample_scenarios(
                sc,
                settings.ws_scenarios,
                V.derived_seed(seed, V._WS),
                tag=philox.TAG_WAIT_AND_SEE,
                backend=be,
            )
            tasks += [("ws", (sc, ws_sample, j, limit)) for j in range(settings.ws_scenarios)]
        n_bat, n_rep, n_solves = len(batch_args), settings.replications - 1, len(tasks)
        if n_solves:
            what = f"replications {n_rep}, gap batches {n_bat}, wait-and-see {n_solves - n_bat - n_rep}"
            note("replicate", 0, n_solves, f"{n_solves} solves on {pool.workers} workers ({what})")
        # the baselines still to compute, as the map's last task: a worker that ran out of
        # solves takes it (HiGHS must not run in a second thread of this process)
        missing = [name for name in POLICIES if name not in base.computed()]
        if n_solves and missing:
            tasks.append(("baselines", (sc, base.red, missing)))
        pending = submit_all(pool, V.run_task, tasks)
        for r, job in enumerate(pending[:n_rep], start=1):
            red_r, res_r = job.result()
            candidates.append(V.Candidate(r, V.derived_seed(seed, V._REPLICATION, r), red_r, res_r))
        waited += time.perf_counter() - t

        # selection on common paths, then calibration of the chance constraint (both judge
        # plans on the selection paths; neither is needed for one replication, no calibration)
        chosen, rounds, kept, why = 0, [], -1, None
        if settings.replications > 1 or settings.calibration_rounds > 0:
            t = time.perf_counter()
            chosen, sel = V.select_candidate(
                sc, candidates, settings.selection_paths, seed, be, progress=stage("select")
            )
            timings["select"] = time.perf_counter() - t
            t = time.perf_counter()
            rounds, kept, why = V.calibrate(
                sc,
                candidates[chosen].reduced,
                candidates[chosen].solve,
                sel.stats[f"r{chosen}"],
                settings.calibration_rounds,
                settings.selection_paths,
                seed,
                be,
                solve_kwargs | {"threads": threads},
                progress=lambda i, n: note("calibrate", i, n, f"round {i}/{n}"),
            )
            timings["calibrate"] = time.perf_counter() - t
        t = time.perf_counter()
        # this process takes back the tasks no worker has started yet and runs them too
        done = gather(pending[n_rep:], V.run_task, tasks[n_rep:])
        if n_solves and missing:
            base.fill(done.pop())
        batches, ws = done[:n_bat], done[n_bat:]
        if n_solves:
            note("replicate", n_solves, n_solves, f"{n_solves} solves")
        timings["replicate"] = waited + time.perf_counter() - t
        red = candidates[chosen].reduced
        res = rounds[kept].solve if rounds else candidates[chosen].solve

        t = time.perf_counter()
        plans = {"plan": res.plan}
        if red is not base.red:  # another replication's scenarios were chosen
            base = BaselinePlans(sc, red)
        for name in POLICIES:
            plans[name] = base[name]
        rules = {name: check_plan(sc, plans[name], red) for name in POLICIES}
        # the rule-based plans (CPU), where the replication map did not compute them
        timings["baselines"] = time.perf_counter() - t
        t = time.perf_counter()
        ev = evaluate_plans(
            sc, plans, m, seed, backend=be, progress=stage("evaluate"), executor=executor
        )
        timings["evaluate"] = time.perf_counter() - t

        val = V.Validation(
            candidates=candidates,
            chosen=chosen,
            selection_paths=settings.selection_paths,
            rounds=rounds,
            calibration_why=why,
            covenant=V.covenant_bound(sc, ev.stats["plan"], why),
        )
        if validate:
            t = time.perf_counter()
            note("gap", 0, settings.batches, f"{settings.batches} batches")
            val.gap = V.gap_interval(
                sc, res.plan, ev.stats["plan"].objective_usd, settings, seed, batches, price
            )
            note("gap", settings.batches, settings.batches, "done")
            val.vss = V.vss_interval(ev)
            val.evpi = V.evpi_interval(sc, res.plan, ws_sample, ws)
            timings["gap_ci"] = time.perf_counter() - t
    finally:
        if own:
            close = getattr(pool, "close", None)
            if close is not None:
                close()
    timings["report"] = 0.0
    return OptimizeResult(
        scenario=sc,
        seed=seed,
        backend=be.name,
        device=be.device,
        paths=paths,
        n_scenarios=red.n_scenarios,
        eval_paths=m,
        simulation=sim,
        reduced=red,
        solve=res,
        plan=res.plan,
        plans=plans,
        in_sample=in_sample_stats(sc, res.plan, red),
        evaluation=ev,
        timings=timings,
        time_limit_s=limit,
        baseline_rules=rules,
        validation=val,
    )


@dataclass
class EvaluateResult:
    """What ``hashpivot evaluate`` reports: a plan's statistics beside the baselines'."""

    scenario: Scenario
    name: str
    plan: Plan
    evaluation: Evaluation

    @property
    def stats(self) -> EvalStats:
        return self.evaluation.stats[self.name]

    def summary(self) -> dict[str, Any]:
        """The content of ``summary.json`` of ``evaluate`` (``warnings``: unreliable settings)."""
        warn = eval_paths_warning(self.evaluation.paths, "--paths")
        return no_negative_zero(
            {
                "version": _version(),
                "scenario": self.scenario.name,
                "seed": self.evaluation.seed,
                "backend": self.evaluation.backend,
                "device": self.evaluation.device,
                "eval_paths": self.evaluation.paths,
                "evaluated": self.name,
                "on_breach": breach_rule(self.scenario),
                "out_of_sample": self.stats.to_json(),
                # the guarantee's rates with their exact 95% bounds, as optimize gives them
                "covenant_bound": V.covenant_bound(self.scenario, self.stats),
                "baselines": {
                    n: s.to_json() for n, s in self.evaluation.stats.items() if n != self.name
                },
                "vs_baselines": {
                    b: {"diff_usd": d, "stderr_usd": se}
                    for (_, b), (d, se) in self.evaluation.paired.items()
                },
                "warnings": [warn] if warn else [],
            }
        )


def evaluate(
    scenario: Scenario | str | Path,
    *,
    plan: Plan | None = None,
    policy: str | None = None,
    eval_paths: int | None = None,
    seed: int | None = None,
    backend: str | Backend | None = None,
    reduce_paths: int = 5000,
    progress: Progress | None = None,
    executor: Any = None,
) -> EvaluateResult:
    """Judge a plan (or a named policy) out of sample beside the baselines.

    Raises :class:`PlanError` with the checker's lines for a plan that breaks a constraint.
    ``executor`` splits the evaluation's path blocks over its workers (as in :func:`optimize`).
    """
    sc = _resolve(scenario)
    if (plan is None) == (policy is None):
        raise ValueError("give exactly one of plan or policy")
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    d = sc.defaults
    seed = d.seed if seed is None else seed
    red = reduce_scenarios(
        sc,
        reduce_paths,
        d.scenarios,
        seed,
        backend=be,
        progress=(lambda a, b: progress("reduce", a, b)) if progress else None,
    )
    if plan is not None:
        problems = check_plan(sc, plan)
        if problems:
            raise PlanError(problems)
        name = "plan"
    else:
        name = str(policy)
        plan = baseline(name, sc, red)
    plans = {name: plan}
    for b in POLICIES:
        if b != name:
            plans[b] = baseline(b, sc, red)
    cb = (lambda a, b: progress("evaluate", a, b)) if progress else None
    m = eval_paths or d.eval_paths
    ev = evaluate_plans(sc, plans, m, seed, backend=be, progress=cb, executor=executor)
    return EvaluateResult(sc, name, plan, ev)
