"""CuPy side of the fused market kernels (``market.cu``): packing, launching, chunking.

The kernel source is plain CUDA C++ that also compiles on the CPU (``HP_HOST_EMULATION``).
Parameters travel in the kernels' constant memory (:class:`MarketConstants`: float factor
parameters, int sizes and offsets, a few doubles; :class:`PlanPack`: the evaluation's
scenario-level doubles and ints) and, for the plans, in one float64 array with a row per plan
and the plans' ASIC MW as float32 (:func:`pack_plans`). Per-thread state of run-time size lives
in dynamic shared memory (:func:`simulate_smem_bytes`, :func:`evaluate_smem_bytes`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from .accumulate import HIST_BINS, HIST_HALF_WIDTH, LogHistograms, OrderedSums, pairwise_row_sum
from .cashflow import CASH_TOL_USD, remaining_convertible_mw
from .factors import factor_values_from_logs, feature_groups, start_logs
from .market import MAX_JUMPS, MarketParams, margin_log_bounds, market_params
from .nvrtc import NVRTC_OPTIONS, kernel_source
from .plan import covenant_windows, debt_terms, lease_terms, schedule
from .results import PathOutcomes

#: Threads per block of the path kernels (HP_THREADS in market.cu).
THREADS_PER_BLOCK = 128
#: Threads of a warp.
WARP = 32
#: Bounds of the paths per chunk on a GPU.
GPU_CHUNK_MIN, GPU_CHUNK_MAX = 1 << 14, 1 << 22
#: Share of free device memory a chunk may use.
GPU_MEMORY_SHARE = 0.5
#: Sizes of the constant arrays hp_cf (float), hp_ci (int), hp_cd (double), hp_ce (int) and
#: hp_ced (double) of market.cu.
CF_SIZE, CI_SIZE, CD_SIZE, CE_SIZE, CED_SIZE = 12288, 2048, 128, 64, 256
#: Partial-sum rows (warps) of ``hp_simulate``, at most, and the device memory they may take:
#: 8192 warps are about two waves of 8 resident blocks of 4 warps on every SM of an H100 (132
#: SMs) or an A100 (108), whatever the device (the sums' order must not depend on it).
SIM_PARTIAL_WARPS, SIM_PARTIAL_BYTES = 8192, 1 << 29
#: Device memory of ``hp_evaluate``'s per-path scratch (flows of every plan) per launch.
EVAL_SCRATCH_BYTES = 1 << 30
#: Paths per ``hp_evaluate`` launch, at least (≥ the kept cash paths of evaluate.py).
EVAL_LAUNCH_MIN = 1 << 15
#: Dynamic shared memory a block may use without opting in [bytes].
SMEM_DEFAULT_BYTES = 48 * 1024
#: Staging tile of ``hp_simulate``: a warp's 32 rows of HP_TILE_ROW floats.
TILE_ROW = 33

# Slot names of market.cu, in order.
P_SLOTS = [
    "ln_p0",
    "btc_drift_dt",
    "btc_vol_sqdt",
    "jump_lambda_dt",
    "jump_mean",
    "jump_std",
    "btc_mean_return",
    "ln_h0",
    "hash_drift_dt",
    "hash_vol_sqdt",
    "hash_beta",
    "halving_step",
    "hash_down",
    "hash_up",
    "hash_gap0",
    "ln_lease0",
    "lease_drift_dt",
    "lease_a",
    "lease_sd",
    "occ_mean_logit",
    "occ_u0",
    "occ_a",
    "occ_sd",
    "ln_gpu0",
    "gpu_drift_dt",
    "gpu_vol_sqdt",
    "hist_width",
    "margin_ln_lo",
    "margin_ln_hi",
]
#: hp_ci: sizes, offsets of the float arrays in hp_cf, of the double arrays in hp_cd, the
#: per-thread float slots in shared memory (M_*), offsets of the int arrays in hp_ci.
I_SIZES = ["T", "R", "S", "lag", "nf", "nn", "F", "NB", "W", "ngroups", "nfeat_cols"]
I_OFFSETS = [
    "hpconst",
    "halv",
    "leasevar",
    "ptheta",
    "px0",
    "pa",
    "psd",
    "pintra",
    "chol",
    "slnrev",
    "shu",
    "sshare",
    "sfixed",
    "sresale",
    "histlo",
    "groupw",
    "lnbe",
]
D_OFFSETS = ["shift", "poisson"]
M_SLOTS = ["xpow", "past", "gap", "z", "floats"]
I_TAIL = ["site_region", "groups"]
MAX_REGIONS = 32


@dataclass(frozen=True)
class MarketConstants:
    """Constant memory of the market kernels: ``hp_cf`` (float32), ``hp_ci`` (int32),
    ``hp_cd`` (float64); ``floats_per_thread`` of shared memory hold a path's state."""

    cf: np.ndarray
    ci: np.ndarray
    cd: np.ndarray
    floats_per_thread: int


def poisson_cdf(lam: float) -> np.ndarray:
    """CDF of Poisson(λ) at 0..MAX_JUMPS−1, as :func:`~hashpivot.kernels.market.poisson_from_uniform`."""
    out = np.empty(MAX_JUMPS)
    pmf = np.exp(-lam)
    cdf = pmf
    for k in range(MAX_JUMPS):
        out[k] = cdf
        pmf *= lam / (k + 1)
        cdf += pmf
    return out


def _fit(values: np.ndarray, size: int, dtype: Any, what: str) -> np.ndarray:
    """``values`` padded with zeros to a constant array of ``size``."""
    if values.size > size:
        raise ValueError(
            f"the GPU kernel's {what} hold {size} values, the scenario needs {values.size}"
        )
    out = np.zeros(size, dtype=dtype)
    out[: values.size] = values
    return out


def pack_params(mp: MarketParams, shift: np.ndarray, groups: np.ndarray) -> MarketConstants:
    """The constant memory of the market kernels for ``mp``."""
    if mp.n_regions > MAX_REGIONS:
        raise ValueError(f"the GPU kernel supports up to {MAX_REGIONS} power regions")
    scalars = {
        "ln_p0": mp.ln_p0,
        "btc_drift_dt": mp.btc_drift_dt,
        "btc_vol_sqdt": mp.btc_vol_sqdt,
        "jump_lambda_dt": mp.jump_lambda_dt,
        "jump_mean": mp.jump_mean,
        "jump_std": mp.jump_std,
        "btc_mean_return": mp.btc_mean_return,
        "ln_h0": mp.ln_h0,
        "hash_drift_dt": mp.hash_drift_dt,
        "hash_vol_sqdt": mp.hash_vol_sqdt,
        "hash_beta": mp.hash_beta,
        "halving_step": mp.halving_step,
        "hash_down": mp.hash_down,
        "hash_up": mp.hash_up,
        "hash_gap0": mp.hash_gap0,
        "ln_lease0": mp.ln_lease0,
        "lease_drift_dt": mp.lease_drift * mp.dt_years,
        "lease_a": mp.lease_a,
        "lease_sd": mp.lease_sd,
        "occ_mean_logit": mp.occ_mean_logit,
        "occ_u0": mp.occ_u0,
        "occ_a": mp.occ_a,
        "occ_sd": mp.occ_sd,
        "ln_gpu0": mp.ln_gpu0,
        "gpu_drift_dt": mp.gpu_drift_dt,
        "gpu_vol_sqdt": mp.gpu_vol_sqdt,
        "hist_width": 2.0 * HIST_HALF_WIDTH / HIST_BINS,
    }
    # clamp of ln hashprice and ln power in hp_margin, as the NumPy kernel (rounded to float32
    # by the packing, as mining_margin rounds them)
    scalars["margin_ln_lo"], scalars["margin_ln_hi"] = margin_log_bounds(mp)
    per_group = np.bincount(groups)
    floats = {
        "hpconst": np.log(mp.blocks_per_day * (mp.subsidy_btc + mp.fees_btc) / 1000.0),
        "halv": mp.halving_in_period.astype(np.float64),
        "leasevar": mp.lease_var,
        "ptheta": mp.power_theta,
        "px0": mp.power_x0,
        "pa": mp.power_a,
        "psd": mp.power_sd,
        "pintra": mp.power_intra,
        "chol": mp.chol.ravel(),
        "slnrev": mp.site_ln_rev_per_hp,
        "shu": mp.site_hours_uptime,
        "sshare": mp.site_indexed_share,
        "sfixed": mp.site_fixed_price,
        "sresale": mp.site_resale,
        "histlo": shift - HIST_HALF_WIDTH,
        "groupw": 1.0 / per_group[groups],
        "lnbe": mp.hash_ln_breakeven,
    }
    doubles = {"shift": shift, "poisson": poisson_cdf(mp.jump_lambda_dt)}
    offsets = {}
    cf = [np.array([scalars[k] for k in P_SLOTS], dtype=np.float64)]
    pos = len(P_SLOTS)
    for name in I_OFFSETS:
        a = np.asarray(floats[name], dtype=np.float64).ravel()
        offsets[name] = pos
        cf.append(a)
        pos += a.size
    cd = []
    pos = 0
    for name in D_OFFSETS:
        a = np.asarray(doubles[name], dtype=np.float64).ravel()
        offsets[name] = pos
        cd.append(a)
        pos += a.size
    f = 6 + mp.n_regions
    ring = mp.hash_lag + 1
    slots = {"xpow": 0, "past": mp.n_regions, "gap": mp.n_regions + ring}
    slots["z"] = slots["gap"] + ring
    slots["floats"] = slots["z"] + mp.n_normals
    sizes = {
        "T": mp.n_periods,
        "R": mp.n_regions,
        "S": mp.n_sites,
        "lag": mp.hash_lag,
        "nf": mp.n_factors,
        "nn": mp.n_normals,
        "F": f,
        "NB": HIST_BINS,
        "W": 2 * f + 2 * mp.n_sites,
        "ngroups": int(groups.max()) + 1,
        "nfeat_cols": 4 + mp.n_regions,
    }
    head = (
        [sizes[k] for k in I_SIZES]
        + [offsets[k] for k in I_OFFSETS]
        + [offsets[k] for k in D_OFFSETS]
        + [slots[k] for k in M_SLOTS]
    )
    site_region_at = len(head) + len(I_TAIL)
    groups_at = site_region_at + mp.n_sites
    ci = np.concatenate([head, [site_region_at, groups_at], mp.site_region, groups])
    return MarketConstants(
        cf=_fit(np.concatenate(cf), CF_SIZE, np.float32, "float parameters"),
        ci=_fit(ci.astype(np.int64), CI_SIZE, np.int32, "int parameters"),
        cd=_fit(np.concatenate(cd), CD_SIZE, np.float64, "double parameters"),
        floats_per_thread=slots["floats"],
    )


def market_constants(sc) -> MarketConstants:
    """Constant memory of the market kernels for scenario ``sc``."""
    mp = market_params(sc)
    shift = factor_values_from_logs(start_logs(mp)[:, None].copy())[:, 0]
    return pack_params(mp, shift, feature_groups(mp, sc.horizon.periods_per_year))


def simulate_smem_bytes(mc: MarketConstants, threads: int = THREADS_PER_BLOCK) -> int:
    """Dynamic shared memory of one ``hp_simulate`` block [bytes]: the path state of every
    thread and a 32 × 33 float staging tile per warp."""
    return 4 * threads * mc.floats_per_thread + 4 * threads * TILE_ROW


# ---------------------------------------------------------------------------- evaluation
#: Scenario-level scalars of hp_ced (E_* in market.cu), then its arrays (C_*).
E_SLOTS = [
    "growth",
    "min_cash",
    "btc_floor",
    "max_sale",
    "held0",
    "cash0",
    "dscr",
    "lev",
    "disc",
    "mult_ai",
    "mult_min",
    "rack_rev",
    "rack_pow",
    "rack_opex",
    "mu_scale",
    "tol",
    "on_breach",
    "waiver_fee",
    "step_up",
]
C_ARRAYS = ["rates", "dil", "amort", "fees", "sizes", "hazard"]
#: Blocks of a plan's double array: per period (PLAN_T fields), per period and facility,
#: per period and lease, per period and region (rack count), per site; then per facility
#: "planned" and the ASIC salvage value (Q_* in market.cu).
PLAN_T = ["fixedcost", "racksum", "market", "itopex", "pen", "sold", "capex"]
PLAN_FT = ["draws", "repay", "allowed", "window"]
PLAN_LT = ["lease", "rent"]
PLAN_SITE = ["rho", "capexit", "itopexmw", "remconv", "fixed"]
Q_BLOCKS = ["t", "ft", "lt", "rt", "site", "planned", "salvage"]
#: hp_ce: sizes, Q_* offsets, C_* offsets, per-thread shared-memory layout (N_*).
J_SIZES = ["S", "T", "L", "F", "ppy", "gap", "R", "qlen"]
N_SLOTS = ["acc", "bal", "drawn", "extra", "doubles", "default"]
#: Rarely updated per-plan totals per thread (N_EXTRA): BTC sold, draws, minimum DSCR, DIL.
N_EXTRA = 4
MAX_LEASES, MAX_FACILITIES, MAX_PPY = 64, 16, 12
#: Codes of ``covenants.on_breach`` in ``hp_evaluate`` (HP_BREACH_* in market.cu).
BREACH_RULES = {"ignore": 0, "accelerate": 1, "waiver": 2}


@dataclass(frozen=True)
class PlanPack:
    """Every plan of an evaluation for ``hp_evaluate``: ``qd`` (P, qlen) float64 schedules and
    cash-flow terms, ``qf`` (P, T, S) float32 ASIC MW, constant memory ``ce`` (int32) and
    ``ced`` (float64), and the shared memory per thread: the market pass's doubles (one
    accumulator per plan, before the path state's floats) and shorts (tenant default periods);
    the financing pass's doubles (balances, drawn amounts, totals), which overlay them."""

    qd: np.ndarray
    qf: np.ndarray
    ce: np.ndarray
    ced: np.ndarray
    doubles_per_thread: int
    shorts_per_thread: int
    finance_doubles_per_thread: int

    @property
    def n_plans(self) -> int:
        return self.qd.shape[0]


def _plan_row(
    sc, plan, site_region: np.ndarray, n_r: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The blocks of one plan's double array and its ASIC MW (T, S)."""
    h = sc.horizon
    dt = h.dt_years
    sch = schedule(sc, plan)
    rent, _, _ = lease_terms(sc)
    allowed, repay = debt_terms(sc)
    fixed = np.array([s.fixed_opex_usd_per_mw_year * dt for s in sc.sites])
    per_t = {
        "fixedcost": (fixed[:, None] * sch.asic_mw).sum(axis=0),
        "racksum": sch.racks_active.sum(axis=0),
        "market": sch.market_it_mw.sum(axis=0),
        "itopex": (
            np.array([s.conversion.opex_usd_per_it_mw_year * dt for s in sc.sites])[:, None]
            * sch.it_online_mw
        ).sum(axis=0),
        "pen": (
            np.array([lo.late_penalty_usd_per_mw_period for lo in sc.lease_offers])[:, None]
            * sch.lease_short_it_mw
        ).sum(axis=0),
        "sold": plan.btc_sold,
        "capex": sch.capex_usd - sch.salvage_usd,
    }
    per_ft = {
        "draws": plan.draws_usd,
        "repay": repay,
        "allowed": allowed,
        "window": covenant_windows(sc),
    }
    per_lt = {"lease": sch.lease_total_it_mw, "rent": rent}
    rack_region = np.zeros((n_r, h.n_periods))
    np.add.at(rack_region, site_region, sch.racks_active)
    per_site = {
        "rho": [s.conversion.it_mw_per_utility_mw for s in sc.sites],
        "capexit": [s.conversion.capex_usd_per_it_mw for s in sc.sites],
        "itopexmw": [s.conversion.opex_usd_per_it_mw_year * dt for s in sc.sites],
        "remconv": remaining_convertible_mw(sc, sch) * float(sc.valuation.conversion_option),
        "fixed": fixed,
    }
    salvage_end = float(
        (np.array([s.asic_salvage_usd_per_mw for s in sc.sites]) * sch.asic_mw[:, -1]).sum()
    )

    def stack(fields: dict, names: list[str]) -> np.ndarray:  # (..., k): fields innermost
        return np.stack([np.asarray(fields[k], dtype=np.float64) for k in names], axis=-1)

    blocks = {
        "t": stack(per_t, PLAN_T),  # (T, 7)
        "ft": stack(per_ft, PLAN_FT).transpose(1, 0, 2),  # (T, F, 4)
        "lt": stack(per_lt, PLAN_LT).transpose(1, 0, 2),  # (T, L, 2)
        "rt": rack_region.T,  # (T, R)
        "site": stack(per_site, PLAN_SITE),  # (S, 5)
        "planned": plan.draws_usd.sum(axis=1) > 0,
        "salvage": np.array([salvage_end]),
    }
    return blocks, np.asarray(sch.asic_mw, dtype=np.float64).T


def pack_plans(sc, plans: Sequence, mc: MarketConstants | None = None) -> PlanPack:
    """``hp_evaluate``'s arrays for every plan of ``plans`` (same scenario, one pass)."""
    if len(sc.lease_offers) > MAX_LEASES or len(sc.debt_facilities) > MAX_FACILITIES:
        raise ValueError(
            f"the GPU kernel supports {MAX_LEASES} leases and {MAX_FACILITIES} facilities"
        )
    if sc.horizon.periods_per_year > MAX_PPY:  # pragma: no cover - quarters or months only
        raise ValueError("too many periods per year for the GPU kernel")
    if not plans:
        raise ValueError("no plan to evaluate")
    mc = mc if mc is not None else market_constants(sc)
    mp = market_params(sc)
    h = sc.horizon
    dt = h.dt_years
    facilities = sc.debt_facilities
    rows, asic = [], []
    offsets: dict[str, int] = {}
    for plan in plans:
        blocks, a = _plan_row(sc, plan, np.asarray(mp.site_region), mp.n_regions)
        pos = 0
        parts = []
        for name in Q_BLOCKS:
            flat = np.asarray(blocks[name], dtype=np.float64).ravel()
            offsets[name] = pos
            parts.append(flat)
            pos += flat.size
        rows.append(np.concatenate(parts))
        asic.append(a)
    qd = np.stack(rows)
    cov = sc.covenants
    tr = sc.treasury
    g = sc.gpu_racks
    scalars = {
        "growth": 1.0 + h.cash_interest_rate * dt,
        "min_cash": cov.min_cash_usd,
        "btc_floor": tr.btc_floor,
        "max_sale": tr.max_btc_sale_per_period,
        "held0": tr.btc_held,
        "cash0": tr.cash_usd,
        "dscr": cov.min_dscr,
        "lev": cov.max_leverage,
        "disc": (1.0 + h.discount_rate) ** (-h.n_periods * dt),
        "mult_ai": sc.valuation.ai_noi_multiple,
        "mult_min": sc.valuation.mining_margin_multiple,
        "rack_rev": g.gpus_per_rack * h.hours_per_period * g.utilization,
        "rack_pow": g.rack_kw / 1000.0 * g.pue * h.hours_per_period,
        "rack_opex": g.opex_usd_per_rack_year * dt,
        "mu_scale": 1000.0 * 12 * dt,
        "tol": CASH_TOL_USD,
        "on_breach": BREACH_RULES[cov.on_breach],
        "waiver_fee": cov.waiver_fee,
        "step_up": cov.waiver_step_up_bp * 1e-4 * dt,
    }
    arrays = {
        "rates": [f.rate_per_year * dt for f in facilities],
        "dil": [f.dilution_per_year * dt for f in facilities],
        "amort": [float(f.repayment == "linear") for f in facilities],
        "fees": [f.upfront_fee_share for f in facilities],
        "sizes": [f.size_usd for f in facilities],
        "hazard": [1.0 - (1.0 - lo.tenant_default_prob_per_year) ** dt for lo in sc.lease_offers],
    }
    ced = [np.array([scalars[k] for k in E_SLOTS], dtype=np.float64)]
    c_off = {}
    pos = len(E_SLOTS)
    for name in C_ARRAYS:
        a = np.asarray(arrays[name], dtype=np.float64).ravel()
        c_off[name] = pos
        ced.append(a)
        pos += a.size
    n_p, n_f = len(plans), len(facilities)
    # the market pass's accumulators, path state and default periods and the financing pass's
    # facility state share the thread's shared memory: one pass after the other
    layout = {"acc": 0, "bal": 0, "drawn": n_f, "extra": 2 * n_f, "doubles": n_p, "default": 0}
    sizes = {
        "S": len(sc.sites),
        "T": h.n_periods,
        "L": len(sc.lease_offers),
        "F": n_f,
        "ppy": h.periods_per_year,
        "gap": sc.market.ai_lease.releasing_gap_periods,
        "R": mp.n_regions,
        "qlen": qd.shape[1],
    }
    ce = (
        [sizes[k] for k in J_SIZES]
        + [offsets[k] for k in Q_BLOCKS]
        + [c_off[k] for k in C_ARRAYS]
        + [layout[k] for k in N_SLOTS]
    )
    return PlanPack(
        qd=qd,
        qf=np.ascontiguousarray(np.stack(asic), dtype=np.float32),
        ce=_fit(np.array(ce, dtype=np.int64), CE_SIZE, np.int32, "evaluation ints"),
        ced=_fit(np.concatenate(ced), CED_SIZE, np.float64, "evaluation doubles"),
        doubles_per_thread=layout["doubles"],
        shorts_per_thread=len(sc.lease_offers),
        finance_doubles_per_thread=2 * n_f + N_EXTRA,
    )


def evaluate_smem_bytes(
    mc: MarketConstants, pack: PlanPack, threads: int = THREADS_PER_BLOCK
) -> int:
    """Dynamic shared memory of one ``hp_evaluate`` block [bytes]: per thread the larger of the
    market pass's (plan accumulators, path state, tenant default periods) and the financing
    pass's (facility balances, drawn amounts, totals)."""
    market = 8 * pack.doubles_per_thread + 4 * mc.floats_per_thread + 2 * pack.shorts_per_thread
    finance = 8 * pack.finance_doubles_per_thread
    return threads * (-(-max(market, finance) // 8) * 8)


def scratch_rows(pack: PlanPack) -> int:
    """Doubles of ``hp_evaluate``'s scratch per path: BTC per period, operating flow and debt
    service per plan and period, terminal operating value per plan."""
    t_n = int(pack.ce[J_SIZES.index("T")])
    return t_n * (1 + 2 * pack.n_plans) + pack.n_plans


def outcomes_from_kernel(
    mask: np.ndarray,
    equity: np.ndarray,
    default: np.ndarray,
    dscr: np.ndarray,
    btc: np.ndarray,
    draw: np.ndarray,
    ai_sum: np.ndarray,
    debt_sum: np.ndarray,
    cash: np.ndarray,
) -> PathOutcomes:
    """One plan's :class:`PathOutcomes` from ``hp_evaluate``'s outputs (host arrays)."""
    mask = np.asarray(mask)
    return PathOutcomes(
        equity_usd=equity,
        default_period=np.asarray(default),
        breach=(mask & 3) != 0,
        min_dscr=dscr,
        ai_share_sum=ai_sum,
        debt_sum_usd=debt_sum,
        cash_usd=cash,
        emergency_btc=btc,
        emergency_draw_usd=draw,
        min_cash_breach=(mask & 4) != 0,
        breach_mask=mask,
    )


@dataclass(frozen=True)
class DevicePlans:  # pragma: no cover - needs a GPU
    """Plans of one evaluation on the device (:func:`device_plans`)."""

    names: list[str]
    mc: MarketConstants
    pack: PlanPack
    qd: Any
    qf: Any


def device_plans(sc, plans: Mapping[str, Any]) -> DevicePlans:  # pragma: no cover - needs a GPU
    """Every plan of ``plans`` packed once and copied to the device for ``hp_evaluate``."""
    import cupy  # noqa: PLC0415

    mc = market_constants(sc)
    pack = pack_plans(sc, list(plans.values()), mc)
    return DevicePlans(list(plans), mc, pack, cupy.asarray(pack.qd), cupy.asarray(pack.qf))


@dataclass
class ChunkLaunch:  # pragma: no cover - needs a GPU
    """A chunk of ``hp_evaluate`` in flight (:func:`launch_chunk_gpu`): its outputs are being
    copied into page-locked host arrays behind the kernels; ``done`` is recorded after the
    copies."""

    keep: dict[str, int]
    n_keep: int
    outs: dict[str, list[np.ndarray]]
    ai: list[np.ndarray]
    debt: list[np.ndarray]
    cash: np.ndarray
    done: Any
    device: list[Any]  # device arrays the copies read, held until the copies are done


def _to_pinned(a: Any, stream: Any) -> np.ndarray:  # pragma: no cover - needs a GPU
    """An asynchronous copy of device array ``a`` into new page-locked host memory."""
    import cupyx  # noqa: PLC0415

    host = cupyx.empty_pinned(a.shape, dtype=a.dtype)
    a.get(stream=stream, out=host, blocking=False)
    return host


def launch_chunk_gpu(
    dev: DevicePlans, key: tuple[int, int], path0: int, n: int, keep: Mapping[str, int]
) -> ChunkLaunch:  # pragma: no cover - needs a GPU
    """Launch ``hp_evaluate`` on paths ``path0 .. path0+n`` for every plan and queue the copies
    of its outputs; returns at once (the host can work on the previous chunk meanwhile)."""
    import cupy  # noqa: PLC0415

    module = _module()
    _upload(module, dev.mc, dev.pack)
    kernel = module.get_function("hp_evaluate")
    smem = evaluate_smem_bytes(dev.mc, dev.pack)
    if smem > SMEM_DEFAULT_BYTES:
        kernel.max_dynamic_shared_size_bytes = smem
    stream = cupy.cuda.get_current_stream()
    n_p = dev.pack.n_plans
    t_n = int(dev.pack.ce[J_SIZES.index("T")])
    rows = scratch_rows(dev.pack)
    n_keep = max(0, min(max(keep.values(), default=0), n))
    # paths per launch: the scratch within its budget and int-indexable (row * stride < 2^31)
    per_launch = min(EVAL_SCRATCH_BYTES // (8 * rows), (2**31 - 1) // rows)
    per_launch = max(EVAL_LAUNCH_MIN, n_keep, per_launch // THREADS_PER_BLOCK * THREADS_PER_BLOCK)
    per_launch = min(per_launch, n)
    stride = -(-per_launch // THREADS_PER_BLOCK) * THREADS_PER_BLOCK
    scratch = cupy.empty(rows * stride)
    keys = ("equity", "default", "mask", "dscr", "btc", "draw")
    outs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    ai: list[np.ndarray] = []
    debt: list[np.ndarray] = []
    held: list[Any] = [scratch]
    cash = cupy.zeros((n_p, max(n_keep, 1), t_n))
    done = 0
    while done < n:
        m = min(per_launch, n - done)
        grid = -(-m // THREADS_PER_BLOCK)
        warps = grid * THREADS_PER_BLOCK // WARP
        out = {
            "equity": cupy.empty((n_p, m)),
            "default": cupy.empty((n_p, m), dtype=cupy.int32),
            "mask": cupy.empty((n_p, m), dtype=cupy.int32),
            "dscr": cupy.empty((n_p, m)),
            "btc": cupy.empty((n_p, m)),
            "draw": cupy.empty((n_p, m)),
        }
        part_ai = cupy.empty((warps, n_p, t_n))
        part_debt = cupy.empty((warps, n_p, t_n))
        k = n_keep if done == 0 else 0
        kernel(
            (grid,),
            (THREADS_PER_BLOCK,),
            (
                dev.qd,
                dev.qf,
                np.int32(n_p),
                np.uint32(key[0]),
                np.uint32(key[1]),
                np.int64(path0 + done),
                np.int32(m),
                scratch,
                np.int32(stride),
                out["equity"],
                out["default"],
                out["mask"],
                out["dscr"],
                out["btc"],
                out["draw"],
                part_ai,
                part_debt,
                cash if k else np.uint64(0),
                np.int32(k),
            ),
            shared_mem=smem,
        )
        # per-warp partial sums reduced on the device in an order fixed by their number
        ai.append(_to_pinned(pairwise_row_sum(part_ai, xp=cupy), stream))
        debt.append(_to_pinned(pairwise_row_sum(part_debt, xp=cupy), stream))
        for name in keys:
            outs[name].append(_to_pinned(out[name], stream))
        held += [part_ai, part_debt, *out.values()]
        done += m
    cash_h = _to_pinned(cash, stream)
    event = cupy.cuda.Event(block=False, disable_timing=True)
    event.record(stream)
    return ChunkLaunch(dict(keep), n_keep, outs, ai, debt, cash_h, event, held + [cash])


def collect_chunk_gpu(
    dev: DevicePlans, c: ChunkLaunch
) -> dict[str, PathOutcomes]:  # pragma: no cover - needs a GPU
    """Wait for a launched chunk's copies; its outcomes per plan (host arrays)."""
    c.done.synchronize()
    got = {
        name: parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        for name, parts in c.outs.items()
    }
    ai, debt = sum(c.ai[1:], c.ai[0].copy()), sum(c.debt[1:], c.debt[0].copy())
    return {
        name: outcomes_from_kernel(
            got["mask"][p],
            got["equity"][p],
            got["default"][p],
            got["dscr"][p],
            got["btc"][p],
            got["draw"][p],
            ai[p],
            debt[p],
            c.cash[p, : max(0, min(c.keep[name], c.n_keep))],
        )
        for p, name in enumerate(dev.names)
    }


def evaluate_chunk_gpu(
    dev: DevicePlans, key: tuple[int, int], path0: int, n: int, keep: Mapping[str, int]
) -> dict[str, PathOutcomes]:  # pragma: no cover - needs a GPU
    """``simulate_plan`` of every plan on paths ``path0 .. path0+n`` by the fused
    ``hp_evaluate`` kernel: one market pass per path for all plans; ``keep[name]`` cash paths
    of the chunk per plan."""
    return collect_chunk_gpu(dev, launch_chunk_gpu(dev, key, path0, n, keep))


@cache
def _module():  # pragma: no cover - needs a GPU
    import cupy  # noqa: PLC0415

    # HASHPIVOT_NVRTC_LINEINFO=1: source lines in the cubin, for a profiler's per-line view
    lineinfo = ("-lineinfo",) if os.environ.get("HASHPIVOT_NVRTC_LINEINFO") else ()
    return cupy.RawModule(code=kernel_source(), options=NVRTC_OPTIONS + lineinfo)


def _upload(module, mc: MarketConstants, pack: PlanPack | None = None) -> None:  # pragma: no cover
    """Copy the constant arrays into the module's ``__constant__`` memory."""
    arrays = {"hp_cf": mc.cf, "hp_ci": mc.ci, "hp_cd": mc.cd}
    if pack is not None:
        arrays |= {"hp_ce": pack.ce, "hp_ced": pack.ced}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        module.get_global(name).copy_from_host(a.ctypes.data, a.nbytes)


def gpu_chunk_paths(mp: MarketParams) -> int:  # pragma: no cover - needs a GPU
    """Paths per chunk from free device memory (features of a path dominate)."""
    import cupy  # noqa: PLC0415

    free, _ = cupy.cuda.runtime.memGetInfo()
    per_path = 4 * (4 + mp.n_regions) * (mp.n_periods + 1) + 64
    chunk = int(GPU_MEMORY_SHARE * free // per_path)
    return int(min(GPU_CHUNK_MAX, max(GPU_CHUNK_MIN, chunk)))


def simulate_partial_warps(n_periods: int, width: int) -> int:
    """Warps (partial-sum rows) of ``hp_simulate``: a function of the sizes only, so that the
    summation order, hence the sums, do not depend on the device."""
    rows = SIM_PARTIAL_BYTES // (8 * n_periods * width)
    per_block = THREADS_PER_BLOCK // WARP
    return int(max(per_block, min(SIM_PARTIAL_WARPS, rows) // per_block * per_block))


def simulate_gpu(  # pragma: no cover - needs a GPU
    mp: MarketParams,
    key: tuple[int, int],
    paths: int,
    chunk: int,
    sums: OrderedSums,
    hists: LogHistograms,
    shift: np.ndarray,
    groups: np.ndarray,
    feature_paths: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, list[np.ndarray]]:
    """Run the fused kernel over all paths; returns the chunk size used and the features."""
    import cupy  # noqa: PLC0415

    # whole warps per chunk: the per-warp sums, hence the results, do not depend on the chunking
    chunk = max(WARP, chunk // WARP * WARP)
    mc = pack_params(mp, shift, groups)
    module = _module()
    _upload(module, mc)
    kernel = module.get_function("hp_simulate")
    smem = simulate_smem_bytes(mc)
    if smem > SMEM_DEFAULT_BYTES:
        kernel.max_dynamic_shared_size_bytes = smem
    f = 6 + mp.n_regions
    w = 2 * f + 2 * mp.n_sites
    n_groups = int(groups.max()) + 1
    n_part = simulate_partial_warps(mp.n_periods, w)
    d_part = cupy.zeros((n_part, mp.n_periods, w), dtype=cupy.float64)
    d_hist = cupy.zeros((mp.n_periods, f, HIST_BINS), dtype=cupy.uint32)
    feats: list[np.ndarray] = []
    done = 0
    since_flush = 0
    warned = False
    while done < paths:
        n = min(chunk, paths - done)
        nfeat = max(0, min(n, feature_paths - done))
        try:
            d_feat = (
                cupy.zeros((nfeat, n_groups, 4 + mp.n_regions), dtype=cupy.float32)
                if nfeat
                else None
            )
            kernel(
                (n_part * WARP // THREADS_PER_BLOCK,),
                (THREADS_PER_BLOCK,),
                (
                    np.uint32(key[0]),
                    np.uint32(key[1]),
                    np.int64(done),
                    np.int32(n),
                    np.int32(n_part),
                    d_part,
                    d_hist,
                    d_feat if d_feat is not None else np.uint64(0),
                    np.int32(nfeat),
                ),
                shared_mem=smem,
            )
        except cupy.cuda.memory.OutOfMemoryError:
            if chunk <= 1024:
                raise
            chunk = chunk // 2 // WARP * WARP
            if not warned:
                print(
                    f"hashpivot: GPU out of memory; chunk shrunk to {chunk} paths", file=sys.stderr
                )
                warned = True
            continue
        if d_feat is not None:
            feats.append(d_feat.reshape(nfeat, -1).get().astype(np.float64))
        done += n
        since_flush += n
        # flush the 32-bit histogram counts before any bin could overflow
        if done >= paths or since_flush + chunk >= 2**31:
            hists.counts += d_hist.get().astype(np.int64)
            d_hist.fill(0)
            since_flush = 0
        if progress:
            progress(done, paths)
    # per-warp partial rows reduced on the device in an order fixed by their number
    sums.add_raw(pairwise_row_sum(d_part, xp=cupy).get())
    return chunk, feats
