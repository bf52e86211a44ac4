"""Baselines keep the plan's rules: minimum cash and covenants at the scenario's confidence."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny

from hashpivot.kernels.reduce import reduce_scenarios
from hashpivot.optimizer import baselines as baselines_module
from hashpivot.optimizer.baselines import (
    NAIVE_POLICIES,
    POLICIES,
    BaselinePlans,
    baseline,
    mean_scenario,
)
from hashpivot.optimizer.checker import check_plan


def _reduced(sc, k: int = 4):
    return reduce_scenarios(sc, 400, k, 3, backend="numpy", pilot_paths=400)


def test_a_baseline_that_would_break_minimum_cash_is_shrunk_until_it_does_not() -> None:
    # one site of 3 blocks, $112M of capex each (20 MW × 0.7 × $8M/IT MW), $150M of cash,
    # minimum $10M, nothing to borrow: as fast as allowed starts 2 blocks at t = 0 ($224M),
    # which no scenario can pay; 1 block ($112M, less $1M of salvage) leaves ≥ $39M + OCF
    sc = tiny(n_sites=1, n_periods=4)
    red = _reduced(sc)
    naive = baseline("convert_all_expected_cash", sc, red)
    assert naive.blocks[0].tolist() == [2, 1, 0, 0]
    assert any("below the minimum" in line for line in check_plan(sc, naive, red))
    ruled = baseline("convert_all", sc, red)
    assert ruled.blocks[0].tolist() == [1, 0, 0, 0]
    assert check_plan(sc, ruled, red) == []


def test_funding_keeps_the_covenants_or_the_plan_shrinks() -> None:
    sc = tiny(
        n_sites=1,
        n_periods=8,
        facility=True,
        covenants={"min_dscr": 1.2, "max_leverage": 1.5, "confidence": 0.75, "min_cash_usd": 1e7},
        treasury={"cash_usd": 6.0e7},
    )
    red = _reduced(sc, k=6)
    for name in POLICIES:
        assert check_plan(sc, baseline(name, sc, red), red) == [], name
    naive = baseline("convert_all_expected_cash", sc, red)
    assert check_plan(sc, naive, red)  # the naive rule breaks them
    assert baseline("convert_all", sc, red).blocks.sum() < naive.blocks.sum()


def test_mean_scenario_holds_the_weighted_means() -> None:
    sc = tiny(n_sites=2, n_periods=4, lease=True)
    red = _reduced(sc, k=5)
    one = mean_scenario(red)
    assert one.n_scenarios == 1 and one.weights.tolist() == [1.0]
    for name, arr in red.coefficient_arrays().items():
        np.testing.assert_allclose(
            getattr(one, name)[0], np.tensordot(red.weights, arr, axes=1), rtol=1e-12
        )


def test_expected_value_plan_converts_when_the_mean_says_so() -> None:
    # a lease worth far more than mining: the EV plan signs it and converts
    sc = tiny(n_sites=1, n_periods=4, lease=True)
    red = _reduced(sc)
    plan = baseline("expected_value", sc, red)
    assert plan.lease_signed[0] and plan.blocks.sum() >= 1
    assert check_plan(sc, plan, red) == []


def test_unknown_policy_names_the_choices() -> None:
    sc = tiny()
    with pytest.raises(ValueError, match="expected_value, convert_all_expected_cash"):
        baseline("nope", sc, _reduced(sc))
    assert set(NAIVE_POLICIES).isdisjoint(POLICIES)


def test_baseline_plans_are_computed_once_and_shared_with_the_starts(monkeypatch) -> None:
    sc = tiny()
    red = _reduced(sc)
    calls: list[str] = []
    real = baselines_module.greedy

    def counting(sc_, red_):
        calls.append("greedy")
        return real(sc_, red_)

    monkeypatch.setattr(baselines_module, "greedy", counting)
    base = BaselinePlans(sc, red)
    assert base.computed() == ()  # nothing before it is asked for
    (start,) = base.starts()
    assert base["greedy"] is start and base.starts()[0] is start
    assert calls == ["greedy"]
    again, fresh = base["stay_mining"], baseline("stay_mining", sc, red)
    assert np.array_equal(again.blocks, fresh.blocks)
    assert np.array_equal(again.draws_usd, fresh.draws_usd)
    assert base.computed() == ("greedy", "stay_mining")
