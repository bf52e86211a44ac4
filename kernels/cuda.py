"""CuPy side of the fused market kernel (``market.cu``): packing, launching, chunking.

The kernel source is plain CUDA C++ that also compiles on the CPU (``HP_HOST_EMULATION``); the
parameters travel as one float64 array and one int32 array laid out by :func:`pack_params`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache
from importlib import resources

import numpy as np

from .accumulate import HIST_BINS, HIST_HALF_WIDTH, LogHistograms, OrderedSums
from .market import MAX_JUMPS, MarketParams

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
]
MAX_REGIONS = 32


def kernel_source() -> str:
    """Text of ``market.cu``."""
    return resources.files("hashpivot.kernels").joinpath("market.cu").read_text(encoding="utf-8")


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


@cache
def _module():  # pragma: no cover - needs a GPU
    import cupy  # noqa: PLC0415

    return cupy.RawModule(code=kernel_source(), options=("--std=c++14", "-use_fast_math"))


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
