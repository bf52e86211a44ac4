"""The fused CUDA kernel (market.cu): on the CPU through its host emulation (g++), and on a
GPU through CuPy (tests marked ``gpu``)."""

from __future__ import annotations

import ctypes
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import extreme_hashprice_data, scenario

from hashpivot.kernels import philox
from hashpivot.kernels.accumulate import HIST_BINS, pairwise_row_sum
from hashpivot.kernels.cuda import (
    MarketConstants,
    PlanPack,
    evaluate_smem_bytes,
    kernel_source,
    outcomes_from_kernel,
    pack_params,
    scratch_rows,
    simulate_smem_bytes,
)
from hashpivot.kernels.market import margin_log_bounds, market_params
from hashpivot.kernels.simulate import (
    factor_values_from_logs,
    feature_groups,
    simulate,
    start_logs,
)
from hashpivot.scenarios import validate_data

#: fp32 kernel against the fp64 NumPy path: relative tolerance on means.
FP32_MEAN_RTOL = 1e-4

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
#: Partial-sum rows ("warps" of one path each) of the emulated hp_simulate: any number works.
HOST_PARTIAL_ROWS = 7
#: Doubles of the emulation's shared memory (HP_HOST_SMEM_DOUBLES in market.cu).
HOST_SMEM_BYTES = 8 * 16384


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    d = tmp_path_factory.mktemp("cuda_host")
    src = d / "market.cpp"
    src.write_text(kernel_source())
    so = d / "market.so"
    subprocess.run(
        [
            "g++",
            "-DHP_HOST_EMULATION",
            "-O1",
            "-fno-strict-aliasing",
            "-shared",
            "-fPIC",
            str(src),
            "-o",
            str(so),
        ],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(so))
    vp, u32, i32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    ll = ctypes.c_longlong
    lib.hp_simulate.argtypes = [u32, u32, ll, i32, i32, vp, vp, vp, i32]
    lib.hp_philox.argtypes = [vp, u32, u32, vp, i32]
    lib.hp_evaluate.argtypes = [vp, vp, i32, u32, u32, ll, i32, vp, i32] + [vp] * 9 + [i32]
    return lib


_CTYPES = {np.float32: ctypes.c_float, np.float64: ctypes.c_double, np.int32: ctypes.c_int}


def set_constants(lib: ctypes.CDLL, mc: MarketConstants, pack: PlanPack | None = None) -> None:
    """Copy the constant arrays into the emulation's globals (cuda.py: _upload on a GPU)."""
    arrays = {"hp_cf": mc.cf, "hp_ci": mc.ci, "hp_cd": mc.cd}
    if pack is not None:
        arrays |= {"hp_ce": pack.ce, "hp_ced": pack.ced}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        dst = (_CTYPES[a.dtype.type] * a.size).in_dll(lib, name)
        ctypes.memmove(dst, a.ctypes.data, a.nbytes)


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def host_simulate(
    lib: ctypes.CDLL, sc, paths: int, seed: int, feature_paths: int = 0, chunk: int | None = None
):
    """The emulated ``hp_simulate`` over ``paths`` in chunks of ``chunk`` paths (one launch
    each, as cuda.py: simulate_gpu); the partial rows reduced after the last."""
    mp = market_params(sc)
    shift = factor_values_from_logs(start_logs(mp)[:, None].copy())[:, 0]
    groups = feature_groups(mp, sc.horizon.periods_per_year)
    mc = pack_params(mp, shift, groups)
    assert simulate_smem_bytes(mc, threads=1) <= HOST_SMEM_BYTES
    set_constants(lib, mc)
    f = 6 + mp.n_regions
    part = np.zeros((HOST_PARTIAL_ROWS, mp.n_periods, 2 * f + 2 * mp.n_sites))
    hist = np.zeros((mp.n_periods, f, HIST_BINS), dtype=np.uint32)
    feat = np.zeros((max(feature_paths, 1), int(groups.max()) + 1, 4 + mp.n_regions), np.float32)
    k0, k1 = philox.seed_key(seed)
    done = 0
    while done < paths:
        n = min(chunk or paths, paths - done)
        nfeat = max(0, min(n, feature_paths - done))
        row = feat[done:] if nfeat else feat
        lib.hp_simulate(
            k0, k1, done, n, HOST_PARTIAL_ROWS, _ptr(part), _ptr(hist), _ptr(row), nfeat
        )
        done += n
    return pairwise_row_sum(part), hist, feat[:feature_paths], shift


@needs_gxx
def test_host_philox_bits_equal_numpy(host_lib: ctypes.CDLL) -> None:
    n = 100_000
    rng = np.random.default_rng(3)
    ctr = rng.integers(0, 2**32, size=(n, 4), dtype=np.uint64).astype(np.uint32)
    out = np.zeros((n, 4), dtype=np.uint32)
    host_lib.hp_philox(_ptr(ctr), 0xA4093822, 0x299F31D0, _ptr(out), n)
    ref = philox.philox4x32(tuple(ctr.T.astype(np.uint64)), (0xA4093822, 0x299F31D0))
    np.testing.assert_array_equal(out.T, np.stack(ref).astype(np.uint32))


@needs_gxx
@pytest.mark.parametrize("name", ["demo", "texas_hybrid"])
def test_host_kernel_matches_numpy(host_lib: ctypes.CDLL, name: str) -> None:
    sc = scenario(name)
    paths = 4000
    sums, hist, feat, shift = host_simulate(host_lib, sc, paths, seed=5, feature_paths=300)
    ref = simulate(sc, paths, seed=5, backend="numpy", feature_paths=300)
    f = shift.shape[0]
    means = sums[:, :f] / paths + shift
    names = list(ref.factors)
    for i, key in enumerate(names):
        np.testing.assert_allclose(means[:, i], ref.factors[key].mean, rtol=FP32_MEAN_RTOL)
    for j, region in enumerate(ref.power):
        np.testing.assert_allclose(means[:, 6 + j], ref.power[region].mean, rtol=FP32_MEAN_RTOL)
    s = len(sc.sites)
    margin = (sums[:, 2 * f : 2 * f + s] / paths).T
    np.testing.assert_allclose(
        margin,
        ref.margin_mean_usd_per_mw,
        rtol=FP32_MEAN_RTOL,
        atol=1e-6 * np.abs(ref.margin_mean_usd_per_mw).max(),
    )
    assert hist.sum() == paths * f * sc.horizon.n_periods
    np.testing.assert_allclose(feat.reshape(300, -1), ref.features, rtol=1e-4, atol=1e-4)


@needs_gxx
def test_host_sums_bit_identical_across_chunkings(host_lib: ctypes.CDLL) -> None:
    """Each partial row sums the same path groups in the same order whatever the chunking."""
    sc = scenario("texas_hybrid")
    whole, hist, feat, _ = host_simulate(host_lib, sc, 600, seed=2, feature_paths=40)
    split, hist2, feat2, _ = host_simulate(host_lib, sc, 600, seed=2, feature_paths=40, chunk=97)
    np.testing.assert_array_equal(split, whole)
    np.testing.assert_array_equal(hist2, hist)
    np.testing.assert_array_equal(feat2, feat)


def test_packed_margin_bounds_are_margin_log_bounds() -> None:
    """hp_margin clamps ln hashprice and ln power to the scenario's margin_log_bounds, packed
    as float32 scalars (P_MARGIN_LN_LO, P_MARGIN_LN_HI) as mining_margin rounds them."""
    from hashpivot.kernels.cuda import P_SLOTS, market_constants

    enums = _cu_enums(kernel_source())
    his = []
    for sc in (scenario("demo"), validate_data(extreme_hashprice_data())):
        mc = market_constants(sc)
        lo, hi = margin_log_bounds(market_params(sc))
        at_lo, at_hi = P_SLOTS.index("margin_ln_lo"), P_SLOTS.index("margin_ln_hi")
        assert (enums["P_MARGIN_LN_LO"], enums["P_MARGIN_LN_HI"]) == (at_lo, at_hi)
        assert mc.cf[at_lo] == np.float32(lo) and mc.cf[at_hi] == np.float32(hi)
        his.append(hi)
    assert his[1] < his[0]  # per scenario (hours·uptime, revenue per hashprice), not a constant


@needs_gxx
def test_host_margin_clamped_as_numpy_beyond_float32_range(host_lib: ctypes.CDLL) -> None:
    """Regression: hp_margin took expf of the unclamped ln revenue; at ln hashprice ≈ 85
    revenue × hours·uptime overflowed float32 (inf margins, then NaN). With ln hashprice and
    ln power clamped as in the NumPy kernel, the margin means are finite and equal NumPy's."""
    sc = validate_data(extreme_hashprice_data())
    mp = market_params(sc)
    paths = 64
    sums, _, _, shift = host_simulate(host_lib, sc, paths, seed=4)
    ref = simulate(sc, paths, seed=4, backend="numpy")
    _, hi = margin_log_bounds(mp)
    # hashprice has no randomness here: its mean is e^{ln HP}, beyond the clamp at the end
    assert math.log(ref.factors["hashprice_usd_per_ph_day"].mean[-1]) > hi
    f, s = shift.shape[0], mp.n_sites
    margin = (sums[:, 2 * f : 2 * f + s] / paths).T
    assert np.all(np.isfinite(margin))
    np.testing.assert_allclose(margin, ref.margin_mean_usd_per_mw, rtol=FP32_MEAN_RTOL)


# --------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
def test_gpu_philox_bit_for_bit() -> None:  # pragma: no cover - needs a GPU
    import cupy

    from hashpivot.kernels.cuda import _module

    n = 1_000_000
    idx = np.arange(n, dtype=np.uint64)
    ctr = np.stack([idx & 0xFFFFFFFF, idx >> 32, idx % 97, idx % 5]).astype(np.uint32)
    d_out = cupy.zeros((n, 4), dtype=cupy.uint32)
    fn = _module().get_function("hp_philox")
    fn(
        ((n + 255) // 256,),
        (256,),
        (cupy.asarray(ctr.T.copy()), np.uint32(1), np.uint32(2), d_out, np.int32(n)),
    )
    ref = np.stack(philox.philox4x32(tuple(ctr.astype(np.uint64)), (1, 2))).astype(np.uint32)
    np.testing.assert_array_equal(d_out.get().T, ref)


@pytest.mark.gpu
def test_gpu_array_philox_bit_for_bit() -> None:  # pragma: no cover - needs a GPU
    """The CuPy array path's Philox (one elementwise kernel) gives NumPy's words, with
    broadcast counters and keys above 32 bits masked as NumPy masks them."""
    import cupy

    idx = np.arange(200_000, dtype=np.uint64) * np.uint64(7919) + np.uint64(2**33 + 5)
    lo, hi = idx & np.uint64(0xFFFFFFFF), idx >> np.uint64(32)
    streams = np.arange(3, dtype=np.uint64)[:, None]
    ctr = (lo[None, :], hi[None, :], 11, streams)
    key = (0x1234_5678_9ABC, 0xFFFF_FFFF)
    ref = philox.philox4x32(ctr, key)
    got = philox.philox4x32(
        (cupy.asarray(lo)[None, :], cupy.asarray(hi)[None, :], 11, cupy.asarray(streams)),
        key,
        xp=cupy,
    )
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g.get(), r)


@pytest.mark.gpu
def test_gpu_one_pass_reduction_matches_numpy() -> None:  # pragma: no cover - needs a GPU
    """simulate_and_reduce on CuPy (array path, large GPU chunks): the same statistics and
    full-sample coefficient means as on NumPy, within the float32 steps' rounding (the
    margins are taken in float32 on both, with each library's own exp and log)."""
    from hashpivot.kernels.reduce import simulate_and_reduce

    sc = scenario("demo")
    sim_c, red_c = simulate_and_reduce(sc, 30_000, 8, 5, backend="numpy")
    sim_g, red_g = simulate_and_reduce(sc, 30_000, 8, 5, backend="cupy")
    for name, full in red_c.full_means.items():
        np.testing.assert_allclose(red_g.full_means[name], full, rtol=FP32_MEAN_RTOL, atol=1e-6)
    np.testing.assert_allclose(
        sim_g.margin_mean_usd_per_mw, sim_c.margin_mean_usd_per_mw, rtol=FP32_MEAN_RTOL
    )
    assert red_g.path_counts.sum() == red_c.path_counts.sum() == 30_000


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["demo", "texas_hybrid"])
def test_gpu_statistics_match_numpy(name: str) -> None:  # pragma: no cover - needs a GPU
    sc = scenario(name)
    gpu = simulate(sc, 50_000, seed=9, backend="cupy")
    cpu = simulate(sc, 50_000, seed=9, backend="numpy")
    for key in cpu.factors:
        np.testing.assert_allclose(gpu.factors[key].mean, cpu.factors[key].mean, rtol=1e-4)
    np.testing.assert_allclose(
        gpu.margin_mean_usd_per_mw,
        cpu.margin_mean_usd_per_mw,
        rtol=1e-4,
        atol=1e-6 * np.abs(cpu.margin_mean_usd_per_mw).max(),
    )


@pytest.mark.gpu
def test_gpu_chunk_size_invariance() -> None:  # pragma: no cover - needs a GPU
    """Per-warp partial sums over run-wide path groups: bit-identical for any chunking (chunks
    are whole warps; 1000 becomes 992)."""
    sc = scenario("demo")
    a = simulate(sc, 200_000, seed=3, backend="cupy", chunk_paths=1000)
    b = simulate(sc, 200_000, seed=3, backend="cupy", chunk_paths=65536)
    for key in a.factors:
        np.testing.assert_array_equal(a.factors[key].mean, b.factors[key].mean)
        np.testing.assert_array_equal(a.factors[key].p50, b.factors[key].p50)
    np.testing.assert_array_equal(a.margin_mean_usd_per_mw, b.margin_mean_usd_per_mw)


@pytest.mark.gpu
@needs_gxx
def test_gpu_evaluate_matches_host_emulation(host_lib: ctypes.CDLL) -> None:  # pragma: no cover
    """Every plan in one device pass, against the emulated kernel on the same paths."""
    from hashpivot.kernels.cuda import device_plans, evaluate_chunk_gpu
    from hashpivot.kernels.reduce import reduce_scenarios
    from hashpivot.optimizer.baselines import baseline

    sc = scenario("texas_hybrid")
    red = reduce_scenarios(sc, 800, 4, 1, backend="numpy", pilot_paths=800)
    names = ("greedy_expected_cash", "greedy", "convert_all")
    plans = {name: baseline(name, sc, red) for name in names}
    n, keep = 3000, 40
    key = philox.seed_key(5, philox.TAG_EVALUATE)
    gpu = evaluate_chunk_gpu(device_plans(sc, plans), key, 0, n, dict.fromkeys(names, keep))
    host = host_evaluate(host_lib, sc, list(plans.values()), key, n, keep)
    for name, h in zip(names, host, strict=True):
        g = gpu[name]
        assert np.mean(g.default_period != h.default_period) <= EVAL_FLIP_SHARE
        assert np.mean(g.breach_mask != h.breach_mask) <= EVAL_FLIP_SHARE
        same = g.default_period == h.default_period
        scale = np.abs(h.equity_usd).max()
        np.testing.assert_allclose(
            g.equity_usd[same], h.equity_usd[same], rtol=EVAL_RTOL, atol=1e-6 * scale
        )
        np.testing.assert_allclose(g.ai_share_sum, h.ai_share_sum, rtol=EVAL_RTOL, atol=1e-3)
        assert g.cash_usd.shape == (keep, sc.horizon.n_periods)


def _cu_enums(src: str) -> dict[str, int]:
    """Value of every enumerator of market.cu (all enums count from zero)."""
    out = {}
    for body in re.findall(r"enum\s*\{([^}]*)\}", src):
        for i, name in enumerate(n.strip() for n in body.split(",") if n.strip()):
            out[name] = i
    return out


def _cu_defines(src: str) -> dict[str, str]:
    return dict(re.findall(r"^#define (\w+) (\S+)$", src, flags=re.M))


def test_slot_layouts_match_market_cu() -> None:
    """Every slot list of cuda.py names the enumerators of market.cu in their order."""
    from hashpivot.kernels import cuda

    src = kernel_source()
    enums = _cu_enums(src)
    layouts = [
        [("I_", cuda.I_SIZES), ("O_", cuda.I_OFFSETS), ("D_", cuda.D_OFFSETS)]
        + [("M_", cuda.M_SLOTS), ("I_", cuda.I_TAIL + ["n_slots"])],
        [("E_", cuda.E_SLOTS + ["n_scalars"])],
        [("J_", cuda.J_SIZES), ("Q_", cuda.Q_BLOCKS), ("C_", cuda.C_ARRAYS)]
        + [("N_", cuda.N_SLOTS), ("J_", ["n_slots"])],
        [("T_", cuda.PLAN_T), ("K_", ["T"])],
        [("FT_", cuda.PLAN_FT), ("K_", ["FT"])],
        [("LT_", cuda.PLAN_LT), ("K_", ["LT"])],
        [("SITE_", cuda.PLAN_SITE), ("K_", ["SITE"])],
    ]
    for layout in layouts:
        names = [prefix + n.upper() for prefix, group in layout for n in group]
        assert [enums.get(n) for n in names] == list(range(len(names))), names
    assert enums["P_N_SCALARS"] == len(cuda.P_SLOTS)
    defines = _cu_defines(src)
    sizes = {
        "HP_CF_SIZE": cuda.CF_SIZE,
        "HP_CI_SIZE": cuda.CI_SIZE,
        "HP_CD_SIZE": cuda.CD_SIZE,
        "HP_CE_SIZE": cuda.CE_SIZE,
        "HP_CED_SIZE": cuda.CED_SIZE,
        "HP_THREADS": cuda.THREADS_PER_BLOCK,
        "HP_TILE_ROW": cuda.TILE_ROW,
        "HP_HOST_SMEM_DOUBLES": HOST_SMEM_BYTES // 8,
    }
    assert {k: int(defines[k]) for k in sizes} == sizes


def test_kernel_source_is_packaged() -> None:
    assert "hp_simulate" in kernel_source()
    assert Path(__file__).parent.parent.joinpath("kernels", "market.cu").is_file()


#: Fused evaluation (fp32 factors, fp64 money) against the NumPy evaluator.
EVAL_RTOL = 1e-4
#: Share of paths whose default period or breach flag may differ (a threshold met to fp32).
EVAL_FLIP_SHARE = 0.005


def host_evaluate(lib: ctypes.CDLL, sc, plans: list, key: tuple[int, int], n: int, keep: int):
    """Every plan of ``plans`` on paths 0..n in one emulated ``hp_evaluate`` pass."""
    from hashpivot.kernels.cuda import market_constants, pack_plans

    mc = market_constants(sc)
    pack = pack_plans(sc, plans, mc)
    assert evaluate_smem_bytes(mc, pack, threads=1) <= HOST_SMEM_BYTES
    set_constants(lib, mc, pack)
    n_p, t_n = len(plans), sc.horizon.n_periods
    scratch = np.full(scratch_rows(pack) * n, np.nan)  # every slot read is written first
    eq, dscr, btc, draw = (np.zeros((n_p, n)) for _ in range(4))
    default, mask = np.zeros((n_p, n), np.int32), np.zeros((n_p, n), np.int32)
    part_ai, part_debt = np.zeros((n, n_p, t_n)), np.zeros((n, n_p, t_n))
    cash = np.zeros((n_p, keep, t_n))
    lib.hp_evaluate(
        _ptr(pack.qd),
        _ptr(pack.qf),
        n_p,
        key[0],
        key[1],
        0,
        n,
        _ptr(scratch),
        n,
        *(_ptr(a) for a in (eq, default, mask, dscr, btc, draw, part_ai, part_debt, cash)),
        keep,
    )
    ai, debt = pairwise_row_sum(part_ai), pairwise_row_sum(part_debt)
    return [
        outcomes_from_kernel(
            mask[p], eq[p], default[p], dscr[p], btc[p], draw[p], ai[p], debt[p], cash[p]
        )
        for p in range(n_p)
    ]


@needs_gxx
@pytest.mark.parametrize(
    ("name", "policies", "rule"),
    [
        ("demo", ("convert_all", "greedy_expected_cash"), "accelerate"),
        ("demo", ("greedy_expected_cash",), "ignore"),
        ("texas_hybrid", ("greedy_expected_cash", "greedy", "convert_all"), "waiver"),
        ("texas_hybrid", ("greedy", "greedy_expected_cash"), "accelerate"),
    ],
)
def test_host_evaluate_matches_numpy(
    host_lib: ctypes.CDLL, name: str, policies: tuple[str, ...], rule: str
) -> None:
    """All plans in one pass over the same market paths, each against the NumPy evaluator."""
    from hashpivot.kernels.evaluate import path_coefficients, simulate_plan
    from hashpivot.kernels.reduce import reduce_scenarios
    from hashpivot.optimizer.baselines import baseline

    sc = scenario(name)
    sc = sc.model_copy(update={"covenants": sc.covenants.model_copy(update={"on_breach": rule})})
    red = reduce_scenarios(sc, 800, 4, 1, backend="numpy", pilot_paths=800)
    plans = [baseline(policy, sc, red) for policy in policies]
    n, keep, t_n = 2500, 50, sc.horizon.n_periods
    key = philox.seed_key(5, philox.TAG_EVALUATE)
    outs = host_evaluate(host_lib, sc, plans, key, n, keep)
    co = path_coefficients(sc, key, np.arange(n))
    for policy, plan, got in zip(policies, plans, outs, strict=True):
        ref = simulate_plan(sc, plan, co, keep=keep)
        same_default = got.default_period == ref.default_period
        assert np.mean(~same_default) <= EVAL_FLIP_SHARE
        assert np.mean(got.breach != ref.breach) <= EVAL_FLIP_SHARE
        assert np.mean(got.min_cash_breach != ref.min_cash_breach) <= EVAL_FLIP_SHARE
        # a covenant breach names the facilities tested, and only then
        facilities = got.breach_mask >> 3
        np.testing.assert_array_equal(facilities > 0, got.breach)
        assert (facilities < 2 ** len(sc.debt_facilities)).all()
        scale = np.abs(ref.equity_usd).max()
        np.testing.assert_allclose(
            got.equity_usd[same_default],
            ref.equity_usd[same_default],
            rtol=EVAL_RTOL,
            atol=1e-6 * scale,
        )
        np.testing.assert_allclose(got.ai_share_sum, ref.ai_share_sum, rtol=EVAL_RTOL, atol=1e-3)
        np.testing.assert_allclose(
            got.debt_sum_usd,
            ref.debt_sum_usd,
            rtol=EVAL_RTOL,
            atol=1e-6 * max(got.debt_sum_usd.max(), 1),
        )
        flows = np.abs(ref.cash_usd).max()
        np.testing.assert_allclose(got.cash_usd, ref.cash_usd, rtol=EVAL_RTOL, atol=1e-6 * flows)
        # a draw is a shortfall, a difference of large cash flows: compare it on their scale
        np.testing.assert_allclose(
            got.emergency_draw_usd[same_default],
            ref.emergency_draw_usd[same_default],
            rtol=EVAL_RTOL,
            atol=1e-5 * flows,
        )
        if policy == "convert_all":  # recourse and default exercised
            assert (ref.default_period < t_n).any()
        if rule != "ignore" and policy == "greedy_expected_cash":  # the breach rule exercised
            assert ref.breach.mean() > 0.5
    # plans that differ give different outcomes on the same paths (no plan index mix-up)
    assert not np.array_equal(outs[0].equity_usd, outs[-1].equity_usd) or len(outs) == 1


@pytest.mark.gpu
def test_gpu_evaluation_matches_numpy() -> None:  # pragma: no cover - needs a GPU
    from hashpivot.optimizer import evaluate

    gpu = evaluate("demo", policy="greedy", eval_paths=50_000, seed=3, backend="cupy")
    cpu = evaluate("demo", policy="greedy", eval_paths=50_000, seed=3, backend="numpy")
    for name, st in cpu.evaluation.stats.items():
        g = gpu.evaluation.stats[name]
        assert g.mean_equity_usd == pytest.approx(st.mean_equity_usd, rel=1e-4)
        assert abs(g.p_default - st.p_default) <= EVAL_FLIP_SHARE
