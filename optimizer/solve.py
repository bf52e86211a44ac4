"""Solve the MILP with HiGHS (``pyomo.contrib.solver``) and read back a typed result."""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

import highspy
import numpy as np
import pyomo.environ as pyo
from highspy import cb as highs_cb
from pyomo.contrib.solver.solvers.highs import Highs

from hashpivot.kernels.plan import Plan

from .diagnose import undeliverable_offer_warnings
from .model import MONEY, ModelData, build_model, covenant_regimes

#: Threads HiGHS may use by default (CI and laptops have few cores).
DEFAULT_THREADS = 2
#: Branch-and-bound node budget of each run of the full model (one per regime) and of phase 1:
#: a limit in solver work, so a solve stops at the same point on a quiet or a loaded machine.
MAX_NODES = 2000
#: Most free integer plan decisions (blocks, racks, signatures, campuses) for which the whole
#: model (covenants, drawn facilities and excused scenarios left to HiGHS) is solved first,
#: before the phases: on demo (83) HiGHS solves it in a third to a half of the phases' work at
#: K = 1, 16, 32 and 64; on texas_hybrid (~400) the phases take 60 % of its work.
DIRECT_MAX_PLAN_INTEGERS = 200
#: Node budget of the fix-and-optimize repair and of the excuse heuristic (restricted models).
HEURISTIC_MAX_NODES = 200
#: Free integer plan decisions above which a model is fleet-sized: :func:`_fleet_search` gives
#: the incumbent (RENS with the scenarios costliest to hold excused) and the bound (the regime
#: LPs' quantile bounds); where it finds no plan, the plans of ``starts`` (rule-keeping
#: baselines) are fix-and-optimized, phase 1 stops at its root and the phases end with the
#: repair. On the 50-site × 64-scenario synthetic fleet (6,048) phase 1 takes ~1 s per node
#: after a 35 s root and never found a plan that keeps the covenants in 900 s; the greedy
#: baseline, financing re-solved, ends 12.7 % below phase 1's root bound, RENS around the
#: regime LP 5.3 % below the regime LPs' bound, the search of :func:`_fleet_search` 0.5 % below
#: their quantile bound.
LARGE_PLAN_INTEGERS = 1000
#: Node budget of phase 1 on a fleet-sized model: its root, for the bound.
LARGE_MAX_NODES = 1
#: HiGHS options set on every run. RINS and RENS sub-MIPs (and the root reduced-cost sub-MIP)
#: spent 70–90 % of the root time on demo and texas_hybrid without closing the gap; the
#: repair and excuse runs supply incumbents instead. Pseudo-costs count as reliable after 2
#: strong-branching samples (HiGHS: 8): strong branching was 75 % of texas_hybrid's LP
#: iterations; with 2, its covenant regime takes 62k iterations instead of 90k.
HIGHS_OPTIONS: dict[str, object] = {
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_pscost_minreliable": 2,
}
#: Simplex iterations allowed to the LP relaxation that ranks a regime; past it the regime's
#: LP bound counts as unknown and it is solved first (a limit in work, not seconds).
#: texas_hybrid's LPs take ~5k iterations, the 50-site synthetic fleet's ~44k (more than its
#: whole MIP).
REGIME_LP_MAX_ITERATIONS = 20_000
#: Simplex iterations allowed to each regime's LP relaxation on a fleet-sized model
#: (:func:`_fleet_search`), and to its LP with the excused scenarios fixed, whose solution is
#: rounded: past it the regime's bound is unknown (or no rounding is tried there).
ROUNDING_LP_MAX_ITERATIONS = 200_000
#: HiGHS's LP algorithm for the first regime LP of a fleet-sized model (no basis to start
#: from): interior point with crossover took 18 s on the 50-site × 64-scenario fleet where the
#: dual simplex took 37 s (29k iterations); later LPs restart the simplex from its basis.
FIRST_LP_SOLVER = "ipm"
#: Simplex iterations allowed to all the held-scenario LPs of one fleet-sized solve (the
#: quantile bound, :func:`_quantile_bound`): a limit in work, so the bound does not depend on
#: the machine. On the 50-site × 64-scenario fleet each LP took ~400–750 iterations (0.4–1.5 s)
#: from the regime LP's basis; the two regimes used ~10k.
QUANTILE_LP_MAX_ITERATIONS = 30_000
#: Held-scenario LPs between two looks at the quantile bound; it stops at a look that left
#: it where it was (once below the LP value): on the 50-site fleet, in the order of
#: :func:`_relaxation_used`, the bound was final after 15 of the 54 scenarios the LP excuses.
QUANTILE_LOOK_EVERY = 4
#: Simplex iterations allowed to one held-scenario LP; past it the scenario gives no bound.
QUANTILE_LP_EACH_MAX_ITERATIONS = 5_000
#: LP value of z_k above which the LP counts scenario k as (partly) excused [-].
EXCUSED_LP_TOL = 1e-7
#: Slack of a row, relative to its activity, below which it counts as tight at an LP
#: solution (:func:`_relaxation_used`) [-].
RELAXED_ROW_TOL = 1e-6
#: Distance to an integer below which an LP value of an integer plan decision counts as
#: integral in the LP-rounding neighbourhood (RENS) [-].
RENS_INTEGRAL_TOL = 1e-6
#: IT MW below which a lease's delivery at a site is solver noise (warm starts) [MW].
DELIVERED_TOL_MW = 1e-6
#: A regime solved after the first must beat the incumbent by this share of the gap tolerance.
CUTOFF_GAP_SHARE = 0.25
#: Rounding slack when comparing a final gap with its target [-].
GAP_SLACK = 1e-12
#: Least seconds between two progress reports while HiGHS runs (reports come from HiGHS's
#: callbacks, which it makes many times a second).
PROGRESS_EVERY_S = 0.25
#: Seconds HiGHS has to stop after Ctrl-C before ``hard_stop`` is called.
INTERRUPT_GRACE_S = 1.0
#: Seconds between two looks of the Ctrl-C watchdog at whether HiGHS has finished.
WATCHDOG_POLL_S = 0.2


@dataclass(frozen=True)
class SolveProgress:
    """Where a solve stands: the run (phase or regime) HiGHS is in and its numbers so far."""

    phase: str
    elapsed_s: float
    """Seconds since the solve started (all runs) [s]."""
    limit_s: float
    """Time limit of the whole solve [s]."""
    incumbent_usd: float | None
    """Best objective of the current run so far [$]; None before the first feasible plan."""
    bound_usd: float | None
    """Its dual bound [$]; None before HiGHS has one."""
    gap: float | None
    """Relative gap of the current run [-]; None without an incumbent."""


#: A progress report callback.
ProgressCallback = Callable[[SolveProgress], None]
#: A log line callback: (phase, line).
LogCallback = Callable[[str, str], None]


class Termination(StrEnum):
    """How a solve ended (linopy-style)."""

    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"
    WORK_LIMIT = "work_limit"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INTERRUPTED = "interrupted"
    ERROR = "error"

    @classmethod
    def from_highs(cls, status: highspy.HighsModelStatus) -> Termination:
        s = highspy.HighsModelStatus
        return {
            s.kOptimal: cls.OPTIMAL,
            s.kTimeLimit: cls.TIME_LIMIT,
            s.kIterationLimit: cls.WORK_LIMIT,
            s.kSolutionLimit: cls.WORK_LIMIT,
            s.kObjectiveBound: cls.TIME_LIMIT,
            s.kObjectiveTarget: cls.TIME_LIMIT,
            s.kInfeasible: cls.INFEASIBLE,
            s.kUnboundedOrInfeasible: cls.INFEASIBLE,
            s.kUnbounded: cls.UNBOUNDED,
            s.kInterrupt: cls.INTERRUPTED,
        }.get(status, cls.ERROR)


class NoSolutionError(RuntimeError):
    """The solver ended without any feasible plan; ``reasons`` say why in words."""

    def __init__(self, status: Termination, reasons: list[str]) -> None:
        self.status = status
        self.reasons = reasons
        super().__init__("; ".join(reasons) or f"no feasible plan ({status})")


@dataclass
class SolveResult:
    """A solved MILP: status, incumbent, bound, gap, timings and the plan.

    ``status`` is OPTIMAL within the gap, WORK_LIMIT when node budgets ended the search above
    it (the same result on any machine), TIME_LIMIT when the wall-clock safety net stopped a
    run (``time_limited``; then the result may depend on machine load). ``nodes`` and
    ``lp_iterations`` total the solver work of every run.
    """

    status: Termination
    objective_usd: float
    bound_usd: float
    gap: float
    build_seconds: float
    solve_seconds: float
    plan: Plan
    transfer_seconds: float = 0.0
    phases: int = 1
    runs: list[dict[str, object]] = field(default_factory=list)
    rows: int = 0
    columns: int = 0
    nonzeros: int = 0
    equity_usd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cvar_usd: float = 0.0
    excused: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    nodes: int = 0
    lp_iterations: int = 0
    time_limited: bool = False
    cpu_seconds: float = 0.0
    """CPU seconds of this process over the whole solve, build included (all threads; on a
    loaded machine a fairer measure of the work than the wall clock) [s]."""
    warnings: list[str] = field(default_factory=list)
    """One line per thing the user should know that is not an error (an offer that cannot be
    delivered by its hard deadline, left unsigned)."""
    target_gap: float = 0.0
    """Relative gap asked for [-]."""

    @property
    def gap_ok(self) -> bool:
        """The final gap reached the target (the status is then ``optimal``)."""
        return self.gap <= self.target_gap + GAP_SLACK

    @property
    def is_ok(self) -> bool:
        """A plan is available (optimal within the gap, or the incumbent at a limit)."""
        return self.status in (Termination.OPTIMAL, Termination.TIME_LIMIT, Termination.WORK_LIMIT)


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


def start_values(
    m: pyo.ConcreteModel, plan: Plan, excused: np.ndarray | None = None
) -> dict[int, float]:
    """Values of the integer decisions of ``plan`` (and the excused scenarios, where known) for
    a MIP start, keyed by ``id(var)``.

    Campus: the site delivering most (solver noise can leave tiny deliveries elsewhere, and
    Σ_e x = y allows one campus per signed lease); a signed lease with nothing delivered yet
    and continuous campus shares are left to the solver.
    """
    values: dict[int, float] = {}
    if excused is not None and len(excused) and hasattr(m, "excused"):
        for k, v in m.excused.items():
            values[id(v)] = float(excused[k])
    for (s_, t), v in m.blocks.items():
        values[id(v)] = float(plan.blocks[s_, t])
    for (s_, t), v in m.racks_new.items():
        values[id(v)] = float(plan.racks_new[s_, t])
    for l, v in m.sign.items():
        values[id(v)] = float(plan.lease_signed[l])
    total = plan.lease_it_mw.sum(axis=2)
    for (l, e), v in m.campus.items():
        if v.is_binary() and (not plan.lease_signed[l] or total[l].max() > DELIVERED_TOL_MW):
            values[id(v)] = float(plan.lease_signed[l] and e == int(total[l].argmax()))
    return values


def _warm_start(
    opt: Highs, m: pyo.ConcreteModel, plan: Plan, excused: np.ndarray | None = None
) -> None:
    """Hand the integer decisions of ``plan`` (and the excused scenarios, where known) to HiGHS
    as a (partial) MIP start."""
    values = start_values(m, plan, excused)
    index = opt._pyomo_var_to_solver_var_map
    idx = np.array([index[k] for k in values if k in index], dtype=np.int32)
    val = np.array([values[k] for k in values if k in index], dtype=np.float64)
    opt._solver_model.setSolution(len(idx), idx, val)


@dataclass
class _Run:
    status: Termination
    objective: float | None
    bound: float | None
    plan: Plan | None
    transfer_seconds: float
    solve_seconds: float
    fixed: bool = False
    name: str = ""
    cutoff: float | None = None
    equity: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,) [M$]
    cvar: float = 0.0  # [M$]
    excused: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    nodes: int = 0  # branch-and-bound nodes
    lp_iterations: int = 0  # simplex iterations
    cpu_seconds: float = 0.0  # CPU seconds of this process while HiGHS ran
    x: np.ndarray | None = None  # column values of the solution found (solver order)
    rows: np.ndarray | None = None  # row activities of an LP relaxation's solution

    def regime_bound(self) -> float:
        """Upper bound of the model this run solved, cutoff aside [M$]: a run that found
        nothing above its cutoff bounds the model by the cutoff."""
        if self.status == Termination.INFEASIBLE:
            return -np.inf if self.cutoff is None else self.cutoff
        bound = np.inf if self.bound is None else self.bound
        return bound if self.cutoff is None else max(bound, self.cutoff)

    def summary(self) -> dict[str, object]:
        """What this run did, for logs and benchmarks (money in $)."""
        return {
            "run": self.name,
            "status": str(self.status),
            "objective_usd": None if self.objective is None else self.objective * MONEY,
            "bound_usd": None if self.bound is None or self.fixed else self.bound * MONEY,
            "cutoff_usd": None if self.cutoff is None else self.cutoff * MONEY,
            "transfer_seconds": self.transfer_seconds,
            "solve_seconds": self.solve_seconds,
            "cpu_seconds": self.cpu_seconds,
            "nodes": self.nodes,
            "lp_iterations": self.lp_iterations,
        }


def _fix_integers(m: pyo.ConcreteModel, plan: Plan, pin) -> None:
    """Fix the plan's conversion, rack and lease decisions in ``m`` (fix-and-optimize) with
    ``pin(var, value)``."""
    for (s_, t), v in m.blocks.items():
        pin(v, float(plan.blocks[s_, t]))
    for (s_, t), v in m.racks_new.items():
        pin(v, float(plan.racks_new[s_, t]))
    for l, v in m.sign.items():
        pin(v, float(plan.lease_signed[l]))
    total = plan.lease_it_mw.sum(axis=2)
    for (l, e), v in m.campus.items():
        if not v.is_binary():
            continue  # campus shares (several sites may serve the lease): left to the LP
        if plan.lease_signed[l] and total[l].max() <= DELIVERED_TOL_MW:
            continue  # signed but nothing delivered yet: keep the campus choice free
        # the site delivering most (solver noise can leave tiny deliveries elsewhere)
        pin(v, float(plan.lease_signed[l] and e == int(total[l].argmax())))


def covenant_severity(d: ModelData, plan: Plan) -> np.ndarray:
    """How badly ``plan`` breaks the covenants or minimum cash in each scenario of ``d``, (K,)
    (:func:`~hashpivot.kernels.cashflow.breach_severity`)."""
    from hashpivot.kernels.cashflow import breach_severity, cash_flows  # noqa: PLC0415

    return breach_severity(d.sc, plan, cash_flows(d.sc, plan, d.red.coefficient_arrays()))


def excuse_worst(d: ModelData, severity: np.ndarray) -> np.ndarray:
    """Scenarios to excuse: the most severe breaches first, while their weight fits within
    1 − confidence; (K,) bool."""
    room = 1.0 - d.sc.covenants.confidence
    out = np.zeros(d.n_scenarios, bool)
    used = 0.0
    for k in np.argsort(-severity, kind="stable"):
        if severity[k] <= 0.0:
            break
        if used + d.weights[k] <= room + 1e-12:
            out[k] = True
            used += d.weights[k]
    return out


def _regime_name(regime: tuple[bool, ...] | None) -> str:
    """'regime 01': the second facility with covenants drawn, the first not."""
    if regime is None:
        return "full model"
    return "regime " + "".join("1" if on else "0" for on in regime)


#: Components of the covenant family, switched off together for phase 1 (the chance budget
#: stays: minimum cash uses it too).
COVENANT_COMPONENTS = (
    "dscr_covenant",
    "leverage_covenant",
    "facility_used_link",
    "covenants_live_link",
)


#: Threads of HiGHS's process-wide task scheduler, once a solve has started it.
_scheduler_threads: int | None = None


def _use_threads(threads: int) -> None:
    """Make HiGHS's global scheduler serve ``threads`` threads.

    HiGHS starts one task scheduler per process with the first solve's thread count and
    refuses (model status error) any later solve asking for another count, so a process that
    solves with ``threads=1`` and then ``threads=2`` (a sweep worker, the Python API, the test
    suite) would see every later run fail. A different count resets the scheduler first; solves
    in one process run one at a time, so none is using it then.
    """
    global _scheduler_threads
    if _scheduler_threads is not None and _scheduler_threads != threads:
        highspy.Highs.resetGlobalScheduler(True)
    _scheduler_threads = threads


class _Session:
    """One Pyomo model with every row, handed to HiGHS once; runs change bounds in HiGHS.

    A run fixes columns (repair, excused scenarios, the regime of drawn facilities), frees the
    covenant rows (phase 1) or bounds a cutoff row (objective ≥ cutoff), solves, and restores
    the bounds: HiGHS bound changes are vectorised and cheap, so the model is built and
    transferred once however many runs the solve makes (Pyomo's own incremental updates
    remove and re-add rows one by one, far slower at this size).
    """

    def __init__(
        self,
        d: ModelData,
        *,
        mip_gap: float,
        threads: int,
        tee: bool,
        hard_deadlines: bool,
        progress: ProgressCallback | None = None,
        log: LogCallback | None = None,
        limit_s: float = 0.0,
        hard_stop: Callable[[], None] | None = None,
        cuts: bool = True,
    ) -> None:
        self.d = d
        self.hard_stop = hard_stop
        self.progress = progress
        self.log = log
        self.limit_s = limit_s
        self.t_start = time.perf_counter()
        self.phase = ""
        self._stop = False
        self._live: dict[str, float | None] = {}
        self._last_report = -np.inf
        self._error: Exception | None = None
        t0 = time.perf_counter()
        self.m = m = build_model(d, covenants=True, hard_deadlines=hard_deadlines, cuts=cuts)
        t1 = time.perf_counter()
        self.opt = Highs()
        self.opt.set_instance(m)
        h = self.h = self.opt._solver_model
        self.col = self.opt._pyomo_var_to_solver_var_map  # id(var) → column
        rows = self.opt._pyomo_con_to_solver_con_map  # constraint → row
        lp = h.getLp()
        self.col_lower = np.array(lp.col_lower_)
        self.col_upper = np.array(lp.col_upper_)
        cov = [c for n in COVENANT_COMPONENTS if hasattr(m, n) for c in getattr(m, n).values()]
        self.cov_rows = np.array([rows[c] for c in cov], dtype=np.int32)
        self.cov_lower = np.array(lp.row_lower_)[self.cov_rows]
        self.cov_upper = np.array(lp.row_upper_)[self.cov_rows]
        # cutoff row Σ cost·x + offset ≥ cutoff (maximisation), free until a run bounds it
        cost = np.array(lp.col_cost_)
        nz = np.flatnonzero(cost).astype(np.int32)
        h.addRow(-highspy.kHighsInf, highspy.kHighsInf, len(nz), nz, cost[nz])
        self.cutoff_row = h.getNumRow() - 1
        self.offset = float(lp.offset_)
        self.columns = [
            (v, self.col[id(v)]) for v in m.component_data_objects(pyo.Var) if id(v) in self.col
        ]
        # integer plan decisions (blocks, racks, signatures, single campuses): the columns an
        # LP-rounding neighbourhood bounds
        self.plan_cols = np.array(
            [
                self.col[id(v)]
                for c in (m.blocks, m.racks_new, m.sign, m.campus)
                for v in c.values()
                if v.is_integer() and id(v) in self.col
            ],
            dtype=np.int32,
        )
        self.iteration_limit = int(h.getOptionValue("simplex_iteration_limit")[1])
        _use_threads(threads)
        h.setOptionValue("threads", threads)
        h.setOptionValue("mip_rel_gap", mip_gap)
        self.mip_gap = mip_gap
        # the log goes through a callback, labelled by phase (never straight to the terminal,
        # where it would interleave with progress displays)
        h.setOptionValue("output_flag", tee)
        h.setOptionValue("log_to_console", log is None and tee)
        self._subscribe(tee)
        for key, value in HIGHS_OPTIONS.items():
            h.setOptionValue(key, value)
        self.build_seconds = t1 - t0
        self.transfer_seconds = time.perf_counter() - t1

    def _subscribe(self, tee: bool) -> None:
        """Callbacks: interrupts (Ctrl-C), incumbent and bound, and log lines."""
        kind = highs_cb.HighsCallbackType
        h = self.h

        def check(event) -> None:
            now = time.perf_counter()
            if not self._stop and now - self._last_report >= PROGRESS_EVERY_S:
                self._last_report = now
                try:
                    self.report()
                except Exception as exc:  # never through HiGHS: stop it, raise after the run
                    self._error = exc
                    self._stop = True
            if self._stop:
                event.interrupt()

        def mip(event) -> None:
            out = event.data_out
            primal, dual = float(out.mip_primal_bound), float(out.mip_dual_bound)
            self._live = {
                "incumbent": primal if np.isfinite(primal) and abs(primal) < 1e300 else None,
                "bound": dual if np.isfinite(dual) and abs(dual) < 1e300 else None,
            }
            check(event)

        def logged(event) -> None:
            if self.log is not None:
                for line in str(event.message).rstrip("\n").splitlines():
                    self.log(self.phase, line)

        for t in (kind.kCallbackSimplexInterrupt, kind.kCallbackIpmInterrupt):
            h.callbacks[int(t)].subscribe(check)
        for t in (kind.kCallbackMipInterrupt, kind.kCallbackMipImprovingSolution):
            h.callbacks[int(t)].subscribe(mip)
        if tee and self.log is not None:
            h.callbacks[int(kind.kCallbackLogging)].subscribe(logged)

    def report(self) -> None:
        """Send the current run's numbers to the progress callback."""
        if self.progress is None:
            return
        inc, bnd = self._live.get("incumbent"), self._live.get("bound")
        gap = None
        if inc is not None and bnd is not None:
            gap = max(0.0, bnd - inc) / max(abs(inc), 1e-9)
        self.progress(
            SolveProgress(
                phase=self.phase,
                elapsed_s=time.perf_counter() - self.t_start,
                limit_s=self.limit_s,
                incumbent_usd=None if inc is None else inc * MONEY,
                bound_usd=None if bnd is None else bnd * MONEY,
                gap=gap,
            )
        )

    def _run_highs(self) -> None:
        """``h.run()`` with Ctrl-C turned into a HiGHS interrupt.

        While HiGHS runs, SIGINT only sets a flag, which the interrupt callbacks hand to HiGHS;
        once it has stopped, ``KeyboardInterrupt`` is raised here. HiGHS makes no callback
        inside some long steps (a root LP, presolve), so a watchdog thread, woken by the
        signal itself (``signal.set_wakeup_fd``), calls ``hard_stop`` when HiGHS has not
        stopped within ``INTERRUPT_GRACE_S`` (the CLI ends the process there).
        """
        self._live = {}
        self._last_report = -np.inf

        def on_sigint(signum: int, frame: object) -> None:
            self._stop = True

        try:
            previous = signal.signal(signal.SIGINT, on_sigint)
            ours = True
        except ValueError:  # not the main thread: Ctrl-C is not ours to handle
            ours = False
        if not ours:
            self.h.run()
            if self._error is not None:
                raise self._error
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        finished = threading.Event()
        watchdog = threading.Thread(
            target=self._watch, args=(read_fd, finished), daemon=True, name="hashpivot-sigint"
        )
        watchdog.start()
        try:
            self.h.run()
        finally:
            finished.set()
            # wake the watchdog now (it would otherwise sleep out its poll: 0.2 s per run)
            os.write(write_fd, b"\0")
            signal.set_wakeup_fd(previous_fd)
            signal.signal(signal.SIGINT, previous)
            watchdog.join()
            os.close(read_fd)
            os.close(write_fd)
        if self._error is not None:
            raise self._error
        if self._stop:
            raise KeyboardInterrupt

    def _watch(self, read_fd: int, finished: threading.Event) -> None:
        """Wait for SIGINT while HiGHS runs; ask it to stop, then give up on it after the
        grace period (``hard_stop``)."""
        while not finished.is_set():
            ready, _, _ = select.select([read_fd], [], [], WATCHDOG_POLL_S)
            if not ready:
                continue
            os.read(read_fd, 64)
            if finished.is_set():  # woken because HiGHS has finished, not by a signal
                return
            self._stop = True
            if self.hard_stop is not None and not finished.wait(INTERRUPT_GRACE_S):
                self.hard_stop()
            return

    @contextmanager
    def as_lp(self) -> Iterator[None]:
        """Every integer column continuous inside: the runs are LPs, each restarting the dual
        simplex from the basis the last one left (a few hundred iterations after a bound
        change, where a MIP's relaxation starts over)."""
        h = self.h
        kinds = np.asarray(h.getLp().integrality_, dtype=np.uint8)
        cols = np.flatnonzero(kinds).astype(np.int32)
        h.changeColsIntegrality(len(cols), cols, np.zeros(len(cols), np.uint8))
        try:
            yield
        finally:
            h.changeColsIntegrality(len(cols), cols, kinds[cols])

    def regime_pins(self, regime: tuple[bool, ...] | None) -> dict[int, float]:
        """Column → value of the facilities ``regime`` fixes (empty for None): undrawn ones
        cannot be drawn (TD ≤ size·u), drawn ones put their covenants in force (δ ≥ u), so
        no big-M links drawing to covenants."""
        m = self.m
        if regime is None or not hasattr(m, "facility_used"):
            return {}
        return {
            self.col[id(v)]: 1.0 if on else 0.0
            for v, on in zip(m.facility_used.values(), regime, strict=True)
        }

    def held_lps(
        self,
        regime: tuple[bool, ...] | None,
        scenarios: Sequence[int],
        *,
        iterations: int,
        time_limit_s: float,
    ) -> tuple[np.ndarray, int, bool]:
        """LP values of the model (inside :meth:`as_lp`) with ``regime`` and, one at a time,
        each of ``scenarios`` held to the chance rows (z_k = 0) [M$]: +inf where an LP did not
        end (its iterations, ``QUANTILE_LP_EACH_MAX_ITERATIONS``, or the clock), −inf where it
        is infeasible (no plan of the regime keeps that scenario). The LPs stop once
        ``iterations`` simplex iterations are spent; the rest are +inf. Returns the values, in
        the order of ``scenarios``, the iterations used and whether the clock stopped an LP."""
        m, h = self.m, self.h
        base = self.regime_pins(regime)
        values = np.full(len(scenarios), np.inf)
        used = 0
        timed_out = False
        t0 = time.perf_counter()
        h.setOptionValue("solve_relaxation", False)
        try:
            for i, k in enumerate(scenarios):
                left = min(QUANTILE_LP_EACH_MAX_ITERATIONS, iterations - used)
                clock = time_limit_s - (time.perf_counter() - t0)
                if left <= 0 or clock <= 0.0:
                    timed_out = clock <= 0.0
                    break
                pins = base | {self.col[id(m.excused[k])]: 0.0}
                idx = np.fromiter(pins, dtype=np.int32, count=len(pins))
                val = np.fromiter(pins.values(), dtype=np.float64, count=len(pins))
                h.changeColsBounds(len(idx), idx, val, val.copy())
                h.setOptionValue("simplex_iteration_limit", int(left))
                h.setOptionValue("time_limit", max(1.0, clock))
                try:
                    self._run_highs()
                    info = h.getInfo()  # read before the bounds change clears it
                    status = h.getModelStatus()
                finally:
                    h.changeColsBounds(len(idx), idx, self.col_lower[idx], self.col_upper[idx])
                used += max(0, int(info.simplex_iteration_count))
                if status == highspy.HighsModelStatus.kOptimal:
                    values[i] = float(info.objective_function_value)
                elif Termination.from_highs(status) == Termination.INFEASIBLE:
                    values[i] = -np.inf
                elif status == highspy.HighsModelStatus.kTimeLimit:
                    timed_out = True
                    break
        finally:
            h.setOptionValue("simplex_iteration_limit", self.iteration_limit)
        return values, used, timed_out

    def run(
        self,
        name: str,
        *,
        time_limit_s: float,
        max_nodes: int = MAX_NODES,
        relaxation: bool = False,
        covenants: bool = True,
        start: Plan | None = None,
        fix: Plan | None = None,
        excuse: np.ndarray | None = None,
        regime: tuple[bool, ...] | None = None,
        cutoff: float | None = None,
        start_excused: np.ndarray | None = None,
        rens: np.ndarray | None = None,
        lp_iterations: int = REGIME_LP_MAX_ITERATIONS,
    ) -> _Run:
        """Solve with the changes asked for, then restore the model.

        ``rens``: column values of an LP solution; each integer plan decision is bounded to
        [⌊x⌋, ⌈x⌉] (fixed where x is integral), the relaxation-enforced neighbourhood search
        (RENS, Berthold 2014). ``lp_iterations`` limits a ``relaxation`` run's simplex."""
        m, d, h = self.m, self.d, self.h
        self.phase = name
        t0 = time.perf_counter()
        pins: dict[int, tuple[float, float]] = {}
        if rens is not None:
            cols = self.plan_cols
            v = rens[cols]
            lo = np.maximum(np.floor(v + RENS_INTEGRAL_TOL), self.col_lower[cols])
            hi = np.maximum(np.minimum(np.ceil(v - RENS_INTEGRAL_TOL), self.col_upper[cols]), lo)
            pins.update(zip(cols.tolist(), zip(lo.tolist(), hi.tolist(), strict=True), strict=True))

        def pin(var, value: float) -> None:
            pins[self.col[id(var)]] = (value, value)

        if fix is not None:
            _fix_integers(m, fix, pin)
        if excuse is not None and hasattr(m, "excused"):
            # excused scenarios fixed, the others held to the covenants, and the facilities
            # ``start`` draws in force: no big-M choice left
            for k, v in m.excused.items():
                pin(v, 1.0 if excuse[k] else 0.0)
            drawn = start.draws_usd.sum(axis=1) > 0 if start is not None else None
            for f, v in m.facility_used.items():
                if drawn is not None and drawn[f]:
                    pin(v, 1.0)
        pins.update({c: (v, v) for c, v in self.regime_pins(regime).items()})
        idx = np.fromiter(pins, dtype=np.int32, count=len(pins))
        box = np.array(list(pins.values()), dtype=np.float64).reshape(-1, 2)
        if len(idx):
            h.changeColsBounds(len(idx), idx, box[:, 0].copy(), box[:, 1].copy())
        free = not covenants and len(self.cov_rows) > 0
        if free:
            inf = np.full(len(self.cov_rows), highspy.kHighsInf)
            h.changeRowsBounds(len(self.cov_rows), self.cov_rows, -inf, inf)
        if cutoff is not None:
            # only plans better than the incumbent by more than the gap are worth finding
            h.changeRowBounds(self.cutoff_row, cutoff - self.offset, highspy.kHighsInf)
        if start is not None:
            _warm_start(self.opt, m, start, start_excused)
        t1 = time.perf_counter()
        c1 = time.process_time()
        try:
            h.setOptionValue("time_limit", max(1.0, time_limit_s - (t1 - t0)))
            h.setOptionValue("mip_max_nodes", int(max_nodes))
            h.setOptionValue("solve_relaxation", relaxation)
            if relaxation:
                h.setOptionValue("simplex_iteration_limit", int(lp_iterations))
            self._run_highs()
            t2 = time.perf_counter()
            info = h.getInfo()
            run = _Run(
                Termination.from_highs(h.getModelStatus()),
                None,
                None,
                None,
                t1 - t0,
                t2 - t1,
                fixed=fix is not None or excuse is not None or rens is not None,
                name=name,
                cutoff=cutoff,
                nodes=max(0, int(info.mip_node_count)),
                lp_iterations=max(0, int(info.simplex_iteration_count)),
                cpu_seconds=time.process_time() - c1,
            )
            if info.primal_solution_status == 2:  # a feasible solution
                x = np.asarray(h.getSolution().col_value)
                run.x = x
                if relaxation:
                    run.rows = np.asarray(h.getSolution().row_value)
                for v, j in self.columns:
                    v.set_value(float(x[j]), skip_validation=True)
                run.plan = read_plan(m, d)
                run.objective = float(info.objective_function_value)
                run.bound = float(info.mip_dual_bound)
                if not np.isfinite(run.bound):
                    run.bound = None
                run.equity = np.array([m.equity[k].value for k in m.K])
                run.cvar = float(pyo.value(m.cvar)) if hasattr(m, "cvar") else 0.0
                run.excused = (
                    np.array([(m.excused[k].value or 0.0) > 0.5 for k in m.K])
                    if hasattr(m, "excused")
                    else np.zeros(d.n_scenarios, bool)
                )
        finally:
            t2 = time.perf_counter()
            if relaxation:
                h.setOptionValue("simplex_iteration_limit", self.iteration_limit)
            if len(idx):
                h.changeColsBounds(len(idx), idx, self.col_lower[idx], self.col_upper[idx])
            if free:
                h.changeRowsBounds(
                    len(self.cov_rows), self.cov_rows, self.cov_lower, self.cov_upper
                )
            if cutoff is not None:
                h.changeRowBounds(self.cutoff_row, -highspy.kHighsInf, highspy.kHighsInf)
        run.transfer_seconds += time.perf_counter() - t2
        return run


def repair_financing(
    d: ModelData, candidates: list[Plan], *, time_limit_s: float, threads: int = DEFAULT_THREADS
) -> Plan | None:
    """The first of ``candidates`` whose conversion, racks and leases can be financed under
    every rule on ``d``'s scenarios, with that financing (draws, BTC sales) re-solved
    (fix-and-optimize; the model is built once); None if none can."""
    session = _Session(
        d, mip_gap=d.sc.defaults.mip_gap, threads=threads, tee=False, hard_deadlines=True
    )
    for plan in candidates:
        run = session.run("repair", time_limit_s=time_limit_s / len(candidates), fix=plan)
        if run.plan is not None:
            return run.plan
    return None


def _regimes(session: _Session, d: ModelData) -> list[tuple[bool, ...] | None]:
    """The covenant regimes solved one at a time, or ``[None]`` (the whole model)."""
    has = hasattr(session.m, "facility_used")
    return (list(covenant_regimes(d)) if has else []) or [None]


def _regime_lp(
    session: _Session,
    reg: tuple[bool, ...] | None,
    left: Callable[[], float],
    lp_iterations: int = REGIME_LP_MAX_ITERATIONS,
    solver: str = "choose",
) -> _Run:
    """The LP relaxation of regime ``reg``: a fractional point and its value, not a plan.
    ``solver``: HiGHS's LP algorithm ("choose", "simplex", "ipm"); ``lp_iterations`` bounds
    the interior point's iterations too."""
    h = session.h
    ipm_limit = int(h.getOptionValue("ipm_iteration_limit")[1])
    h.setOptionValue("solver", solver)
    h.setOptionValue("ipm_iteration_limit", min(ipm_limit, int(lp_iterations)))
    try:
        lp = session.run(
            f"{_regime_name(reg)} LP",
            time_limit_s=left(),
            regime=reg,
            relaxation=True,
            lp_iterations=lp_iterations,
        )
    finally:
        h.setOptionValue("solver", "choose")
        h.setOptionValue("ipm_iteration_limit", ipm_limit)
    lp.plan, lp.bound = None, None
    return lp


def _rens(
    session: _Session, reg: tuple[bool, ...] | None, lp: _Run, left: Callable[[], float]
) -> _Run:
    """RENS around regime ``reg``'s LP point ``lp.x``: every integer plan decision in
    [⌊x⌋, ⌈x⌉], the rest (financing, excused scenarios) left to HiGHS
    (``HEURISTIC_MAX_NODES``)."""
    return session.run(
        f"{_regime_name(reg)} rounding",
        time_limit_s=left(),
        max_nodes=HEURISTIC_MAX_NODES,
        regime=reg,
        rens=lp.x,
    )


def quantile_bound(values: np.ndarray, weights: np.ndarray, budget: float) -> float:
    """The smallest v such that the scenarios with ``values`` ≤ v weigh more than ``budget``
    (−inf before the first, +inf if they never do).

    With ``values[k]`` an upper bound of every plan that keeps scenario k (z_k = 0) and at
    most ``budget`` of the weight excused, any set of scenarios weighing more than the
    budget holds one that the optimum keeps, so the optimum is at most the largest value in
    that set; the lightest such set in the order of ``values`` gives this bound (the quantile
    bound of Ahmed, Luedtke, Song & Xie 2017, §3)."""
    order = np.argsort(values, kind="stable")
    heavier = np.cumsum(weights[order]) > budget
    if not heavier.any():
        return np.inf
    return float(values[order][int(np.argmax(heavier))])


def _excused_lp_values(session: _Session, lp: _Run) -> np.ndarray:
    """z_k of the LP solution ``lp``, (K,) [-] (zeros without excused scenarios)."""
    m = session.m
    if not hasattr(m, "excused") or lp.x is None:
        return np.zeros(session.d.n_scenarios)
    return np.array([lp.x[session.col[id(m.excused[k])]] for k in m.K])


def _relaxation_used(session: _Session, lp: _Run, scenarios: np.ndarray) -> np.ndarray:
    """Per scenario k of ``scenarios``, how far the LP solution ``lp`` leans on excusing it:
    z_k·Σ|a_rk| over the rows r where z_k appears with coefficient a_rk (its big-M) that are
    tight at the solution, the chance budget aside [M$ of relaxed rows]. Holding first the
    scenarios that lean most found the 50-site fleet's whole quantile bound in 15 LPs, where
    the order of z_k took 30."""
    h, m = session.h, session.m
    out = np.zeros(len(scenarios))
    if lp.x is None or lp.rows is None or not len(scenarios):
        return out
    cols = np.array([session.col[id(m.excused[k])] for k in scenarios], dtype=np.int32)
    _, start, index, value = h.getColsEntries(len(cols), cols)
    budget_row = session.opt._pyomo_con_to_solver_con_map.get(m.chance_limit, -1)
    rows = np.asarray(index, dtype=np.int32)
    if not len(rows):
        return out
    _, _, lower, upper, _ = h.getRows(len(rows), rows)
    act = lp.rows[rows]
    slack = np.minimum(act - np.asarray(lower), np.asarray(upper) - act)
    tight = (slack <= RELAXED_ROW_TOL * np.maximum(1.0, np.abs(act))) & (rows != budget_row)
    weight = np.where(tight, np.abs(np.asarray(value)), 0.0)
    ends = np.append(np.asarray(start, dtype=np.int64), len(rows))
    per_col = np.add.reduceat(weight, ends[:-1]) if len(weight) else np.zeros(len(cols))
    per_col[ends[:-1] == ends[1:]] = 0.0  # a column without entries
    return lp.x[cols] * per_col


def _quantile_bound(
    session: _Session,
    reg: tuple[bool, ...] | None,
    lp: _Run,
    *,
    beat: float,
    iterations: int,
    left: Callable[[], float],
) -> tuple[float, int, _Run | None, np.ndarray]:
    """A bound of regime ``reg`` tighter than its LP value ``lp.objective``, from LPs that
    each hold one scenario the LP excuses (z_k = 0; :meth:`_Session.held_lps`) and
    :func:`quantile_bound` over them (every other scenario keeps the LP value, which bounds
    its held LP too). The big-M rows let the LP excuse a sliver of many scenarios at almost
    no cost (54 of 64 on the 50-site fleet); held one at a time they cost up to 4 %.
    Scenarios are held in decreasing :func:`_relaxation_used`, ``QUANTILE_LOOK_EVERY`` between
    looks at the bound, until ``iterations`` are spent, a look leaves the bound where it was,
    or it is at most ``beat`` (another regime's bound: no need to go lower). Inside
    :meth:`_Session.as_lp`, right after ``lp`` (its basis). Returns the bound [M$], the
    iterations used, a run for the log (None where no LP was solved) and the held LP value
    of every scenario, (K,) [M$] (the LP value where not held)."""
    d = session.d
    t0, c0 = time.perf_counter(), time.process_time()
    value = float(lp.objective)
    bound = value
    budget = 1.0 - d.sc.covenants.confidence + 1e-12
    z = _excused_lp_values(session, lp)
    candidates = np.flatnonzero(z > EXCUSED_LP_TOL)
    candidates = candidates[np.argsort(-_relaxation_used(session, lp, candidates), kind="stable")]
    values = np.full(d.n_scenarios, value)  # a scenario the LP holds: its held LP is the LP
    used = 0
    timed_out = False
    if float(d.weights[candidates].sum()) > budget and iterations > 0:
        for i in range(0, len(candidates), QUANTILE_LOOK_EVERY):
            if used >= iterations or bound <= beat or timed_out:
                break
            batch = candidates[i : i + QUANTILE_LOOK_EVERY]
            got, n, timed_out = session.held_lps(
                reg, batch.tolist(), iterations=iterations - used, time_limit_s=left()
            )
            used += n
            values[batch] = np.minimum(got, value)
            before, bound = bound, min(value, quantile_bound(values, d.weights, budget))
            if bound == before < value:
                break  # the scenarios leaning less on the big-M rows no longer move it
    if not used:
        return bound, 0, None, values  # no scenario to hold: the LP value stands
    run = _Run(
        Termination.TIME_LIMIT if timed_out else Termination.OPTIMAL,
        None,
        bound,
        None,
        0.0,
        time.perf_counter() - t0,
        name=f"{_regime_name(reg)} quantile bound",
        lp_iterations=used,
        cpu_seconds=time.process_time() - c0,
    )
    return bound, used, run, values


def excused_set(
    values: np.ndarray, lp_value: float, weights: np.ndarray, budget: float
) -> np.ndarray:
    """The scenarios most costly to hold, (K,) bool: in increasing held-LP ``values`` (those
    below ``lp_value`` only: the others cost nothing known), as many as fit in ``budget``."""
    order = np.argsort(values, kind="stable")
    order = order[values[order] < lp_value]
    fits = np.cumsum(weights[order]) <= budget
    out = np.zeros(len(values), bool)
    out[order[: int(np.argmin(fits)) if not fits.all() else len(order)]] = True
    return out


def _fleet_search(
    session: _Session, d: ModelData, left: Callable[[], float]
) -> tuple[list[_Run], _Run | None, float | None]:
    """Bound and incumbent of a fleet-sized model (:func:`solve`, step 0b).

    Per regime of drawn covenant facilities (:func:`~hashpivot.optimizer.model.covenant_regimes`;
    the whole model where there are too many), the LP relaxation (``ROUNDING_LP_MAX_ITERATIONS``;
    the first by ``FIRST_LP_SOLVER``, the others from its basis) and, where it is above the
    bounds of the regimes before it, its quantile bound (:func:`_quantile_bound`, the regimes
    sharing ``QUANTILE_LP_MAX_ITERATIONS``); its excused scenarios (:func:`excused_set` of its
    held LPs: those most costly to hold; without them, the LP's z_k > ½ that fit the budget)
    and the LP with them fixed and every other scenario held. Then, best bound first, each
    regime whose bound is above the incumbent by more than the gap is searched around that
    LP point, its excused scenarios fixed: every integer plan decision in [⌊x⌋, ⌈x⌉] (RENS,
    ``HEURISTIC_MAX_NODES``; after the first plan, above the incumbent). With no big-M choice
    left the search is short: on the 50-site × 64-scenario fleet 1.3 s and one node to a plan
    0.5 % below the bound, where RENS around the regime LP with z free took 82 s to one 3.4 %
    below it (and the whole plan searched with the excused scenarios fixed, 17 s to 0.6 %; on
    the 20-site × 16-scenario fleet its root cut loop ran for minutes). Where no regime gives a
    plan, RENS around the best regime LP with z free is tried. Returns the runs, the run with
    the best plan (None without one), and the largest regime bound (a bound of the full model:
    every plan lies in some regime) when every regime's LP ended optimal or infeasible, else
    None.
    """
    regimes = _regimes(session, d)
    runs: list[_Run] = []
    lps: dict[tuple[bool, ...] | None, _Run] = {}
    bounds: dict[tuple[bool, ...] | None, float] = {}
    held: dict[tuple[bool, ...] | None, np.ndarray] = {}
    known = True
    spent = 0
    budget = 1.0 - d.sc.covenants.confidence + 1e-12
    with session.as_lp():  # each LP restarts from the last basis
        for i, reg in enumerate(regimes):
            solver = FIRST_LP_SOLVER if i == 0 else "simplex"
            lp = _regime_lp(session, reg, left, ROUNDING_LP_MAX_ITERATIONS, solver=solver)
            runs.append(lp)
            ok = lp.status == Termination.OPTIMAL and lp.objective is not None
            if ok and lp.x is not None:
                lps[reg] = lp
                beat = max(bounds.values(), default=-np.inf)
                bounds[reg], n, q, held[reg] = _quantile_bound(
                    session,
                    reg,
                    lp,
                    beat=beat,
                    iterations=QUANTILE_LP_MAX_ITERATIONS - spent if lp.objective > beat else 0,
                    left=left,
                )
                spent += n
                if q is not None:
                    runs.append(q)
            elif lp.status != Termination.INFEASIBLE:
                known = False  # stopped by its iteration limit (or the clock): bound unknown
        if not lps:
            return runs, None, None  # no regime with a plan: the phases say why
        # each regime's excused scenarios, and its LP with them fixed (the point to round)
        excuse: dict[tuple[bool, ...] | None, np.ndarray] = {}
        point: dict[tuple[bool, ...] | None, np.ndarray] = {}
        for reg, lp in lps.items():
            values = held[reg]
            if (values < lp.objective).any():
                excuse[reg] = excused_set(values, lp.objective, d.weights, budget)
            else:  # no scenario held: the LP's own rounding of z
                z = _excused_lp_values(session, lp)
                excuse[reg] = excused_set(-z, -0.5, d.weights, budget)
            fixed = session.run(
                f"{_regime_name(reg)} LP, excused fixed",
                time_limit_s=left(),
                regime=reg,
                excuse=excuse[reg],
                relaxation=True,
                lp_iterations=ROUNDING_LP_MAX_ITERATIONS,
            )
            fixed.plan, fixed.bound = None, None
            runs.append(fixed)
            if fixed.status == Termination.OPTIMAL and fixed.x is not None:
                point[reg] = fixed.x
    best: _Run | None = None
    for reg in sorted(point, key=lambda r: -bounds[r]):
        if best is not None and bounds[reg] - best.objective <= session.mip_gap * abs(
            best.objective
        ):
            break  # no plan of this regime (or of those below) beats the incumbent by the gap
        run = session.run(
            f"{_regime_name(reg)} rounding, excused fixed",
            time_limit_s=left(),
            max_nodes=HEURISTIC_MAX_NODES,
            regime=reg,
            excuse=excuse[reg],
            rens=point[reg],
            cutoff=None if best is None else best.objective,
        )
        runs.append(run)
        if run.plan is not None and (best is None or run.objective > best.objective):
            best = run
    if best is None:
        top = max(lps, key=lambda r: lps[r].objective)
        rens = _rens(session, top, lps[top], left)
        runs.append(rens)
        best = rens if rens.plan is not None else None
    bound = max(bounds.values()) if known else None
    return runs, best, bound


def plan_integers(m: pyo.ConcreteModel) -> int:
    """Integer plan decisions left free in ``m``: conversion blocks, racks, signatures and
    single campuses whose bounds allow a choice."""
    comps = (m.blocks, m.racks_new, m.sign, m.campus)
    return sum(
        1
        for c in comps
        for v in c.values()
        if v.is_integer() and (v.lb is None or v.ub is None or v.ub > v.lb)
    )


def _fits(d: ModelData, plan: Plan) -> bool:
    """Whether ``plan`` names the sites, leases and facilities of ``d`` over its periods."""
    sc = d.sc
    return (
        plan.site_names == tuple(x.name for x in sc.sites)
        and plan.lease_names == tuple(x.name for x in sc.lease_offers)
        and plan.facility_names == tuple(x.name for x in sc.debt_facilities)
        and plan.blocks.shape == (d.n_sites, d.n_periods)
        and plan.racks_new.shape == (d.n_sites, d.n_periods)
        and plan.lease_it_mw.shape == (d.n_leases, d.n_sites, d.n_periods)
    )


def _meets_covenants(d: ModelData, plan: Plan, excused: np.ndarray | None = None) -> bool:
    """Whether minimum cash and the covenants fail only in scenarios within the budget; where
    excused probability is priced (``d.breach_price``), only in the scenarios ``excused``
    already (and charged for): else the covenant-free run's objective misses the price of the
    covenant breaches and its plan need not be optimal for the full model."""
    from hashpivot.kernels.cashflow import cash_flows, chance_breach  # noqa: PLC0415

    cf = cash_flows(d.sc, plan, d.red.coefficient_arrays())
    breach = np.asarray(chance_breach(d.sc, cf))
    if float(d.weights[breach].sum()) > 1.0 - d.sc.covenants.confidence + 1e-9:
        return False
    if d.breach_price > 0.0:
        paid = excused if excused is not None and len(excused) else np.zeros(len(breach), bool)
        return not bool(np.any(breach & ~paid))
    return True


def solve(
    d: ModelData,
    *,
    time_limit_s: float | None = None,
    mip_gap: float | None = None,
    threads: int = DEFAULT_THREADS,
    tee: bool = False,
    covenants: bool = True,
    hard_deadlines: bool = True,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
    hard_stop: Callable[[], None] | None = None,
    max_nodes: int | None = None,
    start: Plan | None = None,
    starts: Callable[[], Sequence[Plan]] | None = None,
) -> SolveResult:
    """Build and solve the MILP for ``d`` in phases.

    Every run stops at the gap or at a budget of branch-and-bound nodes (``max_nodes``,
    default :data:`MAX_NODES`; :data:`HEURISTIC_MAX_NODES` for the repair and the excuse
    heuristic), so the same data give the same plan on any machine. The wall-clock
    ``time_limit_s`` is only a safety net over the whole solve: when it stops a run, the result
    says so (``time_limited``, status TIME_LIMIT) and may then depend on machine load.

    0. With ``start`` (a plan to warm-start from: another replication's candidate, a previous
       calibration round's plan), its conversion, racks and leases are fixed and the financing
       re-solved with every rule (fix-and-optimize); a feasible result is the first incumbent
       and the MIP start of the later runs. A start that does not fit ``d`` (other sites,
       leases, facilities or periods) or is infeasible for it is ignored. On a fleet-sized
       model (more than ``LARGE_PLAN_INTEGERS`` free plan integers) the plans ``starts()``
       returns (rule-keeping baselines; a callable, so that smaller models never pay for them)
       are fix-and-optimized too, the best kept; phase 1 then stops at its root
       (``LARGE_MAX_NODES``: its bound) and the phases end with the repair below: the best
       incumbent is returned with its gap to that bound, status ``work_limit`` above the gap.
    0b. But first, on a fleet-sized model, the search of :func:`_fleet_search`: each
       regime's LP relaxation, tightened by holding the scenarios it excuses one at a time
       (:func:`_quantile_bound`), then a RENS search around the LP with the scenarios costliest
       to hold excused and the others held, best regime first. Its plan replaces the
       ``starts`` (computed only when it finds none) and, where every regime's LP ended,
       the largest regime bound is the bound and the phases are skipped: the best incumbent
       is returned with its gap to that bound. On the 50-site × 64-scenario fleet the greedy
       start was 12 % below the regime LPs, a RENS plan around the regime LP ~5 %
       (benchmarks/fleet_gap_study.py); the quantile bound and the rounding with the excused
       scenarios fixed end 0.5 % apart.
    Where the plan has at most ``DIRECT_MAX_PLAN_INTEGERS`` free integer decisions
    (:func:`plan_integers`), the whole model is solved first (node budget ``max_nodes``); the
    phases below run only when it ends above the gap, starting from its incumbent, its bound
    kept. Without a ``start``, RENS around its LP relaxation (``HEURISTIC_MAX_NODES``) gives
    that run its first incumbent: on demo HiGHS's root heuristics found a plan 8.5 % below
    the optimum, and its search took 50 nodes to find a good one where 14 prove it from the
    RENS plan (0.3 s).

    1. The model without covenant rows, a relaxation: if its optimum keeps the covenants at the
       required confidence it is optimal for the full model.
    2. Incumbents: a fix-and-optimize repair keeps phase 1's conversion, racks and leases and
       re-solves the financing with the covenants; where the model is solved whole (more than
       ``MAX_REGIME_FACILITIES`` facilities with covenants), an excuse heuristic also excuses
       the scenarios phase 1's plan breaks worst (:func:`excuse_worst`) and holds the others to
       the covenants. The first within the gap of phase 1's bound is returned.
    3. The full model, once per regime of drawn facilities with covenants
       (:func:`~hashpivot.optimizer.model.covenant_regimes`), the regime with the best LP
       relaxation first (an infeasible LP skips its regime), warm-started from the best plan
       so far; after the first regime, a cutoff row asks for a
       plan better than the incumbent by ``CUTOFF_GAP_SHARE`` of the gap, so regimes that
       cannot win end at their root; a regime whose LP bound is at most that cutoff is not
       solved at all (its LP bound bounds it).

    The bound reported is the tightest of the whole model's, phase 1's and the largest regime
    bound (a regime that found nothing above its cutoff is bounded by it). A time limit returns
    the incumbent with its gap; no incumbent raises :class:`NoSolutionError` with reasons in
    words.

    ``progress`` receives a :class:`SolveProgress` at most every ``PROGRESS_EVERY_S`` while HiGHS
    runs;
    with ``tee``, ``log`` receives each HiGHS log line with the name of its run (without
    ``log``, HiGHS prints to the terminal itself). Ctrl-C (``KeyboardInterrupt``) stops HiGHS
    through its interrupt callbacks and is re-raised once HiGHS has stopped; where HiGHS makes no
    callback for ``INTERRUPT_GRACE_S`` after it, ``hard_stop`` is called (from another thread;
    the CLI ends the process there).
    """
    limit = d.sc.defaults.solver_time_limit_s if time_limit_s is None else time_limit_s
    gap_tol = d.sc.defaults.mip_gap if mip_gap is None else mip_gap
    if not 0.0 <= gap_tol < 1.0:  # a gap of 1 would call any plan optimal
        raise ValueError(f"mip_gap must be in [0, 1), got {gap_tol!r}")
    node_budget = MAX_NODES if max_nodes is None else max_nodes
    two_phase = covenants and d.n_facilities > 0
    t_start = time.perf_counter()
    c_start = time.process_time()
    session = _Session(
        d,
        mip_gap=gap_tol,
        threads=threads,
        tee=tee,
        hard_deadlines=hard_deadlines,
        progress=progress,
        log=log,
        limit_s=limit,
        hard_stop=hard_stop,
    )
    full_runs: list[_Run] = []
    skipped_bounds: list[float] = []  # LP bounds of regimes pruned without a MIP run [M$]

    def left() -> float:
        return max(1.0, limit - (time.perf_counter() - t_start))

    runs: list[_Run] = []
    seed: _Run | None = None
    if start is not None and not _fits(d, start):
        start = None  # a plan of another scenario: nothing to start from
    n_plan = plan_integers(session.m)  # one pass over the model's columns
    large = n_plan > LARGE_PLAN_INTEGERS
    rounding_bound: float | None = None  # the regimes' LP bound of a fleet-sized model [M$]
    rounded: _Run | None = None
    if large and two_phase:
        rounding_runs, rounded, rounding_bound = _fleet_search(session, d, left)
        runs += rounding_runs
    candidates = [start] if start is not None else []
    if large and two_phase and starts is not None and rounded is None:
        candidates += [p for p in starts() if _fits(d, p)]  # rule-keeping baselines
    for i, plan in enumerate(candidates if two_phase else []):
        # fix-and-optimize each start under every rule: incumbents of the full model
        run = session.run(
            "start" if i == 0 else f"start {i + 1}",
            time_limit_s=left(),
            max_nodes=HEURISTIC_MAX_NODES,
            fix=plan,
        )
        runs.append(run)
        if run.plan is not None and (seed is None or run.objective > seed.objective):
            seed = run  # an infeasible start is ignored
    if rounded is not None and (seed is None or rounded.objective > seed.objective):
        seed = rounded
    direct: _Run | None = None
    if two_phase and n_plan <= DIRECT_MAX_PLAN_INTEGERS and seed is None:
        # no plan to start from: RENS around the LP relaxation, a small search whose plan
        # lets the whole model prune from its root (HiGHS's own root heuristics may miss it)
        with session.as_lp():
            lp = _regime_lp(session, None, left)
        runs.append(lp)
        if lp.status == Termination.OPTIMAL and lp.x is not None:
            rens = _rens(session, None, lp, left)
            runs.append(rens)
            if rens.plan is not None:
                seed = rens
    if two_phase and n_plan <= DIRECT_MAX_PLAN_INTEGERS:
        # few plan decisions: HiGHS solves the whole model faster than the phases below
        direct = session.run(
            "full model",
            time_limit_s=left(),
            max_nodes=node_budget,
            start=seed.plan if seed is not None else None,
            start_excused=seed.excused if seed is not None else None,
        )
        runs.append(direct)
        if direct.plan is not None and (seed is None or direct.objective > seed.objective):
            seed = direct  # the phases start from its incumbent; its bound stays valid
    first: _Run | None
    if direct is not None and direct.status == Termination.OPTIMAL:
        first = final = direct
    elif rounding_bound is not None and seed is not None:
        # fleet-sized: every regime's LP bounded and a plan rounded from the best one; a root
        # of phase 1 (~1 min on the 50-site fleet) would add a looser bound and a plan that
        # the covenants make worse than this one
        first, final = None, seed
    else:
        first = session.run(
            "without covenants" if two_phase or not covenants else "full model",
            time_limit_s=left(),
            max_nodes=min(node_budget, LARGE_MAX_NODES) if large else node_budget,
            covenants=not two_phase and covenants,
            start=seed.plan if seed is not None else start,
            start_excused=seed.excused if seed is not None else None,
        )
        runs.append(first)
        final = first
        if (
            two_phase
            and first.plan is not None
            and first.status == Termination.OPTIMAL
            and _meets_covenants(d, first.plan, first.excused)
        ):
            pass  # the relaxation's optimum keeps the covenants: optimal for the full model
        elif two_phase:
            best = seed
            regimes = _regimes(session, d)
            if first.plan is not None:
                # fix-and-optimize: phase 1's conversion, racks and leases with the covenants back on
                repair = session.run(
                    "repair",
                    time_limit_s=left(),
                    max_nodes=HEURISTIC_MAX_NODES,
                    fix=first.plan,
                )
                runs.append(repair)
                bound1 = first.bound if first.bound is not None else np.inf

                def within_gap(run: _Run) -> bool:
                    return (
                        max(0.0, bound1 - run.objective) / max(abs(run.objective), 1e-9) <= gap_tol
                    )

                if repair.plan is not None and (best is None or repair.objective > best.objective):
                    best = repair
                if best is not None and within_gap(best):
                    final = best
                if large and best is not None:
                    final = best  # fleet-sized: the best incumbent, the root bound of phase 1
                if final is first:
                    # excuse heuristic (where the big-M model is solved whole): excuse the
                    # scenarios phase 1's plan breaks worst and hold the rest to the covenants, so
                    # the big-M rows become plain rows and the LP is tight
                    excuse = excuse_worst(d, covenant_severity(d, first.plan))
                    heur = session.run(
                        "excuse heuristic",
                        time_limit_s=left(),
                        max_nodes=HEURISTIC_MAX_NODES,
                        start=first.plan,
                        excuse=excuse,
                    )
                    runs.append(heur)
                    if heur.plan is not None and (best is None or heur.objective > best.objective):
                        best = heur
                        if within_gap(heur):
                            final = heur
            if final is first:
                # the full model, one regime of drawn covenant facilities at a time where few
                lp_bound: dict[tuple[bool, ...] | None, float] = {}
                if len(regimes) > 1:
                    # best LP bound first (ties: fewest covenant facilities): the regime most
                    # likely to hold the optimum gives the cutoff that prunes the others at their
                    # root; a regime whose LP is infeasible holds no plan and is skipped, one whose
                    # LP needs more than REGIME_LP_MAX_ITERATIONS is ranked first (bound unknown)
                    for reg in regimes:
                        lp = _regime_lp(session, reg, left)
                        runs.append(lp)
                        if lp.status == Termination.OPTIMAL and lp.objective is not None:
                            lp_bound[reg] = lp.objective
                        elif lp.status != Termination.INFEASIBLE:
                            lp_bound[reg] = np.inf  # unknown: keep it, first
                    regimes = sorted(lp_bound, key=lambda r: -lp_bound[r]) or regimes[:1]
                for i, reg in enumerate(regimes):
                    # after the first regime, only plans that beat the incumbent by part of the gap
                    # are worth finding: a regime whose bound is below that is pruned at its root
                    cutoff = (
                        None
                        if best is None or i == 0
                        else best.objective
                        + CUTOFF_GAP_SHARE * gap_tol * max(abs(best.objective), 1e-9)
                    )
                    if cutoff is not None and lp_bound.get(reg, np.inf) <= cutoff:
                        skipped_bounds.append(lp_bound[reg])  # nothing there beats the cutoff
                        continue
                    run = session.run(
                        _regime_name(reg),
                        time_limit_s=left(),
                        max_nodes=node_budget,
                        regime=reg,
                        start=(best or first).plan,
                        cutoff=cutoff,
                        start_excused=(best or first).excused,
                    )
                    runs.append(run)
                    full_runs.append(run)
                    if run.plan is not None and (best is None or run.objective > best.objective):
                        best = run
                final = best or (full_runs[-1] if full_runs else first)
    if final.plan is None:
        from .diagnose import explain_infeasibility  # noqa: PLC0415

        status = final.status
        if status == Termination.TIME_LIMIT:
            reasons = [
                f"no feasible plan found within the time limit ({limit:.0f} s); raise --time-limit"
            ]
        elif status == Termination.WORK_LIMIT:
            reasons = [f"no feasible plan found within {node_budget} branch-and-bound nodes"]
        elif status == Termination.ERROR and all(r.status == Termination.ERROR for r in runs):
            reasons = ["HiGHS stopped with an error on every run (rerun with --solver-log)"]
        else:
            reasons = (
                explain_infeasibility(d)
                if status in (Termination.INFEASIBLE, Termination.ERROR)
                else []
            )
        raise NoSolutionError(status, reasons)
    # valid upper bounds: phase 1 when it relaxes the covenants, or it is the whole model; the
    # best over the regimes of the full model (an infeasible regime holds no plan); never a
    # restricted run's
    bounds = [r.bound for r in (first, direct) if r is not None and r.bound is not None]
    if rounding_bound is not None:
        bounds.append(rounding_bound)  # the largest regime LP: no plan of any regime beats it
    if full_runs or skipped_bounds:
        bounds.append(max([r.regime_bound() for r in full_runs] + skipped_bounds))
    bound = min(bounds) if bounds else final.objective
    obj = final.objective
    gap = max(0.0, bound - obj) / max(abs(obj), 1e-9)
    # above the gap, only a limit can have stopped the search (a repair run is optimal within
    # its fixed integers, which says nothing of the full model): the wall clock where it
    # stopped any run, else the node budgets
    time_limited = any(r.status == Termination.TIME_LIMIT for r in runs)
    if gap <= gap_tol + GAP_SLACK:
        status = Termination.OPTIMAL
    else:
        status = Termination.TIME_LIMIT if time_limited else Termination.WORK_LIMIT
    rows, cols, nnz = model_size(session.m)
    return SolveResult(
        status=status,
        objective_usd=obj * MONEY,
        bound_usd=bound * MONEY,
        gap=gap,
        build_seconds=session.build_seconds,
        solve_seconds=sum(r.solve_seconds for r in runs),
        transfer_seconds=session.transfer_seconds + sum(r.transfer_seconds for r in runs),
        plan=final.plan,
        rows=rows,
        columns=cols,
        nonzeros=nnz,
        equity_usd=final.equity * MONEY,
        cvar_usd=final.cvar * MONEY,
        excused=final.excused,
        warnings=undeliverable_offer_warnings(d.sc),
        phases=len(runs),
        runs=[r.summary() for r in runs],
        target_gap=gap_tol,
        nodes=sum(r.nodes for r in runs),
        lp_iterations=sum(r.lp_iterations for r in runs),
        time_limited=time_limited,
        cpu_seconds=time.process_time() - c_start,
    )
