"""Streaming simulation: reproducibility, chunk invariance, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import scenario

from hashpivot.kernels.accumulate import OrderedSums
from hashpivot.kernels.backend import cuda_device_count
from hashpivot.kernels.simulate import PartialSums, merge_into, simulate
from hashpivot.optimizer.executor import SerialExecutor


def _same(a, b) -> None:
    for key in a.factors:
        for stat in ("mean", "std", "p05", "p50", "p95"):
            np.testing.assert_array_equal(
                getattr(a.factors[key], stat), getattr(b.factors[key], stat)
            )
    for r in a.power:
        np.testing.assert_array_equal(a.power[r].mean, b.power[r].mean)
    np.testing.assert_array_equal(a.margin_mean_usd_per_mw, b.margin_mean_usd_per_mw)
    np.testing.assert_array_equal(a.margin_stderr_usd_per_mw, b.margin_stderr_usd_per_mw)


def test_chunk_sizes_give_identical_statistics() -> None:
    sc = scenario("demo")
    a = simulate(sc, 70_000, seed=21, backend="numpy", chunk_paths=1000)
    b = simulate(sc, 70_000, seed=21, backend="numpy", chunk_paths=65_536)
    _same(a, b)
    np.testing.assert_array_equal(a.features, b.features)


def test_odd_chunks_multiregion_identical() -> None:
    sc = scenario("texas_hybrid")
    a = simulate(sc, 5000, seed=2, backend="numpy", chunk_paths=777)
    b = simulate(sc, 5000, seed=2, backend="numpy", chunk_paths=5000)
    _same(a, b)


def test_seed_determines_results() -> None:
    sc = scenario("demo")
    a = simulate(sc, 3000, seed=1, backend="numpy")
    _same(a, simulate(sc, 3000, seed=1, backend="numpy"))
    c = simulate(sc, 3000, seed=2, backend="numpy")
    assert not np.array_equal(a.factors["btc_price_usd"].mean, c.factors["btc_price_usd"].mean)


def test_prefix_of_paths_is_the_same_paths() -> None:
    """Paths depend on their index only: the first N of 2N paths are the N paths."""
    sc = scenario("demo")
    a = simulate(sc, 2048, seed=4, backend="numpy", feature_paths=100)
    b = simulate(sc, 4096, seed=4, backend="numpy", feature_paths=100)
    np.testing.assert_array_equal(a.features, b.features)


def test_ordered_sums_match_plain_sums() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 5000))
    acc = OrderedSums(1, 3)
    for a in range(0, 5000, 999):
        acc.add(0, v[:, a : a + 999])
    np.testing.assert_allclose(acc.result()[0], v.sum(axis=1), rtol=1e-12)


def test_partial_sums_chain_like_ordered_sums() -> None:
    """Runs of paths starting anywhere (inside a block too), each fed in odd chunks, merged in
    order: bit-identical to one OrderedSums fed every path, and equal to the plain sums."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(2, 3, 5000))  # 2 periods, width 3
    whole = OrderedSums(2, 3)
    for t in range(2):
        for a in range(0, 5000, 999):
            whole.add(t, [v[t, :2, a : a + 999], v[t, 2:, a : a + 999]])
    merged = OrderedSums(2, 3)
    bounds = [0, 700, 2500, 2600, 3000, 5000]  # 2600..3000 lies inside one block
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        part = PartialSums(2, 3, a)
        for c in range(a, b, 333):
            for t in range(2):
                e = min(b, c + 333)
                part.add(t, [v[t, :2, c:e], v[t, 2:, c:e]])
        lead, blocks, trail = part.parts()
        assert lead.shape[2] == min(b - a, (-a) % 1024)
        merge_into(merged, lead, blocks, trail)
    np.testing.assert_array_equal(merged.result(), whole.result())
    np.testing.assert_allclose(merged.result(), v.sum(axis=2), rtol=1e-12)


def test_split_into_work_items_gives_identical_statistics() -> None:
    """Work items of 1500 paths (block boundaries inside them) through an executor, chunks
    of 700: the same statistics and features as one streaming run."""
    sc = scenario("texas_hybrid")
    a = simulate(sc, 5000, seed=3, backend="numpy", feature_paths=2000)
    b = simulate(
        sc,
        5000,
        seed=3,
        backend="numpy",
        feature_paths=2000,
        chunk_paths=700,
        executor=SerialExecutor(),
        split_paths=1500,
    )
    _same(a, b)
    np.testing.assert_array_equal(a.features, b.features)
    assert simulate(sc, 1000, seed=3, backend="numpy").features is None  # none by default


def test_percentiles_are_ordered_and_features_bounded() -> None:
    res = simulate(scenario("texas_hybrid"), 3000, seed=3, backend="numpy", feature_paths=500)
    for st in list(res.factors.values()) + list(res.power.values()):
        assert np.all(st.p05 <= st.p50) and np.all(st.p50 <= st.p95)
        assert np.all(st.std >= 0)
    # yearly means of 4 + R log-factors for the first 500 paths only
    assert res.features.shape == (500, 10 * (4 + 2))


def test_json_layout() -> None:
    res = simulate(scenario("texas_hybrid"), 1000, seed=3, backend="numpy")
    data = json.loads(json.dumps(res.to_json()))
    for key in (
        "scenario",
        "paths",
        "seed",
        "backend",
        "device",
        "seconds",
        "hours_per_period",
        "periods",
        "factors",
        "sites",
    ):
        assert key in data
    assert data["periods"][0] == {"index": 0, "start": "2027-01-01", "t_years": 0.25}
    for name in (
        "btc_price_usd",
        "network_hashrate_eh_s",
        "hashprice_usd_per_ph_day",
        "ai_lease_usd_per_kw_month",
        "ai_occupancy",
        "gpu_hour_usd",
    ):
        assert set(data["factors"][name]) == {"mean", "std", "p05", "p50", "p95"}
        assert len(data["factors"][name]["mean"]) == 40
    assert set(data["factors"]["power_price_usd_per_mwh"]) == {"ercot-west", "ercot-north"}
    assert set(data["sites"]["rockdale"]["mining_margin_usd_per_mw"]) == {"mean", "stderr"}


def test_cli_simulate_writes_outputs(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hashpivot.optimizer.cli",
            "simulate",
            "demo",
            "--paths",
            "3000",
            "--backend",
            "numpy",
            "--out",
            str(out),
            "--seed",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert {
        "simulation.json",
        "btc_price.png",
        "hashprice.png",
        "power_price.png",
        "ai_lease_rate.png",
        "mining_margin.png",
    } <= names
    data = json.loads((out / "simulation.json").read_text())
    assert data["paths"] == 3000 and data["seed"] == 5 and data["backend"] == "numpy"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.skipif(cuda_device_count() > 0, reason="a GPU is present")
def test_cli_cupy_without_gpu_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hashpivot.optimizer.cli",
            "simulate",
            "demo",
            "--backend",
            "cupy",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "needs a CUDA device" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="paths"):
        simulate(scenario("demo"), 0, seed=1, backend="numpy")
