"""Latin hypercube paths: one point per stratum in every dimension, the i.i.d. marginal law,
determinism."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import N_SE, scenario
from scipy.special import ndtr

from hashpivot.kernels import philox
from hashpivot.kernels.market import iter_periods, market_params
from hashpivot.kernels.reduce import sample_scenarios
from hashpivot.kernels.sampling import Sampling, design_rng, latin_hypercube, lhs_shocks

#: Designs of the marginal check, and the paths of each (the marginal of one path is tested).
DESIGNS, DESIGN_PATHS = 400, 8
#: I.i.d. paths the marginal is compared with.
IID_PATHS = 20_000


def strata(u: np.ndarray, n: int) -> np.ndarray:
    """The stratum 0 … n − 1 of each uniform."""
    return np.floor(u * n).astype(np.int64)


def test_latin_hypercube_hits_every_stratum_once_per_dimension() -> None:
    n, dims = 13, 7
    u = latin_hypercube(np.random.default_rng(1), n, dims)
    assert u.shape == (dims, n) and np.all((u >= 0.0) & (u < 1.0))
    for row in strata(u, n):
        np.testing.assert_array_equal(np.sort(row), np.arange(n))
    with pytest.raises(ValueError, match="n must be"):
        latin_hypercube(np.random.default_rng(1), 0, 3)


def test_lhs_shocks_stratify_every_period_normal_and_jump_uniform() -> None:
    mp = market_params(scenario("demo"))
    n = 32
    sh = lhs_shocks(mp, n, seed=5, tag=philox.TAG_BATCH)
    assert sh.z.shape == (mp.n_periods, mp.n_normals, n)
    assert sh.u_jump.shape == (mp.n_periods, n)
    for row in strata(ndtr(sh.z), n).reshape(-1, n):
        np.testing.assert_array_equal(np.sort(row), np.arange(n))
    for row in strata(sh.u_jump, n):
        np.testing.assert_array_equal(np.sort(row), np.arange(n))
    # the strata of different dimensions are independent permutations, not one shared order
    assert len({tuple(np.argsort(r)) for r in sh.z.reshape(-1, n)}) > 1


def test_lhs_batches_are_deterministic_and_seeded() -> None:
    sc = scenario("demo")
    kw = dict(tag=philox.TAG_BATCH, backend="numpy", sampling=Sampling.LHS)
    a = sample_scenarios(sc, 12, 7, **kw)
    b = sample_scenarios(sc, 12, 7, **kw)
    for name, arr in a.coefficient_arrays().items():
        np.testing.assert_array_equal(arr, getattr(b, name), err_msg=name)
    other = sample_scenarios(sc, 12, 8, **kw)
    iid = sample_scenarios(sc, 12, 7, tag=philox.TAG_BATCH, backend="numpy")
    for c in (other, iid):
        assert not np.any(c.btc_price_usd[:, -1] == a.btc_price_usd[:, -1])
    assert design_rng(7, 1).random() != design_rng(7, 2).random()  # the tag matters too
    with pytest.raises(ValueError, match="sampling must be one of"):
        sample_scenarios(sc, 12, 7, tag=philox.TAG_BATCH, backend="numpy", sampling="sobol")


def test_one_lhs_path_has_the_iid_marginal() -> None:
    """The terminal BTC price (jumps included) and whether it ends below its start, of path 0
    of many independent designs, against i.i.d. Philox paths: equal means within N_SE
    standard errors of the difference."""
    sc = scenario("demo")
    mp = market_params(sc)

    def terminal(key, paths, shocks=None) -> np.ndarray:
        for f in iter_periods(mp, key, paths, shocks=shocks):
            last = f.ln_btc
        return last

    key = philox.seed_key(3, philox.TAG_BATCH)
    lhs = np.array(
        [
            terminal(key, np.arange(DESIGN_PATHS), lhs_shocks(mp, DESIGN_PATHS, d, 1))[0]
            for d in range(DESIGNS)
        ]
    )
    iid = terminal(key, np.arange(IID_PATHS))
    for f in (np.exp, lambda x: (x < mp.ln_p0).astype(float)):
        a, b = f(lhs), f(iid)
        se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        assert abs(a.mean() - b.mean()) <= N_SE * se


def test_one_lhs_normal_is_standard_normal() -> None:
    """Path 0's first normal over many designs: mean 0 and variance 1 within N_SE standard
    errors (a midpoint or edge design without the jitter U would fail the variance)."""
    mp = market_params(scenario("demo"))
    z = np.array([lhs_shocks(mp, 4, d, 2).z[0, 0, 0] for d in range(IID_PATHS // 4)])
    assert abs(z.mean()) <= N_SE / np.sqrt(z.size)
    assert abs(z.var() - 1.0) <= N_SE * np.sqrt(2.0 / z.size)  # Var of s² is 2σ⁴/n
