"""Plan data: JSON round trip, bad files, deterministic schedule."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import scenario, tiny

from hashpivot.kernels.plan import (
    MAX_PLAN_BYTES,
    Plan,
    debt_terms,
    lease_terms,
    read_plan_file,
    schedule,
)
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


def _demo_plan() -> dict:
    return Plan.empty(scenario("demo")).to_json()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # lease_signed must hold JSON booleans (the fuzz found all of these read as signed)
        *[
            ("lease_signed", v, r"plan\.lease_signed\[0\]: must be true or false")
            for v in ("false", "no", float("nan"), 2, 0.5, "abc", {"a": 1}, None, 1)
        ],
        ("periods", 20.5, r"plan\.periods: must be a JSON integer"),
        ("periods", True, r"plan\.periods: must be a JSON integer"),
        ("periods", 10**400, r"plan\.periods: must be a JSON integer"),
        ("blocks", [[1, 2]], r"plan\.blocks: must have \d+ entries \(got 1\)"),
        ("blocks", None, r"plan\.blocks: must be a list"),
        ("btc_sold", "x", r"plan\.btc_sold: must be a list"),
    ],
)
def test_bad_values_are_refused_naming_the_field(field: str, value, message: str) -> None:
    data = _demo_plan()
    if field == "lease_signed":
        data[field][0] = value
    else:
        data[field] = value
    with pytest.raises(ValueError, match=message):
        Plan.from_json(data)


def test_integers_must_be_json_integers_in_range() -> None:
    for v, why in ((0.5, "0.5"), (2.0, "2.0"), (10**401, "an integer"), (-1, "-1"), (True, "true")):
        data = _demo_plan()
        data["blocks"][0][3] = v
        with pytest.raises(ValueError, match=r"plan\.blocks\[0\]\[3\]: must be a JSON integer"):
            Plan.from_json(data)
        assert why in str(pytest.raises(ValueError, Plan.from_json, data).value)


def test_extra_nesting_and_unknown_fields_refused() -> None:
    data = _demo_plan()
    data["btc_sold"] = [[x] for x in data["btc_sold"]]  # reshaping used to hide this
    with pytest.raises(ValueError, match=r"plan\.btc_sold\[0\]: must be a number \(got a list\)"):
        Plan.from_json(data)
    data = _demo_plan()
    data["draws_usd"] = [data["draws_usd"]]
    with pytest.raises(ValueError, match=r"plan\.draws_usd\[0\]: must have 20 entries \(got 1\)"):
        Plan.from_json(data)
    with pytest.raises(ValueError, match=r"plan\.extra: unknown field"):
        Plan.from_json({**_demo_plan(), "extra": 1})
    with pytest.raises(ValueError, match=r"plan\.blocks: missing"):
        Plan.from_json({k: v for k, v in _demo_plan().items() if k != "blocks"})
    with pytest.raises(ValueError, match=r"plan: must be a JSON object \(got a list\)"):
        Plan.from_json([1])


def test_money_negative_only_within_a_cent() -> None:
    data = _demo_plan()
    data["draws_usd"][0][2] = -1.0  # a $10 tolerance used to hide this
    with pytest.raises(ValueError, match=r"plan\.draws_usd\[0\]\[2\]: must not be negative"):
        Plan.from_json(data)
    data["draws_usd"][0][2] = -0.004  # rounding of a cent: read as zero
    plan = Plan.from_json(data)
    assert plan.draws_usd[0, 2] == 0.0 and not np.signbit(plan.draws_usd[0, 2])
    for v in (float("nan"), float("inf"), 1e300):
        data["btc_sold"][1] = v
        with pytest.raises(ValueError, match=r"plan\.btc_sold\[1\]: must be a finite number"):
            Plan.from_json(data)


def test_periods_must_match_the_scenario() -> None:
    sc = scenario("demo")
    data = Plan.empty(tiny(n_periods=4)).to_json()
    Plan.from_json(data)  # consistent on its own
    with pytest.raises(ValueError, match=r"plan\.periods: 4 does not match the scenario's 20"):
        Plan.from_json(data, sc)


def test_plan_file_bounded_parsing(tmp_path) -> None:
    sc = scenario("demo")
    good = json.dumps(Plan.empty(sc).to_json())
    p = tmp_path / "plan.json"
    p.write_text(good, encoding="utf-8")
    assert read_plan_file(p, sc).n_periods == 20
    p.write_text("[" * 100_000 + "]" * 100_000)  # RecursionError before
    with pytest.raises(ValueError, match=r"plan\.json: lists or objects nested deeper than 8"):
        read_plan_file(p)
    p.write_text(good.replace('"periods": 20', '"periods": ' + "9" * 401))  # OverflowError before
    with pytest.raises(ValueError, match=r"plan\.periods: .*an integer of 401 digits"):
        read_plan_file(p)
    p.write_text(good.replace('"blocks": [[0', '"blocks": [[' + "9" * 401, 1))
    with pytest.raises(ValueError, match=r"plan\.blocks\[0\]\[0\]: .*an integer of 401 digits"):
        read_plan_file(p)
    p.write_text(good.replace('"periods": 20', '"periods": NaN'))
    with pytest.raises(ValueError, match=r"plan\.periods: must be a JSON integer"):
        read_plan_file(p)
    p.write_bytes(good.encode("utf-16"))
    with pytest.raises(ValueError, match=r"plan\.json: is UTF-16 text; plans must be UTF-8"):
        read_plan_file(p)
    p.write_bytes(good.encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"plan\.json: looks like UTF-16"):
        read_plan_file(p)
    p.write_bytes(good.encode()[:20] + b"\xff\xfe" + good.encode()[20:])
    with pytest.raises(
        ValueError, match=r"plan\.json: is not UTF-8 text \(byte 0xff at offset 20\)"
    ):
        read_plan_file(p)
    with open(p, "wb") as f:  # sparse: no 50 MB written
        f.truncate(MAX_PLAN_BYTES + 1)
    with pytest.raises(ValueError, match=r"larger than a plan can be"):
        read_plan_file(p)


def test_json_has_documented_precision_and_no_negative_zero() -> None:
    sc = scenario("demo")
    p = Plan.empty(sc)
    p.lease_it_mw[0, 0, 5] = 27.999999999999993
    p.lease_it_mw[0, 0, 6] = -2.84e-14
    p.draws_usd[0, 3] = 1.234567e7 + 1e-9
    p.btc_sold[2] = 0.123456789012
    text = json.dumps(p.to_json())
    assert "-0.0" not in text and "27.999999" not in text and "e-14" not in text
    data = json.loads(text)
    assert data["lease_it_mw"][0][0][5] == 28.0
    assert data["draws_usd"][0][3] == 12345670.0
    assert data["btc_sold"][2] == 0.12345679


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
