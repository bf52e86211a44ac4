"""Solve the MILP with HiGHS (``pyomo.contrib.solver``) and read back a typed result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import TerminationCondition as PyomoTC
from pyomo.contrib.solver.solvers.highs import Highs

from hashpivot.kernels.plan import Plan

from .model import MONEY, ModelData, build_model

#: Threads HiGHS may use by default (CI and laptops have few cores).
DEFAULT_THREADS = 2
#: Integrality tolerance used when rounding integer variables.
INT_TOL = 1e-6


class Termination(StrEnum):
    """How a solve ended (linopy-style)."""

    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INTERRUPTED = "interrupted"
    ERROR = "error"

    @classmethod
    def from_pyomo(cls, tc: PyomoTC) -> Termination:
        return {
            PyomoTC.convergenceCriteriaSatisfied: cls.OPTIMAL,
            PyomoTC.maxTimeLimit: cls.TIME_LIMIT,
            PyomoTC.iterationLimit: cls.TIME_LIMIT,
            PyomoTC.objectiveLimit: cls.TIME_LIMIT,
            PyomoTC.provenInfeasible: cls.INFEASIBLE,
            PyomoTC.locallyInfeasible: cls.INFEASIBLE,
            PyomoTC.infeasibleOrUnbounded: cls.INFEASIBLE,
            PyomoTC.unbounded: cls.UNBOUNDED,
            PyomoTC.interrupted: cls.INTERRUPTED,
        }.get(tc, cls.ERROR)


class NoSolutionError(RuntimeError):
    """The solver ended without any feasible plan; ``reasons`` say why in words."""

    def __init__(self, status: Termination, reasons: list[str]) -> None:
        self.status = status
        self.reasons = reasons
        super().__init__("; ".join(reasons) or f"no feasible plan ({status})")


@dataclass
class SolveResult:
    """A solved MILP: status, incumbent, bound, gap, timings and the plan."""

    status: Termination
    objective_usd: float
    bound_usd: float
    gap: float
    build_seconds: float
    solve_seconds: float
    plan: Plan
    rows: int = 0
    columns: int = 0
    nonzeros: int = 0
    equity_usd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cvar_usd: float = 0.0
    excused: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def is_ok(self) -> bool:
        """A plan is available (optimal within the gap, or the incumbent at a time limit)."""
        return self.status in (Termination.OPTIMAL, Termination.TIME_LIMIT)


def _values(var, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape)
    for idx, v in var.items():
        out[idx] = 0.0 if v.value is None else v.value
    return out


def read_plan(m: pyo.ConcreteModel, d: ModelData) -> Plan:
    """The plan held by the model's variable values."""
    sc = d.sc
    s, t, n_l, n_f = d.n_sites, d.n_periods, d.n_leases, d.n_facilities
    deliver = np.zeros((n_l, s, t))
    for (l, e, tt), v in m.deliver.items():
        deliver[l, e, tt] = max(0.0, v.value or 0.0)
    return Plan(
        site_names=tuple(x.name for x in sc.sites),
        lease_names=tuple(x.name for x in sc.lease_offers),
        facility_names=tuple(x.name for x in sc.debt_facilities),
        blocks=np.round(_values(m.blocks, (s, t))).astype(np.int64),
        racks_new=np.round(_values(m.racks_new, (s, t))).astype(np.int64),
        lease_signed=_values(m.sign, (n_l,)) > 0.5,
        lease_it_mw=deliver,
        draws_usd=np.maximum(_values(m.draw, (n_f, t)), 0.0) * MONEY,
        btc_sold=np.maximum(_values(m.btc_sold, (t,)), 0.0),
    )


def model_size(m: pyo.ConcreteModel) -> tuple[int, int, int]:
    """(rows, columns, nonzeros) of the active model."""
    from pyomo.repn import generate_standard_repn  # noqa: PLC0415

    rows = nnz = 0
    for con in m.component_data_objects(pyo.Constraint, active=True):
        rows += 1
        body = con.body
        if hasattr(body, "linear_vars"):
            nnz += len(body.linear_vars)
        else:  # pragma: no cover - every row is built as a LinearExpression
            nnz += len(generate_standard_repn(body).linear_vars)
    cols = sum(1 for _ in m.component_data_objects(pyo.Var))
    return rows, cols, nnz


def solve(
    d: ModelData,
    *,
    time_limit_s: float | None = None,
    mip_gap: float | None = None,
    threads: int = DEFAULT_THREADS,
    tee: bool = False,
    covenants: bool = True,
    hard_deadlines: bool = True,
) -> SolveResult:
    """Build and solve the MILP for ``d``.

    A time limit returns the incumbent with its gap; no incumbent raises
    :class:`NoSolutionError` (with reasons from :mod:`~hashpivot.optimizer.diagnose`).
    """
    t0 = time.perf_counter()
    m = build_model(d, covenants=covenants, hard_deadlines=hard_deadlines)
    build_seconds = time.perf_counter() - t0
    defaults = d.sc.defaults
    opt = Highs()
    t1 = time.perf_counter()
    res = opt.solve(
        m,
        time_limit=defaults.solver_time_limit_s if time_limit_s is None else time_limit_s,
        rel_gap=defaults.mip_gap if mip_gap is None else mip_gap,
        threads=threads,
        tee=tee,
        load_solutions=False,
        raise_exception_on_nonoptimal_result=False,
    )
    solve_seconds = time.perf_counter() - t1
    status = Termination.from_pyomo(res.termination_condition)
    has_solution = res.incumbent_objective is not None
    if not has_solution:
        from .diagnose import explain_infeasibility  # noqa: PLC0415

        reasons = explain_infeasibility(d) if status in (Termination.INFEASIBLE, Termination.ERROR) else []
        if status == Termination.TIME_LIMIT:
            reasons = [f"no feasible plan found within the time limit ({solve_seconds:.0f} s); raise --time-limit"]
        raise NoSolutionError(status, reasons)
    res.solution_loader.load_vars()
    obj = float(res.incumbent_objective)
    bound = float(res.objective_bound) if res.objective_bound is not None else obj
    gap = abs(bound - obj) / max(abs(obj), 1e-9)
    rows, cols, nnz = model_size(m)
    equity = np.array([m.equity[k].value for k in m.K]) * MONEY
    cvar = float(pyo.value(m.cvar)) * MONEY if hasattr(m, "cvar") else 0.0
    excused = (
        np.array([(m.excused[k].value or 0.0) > 0.5 for k in m.K]) if hasattr(m, "excused") else np.zeros(d.n_scenarios, bool)
    )
    return SolveResult(
        status=status,
        objective_usd=obj * MONEY,
        bound_usd=bound * MONEY,
        gap=gap,
        build_seconds=build_seconds,
        solve_seconds=solve_seconds,
        plan=read_plan(m, d),
        rows=rows,
        columns=cols,
        nonzeros=nnz,
        equity_usd=equity,
        cvar_usd=cvar,
        excused=excused,
    )
