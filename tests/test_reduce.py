"""Scenario reduction: weighted means equal full-sample means; weights; tail scenarios."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import scenario
from hypothesis import given, settings
from hypothesis import strategies as st

import hashpivot.kernels.reduce as reduce_mod
from hashpivot.kernels import philox
from hashpivot.kernels.market import market_params
from hashpivot.kernels.reduce import (
    MAX_SCALE_FACTOR,
    MEAN_ONLY,
    match_means,
    reduce_block_paths,
    reduce_scenarios,
    sample_scenarios,
    simulate_and_reduce,
    tail_share,
)
from hashpivot.kernels.simulate import simulate
from hashpivot.optimizer.executor import ProcessExecutor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from profile_pipeline import PathCounter  # noqa: E402

#: Weighted mean against the full-sample mean (relative).
MEAN_RTOL = 1e-9


@pytest.fixture(scope="module")
def tx():
    sc = scenario("texas_hybrid")
    return sc, reduce_scenarios(sc, 6000, 12, seed=8, backend="numpy", pilot_paths=3000)


def test_weighted_means_equal_full_sample_means(tx) -> None:
    sc, red = tx
    wm = red.weighted_means()
    for name, full in red.full_means.items():
        np.testing.assert_allclose(wm[name], full, rtol=MEAN_RTOL, atol=1e-12)
    # and against the independent streaming statistics of simulate()
    sim = simulate(sc, 6000, seed=8, backend="numpy")
    np.testing.assert_allclose(wm["margin_usd_per_mw"], sim.margin_mean_usd_per_mw, rtol=MEAN_RTOL)
    np.testing.assert_allclose(
        wm["btc_price_usd"], sim.factors["btc_price_usd"].mean, rtol=MEAN_RTOL
    )
    np.testing.assert_allclose(wm["gpu_hour_usd"], sim.factors["gpu_hour_usd"].mean, rtol=MEAN_RTOL)
    for j, r in enumerate(sim.power):
        np.testing.assert_allclose(wm["power_usd_per_mwh"][j], sim.power[r].mean, rtol=MEAN_RTOL)


def test_weights_sum_to_one_and_counts(tx) -> None:
    _, red = tx
    assert red.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(red.weights > 0)
    assert red.path_counts.sum() == 6000
    assert red.n_scenarios <= 12


def test_tail_scenarios_are_present_and_bad(tx) -> None:
    sc, red = tx
    assert red.is_tail.any() and (~red.is_tail).any()
    share = red.weights[red.is_tail].sum()
    assert share == pytest.approx(tail_share(sc), abs=0.03)
    hp_tail = (red.margin_usd_per_mw.mean(axis=(1, 2)))[red.is_tail].max()
    hp_body = (red.margin_usd_per_mw.mean(axis=(1, 2)))[~red.is_tail]
    assert hp_tail < np.average(hp_body, weights=red.weights[~red.is_tail])
    assert red.btc_price_usd[red.is_tail, -1].max() < np.median(red.btc_price_usd[~red.is_tail, -1])


def test_deterministic_in_seed() -> None:
    sc = scenario("demo")
    a = reduce_scenarios(sc, 2000, 6, seed=1, backend="numpy", pilot_paths=1000)
    b = reduce_scenarios(sc, 2000, 6, seed=1, backend="numpy", pilot_paths=1000)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.margin_usd_per_mw, b.margin_usd_per_mw)
    c = reduce_scenarios(sc, 2000, 6, seed=2, backend="numpy", pilot_paths=1000)
    assert not np.array_equal(a.btc_price_usd, c.btc_price_usd)


def test_single_scenario_is_the_mean() -> None:
    sc = scenario("demo")
    red = reduce_scenarios(sc, 1000, 1, seed=1, backend="numpy")
    assert red.n_scenarios == 1 and red.weights[0] == 1.0
    np.testing.assert_allclose(red.btc_price_usd[0], red.full_means["btc_price_usd"], rtol=1e-12)


def test_survival_follows_default_probability() -> None:
    sc = scenario("texas_hybrid")
    red = reduce_scenarios(sc, 4000, 4, seed=3, backend="numpy")
    surv = red.weighted_means()["tenant_survival"]
    q = np.array([lo.tenant_default_prob_per_year for lo in sc.lease_offers])
    expected = (1 - q[:, None]) ** ((np.arange(40) + 1) * 0.25)[None]
    assert np.all(np.abs(surv - expected) < 4 * np.sqrt(expected * (1 - expected) / 4000) + 1e-12)


def test_medoids_keep_dispersion_and_means() -> None:
    """Medoid scenarios are real (rescaled) paths: weighted means are exact as with cluster
    means, but they keep the quarter-to-quarter moves of a path, which cluster means smooth
    away (and with them the trailing-year swings the covenants test)."""
    sc = scenario("demo")
    kw = dict(backend="numpy", pilot_paths=3000)
    med = reduce_scenarios(sc, 6000, 8, seed=5, method="medoid", **kw)
    avg = reduce_scenarios(sc, 6000, 8, seed=5, method="mean", **kw)
    for red in (med, avg):
        for name, full in red.full_means.items():
            np.testing.assert_allclose(red.weighted_means()[name], full, rtol=MEAN_RTOL, atol=1e-12)

    def roughness(red) -> float:
        """Weighted mean over scenarios of the sd of quarterly BTC log-returns."""
        r = np.diff(np.log(red.btc_price_usd), axis=1)
        return float(red.weights @ r.std(axis=1))

    b = sc.market.btc
    quarterly = np.sqrt(
        0.25
        * (b.vol_per_year**2 + b.jump_intensity_per_year * (b.jump_mean_log**2 + b.jump_std_log**2))
    )
    assert roughness(avg) < 0.5 * quarterly  # cluster means are smooth
    assert abs(roughness(med) - quarterly) < 0.35 * quarterly  # medoids move like paths
    with pytest.raises(ValueError, match="method"):
        reduce_scenarios(sc, 100, 2, seed=1, method="bogus")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(2, 12),
    centre=st.floats(-2.0, 2.0),
    full_shift=st.floats(-1.0, 1.0),
)
def test_match_means_equals_full_means_and_stays_bounded(seed, k, centre, full_shift) -> None:
    rng = np.random.default_rng(seed)
    rep = centre + rng.normal(size=(k, 3, 5))  # weighted means near zero included
    weights = rng.dirichlet(np.ones(k))
    full = np.tensordot(weights, rep, axes=1) + full_shift
    out = match_means(rep, weights, full)
    np.testing.assert_allclose(np.tensordot(weights, out, axes=1), full, rtol=MEAN_RTOL, atol=1e-12)
    # never worse than a shift or a bounded scaling of the medoids
    shift = np.abs(full - np.tensordot(weights, rep, axes=1))
    limit = np.maximum(MAX_SCALE_FACTOR * np.abs(rep), np.abs(rep) + shift[None])
    assert np.all(np.abs(out) <= limit + 1e-12)


def test_match_means_scales_positive_quantities_and_shifts_near_zero_means() -> None:
    weights = np.array([0.5, 0.5])
    prices = np.array([[10.0], [30.0]])  # mean 20 → 22: scaled by 1.1, dispersion kept
    np.testing.assert_allclose(match_means(prices, weights, np.array([22.0])), prices * 1.1)
    margins = np.array([[1.0], [-0.999]])  # mean 5e-4 → 0.3: a ratio of 600 would blow up
    out = match_means(margins, weights, np.array([0.3]))
    np.testing.assert_allclose(out, margins + (0.3 - 5e-4))


# --------------------------------------------------------------------------- one market pass
#: Coefficient elements per block in the one-pass tests: texas_hybrid blocks of 294 paths, so
#: a few thousand paths span the pilot range, whole work items and a short last block.
SMALL_BLOCK_ELEMENTS = 200_000


def _separate_passes(sc, paths: int, k: int, seed: int, pilot: int):
    """The reduction as it was before the single pass: the pilot simulated on its own, every
    path simulated again for the assignment (cluster sums per block, chained in order), the
    medoids simulated a third time."""
    mp = market_params(sc)
    key = philox.seed_key(seed)
    ppy = sc.horizon.periods_per_year
    gap = sc.market.ai_lease.releasing_gap_periods
    blk = reduce_block_paths(mp)
    fc = reduce_mod._features_and_coefficients
    n_pilot = min(paths, pilot)
    parts = [
        fc(mp, key, np.arange(a, min(n_pilot, a + blk)), gap, ppy, np, coefficients=False)
        for a in range(0, n_pilot, blk)
    ]
    feats = np.concatenate([p[0] for p in parts])
    score = np.concatenate([p[1] for p in parts])
    clusters, is_tail, medoids = reduce_mod._cluster_pilot(sc, seed, k, feats, score)
    counts = np.zeros(clusters.centers.shape[0])
    sums: dict = {}
    for a in range(0, paths, blk):
        f, sc_in, co = fc(mp, key, np.arange(a, min(paths, a + blk)), gap, ppy, np)
        cnt, part = clusters.sums(f, sc_in, co, np)
        counts += cnt
        for name, v in part.items():
            sums[name] = sums[name] + v if name in sums else v
    keep = counts > 0
    means = {
        n: v[keep] / counts[keep].reshape((-1,) + (1,) * (v.ndim - 1)) for n, v in sums.items()
    }
    full = {n: v.sum(axis=0) / paths for n, v in sums.items()}
    weights = counts[keep] / paths
    _, _, rep = fc(mp, key, medoids[keep], gap, ppy, np)
    for name, arr in rep.items():
        if name not in MEAN_ONLY:
            means[name] = match_means(arr, weights, full[name])
    return weights, is_tail[keep], means, full


def _assert_same_reduction(a, b) -> None:
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.is_tail, b.is_tail)
    np.testing.assert_array_equal(a.path_counts, b.path_counts)
    for name, arr in a.coefficient_arrays().items():
        np.testing.assert_array_equal(arr, getattr(b, name), err_msg=name)
    for name, arr in a.full_means.items():
        np.testing.assert_array_equal(arr, b.full_means[name], err_msg=name)


def _assert_same_statistics(a, b) -> None:
    for key in a.factors:
        for stat in ("mean", "std", "p05", "p50", "p95"):
            np.testing.assert_array_equal(
                getattr(a.factors[key], stat), getattr(b.factors[key], stat)
            )
    for r in a.power:
        np.testing.assert_array_equal(a.power[r].mean, b.power[r].mean)
        np.testing.assert_array_equal(a.power[r].p95, b.power[r].p95)
    np.testing.assert_array_equal(a.margin_mean_usd_per_mw, b.margin_mean_usd_per_mw)
    np.testing.assert_array_equal(a.margin_stderr_usd_per_mw, b.margin_stderr_usd_per_mw)


@pytest.fixture(scope="module")
def one_pass():
    """texas_hybrid, 3000 paths, pilot 1000 (range 0..1176), blocks of 294 paths."""
    mp = pytest.MonkeyPatch()
    mp.setattr(reduce_mod, "CHUNK_ELEMENTS", SMALL_BLOCK_ELEMENTS)
    sc = scenario("texas_hybrid")
    assert reduce_block_paths(market_params(sc)) == 294
    kw = dict(backend="numpy", pilot_paths=1000)
    with PathCounter() as counter:
        sim, red = simulate_and_reduce(sc, 3000, 8, 11, **kw)
    yield sc, sim, red, counter, kw
    mp.undo()


def test_one_pass_equals_simulate_and_separate_reduction(one_pass) -> None:
    """Bit-identical to simulate() and to the three-pass reduction on the same seed, while
    every path is stepped through the market model exactly once."""
    sc, sim, red, counter, _ = one_pass
    _assert_same_statistics(simulate(sc, 3000, seed=11, backend="numpy"), sim)
    weights, is_tail, means, full = _separate_passes(sc, 3000, 8, 11, 1000)
    np.testing.assert_array_equal(red.weights, weights)
    np.testing.assert_array_equal(red.is_tail, is_tail)
    for name, arr in means.items():
        np.testing.assert_array_equal(getattr(red, name), arr, err_msg=name)
    for name, arr in full.items():
        np.testing.assert_array_equal(red.full_means[name], arr, err_msg=name)
    assert counter.for_seed(11) == 3000  # no pilot or medoid re-simulation
    assert sum(counter.paths.values()) == 3000
    assert sim.paths == 3000 and red.path_counts.sum() == 3000


def test_one_pass_is_chunk_and_work_item_invariant(one_pass) -> None:
    sc, sim, red, _, kw = one_pass
    for chunk, split in ((1000, 600), (294, 10_000)):  # chunks of 4 and 1 blocks
        s2, r2 = simulate_and_reduce(sc, 3000, 8, 11, chunk_paths=chunk, split_paths=split, **kw)
        _assert_same_statistics(sim, s2)
        _assert_same_reduction(red, r2)
    # reduce_scenarios is the same pass without the statistics
    _assert_same_reduction(red, reduce_scenarios(sc, 3000, 8, 11, **kw))


def test_one_pass_on_two_worker_processes_is_bit_identical(one_pass) -> None:
    sc, sim, red, _, kw = one_pass
    s2, r2 = simulate_and_reduce(
        sc, 3000, 8, 11, split_paths=600, executor=ProcessExecutor(2), **kw
    )
    _assert_same_statistics(sim, s2)
    _assert_same_reduction(red, r2)


# --------------------------------------------------------------------------- sampled sets
def test_sample_scenarios_are_equally_weighted_paths_of_their_tag() -> None:
    sc = scenario("texas_hybrid")
    mp = market_params(sc)
    s = sample_scenarios(sc, 40, 5, tag=philox.TAG_BATCH, backend="numpy")
    assert s.n_scenarios == 40 and s.paths == 40 and s.seed == 5
    np.testing.assert_array_equal(s.weights, np.full(40, 1 / 40))
    assert s.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert not s.is_tail.any() and np.all(s.path_counts == 1)
    assert s.margin_usd_per_mw.shape == (40, mp.n_sites, mp.n_periods)
    assert s.power_usd_per_mwh.shape == (40, mp.n_regions, mp.n_periods)
    assert s.tenant_survival.shape == (40, len(sc.lease_offers), mp.n_periods)
    for name, m in s.weighted_means().items():
        np.testing.assert_allclose(m, s.full_means[name], rtol=MEAN_RTOL, atol=1e-12)
    # exactly the coefficients of paths 0..39 under the tagged key
    _, _, co = reduce_mod._features_and_coefficients(
        mp,
        philox.seed_key(5, philox.TAG_BATCH),
        np.arange(40),
        sc.market.ai_lease.releasing_gap_periods,
        sc.horizon.periods_per_year,
        np,
    )
    for name, arr in co.items():
        np.testing.assert_array_equal(getattr(s, name), arr, err_msg=name)


def test_sample_scenarios_reproducible_tagged_and_offset() -> None:
    sc = scenario("demo")
    a = sample_scenarios(sc, 20, 3, tag=philox.TAG_SELECT, backend="numpy")
    _assert_same_reduction(a, sample_scenarios(sc, 20, 3, tag=philox.TAG_SELECT, backend="numpy"))
    later = sample_scenarios(sc, 10, 3, tag=philox.TAG_SELECT, backend="numpy", offset=5)
    np.testing.assert_array_equal(later.btc_price_usd, a.btc_price_usd[5:15])
    others = [
        sample_scenarios(sc, 20, 3, tag=tag, backend="numpy").btc_price_usd
        for tag in (philox.TAG_BATCH, philox.TAG_WAIT_AND_SEE, philox.TAG_SIMULATE)
    ]
    others.append(sample_scenarios(sc, 20, 4, tag=philox.TAG_SELECT, backend="numpy").btc_price_usd)
    for o in others:
        assert not np.any(o[:, -1] == a.btc_price_usd[:, -1])
    with pytest.raises(ValueError, match="n must be"):
        sample_scenarios(sc, 0, 3, tag=philox.TAG_BATCH, backend="numpy")


def test_named_tags_are_distinct() -> None:
    assert len(set(philox.TAGS.values())) == len(philox.TAGS) == 5
    keys = {philox.seed_key(9, tag) for tag in philox.TAGS.values()}
    assert len(keys) == 5
