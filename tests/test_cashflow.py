"""Cash-flow helpers against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny, tiny_data

from hashpivot.kernels.cashflow import (
    cash_flows,
    cvar,
    remaining_convertible_mw,
    terminal_value_usd,
    trailing_sum,
)
from hashpivot.kernels.plan import Plan, schedule
from hashpivot.kernels.reduce import reduce_scenarios
from hashpivot.scenarios import Scenario, validate_data
from hashpivot.scenarios.schema import CONVERTIBLE_DILUTION_PER_YEAR


def _cvar_brute(losses: np.ndarray, weights: np.ndarray, alpha: float) -> float:
    """min over η of η + E[(L − η)⁺]/(1 − α): the minimum sits at one of the losses."""
    w = weights / weights.sum()
    return min(eta + (w * np.maximum(losses - eta, 0)).sum() / (1 - alpha) for eta in losses)


@pytest.mark.parametrize("seed", range(5))
def test_cvar_equals_rockafellar_uryasev(seed: int) -> None:
    rng = np.random.default_rng(seed)
    losses = rng.normal(size=17)
    weights = rng.random(17)
    for alpha in (0.5, 0.8, 0.95, 0.99):
        assert cvar(losses, weights, alpha) == pytest.approx(
            _cvar_brute(losses, weights, alpha), rel=1e-12
        )


def test_trailing_sum() -> None:
    x = np.arange(1.0, 7.0)
    np.testing.assert_allclose(trailing_sum(x, 3), [1, 3, 6, 9, 12, 15])


# --------------------------------------------------------------------------- terminal value
def _last_period_coeffs(sc, margin_usd_per_mw: float, lease_usd_per_kw_month: float) -> dict:
    return {
        "margin_usd_per_mw": np.full((1, len(sc.sites)), margin_usd_per_mw),
        "lease_x_occupancy": np.array([lease_usd_per_kw_month]),
    }


def _tiny_default_valuation(**valuation) -> Scenario:
    data = tiny_data(n_sites=1, n_periods=8)
    data["valuation"] = valuation
    return validate_data(data)


def test_equal_noi_gives_equal_terminal_value_either_way() -> None:
    """Default multiples: a site earning NOI X from AI (fully converted) or from mining (no
    convertible MW left to value) is worth 6·ppy·X either way."""
    sc = _tiny_default_valuation(conversion_option=False)
    x = 3.0e6  # NOI of the last period [$]
    converted = Plan.empty(sc)
    converted.blocks[0, 0] = 2
    converted.blocks[0, 1] = 1  # all 60 convertible MW
    staying = Plan.empty(sc)
    tv = {}
    for name, plan, mining, ai in (
        ("ai", converted, 0.0, x),
        ("mining", staying, x, 0.0),
    ):
        sch = schedule(sc, plan)
        co = _last_period_coeffs(sc, 5.0e4, 150.0)
        tv[name] = float(
            terminal_value_usd(
                sc,
                sch,
                np.array([mining]),
                np.array([ai]),
                co["margin_usd_per_mw"],
                co["lease_x_occupancy"],
            )[0]
        )
    assert tv["ai"] == tv["mining"] == pytest.approx(6.0 * 4 * x, rel=1e-12)


def test_option_to_convert_by_hand() -> None:
    """opt = max(0, ρ·(m_ai·ppy·μ − capex) − m_min·ppy·margin) per convertible MW still mining."""
    sc = _tiny_default_valuation()  # multiples 6 and 6, option on
    sch = schedule(sc, Plan.empty(sc))
    assert remaining_convertible_mw(sc, sch)[0] == 60.0
    rho, capex, mu = 0.7, 8.0e6, 150.0 * 1000 * 12 * 0.25
    for margin, expected in ((0.0, rho * (24 * mu - capex)), (2.0e6, 0.0)):
        co = _last_period_coeffs(sc, margin, 150.0)
        tv = terminal_value_usd(
            sc, sch, np.zeros(1), np.zeros(1), co["margin_usd_per_mw"], co["lease_x_occupancy"]
        )
        assert float(tv[0]) == pytest.approx(60.0 * max(expected - 24 * margin, 0.0), rel=1e-12)


# --------------------------------------------------------------------------- convertibles
def _convertible(**changes) -> Scenario:
    fac = {
        "name": "CB",
        "kind": "convertible",
        "size_usd": 1.0e8,
        "rate_per_year": 0.0,
        "draw_start_period": 0,
        "draw_end_period": 0,
        "tenor_years": 1,
        "repayment": "bullet",
        "upfront_fee_share": 0.0,
        "covenants": False,
        **changes,
    }
    return tiny(n_sites=1, n_periods=8, debt_facilities=[fac])


@pytest.mark.parametrize("cash_rate", [0.0, 0.03])
def test_convertible_dilution_by_hand(cash_rate: float) -> None:
    """$X drawn for N = 1 year at the default c = 4%/yr costs c·X·N, accrued on the opening
    balance of periods 1..4 and compounded at the cash rate to the horizon, then discounted."""
    x = 1.0e8
    red = reduce_scenarios(_convertible(), 200, 2, 1, backend="numpy", pilot_paths=200)
    co = red.coefficient_arrays()
    out = {}
    for c in (None, 0.0):
        sc = _convertible(dilution_cost_per_year=c)
        sc = validate_data(
            {
                **sc.model_dump(mode="json"),
                "horizon": {**sc.horizon.model_dump(mode="json"), "cash_interest_rate": cash_rate},
            }
        )
        plan = Plan.empty(sc)
        plan.draws_usd[0, 0] = x
        out[c] = cash_flows(sc, plan, co)
    assert sc.debt_facilities[0].dilution_per_year == 0.0
    assert _convertible().debt_facilities[0].dilution_per_year == CONVERTIBLE_DILUTION_PER_YEAR
    growth = 1 + cash_rate * 0.25
    disc = 1.1 ** (-2.0)
    cost = sum(0.04 * 0.25 * x * growth ** (7 - t) for t in range(1, 5))
    if cash_rate == 0.0:
        assert cost == pytest.approx(0.04 * x * 1, rel=1e-12)
    np.testing.assert_allclose(
        out[0.0].terminal_equity_usd - out[None].terminal_equity_usd, disc * cost, rtol=1e-9
    )
    np.testing.assert_array_equal(out[0.0].cash_usd, out[None].cash_usd)  # not cash
