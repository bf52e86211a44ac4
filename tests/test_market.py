"""Market model against closed forms, each Monte Carlo check within N_SE standard errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import N_SE, QUIET_MARKET, deep_update, extreme_hashprice_data, norm_cdf, scenario

from hashpivot.kernels import market as mk
from hashpivot.kernels import philox
from hashpivot.kernels.simulate import simulate
from hashpivot.scenarios import synthetic

PATHS = 100_000


def lognormal_moments(m: float, v: float) -> tuple[float, float, float]:
    """Mean, variance and the standard error factor of the sample variance of exp(N(m, v))."""
    ex = [math.exp(k * m + k * k * v / 2) for k in range(5)]
    mean = ex[1]
    var = ex[2] - mean**2
    mu4 = ex[4] - 4 * mean * ex[3] + 6 * mean**2 * ex[2] - 3 * mean**4
    return mean, var, mu4 - var**2


def test_gbm_mean_and_variance() -> None:
    mu, sigma, p0 = 0.12, 0.55, 60000.0
    sc = scenario(
        market={
            "btc": {"drift_per_year": mu, "vol_per_year": sigma, "jump_intensity_per_year": 0.0}
        }
    )
    res = simulate(sc, PATHS, seed=11, backend="numpy")
    stats = res.factors["btc_price_usd"]
    for t in (0, 3, 7):
        ty = res.t_years[t]
        m, v = math.log(p0) + (mu - sigma**2 / 2) * ty, sigma**2 * ty
        mean, var, var_of_var = lognormal_moments(m, v)
        assert abs(stats.mean[t] - mean) < N_SE * math.sqrt(var / PATHS)
        assert abs(stats.std[t] ** 2 - var) < N_SE * math.sqrt(var_of_var / PATHS)
        # the median from the histogram: within its bin width and the MC error
        assert abs(math.log(stats.p50[t]) - m) < 0.01 + N_SE * 1.25 * math.sqrt(v / PATHS)


def test_jump_diffusion_mean() -> None:
    mu, p0 = 0.12, 60000.0
    sc = scenario(
        market={
            "btc": {
                "drift_per_year": mu,
                "vol_per_year": 0.5,
                "jump_intensity_per_year": 4.0,
                "jump_mean_log": -0.1,
                "jump_std_log": 0.1,
            }
        }
    )
    res = simulate(sc, PATHS, seed=12, backend="numpy")
    stats = res.factors["btc_price_usd"]
    for t in (1, 7, 19):
        expected = p0 * math.exp(mu * res.t_years[t])
        assert abs(stats.mean[t] - expected) < N_SE * stats.std[t] / math.sqrt(PATHS)
    # jumps fatten the left tail: the 5% quantile sits below the pure-diffusion one
    plain = simulate(
        scenario(
            market={
                "btc": {"drift_per_year": mu, "vol_per_year": 0.5, "jump_intensity_per_year": 0.0}
            }
        ),
        20_000,
        seed=12,
        backend="numpy",
    )
    assert stats.p05[19] < plain.factors["btc_price_usd"].p05[19]


def test_poisson_counts() -> None:
    u = philox.uniform(np.arange(0, 2**32, 2**12, dtype=np.uint64))
    counts = mk.poisson_from_uniform(u, 1.0)
    assert abs(counts.mean() - 1.0) < 1e-3 and abs(counts.var() - 1.0) < 1e-2


def test_power_ou_mean_and_variance() -> None:
    kappa, sigma, mean_p, p0 = 2.0, 0.4, 40.0, 55.0
    sc = scenario(
        market={
            "power_regions": {
                "ercot": {
                    "mean_usd_per_mwh": mean_p,
                    "initial_usd_per_mwh": p0,
                    "reversion_per_year": kappa,
                    "vol_per_year": sigma,
                    "intra_period_dispersion": 0.5,
                }
            }
        }
    )
    res = simulate(sc, PATHS, seed=13, backend="numpy")
    stats = res.power["ercot"]
    theta = math.log(mean_p) - sigma**2 / (4 * kappa)
    for t in (0, 4, 19):
        ty = res.t_years[t]
        m = theta + (math.log(p0) - theta) * math.exp(-kappa * ty)
        v = sigma**2 / (2 * kappa) * (1 - math.exp(-2 * kappa * ty))
        mean, var, var_of_var = lognormal_moments(m, v)
        assert abs(stats.mean[t] - mean) < N_SE * math.sqrt(var / PATHS)
        assert abs(stats.std[t] ** 2 - var) < N_SE * math.sqrt(var_of_var / PATHS)
    # stationary mean is the configured mean
    assert abs(stats.mean[19] - mean_p) < 0.01 * mean_p


def test_lease_occupancy_gpu_means() -> None:
    sc = scenario(
        market={"ai_lease": {"mean_drift_per_year": 0.03}, "gpu_hour": {"decline_per_year": 0.2}}
    )
    res = simulate(sc, PATHS, seed=14, backend="numpy")
    for t in (0, 9, 19):
        ty = res.t_years[t]
        lease = res.factors["ai_lease_usd_per_kw_month"]
        assert abs(lease.mean[t] - 130 * math.exp(0.03 * ty)) < N_SE * lease.std[t] / math.sqrt(
            PATHS
        )
        gpu = res.factors["gpu_hour_usd"]
        assert abs(gpu.mean[t] - 2.91 * 0.8**ty) < N_SE * gpu.std[t] / math.sqrt(PATHS)
        occ = res.factors["ai_occupancy"]
        assert 0.0 < occ.p05[t] <= occ.p95[t] < 1.0


def test_subsidy_schedule_and_deterministic_hashprice() -> None:
    sc = scenario(market=QUIET_MARKET)
    subsidy, halving = mk.subsidy_schedule(sc)
    # block 982,000 + 144·365.25·t crosses 1,050,000 at t = 1.293 y: inside period 5 (1.25, 1.5]
    assert list(np.flatnonzero(halving)) == [5]
    assert subsidy[4] == 3.125 and subsidy[5] == 1.5625
    res = simulate(sc, 2000, seed=1, backend="numpy")
    hp = res.factors["hashprice_usd_per_ph_day"]
    expected0 = 144 * 3.125 * 60000 / (1000 * 1000)
    np.testing.assert_allclose(hp.mean[:5], expected0, rtol=1e-12)
    np.testing.assert_allclose(hp.mean[5:], expected0 / 2, rtol=1e-12)
    assert hp.mean[5] / hp.mean[4] == pytest.approx(0.5, rel=1e-12)
    assert np.all(hp.std < 1e-9 * expected0)


def test_halving_step_moves_hashrate() -> None:
    market = deep_update(QUIET_MARKET, {"hashrate": {"halving_step_log": -0.1}})
    res = simulate(scenario(market=market), 100, seed=1, backend="numpy")
    h = res.factors["network_hashrate_eh_s"].mean
    assert h[4] == pytest.approx(1000.0) and h[5] == pytest.approx(1000.0 * math.exp(-0.1))


def test_mining_margin_is_black_scholes_call() -> None:
    mu, sigma, p = 0.10, 0.55, 40.0
    market = deep_update(
        QUIET_MARKET,
        {
            "btc": {"drift_per_year": mu, "vol_per_year": sigma},
            "hashrate": {"drift_per_year": 0.15},
            "fees_btc_per_block": 0.03,
        },
    )
    sc = scenario(market=market)
    res = simulate(sc, PATHS, seed=15, backend="numpy")
    site = sc.sites[0]  # market-indexed
    mp = mk.market_params(sc)
    hu = sc.horizon.hours_per_period * site.uptime
    for t in (0, 5, 11, 19):
        ty = res.t_years[t]
        h = 1000.0 * math.exp(0.15 * ty)
        fwd_hp = 144 * (mp.subsidy_btc[t] + 0.03) * 60000 * math.exp(mu * ty) / (1000 * h)
        fwd = fwd_hp * 1000 / (24 * site.efficiency_j_per_th)
        s = sigma * math.sqrt(ty)
        d1 = (math.log(fwd / p) + s * s / 2) / s
        call = fwd * norm_cdf(d1) - p * norm_cdf(d1 - s)
        got, se = res.margin_mean_usd_per_mw[0, t], res.margin_stderr_usd_per_mw[0, t]
        assert abs(got - hu * call) < N_SE * se, (t, got, hu * call, se)


def _quadrature(f, n: int = 400_001) -> float:
    z = np.linspace(-12, 12, n)
    w = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return float(np.trapezoid(f(z) * w, z))


@pytest.mark.parametrize(
    ("rev", "power", "sigma"),
    [(60.0, 40.0, 0.8), (30.0, 45.0, 0.5), (100.0, 20.0, 1.5), (40.0, 40.0, 0.05)],
)
def test_put_formula_against_integration(rev: float, power: float, sigma: float) -> None:
    truth = _quadrature(lambda z: np.maximum(rev - power * np.exp(sigma * z - sigma**2 / 2), 0))
    ref = float(mk.expected_shortfall_put(np.array(rev), np.array(power), np.array(sigma)))
    assert ref == pytest.approx(truth, abs=1e-5 * power)
    out = np.empty((1, 1), dtype=np.float32)
    mk._put_tile(
        np.array([[rev]], np.float32),
        np.array([[power]], np.float32),
        np.array([[math.log(power / rev)]], np.float32),
        np.array([[sigma]], np.float32),
        out,
    )
    assert float(out[0, 0]) == pytest.approx(truth, abs=2e-5 * power)


#: float32 tiles against the float64 reference, relative to each site's largest margin.
MARGIN_F32_RTOL = 5e-6


def test_fast_margin_matches_float64_reference() -> None:
    """Mixed fleet: indexed shares strictly between 0 and 1, with and without resale, several
    regions; the tiled float32 kernel equals the broadcasting float64 formulas."""
    sc = synthetic(12, seed=3, years=5.0)
    mp = mk.market_params(sc)
    mp = mk.MarketParams(
        **{
            **mp.__dict__,
            "site_indexed_share": np.linspace(0.0, 1.0, 12),
            "site_resale": np.arange(12) % 2.0,
        }
    )
    assert mp.n_regions > 1
    for f in mk.iter_periods(mp, philox.seed_key(8), np.arange(3000)):
        if f.t in (0, 9, 19):
            ref = mk._mining_margin_reference(mp, f, xp=np)
            got = mk.mining_margin(mp, f)
            scale = np.abs(ref).max(axis=1, keepdims=True)
            assert np.all(np.abs(got - ref) <= MARGIN_F32_RTOL * scale)


def test_fixed_price_contracts() -> None:
    """Resale: E[max(R, X)] − c; no resale: (R − c)⁺ (checked by integration)."""
    rev, power, sigma, c = 35.0, 40.0, 0.7, 30.0
    for resale, truth in (
        (
            True,
            _quadrature(lambda z: np.maximum(rev, power * np.exp(sigma * z - sigma**2 / 2))) - c,
        ),
        (False, max(rev - c, 0.0)),
    ):
        sc = scenario(
            sites=[
                {
                    **scenario().sites[0].model_dump(mode="json"),
                    "power": {
                        "market_indexed_share": 0.0,
                        "fixed_price_usd_per_mwh": c,
                        "resale_allowed": resale,
                    },
                }
            ],
            lease_offers=[],
        )
        mp = mk.market_params(sc)
        f = mk.PeriodFactors(
            0,
            None,
            None,
            np.array([math.log(rev * 24 * 17.5 / 1000)]),
            np.array([[math.log(power)]]),
            None,
            None,
            None,
        )
        mp = mk.MarketParams(**{**mp.__dict__, "power_intra": np.array([sigma])})
        got = float(mk.mining_margin(mp, f)[0, 0]) / mp.site_hours_uptime[0]
        assert got == pytest.approx(truth, abs=1e-4 * power)


def test_btc_hashrate_shock_correlation() -> None:
    rho = 0.3
    market = {
        "btc": {"jump_intensity_per_year": 0.0},
        "hashrate": {"down_response_per_year": 0.0, "up_response_per_year": 0.0},
    }
    sc = scenario(market=market)
    mp = mk.market_params(sc)
    paths = np.arange(PATHS)
    prev_p = prev_h = None
    for f in mk.iter_periods(mp, philox.seed_key(16), paths):
        if f.t == 2:
            prev_p, prev_h = f.ln_btc.copy(), f.ln_hashrate.copy()
        if f.t == 3:
            r = np.corrcoef(f.ln_btc - prev_p, f.ln_hashrate - prev_h)[0, 1]
            break
    assert abs(r - rho) < N_SE * (1 - rho**2) / math.sqrt(PATHS)


def test_cholesky_of_singular_matrix() -> None:
    c = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    low = mk.cholesky_psd(c)
    np.testing.assert_allclose(low @ low.T, c, atol=1e-12)


#: Relative agreement of the BLAS-free product with ``chol @ z`` (summation order differs).
CORRELATE_RTOL = 1e-14


@pytest.mark.parametrize("zero_column", [False, True])
def test_correlate_is_the_cholesky_product(zero_column: bool) -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((7, 7))
    c = a @ a.T + 7 * np.eye(7)
    d = np.sqrt(np.diag(c))
    c = c / d[:, None] / d[None, :]
    if zero_column:  # last factor uncorrelated: every other column of L ends above its row
        c[6, :6] = c[:6, 6] = 0.0
    low = mk.cholesky_psd(c)
    z = rng.standard_normal((8, 1000))  # one row more than factors, as the jump normal
    got = mk.correlate(low, z)
    want = low @ z[:7]
    np.testing.assert_allclose(got, want, rtol=CORRELATE_RTOL, atol=CORRELATE_RTOL)
    # each path's value is independent of the chunk around it (bit for bit)
    np.testing.assert_array_equal(mk.correlate(low, z[:, 301:650]), got[:, 301:650])
    # row i is Σ_{j≤i} L_ij z_j in order of j
    for i in range(7):
        acc = low[i, 0] * z[0]
        for j in range(1, i + 1):
            acc = acc + low[i, j] * z[j]
        np.testing.assert_array_equal(got[i], acc)


def test_tenant_default_probability() -> None:
    sc = scenario("texas_hybrid")
    mp = mk.market_params(sc)
    first = mk.tenant_default_periods(mp, philox.seed_key(17), np.arange(PATHS))
    assert first.shape == (2, PATHS)
    for lease, offer in enumerate(sc.lease_offers):
        q = offer.tenant_default_prob_per_year
        for t in (3, 19, 39):
            p = 1 - (1 - q) ** ((t + 1) * 0.25)
            got = float(np.mean(first[lease] <= t))
            assert abs(got - p) < N_SE * math.sqrt(p * (1 - p) / PATHS)


# --------------------------------------------------------------------------- hashrate feedback
#: A deterministic market with the breakeven feedback on (marginal fleet 22 J/TH at $45/MWh).
FEEDBACK = {
    "hashrate": {
        "marginal_efficiency_j_per_th": 22.0,
        "marginal_power_usd_per_mwh": 45.0,
        "down_response_per_year": 10.0,
        "up_response_per_year": 2.0,
        "lag_periods": 1,
    },
}
BREAKEVEN0 = 24 * 22.0 * 45.0 / 1000  # $/PH/day
# no halving within the horizon: the first falls 1,000,000 blocks (~19 years) after block 0
NO_HALVING = {
    "halving": {
        "initial_subsidy_btc": 3.125,
        "interval_blocks": 1_000_000,
        "block_height_at_start": 0,
    }
}


def _feedback_run(changes: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    market = deep_update(deep_update(QUIET_MARKET, FEEDBACK), changes)
    res = simulate(scenario(market=market), 64, seed=2, backend="numpy")
    hp = res.factors["hashprice_usd_per_ph_day"]
    assert np.all(hp.std < 1e-6 * hp.mean)  # no shocks: every path is the same
    return res.t_years, res.factors["network_hashrate_eh_s"].mean, hp.mean


def test_hashrate_steady_state_is_breakeven() -> None:
    """From above or below breakeven, hashprice converges to b_t = b_0·e^{−ηt}."""
    eta, dt = 0.10, 0.25
    phi_u = 1 - math.exp(-2.0 * dt)
    for h0 in (1000.0, 1300.0):
        ty, h, hp = _feedback_run(
            deep_update(NO_HALVING, {"hashrate": {"hashrate_eh_s": h0, "drift_per_year": eta}})
        )
        b = BREAKEVEN0 * np.exp(-eta * ty)
        hp0 = 144 * 3.125 * 60000 / (1000 * h0)
        g0 = math.log(hp0 / BREAKEVEN0)
        # first period by hand: x = ln H0 + ηΔ, g = g0 (b falls by ηΔ too)
        first = math.log(h0) + eta * dt + (phi_u * g0 if g0 > 0 else (1 - math.exp(-2.5)) * g0)
        assert math.log(h[0]) == pytest.approx(first, abs=1e-12)
        assert hp[-1] / b[-1] == pytest.approx(1.0, abs=2e-3)
        np.testing.assert_allclose(np.diff(np.log(h[-4:])), eta * dt, atol=1e-3)


def test_btc_drift_reaches_hashrate_through_hashprice() -> None:
    """A BTC drift μ raises H at μ + η; hashprice stays above b_t by g*(1 − φ_u), g* = μΔ/φ_u."""
    dt, eta = 0.25, 0.05
    phi_u = 1 - math.exp(-2.0 * dt)
    runs = {}
    for mu in (0.1, 0.8):
        changes = {"btc": {"drift_per_year": mu}, "hashrate": {"drift_per_year": eta}}
        runs[mu] = _feedback_run(deep_update(NO_HALVING, changes))
        ty, h, hp = runs[mu]
        b = BREAKEVEN0 * np.exp(-eta * ty)
        np.testing.assert_allclose(np.diff(np.log(h[-4:])), (mu + eta) * dt, atol=2e-3)
        assert math.log(hp[-1] / b[-1]) == pytest.approx(mu * dt * (1 - phi_u) / phi_u, abs=2e-3)
    assert runs[0.8][1][-1] > 2.0 * runs[0.1][1][-1]


def test_halving_steps_hashrate_down_and_hashprice_recovers() -> None:
    """Starting at breakeven with η = 0: the halving in period 5 halves c_t, so g = −ln 2, H falls
    by 2^{−φ_d} in that period and HP/b = 2^{−(1−φ_d)^{k+1}} k periods later."""
    phi_d = 1 - math.exp(-10.0 * 0.25)
    h0 = 144 * 3.125 * 60000 / 1000 / BREAKEVEN0  # g_start = 0
    _, h, hp = _feedback_run({"hashrate": {"hashrate_eh_s": h0, "drift_per_year": 0.0}})
    np.testing.assert_allclose(h[:5], h0, rtol=1e-12)
    assert h[5] == pytest.approx(h0 * 2 ** (-phi_d), rel=1e-12)
    for k in range(4):
        assert hp[5 + k] / BREAKEVEN0 == pytest.approx(2 ** (-((1 - phi_d) ** (k + 1))), rel=1e-12)
    assert hp[-1] == pytest.approx(BREAKEVEN0, rel=1e-6)


def test_shipped_hashprice_stays_near_breakeven_and_btc_drift_raises_hashrate() -> None:
    """demo's market: hashprice's median at year 5 sits near the falling breakeven b_T (it used to
    collapse below it on 95% of paths), and an 80% BTC drift raises hashrate, not hashprice."""
    out = {}
    for mu in (0.12, 0.8):
        res = simulate(
            scenario(market={"btc": {"drift_per_year": mu}}), 4000, seed=3, backend="numpy"
        )
        out[mu] = res
        b = BREAKEVEN0 * math.exp(-0.10 * res.t_years[-1])  # demo: η = 0.10
        hp = res.factors["hashprice_usd_per_ph_day"]
        assert 0.8 * b < hp.p50[-1] < 1.5 * b
        assert hp.p95[-1] > b
    h = {mu: r.factors["network_hashrate_eh_s"].p50[-1] for mu, r in out.items()}
    assert h[0.8] > 5 * h[0.12]


# --------------------------------------------------------------------------- float32 range
def test_margin_stays_finite_at_extreme_accepted_values() -> None:
    """Regression: exp of a huge ln revenue times hours·uptime overflowed float32 (inf, then
    NaN and an infeasible MILP). Below the clamp of margin_log_bounds the kernel equals the
    float64 reference; above it, the reference at the clamped hashprice."""
    from hashpivot.scenarios.validate import validate_data  # noqa: PLC0415

    mp = mk.market_params(validate_data(extreme_hashprice_data(), "extreme"))
    lo, hi = mk.margin_log_bounds(mp)
    f32_max = float(np.finfo(np.float32).max)
    rows = mp.site_hours_uptime.max()
    reached = False
    for f in mk.iter_periods(mp, philox.seed_key(5), np.arange(4)):
        got = mk.mining_margin(mp, f)  # RuntimeWarnings are errors under pytest
        assert np.all(np.isfinite(got))
        assert np.all(got >= 0.0)
        ln_hp = float(f.ln_hashprice.max())
        # unclamped, R·hours·uptime would not fit in float32
        reached |= ln_hp + mp.site_ln_rev_per_hp.max() + math.log(rows) > math.log(f32_max)
        capped = mk.PeriodFactors(
            f.t,
            f.ln_btc,
            f.ln_hashrate,
            np.clip(f.ln_hashprice, lo, hi),
            np.clip(f.ln_power, lo, hi),
            f.ln_lease,
            f.occ_logit,
            f.ln_gpu,
        )
        ref = mk._mining_margin_reference(mp, capped, xp=np)
        scale = np.abs(ref).max(axis=1, keepdims=True)
        assert np.all(np.abs(got - ref) <= MARGIN_F32_RTOL * scale)
    assert reached
    assert hi > 60.0  # far beyond any realistic ln hashprice (≈ 4) or ln power (≈ 4)


def test_poisson_counts_by_hand() -> None:
    """λ = 0.3: F(0) = e^{−0.3} = 0.7408, F(1) = 0.9631, F(2) = 0.99640, F(3) = 0.99973;
    1 − F(10) ≈ 3.4e-14 and 1 − F(11) ≈ 8.4e-16, so u = 1 − 1e-15 counts 11 jumps."""
    u = np.array([0.5, 0.7408, 0.8, 0.97, 0.999, 0.9998, 1.0 - 1e-15])
    got = mk.poisson_from_uniform(u, 0.3)
    np.testing.assert_array_equal(got, [0, 0, 1, 2, 3, 4, 11])


def test_given_shocks_are_the_philox_draws_when_copied_from_them() -> None:
    """iter_periods with the Philox normals and jump uniforms handed in as Shocks steps the
    paths exactly as drawing them; shocks of the wrong shape are refused."""
    sc = scenario("demo")
    mp = mk.market_params(sc)
    key, paths = philox.seed_key(21, philox.TAG_BATCH), np.arange(6, 11)
    assert mp.jump_lambda_dt > 0.0
    draws = [
        philox.normals_and_uniform(key, paths, t, mp.n_normals, philox.JUMP_STREAM)
        for t in range(mp.n_periods)
    ]
    shocks = mk.Shocks(np.stack([z for z, _ in draws]), np.stack([u for _, u in draws]))
    drawn = list(mk.iter_periods(mp, key, paths))
    given = list(mk.iter_periods(mp, (0, 0), paths, shocks=shocks))  # the key is not used
    for a, b in zip(drawn, given, strict=True):
        np.testing.assert_array_equal(a.ln_btc, b.ln_btc)
        np.testing.assert_array_equal(a.ln_hashrate, b.ln_hashrate)
        np.testing.assert_array_equal(a.ln_power, b.ln_power)
        np.testing.assert_array_equal(a.occ_logit, b.occ_logit)
    part = list(mk.iter_periods(mp, key, paths[1:3], shocks=shocks.take(1, 3)))
    np.testing.assert_array_equal(part[-1].ln_btc, drawn[-1].ln_btc[1:3])
    with pytest.raises(ValueError, match="shocks of shape"):
        next(mk.iter_periods(mp, key, paths[:4], shocks=shocks))
