"""End to end: optimize and evaluate, their files, consistency with the MILP, baselines."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import NO_VALIDATION, NO_VALIDATION_FLAGS

from hashpivot.kernels.cashflow import cvar
from hashpivot.kernels.evaluate import PathCoefficients, simulate_plan
from hashpivot.kernels.plan import Plan
from hashpivot.optimizer import evaluate, optimize
from hashpivot.optimizer.baselines import POLICIES, baseline
from hashpivot.optimizer.checker import check_plan
from hashpivot.optimizer.cli import scenario_plan_table
from hashpivot.optimizer.pipeline import (
    eval_paths_warning,
    financing_frame,
    input_warnings,
    plan_frame,
    scenarios_warning,
    treasury_frame,
)
from hashpivot.scenarios import load_scenario

CLI = [sys.executable, "-m", "hashpivot.optimizer.cli"]
#: Statistics of a plan on the MILP's own K weighted scenarios (no standard errors: no sample).
IN_SAMPLE = {
    "objective_usd",
    "mean_equity_usd",
    "cvar_usd",
    "p_default",
    "p_breach",
    "p_min_cash_breach",
}
#: Out of sample: standard errors of the mean and of the objective (CVaR term included), and
#: the event counts behind the rates.
STATS = IN_SAMPLE | {
    "stderr_usd",
    "objective_stderr_usd",
    "paths",
    "default_events",
    "breach_events",
    "facility_breach_events",
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
        "treasury.csv",
        "summary.json",
        "report.html",
        "simulation.json",
        "mw_by_use.svg",
        "equity_distribution.svg",
        "ai_share.svg",
        "cash_debt.svg",
        "covenants.svg",
        "yearly.svg",
        "market.svg",
    ):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    for svg in out.glob("*.svg"):  # each chart embedded (the page stands alone)
        assert f"alt='{svg.name}'" in html
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
    } <= set(fin.columns)
    # BTC sales are per period, in their own table: a sum never double-counts them
    assert not {"btc_sold", "btc_held"} & set(fin.columns)
    tr = pd.read_csv(out / "treasury.csv")
    assert list(tr.columns) == ["period", "start", "btc_sold", "btc_held", "terminal_sale"]
    assert list(tr.period) == list(range(20)) and tr.terminal_sale.tolist() == [False] * 19 + [True]
    plan_json = json.loads((out / "plan.json").read_text())
    assert tr.btc_sold.sum() == pytest.approx(sum(plan_json["btc_sold"]), abs=1e-6)


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
        "validation",
    ):
        assert key in s, key
    # the shipped defaults are reliable: the only possible warning is a gap above the target
    # (a loaded machine may stop demo at its 30 s limit)
    assert s["solver"]["target_gap"] == 0.001
    assert s["solver"]["gap_ok"] == (s["solver"]["gap"] <= 0.001 + 1e-12)
    assert len(s["warnings"]) == (0 if s["solver"]["gap_ok"] else 1)
    assert all("raise --time-limit" in w for w in s["warnings"])
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
    assert set(s["plan"]["in_sample"]) == IN_SAMPLE and set(s["plan"]["out_of_sample"]) == STATS
    assert set(s["baselines"]) == set(POLICIES)
    for b in POLICIES:
        assert set(s["baselines"][b]) == STATS
        assert set(s["vs_baselines"][b]) == {"diff_usd", "stderr_usd"}
    assert set(s["timings_seconds"]) == {
        "simulate",
        "reduce",
        "build",
        "solve",
        "replicate",
        "select",
        "calibrate",
        "baselines",
        "evaluate",
        "gap_ci",
        "report",
    }
    # the validation block of issue 11, at the shipped defaults
    v = s["validation"]
    assert set(v) == {
        "replications",
        "gap_ci",
        "covenant_bound",
        "calibration_rounds",
        "vss",
        "evpi",
    }
    assert v["replications"]["count"] == 2 and v["gap_ci"]["batches"] == 4
    assert {"gbar_usd", "s_usd", "batches", "upper95_usd", "upper95_rel"} <= set(v["gap_ci"])
    assert {"p_breach", "upper95", "per_covenant", "holds"} <= set(v["covenant_bound"])
    assert v["covenant_bound"]["holds"]  # demo keeps its guarantee (5.3% < 10%)
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


NOISE = re.compile(r"\d\.\d*(?:99999|00000)\d*\b|e-1\d|-0\.0\b(?!\d)")


def test_output_files_have_no_float_noise_or_negative_zero(demo_run) -> None:
    out, _ = demo_run
    for name in ("plan.csv", "financing.csv", "treasury.csv", "plan.json", "summary.json"):
        text = (out / name).read_text()
        if name == "summary.json":  # statistics are not rounded, but never -0.0
            assert not re.search(r"-0\.0\b(?!\d)", text), name
            continue
        found = NOISE.search(text)
        assert found is None, (name, found and found.group())


@pytest.mark.slow
def test_tiny_time_limit_warns_in_the_summary(tmp_path: Path) -> None:
    """A 1 s solve of texas_hybrid (whose node budgets need far longer) with 4 scenarios and 500
    evaluation paths: the terminal summary and summary.json warn about the gap (with what to
    do), the scenarios and the paths."""
    out = tmp_path / "quick"
    proc = subprocess.run(
        CLI
        + ["optimize", "texas_hybrid", "--out", str(out), "--backend", "numpy"]
        + ["--paths", "2000", "--scenarios", "4", "--eval-paths", "500", "--time-limit", "1"]
        + NO_VALIDATION_FLAGS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["solver"]["gap_ok"] is False and s["solver"]["status"] == "time_limit"
    target = load_scenario("texas_hybrid").defaults.mip_gap
    assert s["solver"]["gap"] > s["solver"]["target_gap"] == target
    assert s["solver"]["time_limited"] is True
    text = " ".join(s["warnings"])
    assert "raise --time-limit" in text and "--scenarios 10 or more" in text
    assert "--eval-paths 1000 or more" in text
    flat = " ".join(proc.stdout.split())
    assert "warning: the solver stopped at a gap of" in flat and "raise --time-limit" in flat
    assert "its time limit" in flat
    assert "warning: 4 reduced scenarios are too few" in " ".join(proc.stderr.split())
    page = (out / "report.html").read_text(encoding="utf-8")
    top = page[: page.index("What this means")]  # the warning box comes before everything else
    assert "id='gap-warning'" in top and "the plan may be far from the best" in top


@pytest.mark.slow
def test_ctrl_c_during_the_solve_stops_within_seconds(tmp_path: Path) -> None:
    out = tmp_path / "int"
    proc = subprocess.Popen(
        CLI
        + ["optimize", "texas_hybrid", "--out", str(out), "--backend", "numpy"]
        + ["--paths", "2000", "--eval-paths", "1000", "--time-limit", "300"]
        + NO_VALIDATION_FLAGS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:  # plain progress lines: stderr is not a terminal
            if line.startswith("solve:"):
                break
        time.sleep(1.0)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        proc.wait(timeout=30)
        took = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 130, rest
    assert rest.strip().splitlines()[-1] == "interrupted" and "Traceback" not in rest
    assert took < 3.0
    assert not out.exists()


def test_evaluate_refuses_loose_plan_values(tmp_path: Path) -> None:
    data = Plan.empty(load_scenario("demo")).to_json()
    data["lease_signed"] = ["false"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    proc = subprocess.run(
        CLI + ["evaluate", "demo", "--plan", str(bad), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2  # refused before anything else is printed
    assert proc.stderr.strip() == "plan.lease_signed[0]: must be true or false (got 'false')"
    assert not (tmp_path / "x").exists()
    bad.write_bytes(json.dumps(data).encode("utf-16"))
    proc = subprocess.run(
        CLI + ["evaluate", "demo", "--plan", str(bad)], capture_output=True, text=True, timeout=300
    )
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == f"{bad}: is UTF-16 text; plans must be UTF-8"
    )


def test_consistency_with_milp_objective() -> None:
    res = optimize(
        "demo", paths=4000, n_scenarios=8, eval_paths=2000, seed=3, backend="numpy", **NO_VALIDATION
    )
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
        CLI
        + ["optimize", "texas_hybrid", "--out", str(out), "--backend", "numpy", "--quiet"]
        + NO_VALIDATION_FLAGS,
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


def test_scenario_and_path_warnings_thresholds() -> None:
    sc = load_scenario("demo")  # covenants kept with confidence 0.9: 1/(1 − 0.9) = 10
    assert scenarios_warning(sc, 10) is None and scenarios_warning(sc, 16) is None
    text = scenarios_warning(sc, 9)
    assert text and "9 reduced scenarios" in text and "--scenarios 10 or more" in text
    assert eval_paths_warning(1000) is None
    assert "--eval-paths 1000 or more" in eval_paths_warning(999)
    assert input_warnings(sc, 1, 10) == [scenarios_warning(sc, 1), eval_paths_warning(10)]


def test_treasury_and_financing_frames_by_hand() -> None:
    sc = load_scenario("demo")
    plan = Plan.empty(sc)
    plan.btc_sold[[1, 2, 19]] = [2.5, 0.123456789, 1.0]
    plan.draws_usd[0, 0] = 1.0e8 + 1e-7  # float noise below the cent
    plan.draws_usd[0, 1] = -1e-12  # a solver's -0.0
    tr = treasury_frame(sc, plan)
    held0 = sc.treasury.btc_held
    assert tr.btc_sold.tolist()[:3] == [0.0, 2.5, 0.12345679]
    assert tr.btc_held.iloc[2] == pytest.approx(held0 - 2.62345679, abs=1e-8)
    assert tr.terminal_sale.tolist() == [False] * 19 + [True]
    fin = financing_frame(sc, plan)
    assert len(fin) == sc.horizon.n_periods * len(sc.debt_facilities)
    assert fin.draw_usd.iloc[0] == 1.0e8
    assert not np.signbit(fin.draw_usd.iloc[1])  # no -0.0
    assert "btc_sold" not in fin.columns
    csv = fin.to_csv(index=False) + tr.to_csv(index=False) + plan_frame(sc, plan).to_csv()
    assert "-0.0" not in csv and "e-07" not in csv


def test_plan_caption_does_not_count_terminal_sales_as_decisions() -> None:
    sc = load_scenario("demo")
    plan = Plan.empty(sc)
    plan.btc_sold[[3, 19]] = [1.25, 400.0]
    res = SimpleNamespace(scenario=sc, plan=plan, plan_frame=lambda: plan_frame(sc, plan))
    caption = scenario_plan_table(res).caption
    assert "BTC sold 1.25 BTC (and 400.00 BTC valued at the horizon's end)" in caption
    plan.btc_sold[19] = 0.0
    assert scenario_plan_table(res).caption.endswith("BTC sold 1.25 BTC")


def test_reduce_reports_paths_done_per_chunk() -> None:
    from hashpivot.kernels.reduce import reduce_scenarios

    calls: list[tuple[int, int]] = []
    sc = load_scenario("demo")
    plain = reduce_scenarios(sc, 3000, 4, 1, backend="numpy", pilot_paths=1000)
    red = reduce_scenarios(
        sc,
        3000,
        4,
        1,
        backend="numpy",
        pilot_paths=1000,
        progress=lambda a, b: calls.append((a, b)),
    )
    # one pass (the pilot is its first paths): every path once, 3,000 in all
    assert calls[-1] == (3000, 3000)
    assert all(b == 3000 for _, b in calls) and [a for a, _ in calls] == sorted(a for a, _ in calls)
    np.testing.assert_array_equal(red.weights, plain.weights)  # watching changes nothing


def test_evaluate_summary_warns_about_few_paths() -> None:
    res = evaluate("demo", policy="stay_mining", eval_paths=200, seed=2, backend="numpy")
    assert res.summary()["warnings"] == [eval_paths_warning(200, "--paths")]
    assert "use --paths 1000 or more" in res.summary()["warnings"][0]


@pytest.mark.slow
def test_a_strong_btc_drift_does_not_convert_more() -> None:
    """Issue 10: hashrate answers to miners' margins, so an 80% BTC drift raises hashrate rather
    than hashprice, and the plan converts no more MW than at demo's base drift."""
    import copy

    from hashpivot.scenarios import validate_data
    from hashpivot.scenarios.loader import read_source

    data, _ = read_source("demo")
    mw = {}
    for drift in (data["market"]["btc"]["drift_per_year"], 0.8):
        d = copy.deepcopy(data)
        d["market"]["btc"]["drift_per_year"] = drift
        sc = validate_data(d)
        res = optimize(
            sc, paths=4000, n_scenarios=16, eval_paths=500, backend="numpy", **NO_VALIDATION
        )
        assert res.solve.gap_ok
        mw[drift] = sum(
            res.plan.blocks[i].sum() * s.conversion.block_mw for i, s in enumerate(sc.sites)
        )
    assert mw[0.8] <= mw[data["market"]["btc"]["drift_per_year"]]


def test_a_gap_missed_at_the_work_budget_is_not_blamed_on_the_time_limit() -> None:
    """A solve that ends above its gap at its node and iteration budgets, well inside the time
    limit: the warning names the budget and the seconds it took, and does not ask for more
    time (which would change nothing)."""
    from hashpivot.optimizer.pipeline import gap_warning
    from hashpivot.optimizer.solve import SolveResult, Termination

    s = SolveResult(
        status=Termination.WORK_LIMIT, plan=None, objective_usd=95.0, bound_usd=100.0,
        gap=0.05, target_gap=0.01, build_seconds=1.0, solve_seconds=12.4,
    )  # fmt: skip
    words = gap_warning(s, 300.0)
    assert "5.00% (target 1.00%) at its work budget" in words and "after 12 s" in words
    assert "--time-limit" not in words and "300" not in words
    assert gap_warning(SolveResult(**{**s.__dict__, "gap": 0.005}), 300.0) is None
