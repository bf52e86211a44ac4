"""Infeasibility in words, from arithmetic only (diagnosis never re-enters the solver)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml
from helpers import shipped_data

from hashpivot.kernels.plan import schedule
from hashpivot.optimizer.diagnose import committed_plan, undeliverable_offer_warnings
from hashpivot.scenarios import validate_data

CLI = [sys.executable, "-m", "hashpivot.optimizer.cli"]
#: Acceptance: the committed-but-unfundable case is explained within this time on 2 cores [s].
DIAGNOSIS_LIMIT_S = 60.0


def _unfundable() -> dict:
    """demo with its lease committed on a hard deadline (rockdale-east can build 4 blocks × 14
    IT MW by period 8), no facility, no BTC and $30M of cash: $504M of capex cannot be paid."""
    d = shipped_data("demo")
    lo = d["lease_offers"][0]
    lo.update(committed=True, hard_deadline=True)
    del lo["late_penalty_usd_per_mw_period"]
    d["debt_facilities"] = []
    d["treasury"] = {"cash_usd": 3.0e7, "btc_held": 0.0}
    d["covenants"]["min_cash_usd"] = 0.0
    d["name"] = "unfundable"
    return d


def test_committed_plan_is_the_cheapest_just_in_time_conversion() -> None:
    sc = validate_data(_unfundable())
    plan, placed = committed_plan(sc)
    assert placed == ["'fluidstack-a' at 'rockdale-east'"]
    # 50 IT MW / 14 per block = 4 blocks, 2 a period, lead 3: started in periods 4 and 5
    assert plan.blocks[0].tolist()[3:7] == [0, 2, 2, 0] and plan.blocks.sum() == 4
    sch = schedule(sc, plan)
    assert sch.capex_usd.sum() == 4 * 20 * 0.7 * 9.0e6
    assert sch.it_online_mw[0, 8] == 56.0 and sch.lease_total_it_mw[0, 8] == 50.0


def test_committed_unfundable_lease_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "unfundable.yaml"
    path.write_text(yaml.safe_dump(_unfundable(), sort_keys=False))
    t0 = time.perf_counter()
    proc = subprocess.run(
        CLI + ["optimize", str(path), "--out", str(tmp_path / "out"), "--backend", "numpy"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "lease 'fluidstack-a' at 'rockdale-east' can be built in time but not funded" in (
        proc.stderr
    )
    assert "'fluidstack-a'" in proc.stderr and "$504,000,000 of capex" in proc.stderr
    assert "short of minimum cash $0 by up to $" in proc.stderr
    assert elapsed < DIAGNOSIS_LIMIT_S
    assert not (tmp_path / "out").exists()


def test_undeliverable_uncommitted_offer_is_warned() -> None:
    d = shipped_data("demo")
    lo = d["lease_offers"][0]
    lo.update(hard_deadline=True, deliver_by_period=3, it_mw=50)
    del lo["late_penalty_usd_per_mw_period"]
    lines = undeliverable_offer_warnings(validate_data(d))
    assert lines == [
        "offer left unsigned: lease 'fluidstack-a' needs 50 IT MW by period 3; one eligible "
        "campus can bring online at most 28"
    ]
    lo["committed"] = True
    assert undeliverable_offer_warnings(validate_data(d)) == []  # an error, not a warning
