"""Out-of-sample evaluator: priced covenant breaches on a hand example."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import tiny_data

from hashpivot.kernels.evaluate import (
    PathCoefficients,
    breach_events,
    outcome_breach_mask,
    simulate_plan,
)
from hashpivot.kernels.plan import Plan
from hashpivot.kernels.results import (
    BREACH_DSCR,
    BREACH_LEVERAGE,
    BREACH_MIN_CASH,
    FACILITY_BIT0,
)
from hashpivot.scenarios import validate_data

#: Money tolerance of the hand checks [$].
HAND_TOL_USD = 1e-3


def _hand_case(rule: str, **covenants: float):
    """One site, five quarters, no interest on cash; a 100 M$ bullet loan at 8%/yr (2 M$ interest a
    quarter from t = 1) pays a 112 M$ conversion block at t = 0; DSCR ≥ 1.5 tested at t = 3, 4.

    Paths differ in the mining margin (OCF 4 M$ or 1 M$ a quarter on the 40 MW left) and the
    BTC price at t = 3 (treasury 1,000 BTC, floor 0)."""
    data = tiny_data(n_sites=1, n_periods=5, facility=True)
    data["horizon"]["cash_interest_rate"] = 0.0
    data["sites"][0]["asic_salvage_usd_per_mw"] = 0.0
    data["debt_facilities"][0]["upfront_fee_share"] = 0.0
    data["covenants"] = {
        "min_dscr": 1.5,
        "max_leverage": 1000.0,
        "min_cash_usd": 0.0,
        "confidence": 1.0,
        "on_breach": rule,
        "waiver_fee": 0.01,
        "waiver_step_up_bp": 200.0,
    }
    data["covenants"].update(covenants)
    data["treasury"] = {"btc_held": 1000.0, "btc_floor": 0.0, "cash_usd": 2.0e7}
    # a second facility, never drawn: never live, never tested
    data["debt_facilities"].append(dict(data["debt_facilities"][0], name="G"))
    sc = validate_data(data)
    plan = Plan.empty(sc)
    plan.blocks[0, 0] = 1  # 20 MW × 0.7 × 8 M$/IT MW = 112 M$ at t = 0
    plan.draws_usd[0, 0] = 1.0e8
    n, t_n, r_n = 3, 5, len(sc.market.power_regions)
    margin = np.empty((n, 1, t_n))
    margin[0] = 1.0e5  # OCF 4 M$ a quarter on 40 MW
    margin[1:] = 2.5e4  # OCF 1 M$
    btc = np.full((n, t_n), 5.0e4)
    btc[2, 3] = 1.0e5
    co = PathCoefficients(
        margin_usd_per_mw=margin,
        btc_price_usd=btc,
        power_usd_per_mwh=np.full((n, r_n, t_n), 40.0),
        lease_x_occupancy=np.zeros((n, t_n)),
        gpu_hour_usd=np.zeros((n, t_n)),
        tenant_survival=np.zeros((n, 0, t_n)),
        tenant_relet=np.zeros((n, 0, t_n)),
    )
    return sc, plan, co


def test_acceleration_by_hand() -> None:
    # cash: t0 = 20 + 100 − 112 + OCF; then + OCF − 2 a quarter.
    # path 0 (OCF 4): trailing OCF 16 ≥ 1.5 × 6 at t = 3 and ≥ 1.5 × 8 at t = 4: no breach.
    # paths 1, 2 (OCF 1): cash 9, 8, 7, 6; at t = 3 trailing OCF 4 < 1.5 × 6 = 9: breach, the
    # 100 M$ falls due: cash −94. Path 1 sells its 1,000 BTC at 50k (50 M$): −44 → default at
    # t = 3. Path 2 sells 940 BTC at 100k: cash 0, the loan is gone, t = 4: cash 0 + 1 = 1.
    sc, plan, co = _hand_case("accelerate")
    o = simulate_plan(sc, plan, co)
    np.testing.assert_array_equal(o.default_period, [5, 3, 5])
    np.testing.assert_array_equal(o.breach, [False, True, True])
    np.testing.assert_allclose(o.cash_usd[:, 3], [1.8e7, 0.0, 0.0], atol=HAND_TOL_USD)
    np.testing.assert_allclose(o.cash_usd[:, 4], [2.0e7, 0.0, 1.0e6], atol=HAND_TOL_USD)
    np.testing.assert_allclose(o.emergency_btc, [0.0, 1000.0, 940.0], atol=1e-9)
    assert o.equity_usd[1] == 0.0
    np.testing.assert_array_equal(o.min_cash_breach, [False, True, False])
    # ignore: the same paths breach, nothing happens: cash 6 − 2 + 1 = 5 at t = 4
    ig = simulate_plan(sc.model_copy(update={"covenants": _rule(sc, "ignore")}), plan, co)
    np.testing.assert_array_equal(ig.default_period, [5, 5, 5])
    np.testing.assert_array_equal(ig.breach, [False, True, True])
    np.testing.assert_allclose(ig.cash_usd[:, 4], [2.0e7, 5.0e6, 5.0e6], atol=HAND_TOL_USD)
    assert ig.equity_usd[0] == pytest.approx(o.equity_usd[0])


def test_waiver_by_hand() -> None:
    # t = 3: fee 1% × 100 = 1 → cash 6 − 1 = 5; the rate steps up to 10%/yr: 2.5 a quarter.
    # t = 4: 5 + 1 − 2.5 = 3.5; trailing DS 8.5, 1.5 × 8.5 > 4: breached again, fee 1 → 2.5.
    sc, plan, co = _hand_case("waiver")
    o = simulate_plan(sc, plan, co)
    np.testing.assert_array_equal(o.default_period, [5, 5, 5])
    np.testing.assert_allclose(o.cash_usd[1, 3:], [5.0e6, 2.5e6], atol=HAND_TOL_USD)
    np.testing.assert_allclose(o.cash_usd[0, 4], 2.0e7, atol=HAND_TOL_USD)


def _rule(sc, rule: str):
    return sc.covenants.model_copy(update={"on_breach": rule})


def test_paired_standard_errors_include_the_cvar_term() -> None:
    """The evaluator's paired s.e. of J_a − J_b (streamed over chunks) equals the influence-
    function s.e. computed from every path's equity at once, and differs from the s.e. of the
    mean difference alone; chunking does not change it."""
    from hashpivot.kernels.evaluate import evaluate_plans
    from hashpivot.kernels.reduce import reduce_scenarios
    from hashpivot.kernels.stats import objective_influence
    from hashpivot.optimizer.baselines import baseline
    from hashpivot.scenarios import load_scenario

    sc = load_scenario("demo")
    red = reduce_scenarios(sc, 1000, 4, 3, backend="numpy", pilot_paths=1000)
    plans = {"a": baseline("convert_all_expected_cash", sc, red), "b": Plan.empty(sc)}
    m = 3000  # below KEEP_PATHS: every path's equity is kept
    ev = evaluate_plans(sc, plans, m, 9, backend="numpy", chunk_paths=700)
    alpha, lam = sc.risk.cvar_alpha, sc.risk.cvar_weight
    wa, wb = ev.stats["a"].equity_sample_usd, ev.stats["b"].equity_sample_usd
    ja, pa = objective_influence(wa, alpha, lam)
    jb, pb = objective_influence(wb, alpha, lam)
    diff, se = ev.paired[("a", "b")]
    assert diff == pytest.approx(ja - jb, rel=1e-9)
    assert se == pytest.approx((pa - pb).std(ddof=1) / np.sqrt(m), rel=1e-9)
    assert ev.stats["a"].objective_stderr_usd == pytest.approx(pa.std(ddof=1) / np.sqrt(m))
    assert abs(se - (wa - wb).std(ddof=1) / np.sqrt(m)) > 1e-3 * se
    again = evaluate_plans(sc, plans, m, 9, backend="numpy", chunk_paths=1024)
    assert again.paired[("a", "b")][1] == se


def test_breach_mask_names_the_covenant_and_the_facility() -> None:
    # accelerate (see test_acceleration_by_hand): paths 1 and 2 fail the DSCR test at t = 3 on
    # facility F; path 1 then ends t = 3 below the minimum cash (it defaults). G is never drawn.
    sc, plan, co = _hand_case("accelerate")
    o = simulate_plan(sc, plan, co)
    f_bit = 1 << FACILITY_BIT0
    np.testing.assert_array_equal(
        o.breach_mask, [0, BREACH_DSCR | BREACH_MIN_CASH | f_bit, BREACH_DSCR | f_bit]
    )
    events, facilities = breach_events(o.breach_mask, ["F", "G"])
    assert events == {"any": 2, "covenant": 2, "dscr": 2, "leverage": 0, "min_cash": 1}
    assert facilities == {"F": 2, "G": 0}
    # leverage alone: DSCR ≥ 0.1 holds (trailing OCF 4 ≥ 0.6); debt 100 M$ > 10 × trailing OCF
    # 4 M$ on paths 1, 2 but not 10 × 16 M$ on path 0
    sc, plan, co = _hand_case("ignore", min_dscr=0.1, max_leverage=10.0)
    o = simulate_plan(sc, plan, co)
    np.testing.assert_array_equal(o.breach, [False, True, True])
    lev = BREACH_LEVERAGE | f_bit
    np.testing.assert_array_equal(o.breach_mask, [0, lev, lev])
    events, facilities = breach_events(o.breach_mask, ["F", "G"])
    assert events == {"any": 2, "covenant": 2, "dscr": 0, "leverage": 2, "min_cash": 0}
    assert facilities == {"F": 2, "G": 0}


def test_unsplit_outcomes_count_what_they_can() -> None:
    """Outcomes without a mask (the GPU kernel's) count ``any``, ``covenant`` and ``min_cash``
    exactly and report no DSCR/leverage or facility split."""
    from hashpivot.kernels.evaluate import _Accumulator

    sc, plan, co = _hand_case("accelerate")
    o = simulate_plan(sc, plan, co)
    bare = dataclasses.replace(o, breach_mask=None)
    mask, split = outcome_breach_mask(bare)
    assert not split
    events, _ = breach_events(mask, ["F", "G"])
    assert {k: events[k] for k in ("any", "covenant", "min_cash")} == {
        "any": 2,
        "covenant": 2,
        "min_cash": 1,
    }
    acc = _Accumulator(5, ["F", "G"])
    acc.add(o, 5)
    acc.add(bare, 5)
    st = acc.stats(6, _estimate(acc, 6), 0)
    assert st.breach_events == {"any": 4, "covenant": 4, "min_cash": 2}
    assert st.facility_breach_events == {}
    assert st.default_events == 2 and st.paths == 6


def _estimate(acc, paths: int):
    from hashpivot.kernels.stats import ObjectiveAccumulator

    obj = ObjectiveAccumulator(["p"], 0.5, 0.0, paths)
    obj.add(np.concatenate(acc.sample)[:, None], 0)
    return obj.result()


# ------------------------------------------------------------------ split evaluation
#: Evaluation paths of the split checks: three blocks of SPLIT_BLOCK, the last one partial.
SPLIT_PATHS = 3000
SPLIT_BLOCK = 1024


@pytest.fixture(scope="module")
def split_case():
    from hashpivot.kernels.reduce import reduce_scenarios
    from hashpivot.optimizer.baselines import baseline
    from hashpivot.scenarios import load_scenario

    sc = load_scenario("demo")
    red = reduce_scenarios(sc, 1000, 4, 3, backend="numpy", pilot_paths=1000)
    plans = {  # defaults and minimum-cash breaches; DSCR and leverage breaches; none
        "a": baseline("convert_all_expected_cash", sc, red),
        "b": baseline("greedy", sc, red),
        "c": Plan.empty(sc),
    }
    return sc, plans


@pytest.fixture(scope="module")
def dask_executor():
    distributed = pytest.importorskip("distributed")
    from hashpivot.optimizer.executor import DaskExecutor

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield DaskExecutor(client)


def _split(case, chunk: int, executor=None):
    from hashpivot.kernels.evaluate import evaluate_plans

    sc, plans = case
    return evaluate_plans(
        sc,
        plans,
        SPLIT_PATHS,
        9,
        backend="numpy",
        chunk_paths=chunk,
        block_paths=SPLIT_BLOCK,
        executor=executor,
    )


def _assert_identical(a, b) -> None:
    """Every statistic and paired value equal (not close)."""
    from hashpivot.kernels.evaluate import EvalStats

    assert (a.paths, a.seed, a.backend) == (b.paths, b.seed, b.backend)
    assert list(a.stats) == list(b.stats)
    for name in a.stats:
        for f in dataclasses.fields(EvalStats):
            x, y = getattr(a.stats[name], f.name), getattr(b.stats[name], f.name)
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and x.shape == y.shape, (name, f.name)
                np.testing.assert_array_equal(x, y, err_msg=f"{name}.{f.name}", strict=True)
            else:
                assert x == y, (name, f.name, x, y)
    assert a.paired == b.paired


@pytest.mark.parametrize("chunk", [700, SPLIT_BLOCK])
def test_split_evaluation_on_two_dask_workers_is_bit_identical(split_case, dask_executor, chunk):
    assert dask_executor.workers == 2
    serial = _split(split_case, chunk)
    _assert_identical(serial, _split(split_case, chunk, dask_executor))


def test_split_evaluation_on_two_processes_is_bit_identical(split_case) -> None:
    from hashpivot.optimizer.executor import ProcessExecutor

    _assert_identical(_split(split_case, 700), _split(split_case, 700, ProcessExecutor(2)))


def test_event_counts_are_the_rates_numerators(split_case) -> None:
    ev = _split(split_case, 700)
    m = SPLIT_PATHS
    for name, st in ev.stats.items():
        e = st.breach_events
        assert st.paths == m
        assert e["covenant"] == round(st.p_breach * m) and st.p_breach == e["covenant"] / m
        assert e["min_cash"] == round(st.p_min_cash_breach * m)
        assert st.default_events == round(st.p_default * m)
        assert max(e["covenant"], e["min_cash"]) <= e["any"] <= e["covenant"] + e["min_cash"]
        assert max(e["dscr"], e["leverage"]) <= e["covenant"] <= e["dscr"] + e["leverage"]
        # demo has one facility with covenants: it is live at every covenant breach
        assert st.facility_breach_events == {"senior-notes": e["covenant"]}, name
        js = st.to_json()
        assert js["breach_events"] == e and js["default_events"] == st.default_events
    # the greedy plan breaches both covenants, the empty plan nothing
    assert ev.stats["b"].breach_events["dscr"] > 0 and ev.stats["b"].breach_events["leverage"] > 0
    assert ev.stats["c"].breach_events["any"] == 0


def test_blocks_are_fixed_by_the_paths() -> None:
    from hashpivot.kernels.evaluate import eval_blocks

    assert eval_blocks(3000, 1024) == [(0, 1024), (1024, 2048), (2048, 3000)]
    assert eval_blocks(10, 1024) == [(0, 10)]
    with pytest.raises(ValueError, match="block_paths"):
        eval_blocks(10, 0)


class _CountingExecutor:
    """Runs tasks here and records each map call's size and resources (duck-typed executor)."""

    workers = 1

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict]] = []

    def map(self, fn, items, **resources):
        items = list(items)
        self.calls.append((len(items), resources))
        return [fn(x) for x in items]


def test_batches_of_blocks_do_not_change_the_statistics(split_case, monkeypatch) -> None:
    """With room for one block state per batch, six blocks go out in batches of
    BLOCKS_PER_WORKER (4 + 2), untagged on the CPU; the statistics are those of one process."""
    import hashpivot.kernels.evaluate as evaluate_module
    from hashpivot.kernels.evaluate import BLOCKS_PER_WORKER, evaluate_plans

    sc, plans = split_case
    monkeypatch.setattr(evaluate_module, "BATCH_STATE_BYTES", 1)
    ex = _CountingExecutor()
    seen: list[tuple[int, int]] = []
    kw = {"backend": "numpy", "chunk_paths": 400, "block_paths": 500}
    batched = evaluate_plans(
        sc, plans, SPLIT_PATHS, 9, executor=ex, progress=lambda a, b: seen.append((a, b)), **kw
    )
    assert BLOCKS_PER_WORKER == 4
    assert ex.calls == [(4, {}), (2, {})]
    assert seen == [(2000, SPLIT_PATHS), (SPLIT_PATHS, SPLIT_PATHS)]
    _assert_identical(evaluate_plans(sc, plans, SPLIT_PATHS, 9, **kw), batched)
