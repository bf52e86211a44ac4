"""The pipeline profile counts market passes: ``optimize`` steps each of its paths through the
market model once (no pilot or medoid re-simulation) and each evaluation path once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from helpers import scenario

from hashpivot.kernels import market, philox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from profile_pipeline import PathCounter, profile  # noqa: E402


def test_counter_counts_paths_per_key_and_restores() -> None:
    from hashpivot.kernels import simulate as sim_mod  # noqa: PLC0415

    mp = market.market_params(scenario("demo"))
    with PathCounter() as counter:
        for _ in sim_mod.iter_periods(mp, philox.seed_key(3), np.arange(7)):
            pass
        list(sim_mod.iter_periods(mp, philox.seed_key(3, philox.TAG_EVALUATE), np.arange(5)))
    assert counter.for_seed(3) == 7 and counter.for_seed(3, philox.TAG_EVALUATE) == 5
    assert counter.path_periods[philox.seed_key(3)] == 7 * mp.n_periods
    assert sim_mod.iter_periods is market.iter_periods  # patched names restored


def test_optimize_steps_each_path_once() -> None:
    row = profile("demo", paths=600, n_scenarios=4, eval_paths=300, seed=3)
    assert row["simulate_paths_stepped"] == 600 and row["simulate_passes"] == 1.0
    assert row["evaluate_paths_stepped"] == 300 and row["evaluate_passes"] == 1.0
    assert row["other_paths_stepped"] == 0
