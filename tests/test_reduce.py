"""Scenario reduction: weighted means equal full-sample means; weights; tail scenarios."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import scenario
from hypothesis import given, settings
from hypothesis import strategies as st

from hashpivot.kernels.reduce import MAX_SCALE_FACTOR, match_means, reduce_scenarios, tail_share
from hashpivot.kernels.simulate import simulate

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
