"""Statistics of estimates against truth: binomial tables, repeated sampling, enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hashpivot.kernels.cashflow import cvar
from hashpivot.kernels.stats import (
    ObjectiveAccumulator,
    ObjectiveEstimate,
    clopper_pearson_upper,
    mmw_gap_interval,
    objective_influence,
)

#: Relative tolerance of exact identities computed in a different order.
EXACT_RTOL = 1e-12
#: Monte Carlo checks allow this many standard errors.
MC_SE = 3.5


def binom_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("n", [1, 10, 59, 300, 20_000])
def test_clopper_pearson_zero_events_is_rule_of_closed_form(n):
    assert clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-10)


def test_clopper_pearson_published_values():
    # one-sided 95% exact upper limit for 1 event in 10 trials: 0.3942 (binomial tables);
    # 0 events in 299 trials gives the classic "≤ 1% with 95% confidence" (0.00997)
    assert clopper_pearson_upper(1, 10) == pytest.approx(0.3942, abs=1e-4)
    assert clopper_pearson_upper(0, 299) == pytest.approx(0.00997, abs=1e-5)
    assert clopper_pearson_upper(7, 7) == 1.0


@pytest.mark.parametrize(("k", "n"), [(0, 5), (3, 40), (12, 200)])
def test_clopper_pearson_defining_property(k, n):
    # the bound p_u solves P(X ≤ k | n, p_u) = 0.05 (binomial sum by hand)
    assert binom_cdf(k, n, clopper_pearson_upper(k, n)) == pytest.approx(0.05, abs=1e-9)


def test_mmw_hand_example():
    gi = mmw_gap_interval(np.array([11.0, 12, 13, 14]), np.array([10.0, 10, 10, 10]), 100.0)
    s = math.sqrt(((1.5**2) * 2 + 0.5**2 * 2) / 3)  # 1.2910
    assert gi.gbar_usd == 2.5
    assert gi.s_usd == pytest.approx(s)
    assert gi.upper95_usd == pytest.approx(2.5 + 2.353363 * s / 2, rel=1e-6)  # t(0.95, 3)
    assert gi.upper95_rel == pytest.approx(gi.upper95_usd / 100)


def _sample(rng, m):
    # two correlated plans with heavy left tails (what the covenant rules produce)
    z = rng.standard_normal(m)
    jump = rng.random(m) < 0.07
    wa = 100 + 30 * z - 250 * jump + 5 * rng.standard_normal(m)
    wb = 95 + 12 * z - 40 * jump + 5 * rng.standard_normal(m)
    return np.stack([wa, wb], axis=1)


def test_influence_mean_is_the_plugin_objective():
    rng = np.random.default_rng(1)
    w = _sample(rng, 997)[:, 0]
    for alpha in (0.9, 0.95, 0.99):
        j, psi = objective_influence(w, alpha, 0.7)
        ref = w.mean() - 0.7 * cvar(-w, np.full(len(w), 1 / len(w)), alpha)
        assert j == pytest.approx(ref, rel=EXACT_RTOL)
        assert psi.mean() == pytest.approx(j, rel=EXACT_RTOL)


def test_accumulator_equals_full_sample_and_is_chunk_invariant():
    rng = np.random.default_rng(2)
    w = _sample(rng, 5000)
    alpha, lam = 0.95, 0.5
    results = []
    for chunk in (5000, 1024, 333):
        acc = ObjectiveAccumulator(["a", "b"], alpha, lam, len(w))
        for s in range(0, len(w), chunk):
            acc.add(w[s : s + chunk], s)
        results.append(acc.result())
    for r in results[1:]:
        np.testing.assert_array_equal(r.objective_usd, results[0].objective_usd)
        np.testing.assert_array_equal(r.paired_stderr_usd, results[0].paired_stderr_usd)
    r = results[0]
    ja, pa = objective_influence(w[:, 0], alpha, lam)
    jb, pb = objective_influence(w[:, 1], alpha, lam)
    m = len(w)
    assert r.objective_usd == pytest.approx([ja, jb], rel=EXACT_RTOL)
    assert r.stderr_usd[0] == pytest.approx(pa.std(ddof=1) / math.sqrt(m), rel=1e-9)
    diff, se = r.diff("a", "b")
    assert diff == pytest.approx(ja - jb, rel=EXACT_RTOL)
    assert se == pytest.approx((pa - pb).std(ddof=1) / math.sqrt(m), rel=1e-9)


def test_merged_ranges_are_exact_and_order_of_ranges_is_fixed():
    """Partial accumulators of path ranges, merged in range order, equal one accumulator that
    merges the same ranges (bit for bit), whatever the chunks inside a range; the tail is the
    full sample's (so the objective is the full-sample plug-in)."""
    rng = np.random.default_rng(4)
    w = _sample(rng, 3000)
    alpha, lam = 0.9, 0.5
    ranges = [(0, 1000), (1000, 2000), (2000, 3000)]

    def merged(chunk: int) -> ObjectiveEstimate:
        total = ObjectiveAccumulator(["a", "b"], alpha, lam, len(w))
        for a, b in ranges:
            part = ObjectiveAccumulator(["a", "b"], alpha, lam, len(w))
            for s in range(a, b, chunk):
                part.add(w[s : min(s + chunk, b)], s)
            total.merge(part)
        return total.result()

    r1, r2 = merged(1000), merged(300)
    for f in ("objective_usd", "cvar_usd", "stderr_usd", "paired_stderr_usd"):
        np.testing.assert_array_equal(getattr(r1, f), getattr(r2, f))
    ja, _ = objective_influence(w[:, 0], alpha, lam)
    assert r1.objective_usd[0] == pytest.approx(ja, rel=EXACT_RTOL)
    other = ObjectiveAccumulator(["a", "b"], alpha, 0.7, len(w))
    with pytest.raises(ValueError, match="cannot merge"):
        ObjectiveAccumulator(["a", "b"], alpha, lam, len(w)).merge(other)


def test_paired_stderr_matches_repeated_sampling():
    """The predicted s.e. of Ĵ_a − Ĵ_b equals the spread of the difference over independent
    repetitions; the s.e. of the mean difference alone (the old report) does not."""
    rng = np.random.default_rng(3)
    reps, m, alpha, lam = 500, 4000, 0.95, 1.0
    diffs, predicted, mean_only = [], [], []
    for _ in range(reps):
        w = _sample(rng, m)
        ja, pa = objective_influence(w[:, 0], alpha, lam)
        jb, pb = objective_influence(w[:, 1], alpha, lam)
        diffs.append(ja - jb)
        predicted.append((pa - pb).std(ddof=1) / math.sqrt(m))
        mean_only.append((w[:, 0] - w[:, 1]).std(ddof=1) / math.sqrt(m))
    observed = np.std(diffs, ddof=1)
    band = MC_SE / math.sqrt(2 * (reps - 1))  # relative s.e. of a sample standard deviation
    assert np.mean(predicted) / observed == pytest.approx(1.0, abs=band)
    assert np.mean(mean_only) / observed < 1.0 - band


# ------------------------------------------------------------------ MMW coverage by enumeration
DEMAND = np.array([0.0, 4, 8, 12, 16, 20])
PROB = np.array([0.10, 0.15, 0.25, 0.25, 0.15, 0.10])
ORDERS = np.arange(0, 21)
PRICE, COST, SALVAGE = 10.0, 6.0, 1.0
ALPHA, LAM = 0.8, 0.6


def _equity(x: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """(orders, samples) terminal value of a newsvendor with salvage."""
    sold = np.minimum(x[:, None], xi[None, :])
    return PRICE * sold - COST * x[:, None] + SALVAGE * (x[:, None] - sold)


def _objectives(xi: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = _equity(ORDERS, xi)
    return np.array([row @ weights - LAM * cvar(-row, weights, ALPHA) for row in w])


def test_mmw_interval_covers_the_true_gap():
    """Tiny SAA whose true objective is computed exactly on the discrete distribution: over 60
    repetitions the 95% MMW upper bound covers the true gap of the chosen order ≥ 90% of the
    time, and the chosen order is often not the optimum (the test is not vacuous)."""
    true = _objectives(DEMAND, PROB)
    best = true.max()
    rng = np.random.default_rng(7)
    n, batches, reps = 15, 10, 60
    covered = suboptimal = 0
    for _ in range(reps):
        xi = rng.choice(DEMAND, size=n, p=PROB)
        chosen = int(np.argmax(_objectives(xi, np.full(n, 1 / n))))
        opt_b, val_b = [], []
        for _ in range(batches):
            xb = rng.choice(DEMAND, size=n, p=PROB)
            jb = _objectives(xb, np.full(n, 1 / n))
            opt_b.append(jb.max())
            val_b.append(jb[chosen])
        gi = mmw_gap_interval(np.array(opt_b), np.array(val_b), float(true[chosen]))
        gap = best - true[chosen]
        suboptimal += gap > 1e-9
        covered += gap <= gi.upper95_usd + 1e-9
    assert suboptimal >= 10
    assert covered / reps >= 0.90


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_tail_keeps_the_lowest_rows_with_ties_by_path(chunk: int) -> None:
    """The kept tail is the first k of a full lexsort (lowest W, then lowest path index), on
    data with many ties, whatever the chunking and pruning."""
    from hashpivot.kernels.stats import _lowest, _Tail

    rng = np.random.default_rng(chunk)
    w = np.round(rng.normal(size=(1000, 2)), 1)  # ~60 distinct values: ties everywhere
    ids = np.arange(1000, dtype=np.int64)
    k = 37
    ref = set(np.lexsort((ids, w[:, 1]))[:k].tolist())
    rows, got = _lowest(w, ids, 1, k)
    assert set(got.tolist()) == ref
    np.testing.assert_array_equal(rows, w[got])
    tail = _Tail(1, k, 2)
    for s in range(0, 1000, chunk):
        tail.admit(w[s : s + chunk], ids[s : s + chunk])
    rows, got = tail.prune()
    assert set(got.tolist()) == ref
    np.testing.assert_array_equal(rows, w[got])
