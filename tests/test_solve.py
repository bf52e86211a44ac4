"""Solve phases: covenant severity, the excuse heuristic, progress, log, Ctrl-C, gap status."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import scenario, tiny

from hashpivot.kernels.cashflow import cash_flows
from hashpivot.kernels.plan import Plan
from hashpivot.kernels.reduce import reduce_scenarios
from hashpivot.optimizer import solve as solve_module
from hashpivot.optimizer.baselines import baseline
from hashpivot.optimizer.checker import check_plan
from hashpivot.optimizer.model import build_model, covenant_regimes, model_data
from hashpivot.optimizer.solve import (
    DEFAULT_THREADS,
    INTERRUPT_GRACE_S,
    NoSolutionError,
    SolveProgress,
    SolveResult,
    Termination,
    _meets_covenants,
    _Run,
    _Session,
    covenant_severity,
    excuse_worst,
    plan_integers,
    quantile_bound,
    solve,
    start_values,
)
from hashpivot.scenarios import load_scenario, synthetic


def _tight_covenants():
    sc = tiny(
        n_periods=8,
        facility=True,
        covenants={"confidence": 0.75, "min_dscr": 1.2, "max_leverage": 1.5},
        treasury={"cash_usd": 9.0e7, "btc_held": 300.0, "max_btc_sale_per_period": 100.0},
    )
    red = reduce_scenarios(sc, 600, 8, seed=11, backend="numpy", pilot_paths=600)
    return sc, red, model_data(sc, red)


def test_excuse_worst_takes_the_most_severe_within_the_allowed_weight() -> None:
    d = SimpleNamespace(
        n_scenarios=5,
        weights=np.array([0.05, 0.3, 0.05, 0.4, 0.2]),
        sc=SimpleNamespace(covenants=SimpleNamespace(confidence=0.9)),
    )
    severity = np.array([0.5, 0.9, 0.0, 0.1, 0.2])
    # scenario 1 (0.9) is too heavy for 10 %; then 0 (0.5) fits, 4 (0.2) does not, 3 no, 2 holds
    np.testing.assert_array_equal(excuse_worst(d, severity), [True, False, False, False, False])
    assert not excuse_worst(d, np.zeros(5)).any()  # nothing breaks: nothing excused


def test_covenant_severity_is_positive_exactly_where_the_covenants_break() -> None:
    sc, red, d = _tight_covenants()
    plan = Plan.empty(sc)
    plan.draws_usd[0, 0] = sc.debt_facilities[0].size_usd
    breach = np.asarray(cash_flows(sc, plan, red.coefficient_arrays()).covenant_breach)
    severity = covenant_severity(d, plan)
    assert breach.any()
    np.testing.assert_array_equal(severity > 0, breach)
    assert not covenant_severity(d, Plan.empty(sc)).any()  # nothing drawn: nothing tested


def test_a_priced_plan_meets_the_covenants_only_where_its_breaches_were_paid_for() -> None:
    """The shortcut after the covenant-free run: within the budget is enough without a price;
    with one, every breaching scenario must be among the excused (charged) ones, or the run's
    objective misses their price (it was returned as optimal above its own bound). At
    confidence 0 (the Latin hypercube gap batches) every plan is within the budget."""
    import dataclasses  # noqa: PLC0415

    sc, red, d = _tight_covenants()
    plan = Plan.empty(sc)
    plan.draws_usd[0, 0] = sc.debt_facilities[0].size_usd
    breach = np.asarray(cash_flows(sc, plan, red.coefficient_arrays()).covenant_breach)
    assert breach.any() and d.weights[breach].sum() > 1.0 - sc.covenants.confidence
    assert not _meets_covenants(d, plan, breach)  # beyond the 25% budget, paid or not
    zero = sc.model_copy(update={"covenants": sc.covenants.model_copy(update={"confidence": 0.0})})
    free = dataclasses.replace(d, sc=zero)
    assert _meets_covenants(free, plan)
    priced = dataclasses.replace(free, breach_price=1.0)
    assert not _meets_covenants(priced, plan, np.zeros(d.n_scenarios, bool))
    assert not _meets_covenants(priced, plan)
    assert not _meets_covenants(priced, plan, breach & (np.arange(len(breach)) > 0))
    assert _meets_covenants(priced, plan, breach)


def test_excuse_heuristic_returns_a_plan_of_the_full_model() -> None:
    sc, red, d = _tight_covenants()
    session = _Session(d, mip_gap=1e-6, threads=DEFAULT_THREADS, tee=False, hard_deadlines=True)
    first = session.run("phase 1", time_limit_s=30, covenants=False)
    assert first.plan is not None, first.status
    excuse = excuse_worst(d, covenant_severity(d, first.plan))
    heur = session.run("heuristic", time_limit_s=30, start=first.plan, excuse=excuse)
    assert heur.fixed  # a restriction: its bound is not the full model's
    assert heur.plan is not None
    assert check_plan(sc, heur.plan, red) == []
    full = session.run("full", time_limit_s=30)
    assert heur.objective <= full.objective + 1e-6 * abs(full.objective)
    assert first.objective >= full.objective - 1e-6 * abs(full.objective)  # a relaxation


def test_session_runs_undo_their_changes() -> None:
    _, _, d = _tight_covenants()
    session = _Session(d, mip_gap=1e-6, threads=DEFAULT_THREADS, tee=False, hard_deadlines=True)
    full = session.run("full", time_limit_s=30)
    first = session.run("phase 1", time_limit_s=30, covenants=False)
    session.run("repair", time_limit_s=30, fix=first.plan)
    session.run("pruned", time_limit_s=30, regime=(True,), cutoff=full.objective + 1.0)
    lp = session.h.getLp()
    np.testing.assert_array_equal(lp.col_lower_, session.col_lower)
    np.testing.assert_array_equal(lp.col_upper_, session.col_upper)
    np.testing.assert_array_equal(np.asarray(lp.row_lower_)[session.cov_rows], session.cov_lower)
    assert lp.row_lower_[session.cutoff_row] == -np.inf  # the cutoff row is free again
    again = session.run("full again", time_limit_s=30)
    assert again.objective == pytest.approx(full.objective, rel=1e-9)


def test_regimes_cover_every_combination_fewest_facilities_first() -> None:
    sc, red, d = _tight_covenants()
    assert covenant_regimes(d) == [(False,), (True,)]
    regimes = covenant_regimes(SimpleNamespace(sc=scenario("public_miners_2026")))
    assert len(set(regimes)) == 8 and [sum(r) for r in regimes] == sorted(sum(r) for r in regimes)


def test_a_regime_pruned_by_its_cutoff_is_bounded_by_it() -> None:
    run = _Run(Termination.INFEASIBLE, None, None, None, 0.0, 0.0, cutoff=5.0)
    assert run.regime_bound() == 5.0  # nothing better than the cutoff: at most the cutoff
    run.cutoff = None
    assert run.regime_bound() == -np.inf  # truly infeasible: holds no plan
    found = _Run(Termination.TIME_LIMIT, 6.0, 7.0, None, 0.0, 0.0, cutoff=5.0)
    assert found.regime_bound() == 7.0
    unbounded = _Run(Termination.TIME_LIMIT, None, None, None, 0.0, 0.0)
    assert unbounded.regime_bound() == np.inf  # no bound known: nothing can be claimed


def test_progress_reports_each_run_with_its_numbers() -> None:
    _, _, d = _tight_covenants()
    seen: list[SolveProgress] = []
    res = solve(d, time_limit_s=60, mip_gap=1e-4, progress=seen.append)
    assert seen, "no progress reported"
    names = {r["run"] for r in res.runs}
    assert {p.phase for p in seen} <= names and seen[0].phase == res.runs[0]["run"]
    for p in seen:
        assert p.limit_s == 60 and 0 <= p.elapsed_s <= 60
        if p.gap is not None:
            assert p.gap == pytest.approx(
                max(0.0, p.bound_usd - p.incumbent_usd) / abs(p.incumbent_usd)
            )
    assert res.target_gap == 1e-4 and res.gap_ok == (res.status == Termination.OPTIMAL)


def test_solver_log_is_labelled_by_run() -> None:
    _, _, d = _tight_covenants()
    lines: list[tuple[str, str]] = []
    res = solve(d, time_limit_s=60, tee=True, log=lambda phase, line: lines.append((phase, line)))
    assert {phase for phase, _ in lines} == {r["run"] for r in res.runs}
    assert any("Solving MIP model" in line for _, line in lines)


def test_ctrl_c_stops_highs_and_raises() -> None:
    _, _, d = _tight_covenants()
    before = signal.getsignal(signal.SIGINT)

    def interrupt(p: SolveProgress) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        solve(d, time_limit_s=60, mip_gap=1e-9, progress=interrupt)
    assert time.perf_counter() - t0 < 5.0
    assert signal.getsignal(signal.SIGINT) is before  # the usual Ctrl-C again


def test_watchdog_calls_hard_stop_when_highs_does_not_stop() -> None:
    calls: list[float] = []
    owner = SimpleNamespace(_stop=False, hard_stop=lambda: calls.append(time.perf_counter()))
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, bytes([signal.SIGINT]))
        finished = threading.Event()
        t0 = time.perf_counter()
        _Session._watch(owner, read_fd, finished)
        assert owner._stop and len(calls) == 1
        assert calls[0] - t0 >= INTERRUPT_GRACE_S * 0.9
        # HiGHS stopped in time: no hard stop
        owner._stop, calls[:] = False, []
        os.write(write_fd, bytes([signal.SIGINT]))
        finished.set()
        _Session._watch(owner, read_fd, threading.Event())  # returns after the signal
        assert owner._stop
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_gap_ok_and_target_gap() -> None:
    res = SolveResult(
        status=Termination.TIME_LIMIT,
        objective_usd=1.0,
        bound_usd=1.177,
        gap=0.177,
        build_seconds=0.0,
        solve_seconds=0.0,
        plan=None,
        target_gap=0.01,
    )
    assert not res.gap_ok
    res.gap = 0.01
    assert res.gap_ok


@pytest.mark.parametrize("gap", [-0.1, 1.0, 2.0, float("nan")])
def test_solve_refuses_a_gap_outside_zero_one(gap: float) -> None:
    _, _, d = _tight_covenants()
    with pytest.raises(ValueError, match="mip_gap must be in"):
        solve(d, mip_gap=gap)


def test_a_failing_progress_callback_stops_highs_and_is_raised() -> None:
    _, _, d = _tight_covenants()

    def broken(p: SolveProgress) -> None:
        raise RuntimeError("display gone")

    with pytest.raises(RuntimeError, match="display gone"):
        solve(d, time_limit_s=60, progress=broken)


def test_solve_from_a_worker_thread_leaves_ctrl_c_alone() -> None:
    _, _, d = _tight_covenants()
    before = signal.getsignal(signal.SIGINT)
    out: list[SolveResult] = []
    worker = threading.Thread(target=lambda: out.append(solve(d, time_limit_s=60)))
    worker.start()
    worker.join(120)
    assert out and out[0].plan is not None
    assert signal.getsignal(signal.SIGINT) is before


def test_demo_with_no_cash_and_no_debt_gets_a_plan() -> None:
    """Acceptance: a fleet that can stay as it is gets a plan, never 'no feasible plan': demo
    with $0 of cash and no debt. Asked to hold a minimum it cannot reach in every scenario
    ($80M, confidence 1: at most 500 BTC sell per quarter), the reason names the shortfall. (The excusing of scenarios within
    the chance budget is checked by hand in tests/test_model.py.)"""
    changes = {"debt_facilities": [], "treasury": {"cash_usd": 0.0}}
    sc = scenario("demo", **changes)
    red = reduce_scenarios(sc, 2000, 8, seed=5, backend="numpy", pilot_paths=2000)
    res = solve(model_data(sc, red), time_limit_s=120)
    assert res.plan is not None and check_plan(sc, res.plan, red) == []
    cf = cash_flows(sc, res.plan, red.coefficient_arrays())
    short = (np.asarray(cf.cash_usd) < sc.covenants.min_cash_usd - 10.0).any(axis=1)
    assert red.weights[short].sum() <= 1.0 - sc.covenants.confidence + 1e-9
    strict = scenario("demo", **changes, covenants={"confidence": 1.0, "min_cash_usd": 8.0e7})
    with pytest.raises(NoSolutionError) as info:
        solve(model_data(strict, red), time_limit_s=120)
    assert "short of minimum cash $80,000,000 by up to $" in info.value.reasons[0]


def _small_demo():
    sc = scenario("demo")
    return model_data(sc, reduce_scenarios(sc, 1000, 4, seed=7, backend="numpy"))


@pytest.fixture(scope="module")
def small_demo():
    d = _small_demo()
    return d, solve(d, time_limit_s=120)


def _same_result(a, b) -> None:
    assert a.status == b.status and a.objective_usd == b.objective_usd and a.gap == b.gap
    assert (a.nodes, a.lp_iterations) == (b.nodes, b.lp_iterations)
    np.testing.assert_array_equal(a.plan.blocks, b.plan.blocks)
    np.testing.assert_array_equal(a.plan.racks_new, b.plan.racks_new)
    np.testing.assert_array_equal(a.plan.lease_signed, b.plan.lease_signed)
    np.testing.assert_array_equal(a.plan.draws_usd, b.plan.draws_usd)
    np.testing.assert_array_equal(a.plan.btc_sold, b.plan.btc_sold)


def test_the_same_data_give_the_same_plan_and_the_time_limit_is_only_a_safety_net(
    small_demo,
) -> None:
    d, once = small_demo
    assert once.status == Termination.OPTIMAL and not once.time_limited
    assert once.nodes > 0 and once.lp_iterations > 0
    _same_result(once, solve(d, time_limit_s=120))  # run to run
    _same_result(once, solve(d, time_limit_s=3600))  # a generous vs a very generous limit


@pytest.fixture(scope="module")
def small_demo_phased(small_demo):
    """small_demo solved in phases (demo is small enough to be solved whole first)."""
    d, _ = small_demo
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(solve_module, "DIRECT_MAX_PLAN_INTEGERS", 0)
        res = solve(d, time_limit_s=120)
    return d, res


def test_small_models_are_solved_whole_first(small_demo, small_demo_phased) -> None:
    """demo (83 plan integers) is solved whole in one run, started from RENS around its LP
    relaxation; in phases it reaches the same optimum within the gap, with more runs."""
    d, whole = small_demo
    _, phased = small_demo_phased
    assert plan_integers(build_model(d)) <= solve_module.DIRECT_MAX_PLAN_INTEGERS
    assert [r["run"] for r in whole.runs] == ["full model LP", "full model rounding", "full model"]
    lp, rounding, full = whole.runs
    assert lp["bound_usd"] is None and lp["objective_usd"] >= whole.bound_usd * (1 - 1e-9)
    assert rounding["objective_usd"] <= full["objective_usd"] * (1 + 1e-9)
    assert whole.status == phased.status == Termination.OPTIMAL and len(phased.runs) > 2
    assert whole.objective_usd == pytest.approx(phased.objective_usd, rel=d.sc.defaults.mip_gap)
    assert whole.bound_usd >= phased.objective_usd * (1 - 1e-9)
    assert phased.bound_usd >= whole.objective_usd * (1 - 1e-9)


def test_regimes_are_solved_best_lp_bound_first(small_demo_phased) -> None:
    _, res = small_demo_phased
    lp = {r["run"][: -len(" LP")]: r["objective_usd"] for r in res.runs if r["run"].endswith(" LP")}
    assert len(lp) == 2  # demo: one facility with covenants, drawn or not
    mips = [r for r in res.runs if r["run"] in lp]
    assert mips[0]["run"] == max(lp, key=lp.get)
    for r in mips:  # an LP relaxation bounds its regime's MIP
        assert r["objective_usd"] is None or r["objective_usd"] <= lp[r["run"]] * (1 + 1e-9)
    # a later regime whose LP bound is below the incumbent is not solved as a MIP at all
    for name, bound in lp.items():
        if name != mips[0]["run"] and bound < mips[0]["objective_usd"]:
            assert name not in {r["run"] for r in mips}
    assert res.bound_usd >= res.objective_usd and res.bound_usd <= max(lp.values()) * (1 + 1e-9)


def test_a_node_budget_ends_the_search_as_a_work_limit_with_a_valid_bound(small_demo) -> None:
    d, full = small_demo
    cut = solve(d, time_limit_s=120, max_nodes=1)
    assert cut.status == Termination.WORK_LIMIT and not cut.time_limited
    assert cut.gap > full.gap
    assert cut.objective_usd <= full.objective_usd * (1 + 1e-9)  # an incumbent, not better
    assert cut.bound_usd >= full.objective_usd * (1 - 1e-9)  # still an upper bound
    _same_result(cut, solve(d, time_limit_s=120, max_nodes=1))


def test_a_warm_start_names_one_campus_per_signed_lease_despite_solver_noise(small_demo) -> None:
    d, full = small_demo
    m = build_model(d)
    plan = copy.deepcopy(full.plan)
    plan.lease_signed[0] = True
    plan.lease_it_mw[0] = 0.0
    plan.lease_it_mw[0, 1, -1] = 10.0  # the second eligible site delivers
    plan.lease_it_mw[0, 0, -1] = 1e-9  # noise at the first
    values = start_values(m, plan)
    campus = [values[id(v)] for (l, _), v in m.campus.items() if l == 0]
    assert campus == [0.0, 1.0]  # Σ_e x = y = 1, at the delivering site
    plan.lease_it_mw[0] = 0.0  # signed, nothing delivered yet: the campus is left free
    values = start_values(m, plan)
    assert not any(id(v) in values for (l, _), v in m.campus.items() if l == 0)
    assert values[id(m.sign[0])] == 1.0


def test_solves_with_different_thread_counts_in_one_process() -> None:
    """HiGHS keeps one task scheduler per process: a solve with threads=1 followed by one with
    threads=2 must not fail (it did: every run of the second ended in a model-status error,
    reported as infeasible)."""
    _, _, d = _tight_covenants()
    first = solve(d, time_limit_s=60, threads=1)
    second = solve(d, time_limit_s=60, threads=2)
    assert first.status == second.status == Termination.OPTIMAL
    assert second.objective_usd == pytest.approx(first.objective_usd, rel=1e-6)


def test_a_warm_start_gives_the_plan_of_a_cold_solve(small_demo) -> None:
    """solve(start=...) (another replication's candidate, a previous calibration round's plan)
    reaches the plan of a cold solve: both to a gap of zero on demo at K = 4, the optimum being
    unique there. The start becomes the first incumbent ('start' run) and two warm solves
    agree to the last node."""
    d, _ = small_demo
    cold = solve(d, time_limit_s=120, mip_gap=0.0)
    warm = solve(d, time_limit_s=120, mip_gap=0.0, start=cold.plan)
    assert cold.status == warm.status == Termination.OPTIMAL
    assert warm.runs[0]["run"] == "start" and warm.runs[0]["status"] == "optimal"
    assert warm.objective_usd == pytest.approx(cold.objective_usd, rel=1e-9)
    for f in ("blocks", "racks_new", "lease_signed"):
        np.testing.assert_array_equal(getattr(warm.plan, f), getattr(cold.plan, f))
    _same_result(warm, solve(d, time_limit_s=120, mip_gap=0.0, start=cold.plan))


def test_a_start_that_does_not_fit_or_is_infeasible_is_ignored(small_demo) -> None:
    d, cold = small_demo
    other = copy.deepcopy(cold.plan)
    other.site_names = ("elsewhere", *other.site_names[1:])  # a plan of another fleet
    _same_result(cold, solve(d, time_limit_s=120, start=other))
    broken = copy.deepcopy(cold.plan)
    broken.blocks[:] = 0
    broken.blocks[0, :3] = 5  # more blocks than the site may start per period, or has
    res = solve(d, time_limit_s=120, start=broken)
    assert res.runs[0]["run"] == "start" and res.runs[0]["status"] == "infeasible"
    assert res.status == Termination.OPTIMAL
    assert res.objective_usd == pytest.approx(cold.objective_usd, rel=d.sc.defaults.mip_gap)


def test_fleet_sized_models_start_from_the_baselines_and_stop_phase_one_at_its_root(
    monkeypatch,
) -> None:
    """With the fleet-sized thresholds lowered to demo: every start is fixed and its financing
    re-solved, the best kept; phase 1 explores one node (its bound is the one reported); no
    excuse heuristic or regime runs; the plan is at least as good as the best start."""
    sc = load_scenario("demo")
    red = reduce_scenarios(sc, 2000, 4, seed=3, backend="numpy")
    d = model_data(sc, red)
    monkeypatch.setattr(solve_module, "LARGE_PLAN_INTEGERS", 0)
    monkeypatch.setattr(solve_module, "DIRECT_MAX_PLAN_INTEGERS", 0)
    # the regime LPs stop at their iteration limit: no LP rounding, the baselines start
    monkeypatch.setattr(solve_module, "ROUNDING_LP_MAX_ITERATIONS", 1)
    plans = [baseline("stay_mining", sc, red), baseline("greedy", sc, red)]
    res = solve(d, starts=lambda: plans, threads=1)
    names = [r["run"] for r in res.runs]
    assert names[:2] == ["regime 0 LP", "regime 1 LP"]
    assert {r["status"] for r in res.runs[:2]} == {"work_limit"}
    res.runs = res.runs[2:]
    names = names[2:]
    assert names[:3] == ["start", "start 2", "without covenants"]
    assert not {"excuse heuristic", "full model"} & set(names)
    assert not any(n.startswith("regime") for n in names)
    best_start = max(r["objective_usd"] for r in res.runs[:2] if r["objective_usd"] is not None)
    assert res.objective_usd >= best_start
    first = res.runs[2]
    assert first["nodes"] <= solve_module.LARGE_MAX_NODES
    assert res.bound_usd == pytest.approx(first["bound_usd"], rel=1e-12)
    assert res.status == (
        Termination.OPTIMAL if res.gap <= res.target_gap else Termination.WORK_LIMIT
    )
    assert not check_plan(sc, res.plan, red)  # the plan keeps the rules in its scenarios


def test_fleet_sized_models_round_the_best_regime_lp_and_are_bounded_by_the_regime_lps(
    monkeypatch, small_demo
) -> None:
    """With the fleet-sized threshold lowered to demo: each regime's LP and its LP with the
    excused scenarios fixed (here none: no scenario fits the budget), then RENS around that,
    best regime first; the baselines are never computed, phase 1 is skipped, the bound is the largest
    regime LP (above the optimum), the plan keeps the rules and is no better than the optimum;
    the same data give the same plan."""
    d, optimum = small_demo
    monkeypatch.setattr(solve_module, "LARGE_PLAN_INTEGERS", 0)
    monkeypatch.setattr(solve_module, "DIRECT_MAX_PLAN_INTEGERS", 0)

    def starts():
        raise AssertionError("the LP rounding found a plan: no baseline is needed")

    res = solve(d, starts=starts, threads=1)
    names = [r["run"] for r in res.runs]
    lp = {r["run"][: -len(" LP")]: r["objective_usd"] for r in res.runs if r["run"].endswith(" LP")}
    # 4 scenarios each heavier than the chance budget: none can be excused, none is held
    assert names[:4] == [
        "regime 0 LP",
        "regime 1 LP",
        "regime 0 LP, excused fixed",
        "regime 1 LP, excused fixed",
    ]
    rounded = [r for r in res.runs[4:] if r["objective_usd"] is not None]
    assert names[4] == f"{max(lp, key=lp.get)} rounding, excused fixed"  # best bound first
    assert all(n.endswith("rounding, excused fixed") for n in names[4:])
    assert res.bound_usd == pytest.approx(max(lp.values()), rel=1e-12)
    assert res.bound_usd >= optimum.objective_usd * (1 - 1e-9)
    assert res.objective_usd <= optimum.bound_usd * (1 + 1e-9)
    best = max(r["objective_usd"] for r in rounded)
    assert res.objective_usd == pytest.approx(best, rel=1e-12)
    assert not check_plan(d.sc, res.plan, d.red)
    assert res.status == (
        Termination.OPTIMAL if res.gap <= res.target_gap else Termination.WORK_LIMIT
    )
    _same_result(res, solve(d, starts=starts, threads=1))


def test_small_models_never_compute_the_baseline_starts() -> None:
    sc = load_scenario("demo")
    red = reduce_scenarios(sc, 2000, 4, seed=3, backend="numpy")

    def starts():
        raise AssertionError("a small model must not ask for baseline starts")

    res = solve(model_data(sc, red), starts=starts, threads=1)
    assert res.plan is not None


def test_quantile_bound_is_the_value_where_the_lowest_scenarios_outweigh_the_budget() -> None:
    """Hand-computed: sorted values 1 (weight 1/16), 2 (2/16), 3 (4/16), +inf (9/16)."""
    v = np.array([3.0, 1.0, 2.0, np.inf])
    w = np.array([4, 1, 2, 9]) / 16
    assert quantile_bound(v, w, 0.0) == 1.0
    assert quantile_bound(v, w, 0.1) == 2.0  # 1/16, then 3/16 > 0.1
    assert quantile_bound(v, w, 3 / 16) == 3.0  # 3/16 is not more than 3/16
    assert quantile_bound(v, w, 7 / 16) == np.inf  # only the unsolved scenario outweighs it
    assert quantile_bound(v, w, 1.0) == np.inf  # every scenario may be excused
    # a scenario no plan can keep (infeasible when held) that outweighs the budget: no plan
    assert quantile_bound(np.array([-np.inf, 5.0]), np.array([0.5, 0.5]), 0.4) == -np.inf


@pytest.mark.slow
def test_fleet_sized_bound_holds_the_excused_scenarios_one_at_a_time(monkeypatch) -> None:
    """On a 3-site synthetic fleet (10 years, 16 scenarios) the regime LPs excuse slivers of
    many scenarios through the big-M rows; holding them one at a time (the quantile bound)
    lowers the bound by more than 0.5 % while staying above the optimum found by branch and
    bound (to 0.1 %); rounding with the scenarios costliest to hold excused finds a plan within
    1 % of that optimum; the same data give the same result."""
    sc = synthetic(3, seed=1, years=10.0)
    d = model_data(sc, reduce_scenarios(sc, 2000, 16, seed=1, backend="numpy"))
    full = solve(d, mip_gap=1e-3, threads=1)
    assert full.status == Termination.OPTIMAL
    monkeypatch.setattr(solve_module, "LARGE_PLAN_INTEGERS", 0)
    monkeypatch.setattr(solve_module, "DIRECT_MAX_PLAN_INTEGERS", 0)
    fleet = solve(d, threads=1, starts=lambda: [])
    lp = max(r["objective_usd"] for r in fleet.runs if r["run"].endswith(" LP"))
    held = [r for r in fleet.runs if r["run"].endswith("quantile bound")]
    assert held and all(r["lp_iterations"] > 0 for r in held)
    assert full.objective_usd * (1 - 1e-9) <= fleet.bound_usd <= lp * (1 - 0.005)
    assert fleet.objective_usd <= full.bound_usd * (1 + 1e-9)
    # the plan rounded with the costliest scenarios excused: 0.5 % below the optimum here
    assert fleet.objective_usd >= full.objective_usd * (1 - 0.01)
    _same_result(fleet, solve(d, threads=1, starts=lambda: []))
