"""CuPy side of the fused market kernel (``market.cu``): packing, launching, chunking.

The kernel source is plain CUDA C++ that also compiles on the CPU (``HP_HOST_EMULATION``); the
parameters travel as one float64 array and one int32 array laid out by :func:`pack_params`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache

import numpy as np

from .accumulate import HIST_BINS, HIST_HALF_WIDTH, LogHistograms, OrderedSums
from .cashflow import CASH_TOL_USD, remaining_convertible_mw
from .factors import factor_values_from_logs, feature_groups, start_logs
from .market import MAX_JUMPS, MarketParams, market_params
from .nvrtc import NVRTC_OPTIONS, kernel_source
from .plan import covenant_windows, debt_terms, lease_terms, schedule
from .results import PathOutcomes

#: Threads per block of the path kernels.
THREADS_PER_BLOCK = 128
#: Bounds of the paths per chunk on a GPU.
GPU_CHUNK_MIN, GPU_CHUNK_MAX = 1 << 14, 1 << 22
#: Share of free device memory a chunk may use.
GPU_MEMORY_SHARE = 0.5

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
]
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
    "shift",
    "histlo",
    "poisson",
    "groupw",
    "lnbe",
]
MAX_REGIONS = 32


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


def pack_params(
    mp: MarketParams, shift: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The (float64, int32) parameter arrays of the kernel."""
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
    per_group = np.bincount(groups)
    arrays = {
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
        "shift": shift,
        "histlo": shift - HIST_HALF_WIDTH,
        "poisson": poisson_cdf(mp.jump_lambda_dt),
        "groupw": 1.0 / per_group[groups],
        "lnbe": mp.hash_ln_breakeven,
    }
    par = [np.array([scalars[k] for k in P_SLOTS], dtype=np.float64)]
    offsets = {}
    pos = len(P_SLOTS)
    for name in I_OFFSETS:
        a = np.asarray(arrays[name], dtype=np.float64).ravel()
        offsets[name] = pos
        par.append(a)
        pos += a.size
    f = 6 + mp.n_regions
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
    head = [sizes[k] for k in I_SIZES] + [offsets[k] for k in I_OFFSETS]
    site_region_at = len(head) + 2
    groups_at = site_region_at + mp.n_sites
    ipar = np.concatenate([head, [site_region_at, groups_at], mp.site_region, groups]).astype(
        np.int32
    )
    return np.concatenate(par), ipar


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
    "salvage_end",
    "rack_rev",
    "rack_pow",
    "rack_opex",
    "mu_scale",
    "tol",
]
J_SIZES = ["S", "T", "L", "F", "ppy", "gap"]
Q_ARRAYS = [
    "asic",
    "racks",
    "lease",
    "rent",
    "market",
    "itopex",
    "pen",
    "capex",
    "draws",
    "repay",
    "amort",
    "rates",
    "fees",
    "sizes",
    "allowed",
    "window",
    "sold",
    "fixed",
    "hazard",
    "planned",
    "dil",
    "rho",
    "capexit",
    "itopexmw",
    "remconv",
    "breach",
]
MAX_LEASES, MAX_FACILITIES, MAX_PPY = 64, 16, 12
#: Codes of ``covenants.on_breach`` in ``hp_evaluate`` (HP_BREACH_* in market.cu).
BREACH_RULES = {"ignore": 0, "accelerate": 1, "waiver": 2}


def pack_plan(sc, plan) -> tuple[np.ndarray, np.ndarray]:
    """The (float64, int32) arrays of a plan's schedule for ``hp_evaluate``."""
    if len(sc.lease_offers) > MAX_LEASES or len(sc.debt_facilities) > MAX_FACILITIES:
        raise ValueError(
            f"the GPU kernel supports {MAX_LEASES} leases and {MAX_FACILITIES} facilities"
        )
    h = sc.horizon
    dt = h.dt_years
    sch = schedule(sc, plan)
    g = sc.gpu_racks
    tr = sc.treasury
    v = sc.valuation
    rent, _, _ = lease_terms(sc)
    allowed, repay = debt_terms(sc)
    facilities = sc.debt_facilities
    scalars = {
        "growth": 1.0 + h.cash_interest_rate * dt,
        "min_cash": sc.covenants.min_cash_usd,
        "btc_floor": tr.btc_floor,
        "max_sale": tr.max_btc_sale_per_period,
        "held0": tr.btc_held,
        "cash0": tr.cash_usd,
        "dscr": sc.covenants.min_dscr,
        "lev": sc.covenants.max_leverage,
        "disc": (1.0 + h.discount_rate) ** (-h.n_periods * dt),
        "mult_ai": v.ai_noi_multiple,
        "mult_min": v.mining_margin_multiple,
        "salvage_end": float(
            (np.array([s.asic_salvage_usd_per_mw for s in sc.sites]) * sch.asic_mw[:, -1]).sum()
        ),
        "rack_rev": g.gpus_per_rack * h.hours_per_period * g.utilization,
        "rack_pow": g.rack_kw / 1000.0 * g.pue * h.hours_per_period,
        "rack_opex": g.opex_usd_per_rack_year * dt,
        "mu_scale": 1000.0 * 12 * dt,
        "tol": CASH_TOL_USD,
    }
    arrays = {
        "asic": sch.asic_mw,
        "racks": sch.racks_active,
        "lease": sch.lease_total_it_mw,
        "rent": rent,
        "market": sch.market_it_mw.sum(axis=0),
        "itopex": (
            np.array([s.conversion.opex_usd_per_it_mw_year * dt for s in sc.sites])[:, None]
            * sch.it_online_mw
        ).sum(axis=0),
        "pen": (
            np.array([lo.late_penalty_usd_per_mw_period for lo in sc.lease_offers])[:, None]
            * sch.lease_short_it_mw
        ).sum(axis=0),
        "capex": sch.capex_usd - sch.salvage_usd,
        "draws": plan.draws_usd,
        "repay": repay,
        "amort": [f.repayment == "linear" for f in facilities],
        "rates": [f.rate_per_year * dt for f in facilities],
        "fees": [f.upfront_fee_share for f in facilities],
        "sizes": [f.size_usd for f in facilities],
        "allowed": allowed,
        "window": covenant_windows(sc),
        "sold": plan.btc_sold,
        "fixed": [s.fixed_opex_usd_per_mw_year * dt for s in sc.sites],
        "hazard": [1.0 - (1.0 - lo.tenant_default_prob_per_year) ** dt for lo in sc.lease_offers],
        "planned": plan.draws_usd.sum(axis=1) > 0,
        "dil": [f.dilution_per_year * dt for f in facilities],
        "rho": [s.conversion.it_mw_per_utility_mw for s in sc.sites],
        "capexit": [s.conversion.capex_usd_per_it_mw for s in sc.sites],
        "itopexmw": [s.conversion.opex_usd_per_it_mw_year * dt for s in sc.sites],
        "remconv": remaining_convertible_mw(sc, sch) * float(v.conversion_option),
        "breach": [
            BREACH_RULES[sc.covenants.on_breach],
            sc.covenants.waiver_fee,
            sc.covenants.waiver_step_up_bp * 1e-4 * dt,
        ],
    }
    parts = [np.array([scalars[k] for k in E_SLOTS], dtype=np.float64)]
    pos = len(E_SLOTS)
    offsets = {}
    for name in Q_ARRAYS:
        a = np.asarray(arrays[name], dtype=np.float64).ravel()
        offsets[name] = pos
        parts.append(a)
        pos += a.size
    if sc.horizon.periods_per_year > MAX_PPY:  # pragma: no cover - quarters or months only
        raise ValueError("too many periods per year for the GPU kernel")
    sizes = {
        "S": len(sc.sites),
        "T": h.n_periods,
        "L": len(sc.lease_offers),
        "F": len(facilities),
        "ppy": h.periods_per_year,
        "gap": sc.market.ai_lease.releasing_gap_periods,
    }
    qi = np.array([sizes[k] for k in J_SIZES] + [offsets[k] for k in Q_ARRAYS], dtype=np.int32)
    return np.concatenate(parts), qi


def market_arrays(sc) -> tuple[np.ndarray, np.ndarray]:
    """Market parameter arrays of ``sc`` for the kernels."""
    mp = market_params(sc)
    shift = factor_values_from_logs(start_logs(mp)[:, None].copy())[:, 0]
    return pack_params(mp, shift, feature_groups(mp, sc.horizon.periods_per_year))


def device_plan(sc, plan) -> tuple:  # pragma: no cover - needs a GPU
    """Market and plan arrays of ``hp_evaluate`` on the device, packed once per plan."""
    import cupy  # noqa: PLC0415

    return tuple(cupy.asarray(a) for a in (*market_arrays(sc), *pack_plan(sc, plan)))


def evaluate_chunk_gpu(
    sc, packed: tuple, key: tuple[int, int], path0: int, n: int, keep: int
):  # pragma: no cover - needs a GPU
    """``simulate_plan`` of paths ``path0 .. path0+n`` by the fused ``hp_evaluate`` kernel;
    ``packed`` comes from :func:`device_plan`."""
    import cupy  # noqa: PLC0415

    par, ipar, q, qi = packed
    t_n = sc.horizon.n_periods
    keep = max(0, min(keep, n))
    out = {
        "equity": cupy.zeros(n),
        "default": cupy.zeros(n, dtype=cupy.int32),
        "breach": cupy.zeros(n, dtype=cupy.int32),
        "dscr": cupy.zeros(n),
        "btc": cupy.zeros(n),
        "draw": cupy.zeros(n),
        "ai": cupy.zeros(t_n),
        "debt": cupy.zeros(t_n),
        "cash": cupy.zeros((max(keep, 1), t_n)),
    }
    grid = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    _module().get_function("hp_evaluate")(
        (grid,),
        (THREADS_PER_BLOCK,),
        (
            par,
            ipar,
            q,
            qi,
            np.uint32(key[0]),
            np.uint32(key[1]),
            np.int64(path0),
            np.int32(n),
            out["equity"],
            out["default"],
            out["breach"],
            out["dscr"],
            out["btc"],
            out["draw"],
            out["ai"],
            out["debt"],
            out["cash"],
            np.int32(keep),
        ),
    )
    return PathOutcomes(
        equity_usd=out["equity"].get(),
        default_period=out["default"].get().astype(np.int64),
        breach=(out["breach"].get() & 1) > 0,
        min_dscr=out["dscr"].get(),
        ai_share_sum=out["ai"].get(),
        debt_sum_usd=out["debt"].get(),
        cash_usd=out["cash"].get()[:keep],
        emergency_btc=out["btc"].get(),
        emergency_draw_usd=out["draw"].get(),
        min_cash_breach=(out["breach"].get() & 2) > 0,
    )


@cache
def _module():  # pragma: no cover - needs a GPU
    import cupy  # noqa: PLC0415

    return cupy.RawModule(code=kernel_source(), options=NVRTC_OPTIONS)


def gpu_chunk_paths(mp: MarketParams) -> int:  # pragma: no cover - needs a GPU
    """Paths per chunk from free device memory (features of a path dominate)."""
    import cupy  # noqa: PLC0415

    free, _ = cupy.cuda.runtime.memGetInfo()
    per_path = 4 * (4 + mp.n_regions) * (mp.n_periods + 1) + 64
    chunk = int(GPU_MEMORY_SHARE * free // per_path)
    return int(min(GPU_CHUNK_MAX, max(GPU_CHUNK_MIN, chunk)))


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

    par_h, ipar_h = pack_params(mp, shift, groups)
    par, ipar = cupy.asarray(par_h), cupy.asarray(ipar_h)
    kernel = _module().get_function("hp_simulate")
    f = 6 + mp.n_regions
    w = 2 * f + 2 * mp.n_sites
    n_groups = int(groups.max()) + 1
    d_sums = cupy.zeros((mp.n_periods, w), dtype=cupy.float64)
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
            grid = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
            kernel(
                (grid,),
                (THREADS_PER_BLOCK,),
                (
                    par,
                    ipar,
                    np.uint32(key[0]),
                    np.uint32(key[1]),
                    np.int64(done),
                    np.int32(n),
                    d_sums,
                    d_hist,
                    d_feat if d_feat is not None else np.uint64(0),
                    np.int32(nfeat),
                ),
            )
        except cupy.cuda.memory.OutOfMemoryError:
            if chunk <= 1024:
                raise
            chunk //= 2
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
    sums.add_raw(d_sums.get())
    return chunk, feats
