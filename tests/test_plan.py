"""Plan data: JSON round trip, bad files, deterministic schedule."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import scenario, tiny

from hashpivot.kernels.plan import Plan, debt_terms, lease_terms, schedule
from hashpivot.scenarios import shipped_path


def test_json_round_trip() -> None:
    sc = scenario("texas_hybrid")
    p = Plan.empty(sc)
    p.blocks[0, 2] = 2
    p.lease_signed[1] = True
    p.lease_it_mw[1, 2, 10:] = 50.0
    p.draws_usd[0, 3] = 1.5e8
    p.btc_sold[4] = 12.5
    q = Plan.from_json(json.loads(json.dumps(p.to_json())))
    for name in ("blocks", "racks_new", "lease_signed", "lease_it_mw", "draws_usd", "btc_sold"):
        np.testing.assert_array_equal(getattr(p, name), getattr(q, name))
    assert q.site_names == p.site_names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"blocks": [[1, 2]]}, "plan.blocks: must have shape"),
        ({"btc_sold": "x"}, "plan: cannot be read"),
        ({"blocks": None}, "plan.blocks: must have shape"),
    ],
)
def test_bad_plan_files(change: dict, message: str) -> None:
    data = {**Plan.empty(scenario("demo")).to_json(), **change}
    with pytest.raises(ValueError, match=message):
        Plan.from_json(data)


def test_fractional_blocks_refused() -> None:
    data = Plan.empty(scenario("demo")).to_json()
    data["blocks"][0][0] = 0.5
    with pytest.raises(ValueError, match="whole numbers"):
        Plan.from_json(data)


def test_schedule_by_hand() -> None:
    sc = tiny(n_sites=1, n_periods=4, facility=True)
    p = Plan.empty(sc)
    p.blocks[0, 0] = 1  # 20 MW at period 0, lead 1
    p.draws_usd[0, 0] = 1.0e8
    sch = schedule(sc, p)
    np.testing.assert_allclose(sch.asic_mw[0], [40, 40, 40, 40])
    np.testing.assert_allclose(sch.it_online_mw[0], [0, 14, 14, 14])
    # capex 14 IT MW × $8M, spread over the 1-period lead time; salvage 20 MW × $50k at start
    np.testing.assert_allclose(sch.capex_usd, [14 * 8e6, 0, 0, 0])
    np.testing.assert_allclose(sch.salvage_usd, [20 * 5e4, 0, 0, 0])
    # bullet after 5 years: interest only inside a 1-year horizon
    np.testing.assert_allclose(sch.interest_usd[0], [0, 2e6, 2e6, 2e6])
    np.testing.assert_allclose(sch.balance_usd[0], [1e8] * 4)
    np.testing.assert_allclose(sch.scheduled_service_usd, [0, 2e6, 2e6, 2e6])


def test_linear_repayment_shares() -> None:
    sc = scenario("demo")
    _, repay = debt_terms(sc)
    # draw window ends at period 8, 4-year tenor: 16 equal payments from period 9 to 19 (cut by horizon)
    assert repay[0, 9] == pytest.approx(1 / 16) and repay[0, :9].sum() == 0


#: Shipped lease offers reproduce the public contract total in their comment within this share.
CONTRACT_VALUE_RTOL = 0.02
#: ``public $9.8B/15y/352 MW`` in an offer's comment: total, term and MW of the public deal.
PUBLIC_TOTAL = re.compile(r"public \$([\d.]+)B/(\d+)y/(\d+) MW")


def _offer_comments(name: str) -> dict[str, str]:
    """Offer name → the text of the lines that mention it (its comment included)."""
    text = shipped_path(name).read_text()
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"\s*- (?:\{)?name: ([\w.-]+)", line)
        if m:
            current = m.group(1)
        if current:
            out[current] = out.get(current, "") + line + "\n"
    return out


@pytest.mark.parametrize("name", ["demo", "texas_hybrid", "public_miners_2026"])
def test_shipped_lease_offers_reproduce_public_totals(name: str) -> None:
    """Σ over the term of MW·12·1000·rate·(1+esc)^year (yearly steps, as ``lease_terms``), pro
    rata to the public deal's MW, is the public total cited in the offer's comment."""
    sc = scenario(name)
    comments = _offer_comments(name)
    ppy = sc.horizon.periods_per_year
    rent, active, _ = lease_terms(sc)
    checked = 0
    for i, lo in enumerate(sc.lease_offers):
        m = PUBLIC_TOTAL.search(comments[lo.name])
        assert m, f"{name}: offer {lo.name} cites no public total"
        total, years, deal_mw = float(m.group(1)) * 1e9, int(m.group(2)), float(m.group(3))
        assert lo.term_years == years
        value = sum(
            lo.it_mw
            * 1000.0
            * lo.rate_usd_per_kw_month
            * 12
            / ppy
            * (1 + lo.escalator_per_year) ** (q // ppy)
            for q in range(years * ppy)
        )
        assert value * deal_mw / lo.it_mw == pytest.approx(total, rel=CONTRACT_VALUE_RTOL)
        # the model's rent escalates the same way (in the periods of the horizon)
        q = np.flatnonzero(active[i]) - lo.earliest_start_period
        expected = lo.rate_usd_per_kw_month * 1000.0 * 12 / ppy
        np.testing.assert_allclose(
            rent[i, active[i]], expected * (1 + lo.escalator_per_year) ** (q // ppy), rtol=1e-12
        )
        checked += 1
    assert checked == len(sc.lease_offers) > 0
