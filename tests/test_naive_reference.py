"""The benchmarks' naive NumPy reference does the project's work: same model, other random
numbers, so its statistics agree with the project's within Monte Carlo error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from helpers import N_SE

from hashpivot.kernels.factors import factor_values_from_logs, start_logs
from hashpivot.kernels.market import market_params
from hashpivot.kernels.simulate import simulate
from hashpivot.scenarios import synthetic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from naive_reference import naive_simulate, side_by_side  # noqa: E402

PATHS = 20_000


def test_naive_statistics_agree_with_project() -> None:
    sc = synthetic(3, seed=1, years=2.0)
    res = simulate(sc, PATHS, seed=5, backend="numpy", feature_paths=0)
    sums, counts = naive_simulate(sc, PATHS, 5)
    n_sites, f = 3, sums.shape[1] // 2 - 3
    assert np.all(counts.sum(axis=2) == PATHS)
    # independent samples: the difference of means has standard error √2·SE
    margin = sums[:, 2 * f : 2 * f + n_sites].T / PATHS
    se = np.sqrt(2.0) * res.margin_stderr_usd_per_mw
    assert np.all(np.abs(margin - res.margin_mean_usd_per_mw) < N_SE * se)
    start = factor_values_from_logs(start_logs(market_params(sc))[:, None].copy())[:, 0]
    for i, (name, st) in enumerate(res.factors.items()):
        mean = sums[:, i] / PATHS + start[i]  # the sums are shifted by the start value
        assert np.all(np.abs(mean - st.mean) < N_SE * np.sqrt(2.0 / PATHS) * st.std), name


def test_side_by_side_ratio() -> None:
    calls: list[str] = []
    out = side_by_side(lambda: calls.append("p"), lambda: calls.append("n"), repeats=3)
    assert calls == ["p", "n"] * 4  # one warm-up each, then interleaved
    assert (
        out["naive_reference_ratio"] == out["naive_median_seconds"] / out["project_median_seconds"]
    )
