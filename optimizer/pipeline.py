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

from hashpivot.kernels.backend import Backend, get_backend
from hashpivot.kernels.cashflow import cash_flows, objective
from hashpivot.kernels.evaluate import EvalStats, Evaluation, evaluate_plans
from hashpivot.kernels.plan import Plan, schedule
from hashpivot.kernels.reduce import ReducedScenarios, reduce_scenarios
from hashpivot.kernels.simulate import SimulationResult, simulate
from hashpivot.scenarios import Scenario, load_scenario

from .baselines import POLICIES, baseline
from .checker import check_plan
from .model import model_data
from .solve import SolveResult, solve

Progress = Callable[[str, int, int], None]


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
    """Site × period table: blocks, MW converting, IT MW online, ASIC MW, racks, lease MW."""
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
                    "converting_it_mw": float(sch.converting_mw[i, t]),
                    "it_online_mw": float(sch.it_online_mw[i, t]),
                    "asic_mw": float(sch.asic_mw[i, t]),
                    "racks_installed": int(plan.racks_new[i, t]),
                    "racks_active": int(sch.racks_active[i, t]),
                    "lease_it_mw": float(plan.lease_it_mw[:, i, t].sum()),
                    "market_it_mw": float(sch.market_it_mw[i, t]),
                }
            )
    return pd.DataFrame(rows)


def financing_frame(sc: Scenario, plan: Plan) -> pd.DataFrame:
    """Period × facility table: draws, fees, interest, repayment, balance; BTC sold and held."""
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
                    "draw_usd": float(plan.draws_usd[f, t]),
                    "fee_usd": float(sch.fees_usd[f, t]),
                    "interest_usd": float(sch.interest_usd[f, t]),
                    "repayment_usd": float(sch.principal_usd[f, t]),
                    "balance_usd": float(sch.balance_usd[f, t]),
                    "btc_sold": float(plan.btc_sold[t]),
                    "btc_held": float(sch.btc_held[t]),
                }
            )
        if not sc.debt_facilities:
            rows.append(
                {
                    "period": t,
                    "start": str(h.period_start(t)),
                    "facility": "",
                    "draw_usd": 0.0,
                    "fee_usd": 0.0,
                    "interest_usd": 0.0,
                    "repayment_usd": 0.0,
                    "balance_usd": 0.0,
                    "btc_sold": float(plan.btc_sold[t]),
                    "btc_held": float(sch.btc_held[t]),
                }
            )
    return pd.DataFrame(rows)


def in_sample_stats(sc: Scenario, plan: Plan, red: ReducedScenarios) -> dict[str, float]:
    """STATS of a plan on the MILP's own reduced scenarios (no recourse)."""
    cf = cash_flows(sc, plan, red.coefficient_arrays())
    obj, mean, risk = objective(sc, cf, red.weights)
    w = np.asarray(cf.terminal_equity_usd)
    var = float(red.weights @ (w - mean) ** 2)
    return {
        "objective_usd": obj,
        "mean_equity_usd": mean,
        "stderr_usd": float(np.sqrt(var / max(red.paths, 1))),
        "cvar_usd": risk,
        "p_default": float(red.weights[(np.asarray(cf.cash_usd) < 0).any(axis=1)].sum()),
        "p_breach": float(red.weights[np.asarray(cf.covenant_breach)].sum()),
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
    version: str = field(default_factory=_version)

    @property
    def out_of_sample(self) -> EvalStats:
        return self.evaluation.stats["plan"]

    def plan_frame(self) -> pd.DataFrame:
        return plan_frame(self.scenario, self.plan)

    def financing_frame(self) -> pd.DataFrame:
        return financing_frame(self.scenario, self.plan)

    def baseline_winner(self) -> tuple[str, str] | None:
        """The best baseline and why, when a baseline is not beaten by 3 standard errors."""
        worst = None
        for name in POLICIES:
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
            f"(plan − {name} = {diff / 1e6:,.1f} ± {se / 1e6:,.1f} $M)"
        )
        if other.p_breach > plan.p_breach + 0.01:
            why = (
                f"{lead}: it ignores the covenants the plan must keep with confidence "
                f"{self.scenario.covenants.confidence:g}, and breaches them in {other.p_breach:.1%} of "
                f"paths against {plan.p_breach:.1%} for the plan"
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
        """The content of ``summary.json`` (names are a public interface)."""
        s = self.solve
        winner = self.baseline_winner()
        return {
            "version": self.version,
            "scenario": self.scenario.name,
            "seed": self.seed,
            "backend": self.backend,
            "device": self.device,
            "paths": self.paths,
            "scenarios": self.n_scenarios,
            "eval_paths": self.eval_paths,
            "solver": {
                "status": str(s.status),
                "objective_usd": s.objective_usd,
                "bound_usd": s.bound_usd,
                "gap": s.gap,
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
            "plan": {"in_sample": self.in_sample, "out_of_sample": self.out_of_sample.to_json()},
            "baselines": {name: self.evaluation.stats[name].to_json() for name in POLICIES},
            "vs_baselines": {
                name: {"diff_usd": d, "stderr_usd": se}
                for (_, name), (d, se) in self.evaluation.paired.items()
            },
            "best_baseline": {"name": winner[0], "why": winner[1]} if winner else None,
            "timings_seconds": self.timings,
        }


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
    progress: Progress | None = None,
) -> OptimizeResult:
    """Run the whole pipeline on a scenario (a :class:`Scenario`, a YAML path or a shipped name).

    Unset arguments take the scenario's ``defaults``. Raises :class:`NoSolutionError` when no
    plan is feasible, with the reasons in words.
    """
    sc = _resolve(scenario)
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    d = sc.defaults
    paths = paths or d.paths
    k = n_scenarios or d.scenarios
    m = eval_paths or d.eval_paths
    seed = d.seed if seed is None else seed
    timings: dict[str, float] = {}

    def stage(name: str) -> Callable[[int, int], None] | None:
        return (lambda a, b: progress(name, a, b)) if progress else None

    t = time.perf_counter()
    sim = simulate(sc, paths, seed, backend=be, progress=stage("simulate"))
    timings["simulate"] = time.perf_counter() - t
    t = time.perf_counter()
    red = reduce_scenarios(sc, paths, k, seed, backend=be)
    timings["reduce"] = time.perf_counter() - t
    data = model_data(sc, red)
    res = solve(data, time_limit_s=time_limit_s, mip_gap=mip_gap, threads=threads, tee=tee)
    timings["build"] = res.build_seconds + res.transfer_seconds
    timings["solve"] = res.solve_seconds
    t = time.perf_counter()
    plans = {"plan": res.plan}
    for name in POLICIES:
        plans[name] = baseline(name, sc, red)
    ev = evaluate_plans(sc, plans, m, seed, backend=be, progress=stage("evaluate"))
    timings["evaluate"] = time.perf_counter() - t
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
        return {
            "version": _version(),
            "scenario": self.scenario.name,
            "seed": self.evaluation.seed,
            "backend": self.evaluation.backend,
            "device": self.evaluation.device,
            "eval_paths": self.evaluation.paths,
            "evaluated": self.name,
            "out_of_sample": self.stats.to_json(),
            "baselines": {
                n: s.to_json() for n, s in self.evaluation.stats.items() if n != self.name
            },
            "vs_baselines": {
                b: {"diff_usd": d, "stderr_usd": se}
                for (_, b), (d, se) in self.evaluation.paired.items()
            },
        }


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
) -> EvaluateResult:
    """Judge a plan (or a named policy) out of sample beside the baselines.

    Raises :class:`PlanError` with the checker's lines for a plan that breaks a constraint.
    """
    sc = _resolve(scenario)
    if (plan is None) == (policy is None):
        raise ValueError("give exactly one of plan or policy")
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    d = sc.defaults
    seed = d.seed if seed is None else seed
    red = reduce_scenarios(sc, reduce_paths, d.scenarios, seed, backend=be)
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
    ev = evaluate_plans(sc, plans, eval_paths or d.eval_paths, seed, backend=be, progress=cb)
    return EvaluateResult(sc, name, plan, ev)
