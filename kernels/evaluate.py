r"""Out-of-sample evaluation of plans on fresh paths, with the recourse the MILP cannot express.

The paths use the evaluation key tag (:data:`~hashpivot.kernels.philox.TAG_EVALUATE`): the MILP
never saw them. All plans are judged on the same paths (common random numbers), so paired
differences have small standard errors.

Per path and period, with the cash flows of :mod:`~hashpivot.kernels.cashflow` (curtailment is
inside the mining margin; a defaulted tenant's MW re-let at market after the gap):

1. cash ← cash·(1 + i_c·Δ) + OCF + financing of the plan + P·(planned sale)
2. if cash < minimum: sell treasury BTC (above the floor, within the per-period cap) at P;
3. then draw what is left of facilities whose draw window is open (fee deducted); the extra debt
   pays interest and is repaid on the facility's schedule;
4. if cash is still below zero: default — terminal equity 0 and no further cash flows;
5. covenants (DSCR, leverage on the trailing year) tested on the path's own debt from the first
   full year, for facilities with covenants that were drawn (planned or emergency) and are in
   their window. A breach has the consequence ``covenants.on_breach`` chooses:
   ``accelerate``: the breaching facilities' balance falls due at once and they close (no
   further draws, interest or repayments); ``waiver``: a fee of ``waiver_fee`` × their balance
   at each breached test date and their rate raised by ``waiver_step_up_bp`` for the rest of the
   term; either is paid from cash, then by selling treasury BTC above the floor (the per-period
   sale cap yields to a payment that falls due), and a path left below zero defaults;
   ``ignore``: the breach is only counted.

A minimum-cash breach (cash below ``min_cash_usd`` at a period end after recourse, the
default period included) is counted apart from covenant breaches.

Per path: discounted terminal equity W (0 after default), default flag and period, covenant
breach flag (DSCR or leverage in a period the covenants are in force), minimum DSCR, AI share
of operating revenue. Reported per plan: objective E[W] − λ·CVaR_α(−W), mean ± standard error,
CVaR, P(default), P(breach), percentiles over time, and paired differences against other plans.

On a GPU each plan and chunk is one fused kernel (``hp_evaluate`` in ``market.cu``: the time
loop and the sites inside, fp32 factors and fp64 money). Streaming keeps memory bounded: per chunk the coefficient trajectories of the chunk's paths;
across chunks running sums, the worst ⌈(1−α)·M⌉ outcomes of each plan (for CVaR), and the
first :data:`KEEP_PATHS` outcomes (for distribution charts).

Split evaluation: the paths are cut into fixed blocks of :data:`EVAL_BLOCK_PATHS` (set by the
number of paths alone); each block's statistics state (:class:`EvalPartial`) is computed on its
own — here, or as a task on any executor (a local process pool, a Dask cluster) — and the states
are merged in block order, so the statistics are bit-identical for any number of workers.
Per path, :attr:`~hashpivot.kernels.results.PathOutcomes.breach_mask` tells which covenant
(DSCR, leverage), the minimum cash and which facilities breached; the counts are reported with
the rates (:attr:`EvalStats.breach_events`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from hashpivot.scenarios import Scenario

from . import philox
from .backend import Backend, get_backend, path_executor, to_numpy
from .cashflow import CASH_TOL_USD, operating_flows, terminal_value_usd, trailing_sum
from .market import iter_periods, market_params, mining_margin, tenant_default_periods
from .plan import Plan, covenant_windows, debt_terms, schedule
from .results import (
    BREACH_COVENANT,
    BREACH_DSCR,
    BREACH_LEVERAGE,
    BREACH_MIN_CASH,
    FACILITY_BIT0,
    MASK_FACILITIES,
    PathOutcomes,
)
from .stats import ObjectiveAccumulator, ObjectiveEstimate, tail_count

#: Outcomes kept per plan for distribution charts.
KEEP_PATHS = 20_000
#: Path × period × column elements per evaluation chunk (bounds memory).
CHUNK_ELEMENTS = 6_000_000
#: Paths per chunk of the fused GPU evaluation kernel (device memory: a few numbers per path).
GPU_EVAL_CHUNK = 1 << 20
#: Quantiles reported over time.
TIME_QUANTILES = (0.05, 0.50, 0.95)
#: Paths per evaluation block on the CPU: the unit of a split evaluation's work and of its
#: merge order (a multiple of :data:`~hashpivot.kernels.accumulate.BLOCK_PATHS`).
EVAL_BLOCK_PATHS = 1 << 16
#: Paths per evaluation block on a GPU (one chunk of the fused kernel).
GPU_EVAL_BLOCK_PATHS = GPU_EVAL_CHUNK
#: Blocks handed to an executor per worker and batch, at least.
BLOCKS_PER_WORKER = 4
#: Bytes of block states (CVaR tails, mostly) a batch may return at once; a batch has as many
#: blocks as fit (never fewer than :data:`BLOCKS_PER_WORKER` per worker).
BATCH_STATE_BYTES = 1 << 29


@dataclass
class PathCoefficients:
    """Coefficient trajectories of a chunk of paths (path axis first).

    The shapes are logical: :func:`path_coefficients` stores each period's values as one
    contiguous block (time-major memory) and exposes them through transposed views, so consumers
    must not assume C order.
    """

    margin_usd_per_mw: Any  # (n, S, T)
    btc_price_usd: Any  # (n, T)
    power_usd_per_mwh: Any  # (n, R, T)
    lease_x_occupancy: Any  # (n, T)
    gpu_hour_usd: Any  # (n, T)
    tenant_survival: Any  # (n, L, T)
    tenant_relet: Any  # (n, L, T)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def path_coefficients(
    sc: Scenario, key: tuple[int, int], paths: Any, *, xp: ModuleType = np
) -> PathCoefficients:
    """Simulate the coefficient trajectories of ``paths``.

    Each period writes contiguous blocks of time-major buffers (``(T, n, S)`` for the margins);
    the returned arrays are their transposed views with the documented ``(n, …, T)`` shapes.
    """
    mp = market_params(sc)
    n, t_n = paths.shape[0], mp.n_periods
    margin = xp.empty((t_n, n, mp.n_sites))
    btc = xp.empty((t_n, n))
    power = xp.empty((t_n, n, mp.n_regions))
    lxo = xp.empty((t_n, n))
    gpu = xp.empty((t_n, n))
    occ = xp.empty(n)
    for f in iter_periods(mp, key, paths, xp=xp):
        t = f.t
        mining_margin(mp, f, xp=xp, out=margin[t].T)
        xp.exp(f.ln_btc, out=btc[t])
        xp.exp(f.ln_power.T, out=power[t])
        # lease × occupancy = e^{ln lease} / (1 + e^{−u})
        xp.negative(f.occ_logit, out=occ)
        xp.exp(occ, out=occ)
        occ += 1.0
        xp.exp(f.ln_lease, out=lxo[t])
        lxo[t] /= occ
        xp.exp(f.ln_gpu, out=gpu[t])
    first = tenant_default_periods(mp, key, paths, xp=xp)  # (L, n)
    t_idx = xp.arange(t_n)[:, None, None]
    gap = sc.market.ai_lease.releasing_gap_periods
    return PathCoefficients(
        margin_usd_per_mw=margin.transpose(1, 2, 0),
        btc_price_usd=btc.T,
        power_usd_per_mwh=power.transpose(1, 2, 0),
        lease_x_occupancy=lxo.T,
        gpu_hour_usd=gpu.T,
        tenant_survival=(first.T[None] > t_idx).astype(xp.float64).transpose(1, 2, 0),
        tenant_relet=(first.T[None] + gap <= t_idx).astype(xp.float64).transpose(1, 2, 0),
    )


def _row_sum(x: Any, xp: ModuleType) -> Any:
    """Σ over the columns of ``x`` (n, k), added in column order: with the few facility
    columns, k − 1 elementwise adds cost far less than a reduction over a short inner axis
    (for k ≤ 2 the bits are those of ``x.sum(axis=1)``)."""
    if x.shape[1] == 0:
        return xp.zeros(x.shape[0])
    acc = x[:, 0].copy()
    for j in range(1, x.shape[1]):
        acc += x[:, j]
    return acc


def _row_any(x: Any, xp: ModuleType) -> Any:
    """Whether any column of the boolean ``x`` (n, k) is set, column by column."""
    if x.shape[1] == 0:
        return xp.zeros(x.shape[0], dtype=bool)
    acc = x[:, 0].copy()
    for j in range(1, x.shape[1]):
        acc |= x[:, j]
    return acc


def simulate_plan(
    sc: Scenario,
    plan: Plan,
    co: PathCoefficients,
    *,
    recourse: bool = True,
    xp: ModuleType = np,
    keep: int | None = None,
) -> PathOutcomes:
    """Cash flows of ``plan`` on each path with recourse (see the module docstring)."""
    h = sc.horizon
    dt, ppy, t_n = h.dt_years, h.periods_per_year, h.n_periods
    sch = schedule(sc, plan)
    n = co.btc_price_usd.shape[0]
    # operating cash flow per path and period (no recourse affects it)
    op = operating_flows(sc, sch, co.as_dict(), xp=xp)
    mining, ai_revenue, ai_noi, ocf = op.mining_usd, op.ai_revenue_usd, op.ai_noi_usd, op.ocf_usd
    gross_mining = op.gross_mining_usd
    denom = xp.maximum(ai_revenue, 0.0) + xp.maximum(gross_mining, 0.0)
    ai_share = xp.where(
        denom > 0, xp.maximum(ai_revenue, 0.0) / xp.where(denom > 0, denom, 1.0), 0.0
    )
    # financing state per path
    facilities = sc.debt_facilities
    n_f = len(facilities)
    allowed, repay = debt_terms(sc)
    rates = np.array([f.rate_per_year * dt for f in facilities])
    fees = np.array([f.upfront_fee_share for f in facilities])
    sizes = np.array([f.size_usd for f in facilities])
    amortising = np.array([f.repayment == "linear" for f in facilities], dtype=float)
    dil_rates = np.array([f.dilution_per_year * dt for f in facilities])
    growth = 1.0 + h.cash_interest_rate * dt
    tr = sc.treasury
    cov = sc.covenants
    btc = co.btc_price_usd
    cash = xp.full(n, float(tr.cash_usd))
    held = xp.full(n, float(tr.btc_held))
    balance = xp.zeros((n, n_f))
    drawn = xp.zeros((n, n_f))
    alive = xp.ones(n, dtype=bool)
    default_period = xp.full(n, t_n, dtype=xp.int64)
    cash_path = xp.zeros((n, t_n))
    debt_path = xp.zeros((n, t_n))
    sched = xp.zeros((n, t_n))
    extra_btc = xp.zeros(n)
    extra_draw = xp.zeros(n)
    dilution = xp.zeros(n)  # DIL of kernels/cashflow.py on the path's own balances
    capex = sch.capex_usd - sch.salvage_usd
    windows = xp.asarray(covenant_windows(sc)) if n_f else xp.zeros((0, t_n), dtype=bool)
    planned_used = xp.asarray(plan.draws_usd.sum(axis=1) > 0) if n_f else xp.zeros(0, dtype=bool)
    emergency_used = xp.zeros((n, n_f), dtype=bool)
    # covenants on the path's own debt, tested in the loop so that a breach has its consequence
    rule = cov.on_breach if recourse else "ignore"  # a breach's consequence is recourse too
    ocf_trail = trailing_sum(ocf, ppy, xp)
    rate = xp.asarray(rates)[None] * xp.ones((n, 1))  # (n, F), stepped up by waivers
    step_up = cov.waiver_step_up_bp * 1e-4 * dt
    open_ = xp.ones((n, n_f), dtype=bool)  # not accelerated
    breach = xp.zeros(n, dtype=bool)
    dscr_breach = xp.zeros(n, dtype=bool)
    lev_breach = xp.zeros(n, dtype=bool)
    facility_breach = xp.zeros((n, n_f), dtype=bool)  # live and tested at a breached test
    cash_breach = xp.zeros(n, dtype=bool)
    ratio_min = xp.full(n, xp.inf)
    for t in range(t_n):
        was_alive = alive
        planned = xp.asarray(plan.draws_usd[:, t])[None, :] * open_ if n_f else xp.zeros((n, 0))
        interest = balance * rate
        dilution = dilution * growth + _row_sum(balance * xp.asarray(dil_rates)[None], xp)
        drawn = drawn + planned
        principal = drawn * xp.asarray(repay[:, t])[None] if n_f else xp.zeros((n, 0))
        balance = balance + planned - principal
        service = _row_sum(interest + principal, xp)
        sched[:, t] = (
            _row_sum(interest + principal * xp.asarray(amortising)[None], xp) if n_f else 0.0
        )
        inflow = _row_sum(planned * (1.0 - xp.asarray(fees))[None], xp) if n_f else 0.0
        sold = float(plan.btc_sold[t])
        held = held - sold
        cash = cash * growth + ocf[:, t] + inflow - service - capex[t] + btc[:, t] * sold
        if recourse:
            short = alive & (cash < cov.min_cash_usd)
            if short.any():
                room = xp.clip(
                    xp.minimum(held - tr.btc_floor, tr.max_btc_sale_per_period - sold), 0.0, None
                )
                need = xp.where(short, (cov.min_cash_usd - cash) / btc[:, t], 0.0)
                sell = xp.minimum(need, room)
                held = held - sell
                cash = cash + sell * btc[:, t]
                extra_btc = extra_btc + sell
                for f in range(n_f):
                    if not allowed[f, t]:
                        continue
                    short = alive & (cash < cov.min_cash_usd) & open_[:, f]
                    left = xp.clip(sizes[f] - drawn[:, f], 0.0, None)
                    want = xp.where(short, (cov.min_cash_usd - cash) / (1.0 - fees[f]), 0.0)
                    take = xp.minimum(want, left)
                    drawn[:, f] = drawn[:, f] + take
                    balance[:, f] = balance[:, f] + take
                    cash = cash + take * (1.0 - fees[f])
                    extra_draw = extra_draw + take
                    emergency_used[:, f] |= take > 0
            newly = alive & (cash < -CASH_TOL_USD)
            default_period = xp.where(newly, t, default_period)
            alive = alive & ~newly
        debt_path[:, t] = _row_sum(balance, xp) if n_f else 0.0
        if n_f and t >= ppy - 1:
            live = (planned_used[None, :] | emergency_used) & windows[None, :, t] & open_
            tested = _row_any(live, xp) & alive
            w = min(t + 1, ppy)
            ds_trail = sched[:, t - w + 1 : t + 1].sum(axis=1)
            bad_dscr = tested & (ocf_trail[:, t] < cov.min_dscr * ds_trail - CASH_TOL_USD)
            bad_lev = tested & (
                debt_path[:, t] > cov.max_leverage * ocf_trail[:, t] * (ppy / w) + CASH_TOL_USD
            )
            bad = bad_dscr | bad_lev
            dscr_breach = dscr_breach | bad_dscr
            lev_breach = lev_breach | bad_lev
            facility_breach = facility_breach | (live & bad[:, None])
            ratio_min = xp.where(
                tested & (ds_trail > 0),
                xp.minimum(ratio_min, ocf_trail[:, t] / xp.where(ds_trail > 0, ds_trail, 1.0)),
                ratio_min,
            )
            breach = breach | bad
            if rule != "ignore" and bool(bad.any()):
                hit = live & bad[:, None]
                due = _row_sum(balance * hit, xp)
                if rule == "accelerate":  # the balance falls due; the facility is closed
                    cash = cash - due
                    balance = xp.where(hit, 0.0, balance)
                    drawn = xp.where(hit, 0.0, drawn)
                    open_ = open_ & ~hit
                else:  # waiver: a fee on the balance and a rate step-up for the rest of the term
                    cash = cash - cov.waiver_fee * due
                    rate = xp.where(hit, xp.asarray(rates)[None] + step_up, rate)
                # pay from treasury BTC above the floor (the per-period cap yields to a
                # payment that falls due), else default
                short = bad & (cash < cov.min_cash_usd)
                room = xp.clip(held - tr.btc_floor, 0.0, None)
                sell = xp.minimum(xp.where(short, (cov.min_cash_usd - cash) / btc[:, t], 0.0), room)
                held = held - sell
                cash = cash + sell * btc[:, t]
                extra_btc = extra_btc + sell
                newly = alive & (cash < -CASH_TOL_USD)
                default_period = xp.where(newly, t, default_period)
                alive = alive & ~newly
                debt_path[:, t] = _row_sum(balance, xp)
        cash_breach = cash_breach | (was_alive & (cash < cov.min_cash_usd - CASH_TOL_USD))
        cash_path[:, t] = xp.where(alive, cash, 0.0)
    salvage_end = float(
        (np.array([s.asic_salvage_usd_per_mw for s in sc.sites]) * sch.asic_mw[:, -1]).sum()
    )
    tv = terminal_value_usd(
        sc,
        sch,
        mining[:, -1],
        ai_noi[:, -1],
        co.margin_usd_per_mw[:, :, -1],
        co.lease_x_occupancy[:, -1],
        xp=xp,
    )
    terminal = (
        cash
        + btc[:, -1] * held
        + tv
        + salvage_end
        - (_row_sum(balance, xp) if n_f else 0.0)
        - dilution
    )
    equity = xp.where(alive, terminal, 0.0) * (1.0 + h.discount_rate) ** (-t_n * dt)
    mask = (
        dscr_breach.astype(xp.int64) * BREACH_DSCR
        + lev_breach.astype(xp.int64) * BREACH_LEVERAGE
        + cash_breach.astype(xp.int64) * BREACH_MIN_CASH
    )
    for f in range(min(n_f, MASK_FACILITIES)):
        mask = mask + facility_breach[:, f].astype(xp.int64) * (1 << (FACILITY_BIT0 + f))
    return PathOutcomes(
        equity_usd=equity,
        default_period=default_period,
        breach=breach,
        min_dscr=ratio_min,
        ai_share_sum=ai_share.sum(axis=0),
        debt_sum_usd=debt_path.sum(axis=0),
        cash_usd=cash_path if keep is None else cash_path[:keep],
        emergency_btc=extra_btc,
        emergency_draw_usd=extra_draw,
        min_cash_breach=cash_breach,
        breach_mask=mask,
    )


# --------------------------------------------------------------------------- breach events
#: Keys of :attr:`EvalStats.breach_events`: ``any`` (a covenant or minimum-cash breach: what the
#: MILP's chance constraint bounds), ``covenant`` (DSCR or leverage), then each kind alone.
BREACH_EVENT_KEYS = ("any", "covenant", "dscr", "leverage", "min_cash")
#: Keys that need the per-covenant split of the breach mask.
SPLIT_EVENT_KEYS = ("dscr", "leverage")


def outcome_breach_mask(o: PathOutcomes) -> tuple[np.ndarray, bool]:
    """The breach mask of ``o`` on the host and whether it splits the covenants.

    Outcomes without a mask (the fused GPU kernel reports only ``breach`` and
    ``min_cash_breach``; the CUDA side adds the per-covenant and per-facility bits) get one with
    both covenant bits on a covenant breach and the minimum-cash bit: ``any``, ``covenant`` and
    ``min_cash`` counts are exact, the DSCR/leverage and facility split is unknown (``False``).
    """
    if o.breach_mask is not None:
        return to_numpy(o.breach_mask).astype(np.int64, copy=False), True
    mask = to_numpy(o.breach).astype(np.int64) * BREACH_COVENANT
    if o.min_cash_breach is not None:
        mask = mask + to_numpy(o.min_cash_breach).astype(np.int64) * BREACH_MIN_CASH
    return mask, False


def breach_events(
    mask: np.ndarray, facility_names: list[str] | tuple[str, ...]
) -> tuple[dict[str, int], dict[str, int]]:
    """Paths with each kind of breach event (:data:`BREACH_EVENT_KEYS`) and, per facility, paths
    on which it was live and tested at a breached covenant test.

    Parameters
    ----------
    mask
        Breach masks of paths, (n,) int (bits of :mod:`~hashpivot.kernels.results`).
    facility_names
        The scenario's facility names, in order (those past :data:`MASK_FACILITIES` have no bit
        and no count).
    """
    mask = np.asarray(mask)
    if FACILITY_BIT0 + min(len(facility_names), MASK_FACILITIES) > 8 * mask.itemsize - 1:
        mask = mask.astype(np.int64)  # a 32-bit mask (the GPU's) cannot hold these bits
    low = (1 << FACILITY_BIT0) - 1  # the covenant and minimum-cash bits
    paths = np.bincount((mask & low).ravel(), minlength=low + 1)  # paths per combination
    bits = np.arange(low + 1)

    def having(bit: int) -> int:
        return int(paths[(bits & bit) != 0].sum())

    events = {
        "any": having(BREACH_COVENANT | BREACH_MIN_CASH),
        "covenant": having(BREACH_COVENANT),
        "dscr": having(BREACH_DSCR),
        "leverage": having(BREACH_LEVERAGE),
        "min_cash": having(BREACH_MIN_CASH),
    }
    facilities = {
        name: int(np.count_nonzero(mask & (1 << (FACILITY_BIT0 + f))))
        for f, name in enumerate(facility_names[:MASK_FACILITIES])
    }
    return events, facilities


# --------------------------------------------------------------------------- statistics
@dataclass
class EvalStats:
    """Out-of-sample statistics of one plan (DESIGN.md §6)."""

    objective_usd: float
    mean_equity_usd: float
    stderr_usd: float
    cvar_usd: float
    p_default: float
    p_breach: float
    equity_sample_usd: np.ndarray = field(repr=False)
    cash_quantiles_usd: np.ndarray = field(repr=False)  # (3, T)
    debt_mean_usd: np.ndarray = field(repr=False)  # (T,)
    ai_share_mean: np.ndarray = field(repr=False)  # (T,)
    min_dscr_median: float = math.inf
    emergency_btc_mean: float = 0.0
    emergency_draw_mean_usd: float = 0.0
    p_min_cash_breach: float = 0.0
    """Share of paths whose cash ends a period below the minimum after recourse (alive)."""
    objective_stderr_usd: float = math.nan
    """Standard error of the objective, CVaR term included (influence function) [$]."""
    paths: int = 0
    """Evaluation paths (the trials of every event count below)."""
    default_events: int = 0
    """Paths that defaulted."""
    breach_events: dict[str, int] = field(default_factory=dict)
    """Paths with each kind of breach (:data:`BREACH_EVENT_KEYS`); ``dscr`` and ``leverage``
    are absent where the backend does not split covenants (see :func:`outcome_breach_mask`)."""
    facility_breach_events: dict[str, int] = field(default_factory=dict)
    """Per facility name, paths on which it was live and tested at a breached covenant test
    (empty where the backend does not split)."""

    def to_json(self) -> dict[str, Any]:
        """The STATS object of ``summary.json``: rates, and the event counts behind them."""
        return {
            "objective_usd": self.objective_usd,
            "mean_equity_usd": self.mean_equity_usd,
            "stderr_usd": self.stderr_usd,
            "objective_stderr_usd": self.objective_stderr_usd,
            "cvar_usd": self.cvar_usd,
            "p_default": self.p_default,
            "p_breach": self.p_breach,
            "p_min_cash_breach": self.p_min_cash_breach,
            "paths": self.paths,
            "default_events": self.default_events,
            "breach_events": dict(self.breach_events),
            "facility_breach_events": dict(self.facility_breach_events),
        }


@dataclass
class Evaluation:
    """Statistics of every plan and the paired differences between them."""

    stats: dict[str, EvalStats]
    paired: dict[tuple[str, str], tuple[float, float]]  # (a, b) → (J_a − J_b, its s.e.) [$]
    paths: int
    seed: int
    backend: str
    device: str
    seconds: float
    objectives: ObjectiveEstimate | None = None
    """Every plan's objective with paired standard errors for any two plans (``diff``)."""


class _Accumulator:
    """Per-plan counts, samples and sums over time; the objective, its mean, CVaR and standard
    errors come from the plans' shared :class:`~hashpivot.kernels.stats.ObjectiveAccumulator`.

    ``keep``: outcomes to keep for charts (the first ones added; a block that starts at path
    ``a`` keeps ``KEEP_PATHS − a``, so merged blocks keep the first :data:`KEEP_PATHS`)."""

    def __init__(self, n_t: int, facility_names: list[str], keep: int = KEEP_PATHS) -> None:
        self.keep = max(0, keep)
        self.facility_names = list(facility_names)
        self.defaults = self.breaches = self.cash_breaches = 0
        self.events = dict.fromkeys(BREACH_EVENT_KEYS, 0)
        self.facility_events = dict.fromkeys(self.facility_names[:MASK_FACILITIES], 0)
        self.split = True  # every outcome added had a per-covenant breach mask
        self.sample: list[np.ndarray] = []
        self.kept = 0
        self.cash_sample: list[np.ndarray] = []
        self.debt_sum = np.zeros(n_t)
        self.ai_sum = np.zeros(n_t)
        self.dscr: list[np.ndarray] = []
        self.extra_btc = self.extra_draw = 0.0

    @property
    def room(self) -> int:
        """Outcomes still to keep."""
        return max(0, self.keep - self.kept)

    def add(self, o: PathOutcomes, n_t: int) -> None:
        w = to_numpy(o.equity_usd)
        self.defaults += int((to_numpy(o.default_period) < n_t).sum())
        self.breaches += int(to_numpy(o.breach).sum())
        if o.min_cash_breach is not None:
            self.cash_breaches += int(to_numpy(o.min_cash_breach).sum())
        mask, split = outcome_breach_mask(o)
        self._count(*breach_events(mask, self.facility_names), split)
        take = min(len(w), self.room)
        if take:
            self.sample.append(w[:take])
            self.cash_sample.append(to_numpy(o.cash_usd)[:take])
            self.dscr.append(to_numpy(o.min_dscr[:take]))
            self.kept += take
        self.debt_sum += to_numpy(o.debt_sum_usd)
        self.ai_sum += to_numpy(o.ai_share_sum)
        self.extra_btc += float(to_numpy(o.emergency_btc).sum())
        self.extra_draw += float(to_numpy(o.emergency_draw_usd).sum())

    def _count(self, events: dict[str, int], facilities: dict[str, int], split: bool) -> None:
        for k, v in events.items():
            self.events[k] += v
        for k, v in facilities.items():
            self.facility_events[k] += v
        self.split = self.split and split

    def merge(self, other: _Accumulator) -> None:
        """Add the state of the next range of paths (sums: this total + the other's)."""
        self.defaults += other.defaults
        self.breaches += other.breaches
        self.cash_breaches += other.cash_breaches
        self._count(other.events, other.facility_events, other.split)
        for w, cash, dscr in zip(other.sample, other.cash_sample, other.dscr, strict=True):
            take = min(len(w), self.room)
            if not take:
                break
            self.sample.append(w[:take])
            self.cash_sample.append(cash[:take])
            self.dscr.append(dscr[:take])
            self.kept += take
        self.debt_sum += other.debt_sum
        self.ai_sum += other.ai_sum
        self.extra_btc += other.extra_btc
        self.extra_draw += other.extra_draw

    def stats(self, paths: int, est: ObjectiveEstimate, i: int) -> EvalStats:
        cash = np.concatenate(self.cash_sample)
        dscr = np.concatenate(self.dscr)
        events = dict(self.events)
        if not self.split:
            for k in SPLIT_EVENT_KEYS:
                del events[k]
        return EvalStats(
            objective_usd=float(est.objective_usd[i]),
            mean_equity_usd=float(est.mean_usd[i]),
            stderr_usd=float(est.mean_stderr_usd[i]),
            cvar_usd=float(est.cvar_usd[i]),
            objective_stderr_usd=float(est.stderr_usd[i]),
            p_default=self.defaults / paths,
            p_breach=self.breaches / paths,
            equity_sample_usd=np.concatenate(self.sample),
            cash_quantiles_usd=np.quantile(cash, TIME_QUANTILES, axis=0),
            debt_mean_usd=self.debt_sum / paths,
            ai_share_mean=self.ai_sum / paths,
            min_dscr_median=float(np.median(dscr)),
            emergency_btc_mean=self.extra_btc / paths,
            emergency_draw_mean_usd=self.extra_draw / paths,
            p_min_cash_breach=self.cash_breaches / paths,
            paths=paths,
            default_events=self.defaults,
            breach_events=events,
            facility_breach_events=dict(self.facility_events) if self.split else {},
        )


# --------------------------------------------------------------------------- split evaluation
def eval_blocks(paths: int, block_paths: int) -> list[tuple[int, int]]:
    """Path ranges ``[a, b)`` of the evaluation blocks: fixed by ``paths`` and ``block_paths``
    alone, never by the number of workers."""
    if block_paths < 1:
        raise ValueError(f"block_paths must be >= 1, got {block_paths}")
    return [(a, min(a + block_paths, paths)) for a in range(0, paths, block_paths)]


@dataclass
class EvalPartial:
    """The statistics state of plans on the paths ``start .. stop − 1`` (picklable): per-plan
    :class:`_Accumulator` s and the shared objective accumulator."""

    start: int
    stop: int
    accumulators: dict[str, _Accumulator]
    objectives: ObjectiveAccumulator

    @classmethod
    def empty(cls, sc: Scenario, names: list[str], paths: int, start: int = 0) -> EvalPartial:
        """No paths yet, from path ``start``; ``paths`` is the whole evaluation's count."""
        n_t = sc.horizon.n_periods
        fac = [f.name for f in sc.debt_facilities]
        keep = KEEP_PATHS - min(start, KEEP_PATHS)
        return cls(
            start,
            start,
            {name: _Accumulator(n_t, fac, keep) for name in names},
            ObjectiveAccumulator(names, sc.risk.cvar_alpha, sc.risk.cvar_weight, paths),
        )

    def merge(self, other: EvalPartial) -> None:
        """Append the next range (``other.start == self.stop``); merging the same ranges in
        the same order gives bit-identical statistics wherever each range was computed."""
        if other.start != self.stop:
            raise ValueError(f"blocks merge in order: expected a block from path {self.stop}")
        for name, acc in self.accumulators.items():
            acc.merge(other.accumulators[name])
        self.objectives.merge(other.objectives)
        self.stop = other.stop


@dataclass(frozen=True)
class EvalBlock:
    """One block of an evaluation: everything a worker needs (picklable)."""

    scenario: Scenario
    plans: dict[str, Plan]
    seed: int
    start: int
    stop: int
    paths: int  # the whole evaluation's paths (the CVaR tail size)
    backend: str  # a resolved backend name: numpy or cupy
    chunk_paths: int


def evaluate_block(task: EvalBlock) -> EvalPartial:
    """Evaluate the plans on one block of paths (a worker's task)."""
    be = get_backend(task.backend, notify=False)
    t = task
    return _evaluate_range(t.scenario, t.plans, t.seed, t.start, t.stop, t.paths, be, t.chunk_paths)


def _evaluate_range(
    sc: Scenario,
    plans: dict[str, Plan],
    seed: int,
    start: int,
    stop: int,
    paths: int,
    be: Backend,
    chunk: int,
    progress: Callable[[int], None] | None = None,
) -> EvalPartial:
    """Paths ``start .. stop − 1`` in chunks of ``chunk``, from the block's first path."""
    xp = be.xp
    key = philox.seed_key(seed, philox.TAG_EVALUATE)
    n_t = sc.horizon.n_periods
    names = list(plans)
    part = EvalPartial.empty(sc, names, paths, start)
    accs = part.accumulators

    def take(outs: dict[str, PathOutcomes], first: int, n: int) -> None:
        for name, o in outs.items():
            accs[name].add(o, n_t)
        part.objectives.add(
            np.stack([to_numpy(outs[nm].equity_usd) for nm in names], axis=1), first
        )
        if progress:
            progress(first + n)

    if be.is_gpu:
        _evaluate_range_gpu(sc, plans, key, start, stop, chunk, accs, take)
    else:
        done = start
        while done < stop:
            n = min(chunk, stop - done)
            idx = xp.arange(done, done + n, dtype=xp.int64)
            co = path_coefficients(sc, key, idx, xp=xp)
            take(
                {
                    name: simulate_plan(sc, plan, co, xp=xp, keep=accs[name].room)
                    for name, plan in plans.items()
                },
                done,
                n,
            )
            done += n
    part.stop = stop
    return part


def _evaluate_range_gpu(
    sc: Scenario,
    plans: dict[str, Plan],
    key: tuple[int, int],
    start: int,
    stop: int,
    chunk: int,
    accs: dict[str, _Accumulator],
    take: Callable[[dict[str, PathOutcomes], int, int], None],
) -> None:  # pragma: no cover - needs a GPU
    """One fused kernel per chunk (every plan on one market pass per path), pipelined: chunk
    i + 1 runs on the device while the host adds chunk i to the statistics, in path order."""
    from .cuda import collect_chunk_gpu, device_plans, launch_chunk_gpu  # noqa: PLC0415

    packed = device_plans(sc, plans)
    pending: tuple[Any, int, int] | None = None
    done = start
    while done < stop or pending is not None:
        nxt = None
        if done < stop:
            n = min(chunk, stop - done)
            # the pending chunk's paths come first: they fill the kept samples before these
            ahead = pending[2] if pending is not None else 0
            keep = {name: max(0, accs[name].room - ahead) for name in plans}
            nxt = (launch_chunk_gpu(packed, key, done, n, keep), done, n)
            done += n
        if pending is not None:
            take(collect_chunk_gpu(packed, pending[0]), pending[1], pending[2])
        pending = nxt


def evaluate_plans(
    sc: Scenario,
    plans: dict[str, Plan],
    paths: int,
    seed: int,
    *,
    backend: str | Backend | None = None,
    chunk_paths: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Any = None,
    block_paths: int | None = None,
) -> Evaluation:
    """Judge ``plans`` on the same ``paths`` fresh paths (common random numbers).

    The paths are split into fixed blocks (:func:`eval_blocks`); each block's statistics state
    is computed on its own and the states are merged in block order, in this process or on the
    workers of ``executor`` alike — so the statistics are bit-identical for any number of
    workers (and, but for the per-period sums of debt and AI share, for any ``chunk_paths``).

    Parameters
    ----------
    sc
        The scenario.
    plans
        Plans by name; the first is the one compared with the others in ``paired``.
    paths, seed
        Number of evaluation paths and their seed (keyed apart from the simulation's).
    backend
        Array backend.
    chunk_paths
        Paths per chunk inside a block (default: from the fleet size).
    progress
        Called with (paths done, paths total): after each chunk here, after each batch of
        blocks with an executor (a batch: as many blocks as :data:`BATCH_STATE_BYTES` holds).
    executor
        Any object with ``map(fn, items, **resources)`` returning results in order (the
        executors of :mod:`hashpivot.optimizer.executor`); ``None``: every block here. On a GPU
        backend the tasks ask for the resource ``GPU=1`` (Dask routes them to GPU workers).
    block_paths
        Paths per block (default :data:`EVAL_BLOCK_PATHS`, :data:`GPU_EVAL_BLOCK_PATHS` on a GPU).
    """
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    executor = path_executor(be, executor)
    n_t = sc.horizon.n_periods
    width = n_t * (len(sc.sites) + len(sc.market.power_regions) + 4 + 2 * len(sc.lease_offers))
    default_chunk = GPU_EVAL_CHUNK if be.is_gpu else max(256, CHUNK_ELEMENTS // max(width, 1))
    chunk = int(chunk_paths or default_chunk)
    block = int(block_paths or (GPU_EVAL_BLOCK_PATHS if be.is_gpu else EVAL_BLOCK_PATHS))
    ranges = eval_blocks(paths, block)
    names = list(plans)
    total = EvalPartial.empty(sc, names, paths)
    start = time.perf_counter()
    if executor is None:
        report = (lambda d: progress(d, paths)) if progress else None
        for a, b in ranges:
            total.merge(_evaluate_range(sc, plans, seed, a, b, paths, be, chunk, report))
    else:
        resources = {"GPU": 1} if be.is_gpu else {}
        workers = max(1, int(getattr(executor, "workers", 1) or 1))
        # per block: each plan's tail rows of every plan's W, and the sums over time
        tail = min(tail_count(sc.risk.cvar_alpha, paths), block)
        state = 8 * len(names) * (len(names) * tail + 2 * n_t) + 1
        step = max(workers * BLOCKS_PER_WORKER, BATCH_STATE_BYTES // state)
        for i in range(0, len(ranges), step):
            tasks = [
                EvalBlock(sc, plans, seed, a, b, paths, be.name, chunk)
                for a, b in ranges[i : i + step]
            ]
            for part in executor.map(evaluate_block, tasks, **resources):
                total.merge(part)
            if progress:
                progress(total.stop, paths)
    # objectives with their CVaR term on common paths: paired standard errors by the influence
    # function (kernels/stats.py), not the mean-equity difference's alone
    est = total.objectives.result()
    accs = total.accumulators
    stats = {name: accs[name].stats(paths, est, i) for i, name in enumerate(names)}
    paired = {}
    for b in names[1:]:
        # objective difference (mean difference less λ times the CVaR difference) and its
        # standard error with the CVaR term
        diff = stats[names[0]].objective_usd - stats[b].objective_usd
        paired[(names[0], b)] = (diff, est.diff(names[0], b)[1])
    return Evaluation(
        stats, paired, paths, seed, be.name, be.device, time.perf_counter() - start, est
    )
