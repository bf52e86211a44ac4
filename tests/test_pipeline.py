"""End to end: optimize and evaluate, their files, consistency with the MILP, baselines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hashpivot.kernels.cashflow import cvar
from hashpivot.kernels.evaluate import PathCoefficients, simulate_plan
from hashpivot.kernels.plan import Plan
from hashpivot.optimizer import evaluate, optimize
from hashpivot.optimizer.baselines import POLICIES, baseline
from hashpivot.optimizer.checker import check_plan

CLI = [sys.executable, "-m", "hashpivot.optimizer.cli"]
STATS = {
    "objective_usd",
    "mean_equity_usd",
    "stderr_usd",
    "cvar_usd",
    "p_default",
    "p_breach",
    "p_min_cash_breach",
}
#: The evaluator on the MILP's own scenarios against the MILP objective.
CONSISTENCY_RTOL = 1e-6


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("opt") / "demo"
    proc = subprocess.run(
        CLI + ["optimize", "demo", "--out", str(out), "--backend", "numpy"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out, proc


def test_optimize_demo_writes_every_output(demo_run) -> None:
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr
    for name in (
        "plan.json",
        "plan.csv",
        "financing.csv",
        "summary.json",
        "report.html",
        "simulation.json",
        "mw_by_use.png",
        "equity_distribution.png",
        "ai_share.png",
        "cash_debt.png",
        "btc_price.png",
        "hashprice.png",
    ):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    for png in out.glob("*.png"):
        assert f"src='{png.name}'" in html
    plan = pd.read_csv(out / "plan.csv")
    assert {"site", "period", "blocks_started", "it_online_mw", "asic_mw", "lease_it_mw"} <= set(
        plan.columns
    )
    fin = pd.read_csv(out / "financing.csv")
    assert {
        "period",
        "facility",
        "draw_usd",
        "interest_usd",
        "repayment_usd",
        "balance_usd",
        "btc_sold",
    } <= set(fin.columns)


def test_summary_has_every_field(demo_run) -> None:
    out, _ = demo_run
    s = json.loads((out / "summary.json").read_text())
    for key in (
        "version",
        "scenario",
        "seed",
        "backend",
        "device",
        "paths",
        "scenarios",
        "eval_paths",
        "on_breach",
        "solver",
        "plan",
        "baselines",
        "vs_baselines",
        "baseline_rules",
        "warnings",
        "timings_seconds",
    ):
        assert key in s, key
    assert set(s["solver"]) >= {
        "status",
        "objective_usd",
        "bound_usd",
        "gap",
        "build_seconds",
        "solve_seconds",
        "runs",
    }
    for run in s["solver"]["runs"]:  # each solver run says what it was and how it ended
        assert {"run", "status", "objective_usd", "bound_usd", "solve_seconds"} <= set(run)
    assert set(s["plan"]["in_sample"]) == STATS and set(s["plan"]["out_of_sample"]) == STATS
    assert set(s["baselines"]) == set(POLICIES)
    for b in POLICIES:
        assert set(s["baselines"][b]) == STATS
        assert set(s["vs_baselines"][b]) == {"diff_usd", "stderr_usd"}
    assert set(s["timings_seconds"]) == {
        "simulate",
        "reduce",
        "build",
        "solve",
        "evaluate",
        "report",
    }
    assert s["solver"]["status"] == "optimal" and s["solver"]["gap"] <= 0.001 + 1e-12


def test_demo_plan_against_baselines_is_pinned(demo_run) -> None:
    """demo (breaches accelerate): every baseline keeps minimum cash and the covenants in the
    reduced scenarios, and the plan beats each by > 3 standard errors of the paired difference."""
    out, _ = demo_run
    s = json.loads((out / "summary.json").read_text())
    assert s["on_breach"] == {"rule": "accelerate"}
    for b in POLICIES:
        assert s["baseline_rules"][b]["keeps_rules"], (b, s["baseline_rules"][b])
        v = s["vs_baselines"][b]
        assert v["diff_usd"] > 3 * v["stderr_usd"], b
    assert s["best_baseline"] is None


def test_plan_json_round_trips_through_evaluate(demo_run, tmp_path: Path) -> None:
    out, _ = demo_run
    proc = subprocess.run(
        CLI
        + [
            "evaluate",
            "demo",
            "--plan",
            str(out / "plan.json"),
            "--paths",
            "4000",
            "--out",
            str(tmp_path / "ev"),
            "--backend",
            "numpy",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert s["evaluated"] == "plan" and set(s["out_of_sample"]) == STATS


def test_evaluate_refuses_impossible_plan(demo_run, tmp_path: Path) -> None:
    out, _ = demo_run
    data = json.loads((out / "plan.json").read_text())
    data["blocks"][1] = [1] * len(data["blocks"][1])  # 20 blocks of 20 MW at a 60 MW site
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    proc = subprocess.run(
        CLI + ["evaluate", "demo", "--plan", str(bad), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2
    assert (
        "site 'barber-west' period 3: converts 80 MW, more than its 60 convertible MW"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_evaluate_bad_plan_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        CLI + ["evaluate", "demo", "--plan", str(bad)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "invalid JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_interrupted_run_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        CLI + ["optimize", "demo", "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(6.0)  # imports, simulation and reduction done: the MILP is being solved
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_consistency_with_milp_objective() -> None:
    res = optimize("demo", paths=4000, n_scenarios=8, eval_paths=2000, seed=3, backend="numpy")
    red = res.reduced
    co = PathCoefficients(
        **{
            k: v
            for k, v in red.coefficient_arrays().items()
            if k in PathCoefficients.__dataclass_fields__
        }
    )
    w = simulate_plan(res.scenario, res.plan, co, recourse=False).equity_usd
    sc = res.scenario
    obj = red.weights @ w - sc.risk.cvar_weight * cvar(-w, red.weights, sc.risk.cvar_alpha)
    assert obj == pytest.approx(res.solve.objective_usd, rel=CONSISTENCY_RTOL)
    assert res.in_sample["objective_usd"] == pytest.approx(
        res.solve.objective_usd, rel=CONSISTENCY_RTOL
    )
    frame = res.plan_frame()
    assert len(frame) == len(sc.sites) * sc.horizon.n_periods


@pytest.mark.parametrize(
    "name", ["demo", "texas_hybrid", pytest.param("public_miners_2026", marks=pytest.mark.slow)]
)
def test_baselines_pass_the_checker(name: str) -> None:
    """Every baseline passes the checker on the reduced scenarios (minimum cash and the
    covenants at the scenario's confidence); the naive rules at least structurally."""
    from hashpivot.kernels.reduce import reduce_scenarios
    from hashpivot.optimizer.baselines import NAIVE_POLICIES
    from hashpivot.scenarios import load_scenario

    sc = load_scenario(name)
    red = reduce_scenarios(sc, 1000, 4, 1, backend="numpy", pilot_paths=1000)
    for policy in POLICIES:
        assert check_plan(sc, baseline(policy, sc, red), red) == [], (name, policy)
    for policy in NAIVE_POLICIES:
        assert check_plan(sc, baseline(policy, sc, red)) == [], (name, policy)


def test_python_evaluate_policy() -> None:
    res = evaluate("demo", policy="convert_all", eval_paths=1500, seed=2, backend="numpy")
    assert res.name == "convert_all" and set(res.evaluation.stats) == set(POLICIES)
    assert 0.0 <= res.stats.p_default <= 1.0


def test_evaluation_uses_common_random_numbers() -> None:
    a = evaluate("demo", policy="stay_mining", eval_paths=1000, seed=4, backend="numpy")
    b = evaluate("demo", policy="greedy", eval_paths=1000, seed=4, backend="numpy")
    np.testing.assert_array_equal(
        a.evaluation.stats["stay_mining"].equity_sample_usd,
        b.evaluation.stats["stay_mining"].equity_sample_usd,
    )
    assert isinstance(Plan.empty(a.scenario), Plan)


@pytest.mark.slow
def test_texas_hybrid_against_baselines_is_pinned(tmp_path: Path) -> None:
    """texas_hybrid (breaches accelerate): every baseline keeps the rules in the reduced
    scenarios and the plan beats each by > 3 standard errors of the paired difference."""
    out = tmp_path / "tx"
    proc = subprocess.run(
        CLI + ["optimize", "texas_hybrid", "--out", str(out), "--backend", "numpy", "--quiet"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    for b in POLICIES:
        assert s["baseline_rules"][b]["keeps_rules"], (b, s["baseline_rules"][b])
        v = s["vs_baselines"][b]
        assert v["diff_usd"] > 3 * v["stderr_usd"], b
    assert s["best_baseline"] is None
