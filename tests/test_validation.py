"""Statistical validation (optimizer/validation.py): against binomial tables, hand-computed
objectives, and a small end-to-end run whose numbers must not depend on the executor."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as st

from hashpivot.kernels import philox
from hashpivot.kernels.cashflow import cash_flows, chance_breach
from hashpivot.kernels.evaluate import evaluate_plans
from hashpivot.kernels.reduce import reduce_scenarios, sample_scenarios
from hashpivot.kernels.stats import objective_influence
from hashpivot.optimizer import validation as V
from hashpivot.optimizer.baselines import baseline
from hashpivot.optimizer.executor import ProcessExecutor, SerialExecutor
from hashpivot.optimizer.model import model_data
from hashpivot.optimizer.pipeline import optimize
from hashpivot.optimizer.solve import solve
from hashpivot.scenarios import load_scenario

#: Floating-point tolerance of hand-computed dollar values [$].
USD_TOL = 1e-6


def test_derived_seeds_are_stable_distinct_and_63_bit() -> None:
    seeds = {V.derived_seed(7, p, i) for p in range(1, 6) for i in range(4)}
    assert len(seeds) == 20
    assert all(0 <= s < 2**63 for s in seeds)
    assert V.derived_seed(7, 3, 2) == V.derived_seed(7, 3, 2)
    assert V.derived_seed(7, 3, 2) != V.derived_seed(8, 3, 2)


@pytest.mark.parametrize(("n", "eps", "q"), [(16, 0.10, 4), (32, 0.10, 6), (100, 0.05, 9)])
def test_batch_risk_level_is_the_binomial_quantile(n: int, eps: float, q: int) -> None:
    """q = smallest count with P(Binomial(n, ε) ≤ q) ≥ 1 − δ (values from the binomial CDF:
    P(Bin(16, .1) ≤ 3) = 0.932, ≤ 4 = 0.983)."""
    sc = V.with_confidence(load_scenario("demo"), 1.0 - eps)
    conf, got = V.batch_confidence(sc, n)
    assert got == q
    assert math.isclose(conf, 1.0 - q / n)
    assert st.binom.cdf(q, n, eps) >= 1.0 - V.BATCH_FEASIBILITY_RISK
    assert st.binom.cdf(q - 1, n, eps) < 1.0 - V.BATCH_FEASIBILITY_RISK


def test_fixed_threshold_objective_by_hand_and_below_plug_in() -> None:
    """W = (−10, 0, 10, 20), α = 0.75, λ = 0.5: CVaR of −W is the worst quarter, 10, so the
    plug-in objective is 5 − 0.5·10 = 0; any fixed η gives at most that (Rockafellar–Uryasev),
    η = 20 gives 5 − 0.5·20 = −5."""
    sc = load_scenario("demo")
    risk = sc.risk.model_copy(update={"cvar_alpha": 0.75, "cvar_weight": 0.5})
    sc = sc.model_copy(update={"risk": risk})
    w = np.array([-10.0, 0.0, 10.0, 20.0])
    j, _ = objective_influence(w, 0.75, 0.5)
    assert abs(j - 0.0) < USD_TOL
    assert abs(V.fixed_eta_objective(sc, w, 20.0) + 5.0) < USD_TOL
    for eta in np.linspace(-30, 30, 61):
        assert V.fixed_eta_objective(sc, w, eta) <= j + USD_TOL
    assert abs(V.fixed_eta_objective(sc, w, 10.0) - j) < USD_TOL  # at the VaR
    # the mean from a batch's averaging paths replaces mean W: 7 − 0.5·20 = −3
    assert abs(V.fixed_eta_objective(sc, w, 20.0, mean_usd=7.0) + 3.0) < USD_TOL


def test_batch_takes_e_w_on_its_own_further_paths(monkeypatch) -> None:
    """A gap batch's averaging paths are the next BATCH_MEAN_PATHS paths of its stream (not its
    own N scenarios), and its bound is at least the batch value of a plan that fits the batch:
    that plan, with η fixed at its batch VaR and its breaches excused (within the relaxed
    allowance), is one solution of the batch problem. The bound does not depend on the start."""
    monkeypatch.setattr(V, "BATCH_MEAN_PATHS", 64)
    sc = load_scenario("demo")
    red = reduce_scenarios(sc, 2000, 4, seed=3, backend="numpy")
    plan = baseline("stay_mining", sc, red)
    n, seed = 8, 12345
    own, further = V.batch_samples(sc, n, seed)
    assert np.array_equal(
        own.btc_price_usd,
        sample_scenarios(sc, n, seed, tag=philox.TAG_BATCH, backend="numpy").btc_price_usd,
    )
    after = sample_scenarios(sc, 64, seed, tag=philox.TAG_BATCH, backend="numpy", offset=n)
    assert further.n_scenarios == 64 and np.array_equal(further.btc_price_usd, after.btc_price_usd)
    out = V.batch_task(sc, n, seed, None, 60.0, 0.0, start=plan)
    w = V.terminal_equity(sc, plan, own)
    mean = V.terminal_equity(sc, plan, further).mean()
    assert abs(mean - w.mean()) > 1e3  # a different sample: it is not the batch's
    assert V.in_sample_breach(sc, plan, own) * n <= out["excusable"]
    eta = float(np.quantile(-w, sc.risk.cvar_alpha, method="inverted_cdf"))
    f = V.fixed_eta_objective(sc, w, eta, mean)
    assert out["bound_usd"] >= f - 1e-6 * abs(f)
    cold = V.batch_task(sc, n, seed, None, 60.0, 0.0)
    gap_tol = sc.defaults.mip_gap
    assert cold["bound_usd"] == pytest.approx(out["bound_usd"], rel=2 * gap_tol)


def test_subset_reweights_and_keeps_coefficients() -> None:
    sc = load_scenario("demo")
    red = sample_scenarios(sc, 6, 3, tag=0)
    one = V.subset(red, np.array([2, 4]))
    assert np.allclose(one.weights, [0.5, 0.5])
    assert np.array_equal(one.btc_price_usd, red.btc_price_usd[[2, 4]])
    assert one.n_scenarios == 2


def test_evpi_by_hand_on_a_risk_neutral_scenario() -> None:
    """λ = 0: EVPI is the mean of W*(ξ) − W(x̂, ξ); its s.e. the sample s.e. of that difference."""
    sc = load_scenario("demo")
    sc = sc.model_copy(update={"risk": sc.risk.model_copy(update={"cvar_weight": 0.0})})
    sample = sample_scenarios(sc, 4, 11, tag=0)
    from hashpivot.kernels.plan import Plan  # noqa: PLC0415

    plan = Plan.empty(sc)
    w_rp = V.terminal_equity(sc, plan, sample)
    gain = np.array([1.0e6, 3.0e6, 0.0, 4.0e6])
    out = V.evpi_interval(
        sc, plan, sample, [(w + g, True) for w, g in zip(w_rp, gain, strict=True)]
    )
    assert math.isclose(out["evpi_usd"], gain.mean(), rel_tol=1e-9)
    assert math.isclose(out["stderr_usd"], gain.std(ddof=1) / 2.0, rel_tol=1e-9)
    half = st.t.ppf(0.975, 3) * out["stderr_usd"]
    assert math.isclose(out["upper95_usd"] - out["evpi_usd"], half, rel_tol=1e-9)


SMALL = {
    "paths": 2000,
    "n_scenarios": 8,
    "eval_paths": 2000,
    "replications": 2,
    "batches": 2,
    "batch_scenarios": 6,
    "ws_scenarios": 3,
    "calibration_rounds": 2,
    "backend": "numpy",
}


@pytest.mark.slow
def test_validation_block_is_complete_and_independent_of_the_executor() -> None:
    """The same seed gives the same validation numbers in one process and on a pool of two."""
    a = optimize("demo", executor=SerialExecutor(), **SMALL)
    with ProcessExecutor(2) as pool:
        b = optimize("demo", executor=pool, **SMALL)
    va, vb = a.summary()["validation"], b.summary()["validation"]
    assert json.dumps(va, sort_keys=True) == json.dumps(vb, sort_keys=True)
    # the baselines come from the map's last task: in this process, or from a worker
    assert json.dumps(a.summary()["baselines"], sort_keys=True) == json.dumps(
        b.summary()["baselines"], sort_keys=True
    )
    assert va["replications"]["count"] == 2
    assert len(va["replications"]["candidates"]) == 2
    chosen = va["replications"]["candidates"][va["replications"]["chosen"]]
    assert chosen["selection_objective_usd"] == max(
        c["selection_objective_usd"] for c in va["replications"]["candidates"]
    )
    gap = va["gap_ci"]
    assert gap["batches"] == 2 and len(gap["per_batch_usd"]) == 2
    g = np.array(gap["per_batch_usd"])
    assert math.isclose(gap["gbar_usd"], g.mean(), rel_tol=1e-12)
    assert gap["upper95_usd"] >= gap["gbar_usd"]
    cov = va["covenant_bound"]
    assert cov["upper95"] >= cov["p_breach"]
    assert cov["holds"] == (cov["upper95"] <= cov["target"])
    assert set(cov["per_covenant"]) == {"dscr", "leverage", "min_cash"}
    assert va["calibration_rounds"][0]["round"] == 0
    assert sum(r["accepted"] for r in va["calibration_rounds"]) == 1
    assert va["vss"]["lower95_usd"] <= va["vss"]["vss_usd"] <= va["vss"]["upper95_usd"]
    assert va["evpi"]["scenarios"] == 3


def test_hold_paths_are_the_breaches_at_the_edge_of_the_share_to_keep(monkeypatch) -> None:
    """Demo allows ε = 10%: with margin 0.8 the edge is the 92nd of 100 paths by severity."""
    sc = load_scenario("demo")
    sample = SimpleNamespace(coefficient_arrays=dict)
    sev = np.maximum(np.arange(100.0) - 50.0, 0.0)  # paths 51..99 breach, 99 worst
    monkeypatch.setattr(V, "cash_flows", lambda *a: None)
    monkeypatch.setattr(V, "breach_severity", lambda *a: sev)
    held = np.zeros(100, bool)
    np.testing.assert_array_equal(V.hold_paths(sc, None, sample, held, 3), [91, 90, 89])
    held[91] = True  # never the same path twice
    np.testing.assert_array_equal(V.hold_paths(sc, None, sample, held, 3), [90, 89, 88])
    # the edge keeps already: the least severe breaches beyond it
    sev[:92] = 0.0
    np.testing.assert_array_equal(V.hold_paths(sc, None, sample, held, 3), [92, 93, 94])
    sev[:] = 0.0  # nothing breaks: nothing to hold
    assert len(V.hold_paths(sc, None, sample, held, 3)) == 0


def test_with_hold_appends_light_scenarios_and_keeps_the_weights_summing_to_one() -> None:
    sc = load_scenario("demo")
    red = sample_scenarios(sc, 4, 1, tag=philox.TAG_BATCH, backend="numpy")
    hold = sample_scenarios(sc, 3, 2, tag=philox.TAG_BATCH, backend="numpy")
    both = V.with_hold(red, hold)
    assert both.n_scenarios == 7
    assert math.isclose(both.weights.sum(), 1.0, rel_tol=1e-12)
    np.testing.assert_array_equal(both.weights[4:], V.HOLD_WEIGHT)
    np.testing.assert_allclose(both.weights[:4], 0.25 * (1.0 - 3 * V.HOLD_WEIGHT), rtol=1e-12)
    for name, arr in both.coefficient_arrays().items():
        np.testing.assert_array_equal(arr[:4], red.coefficient_arrays()[name])
        np.testing.assert_array_equal(arr[4:], hold.coefficient_arrays()[name])


def _calibrated(sc, seed: int, k: int, rounds: int, paths: int, **kw):
    """``k`` reduced scenarios of ``sc``, their plan solved and judged on the selection paths,
    then ``rounds`` calibration rounds: (reduced scenarios, rounds, index kept, why)."""
    red = reduce_scenarios(sc, 2000, k, seed, backend="numpy")
    first = solve(model_data(sc, red), threads=1)
    sel = evaluate_plans(
        sc, {"p": first.plan}, paths, V.derived_seed(seed, V._SELECT), backend="numpy"
    )
    out = V.calibrate(
        sc,
        red,
        first,
        sel.stats["p"],
        rounds,
        paths,
        seed,
        "numpy",
        {"time_limit_s": 60, "threads": 1},
        **kw,
    )
    return (red, *out)


def test_guarantee_round_holds_fresh_paths_the_plan_broke() -> None:
    """Two reduced scenarios miss demo's tail: the plan as solved breaches on most fresh paths.
    With no headroom rounds (``ladder=()``) the next round is a guarantee round: confidence 1
    and 16 fresh paths that round 0's plan broke held, which the new plan keeps; it holds."""
    sc, seed, paths = load_scenario("demo"), 5, 2000
    red, rounds, kept, why = _calibrated(sc, seed, 2, 3, paths, ladder=())
    eps = 1.0 - sc.covenants.confidence
    zero, hold = rounds[0], rounds[1]
    assert zero.oos_upper95 > eps
    assert hold.in_sample_confidence == 1.0 and hold.hold_paths == V.HOLD_PER_ROUND
    sample = sample_scenarios(
        sc,
        V.HOLD_SAMPLE_PATHS,
        V.derived_seed(seed, V._HOLD),
        tag=philox.TAG_BATCH,
        backend="numpy",
    )
    held = V.subset(sample, hold.held).coefficient_arrays()
    assert chance_breach(sc, cash_flows(sc, zero.plan, held)).all()  # each one broken before
    assert not chance_breach(sc, cash_flows(sc, hold.plan, held)).any()  # and kept now
    assert hold.oos_upper95 <= eps and kept == 1 and hold.accepted and why is None
    assert len(rounds) == 2  # it holds: no further guarantee round
    assert hold.to_json()["hold_paths"] == V.HOLD_PER_ROUND


def test_the_ladder_leaves_the_last_round_to_the_guarantee() -> None:
    """With one calibration round and a plan that breaches, the round goes to the guarantee
    (confidence 1, hold paths), not to the headroom ladder."""
    sc, seed, paths = load_scenario("demo"), 5, 2000
    _, rounds, _, _ = _calibrated(sc, seed, 2, 1, paths)
    assert len(rounds) == 2 and rounds[1].in_sample_confidence == 1.0
    assert rounds[1].hold_paths == V.HOLD_PER_ROUND and rounds[1].headroom == 0.0


def test_with_headroom_scales_the_covenant_thresholds() -> None:
    sc = load_scenario("demo")
    c = V.with_headroom(sc, 0.2).covenants
    assert math.isclose(c.min_dscr, 1.25 * 1.2) and math.isclose(c.max_leverage, 6.0 / 1.2)
    assert c.confidence == sc.covenants.confidence and c.min_cash_usd == sc.covenants.min_cash_usd
    assert V.with_headroom(sc, 0.0) is sc


def test_headroom_rounds_climb_the_ladder_until_the_value_falls() -> None:
    """Demo, 8 scenarios: the headroom rounds follow the ladder; each plan keeps its tightened
    covenants in the scenarios the MILP must keep (checked with the independent cash flows of
    :mod:`~hashpivot.kernels.cashflow`); the climb stops at the first round that holds but is
    worth less than the best round that held before; the best round that holds is kept."""
    sc, seed, paths = load_scenario("demo"), 3, 2000
    red, rounds, kept, why = _calibrated(sc, seed, 8, 4, paths)
    eps = 1.0 - sc.covenants.confidence
    assert [r.headroom for r in rounds] == [0.0, *V.HEADROOM_LADDER[: len(rounds) - 1]]
    for r in rounds:
        assert r.in_sample_confidence == sc.covenants.confidence and r.hold_paths == 0
        tight = V.with_headroom(sc, r.headroom)
        assert V.in_sample_breach(tight, r.plan, red) <= eps + 1e-9
        assert r.to_json()["headroom"] == r.headroom
    ok = [r for r in rounds if r.holds]
    assert ok and why is None and rounds[kept] is max(ok, key=lambda r: r.objective_usd)
    assert [r.accepted for r in rounds].count(True) == 1 and rounds[kept].accepted
    # every round but the last continued the climb: it did not hold, or it held and was worth
    # at least every round that held before it
    for i, r in enumerate(rounds[1:-1], start=1):
        before = [q.objective_usd for q in rounds[:i] if q.holds]
        assert not r.holds or not before or r.objective_usd >= max(before)
    last = rounds[-1]
    stopped = last.holds and last.objective_usd < max(q.objective_usd for q in ok if q is not last)
    assert stopped or len(rounds) == 5 or len(rounds) == len(V.HEADROOM_LADDER) + 1


def test_batches_stop_at_their_node_budget_not_at_the_run_time_limit() -> None:
    """A batch's wall-clock limit is a safety net well above the run's: its bound must not
    depend on machine load."""
    sc = load_scenario("demo")
    args = V.batch_tasks(sc, V.Settings(batches=2), 1, 1e6, {"time_limit_s": 120, "mip_gap": 0.001})
    assert [a[4] for a in args] == [120 * V.BATCH_TIME_LIMIT_FACTOR] * 2
    assert V.BATCH_TIME_LIMIT_FACTOR >= 10
