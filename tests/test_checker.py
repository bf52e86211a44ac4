"""The plan checker names the site, lease, facility and period of each violation."""

from __future__ import annotations

import numpy as np
from helpers import scenario, tiny

from hashpivot.kernels.plan import Plan
from hashpivot.kernels.reduce import reduce_scenarios
from hashpivot.optimizer.checker import check_plan


def test_empty_plan_is_structurally_feasible() -> None:
    for name in ("demo", "texas_hybrid", "public_miners_2026"):
        sc = scenario(name)
        lines = check_plan(sc, Plan.empty(sc))
        committed = [lo for lo in sc.lease_offers if lo.committed]
        assert len(lines) == len(committed)


def test_too_many_mw_names_site_and_period() -> None:
    sc = scenario("demo")
    p = Plan.empty(sc)
    p.blocks[1, 3] = 1
    p.blocks[1, 4] = 1
    p.blocks[1, 5] = 1
    p.blocks[1, 6] = 1  # 80 MW > 60 convertible at barber-west
    lines = check_plan(sc, p)
    assert "site 'barber-west' period 6: converts 80 MW, more than its 60 convertible MW" in lines


def test_lease_rules() -> None:
    sc = tiny(n_sites=2, n_periods=4, lease=True)
    p = Plan.empty(sc)
    p.lease_it_mw[0, 0, 2] = 5.0
    assert "lease 'L' is not signed but receives IT MW" in check_plan(sc, p)
    p.lease_signed[0] = True
    p.lease_it_mw[0, 1, 2] = 5.0
    lines = check_plan(sc, p)
    assert any("single-campus" in x for x in lines)
    assert any(
        "site 's0' period 2: leases and racks use 5 IT MW, only 0 online" in x for x in lines
    )


def test_debt_and_treasury_rules() -> None:
    sc = tiny(
        n_sites=1,
        n_periods=4,
        facility=True,
        treasury={"btc_held": 10.0, "btc_floor": 5.0, "max_btc_sale_per_period": 3.0},
    )
    p = Plan.empty(sc)
    p.draws_usd[0, 2] = 1.0e6
    p.btc_sold[:] = [3.0, 3.0, 0.0, 0.0]
    p.btc_sold[1] = 4.0
    lines = check_plan(sc, p)
    assert "facility 'F' period 2: draw outside the window 0–0" in lines
    assert "period 1: 4 BTC sold, at most 3" in lines
    assert "period 1: BTC held 3 below the floor 5" in lines


def test_cash_rule_with_scenarios() -> None:
    sc = tiny(n_sites=1, n_periods=4, treasury={"cash_usd": 1.2e7})
    red = reduce_scenarios(sc, 200, 3, 1, backend="numpy")
    p = Plan.empty(sc)
    p.blocks[0, 0] = 1  # $112M of capex with $12M of cash
    lines = check_plan(sc, p, red)
    assert any(x.startswith("scenario ") and "below the minimum" in x for x in lines)
    assert check_plan(sc, Plan.empty(sc), red) == []


def test_names_must_match() -> None:
    sc = scenario("demo")
    other = Plan.empty(scenario("texas_hybrid"))
    assert check_plan(sc, other)[0].startswith("plan.sites: must be")
    assert np.all(Plan.empty(sc).blocks == 0)


def test_violation_count_includes_the_lines_left_out() -> None:
    from hashpivot.optimizer.checker import MAX_PER_RULE, _Collector, violation_count

    c = _Collector()
    for i in range(MAX_PER_RULE + 3):
        c.add("blocks", f"site 's' period {i}: 3 blocks started, at most 2 per period")
    c.add("fleet", "period 0: 4 blocks started fleet-wide, at most 2")
    lines = c.result()
    assert len(lines) == MAX_PER_RULE + 2  # 5 + 1 shown, one "... and 3 more" line
    assert lines[-1] == "... and 3 more 'blocks' violations"
    assert violation_count(lines) == MAX_PER_RULE + 3 + 1
    sc = scenario("demo")
    p = Plan.empty(sc)
    p.blocks[:, :] = 9
    lines = check_plan(sc, p)
    assert violation_count(lines) > len(lines)
