"""Shipped scenarios validate; the JSON Schema is valid and accepts them."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from hashpivot.scenarios import Scenario, load_scenario, parse_yaml, shipped_names, shipped_path

SHIPPED = ("demo", "texas_hybrid", "public_miners_2026")


def test_expected_scenarios_are_shipped() -> None:
    assert set(SHIPPED) <= set(shipped_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_validates(name: str) -> None:
    sc = load_scenario(name)
    assert sc.name == name
    assert sc.description


def test_shipped_sizes_match_their_descriptions() -> None:
    demo = load_scenario("demo")
    assert (
        2 <= len(demo.sites) <= 3 and len(demo.lease_offers) == 1 and len(demo.debt_facilities) == 1
    )
    tx = load_scenario("texas_hybrid")
    assert len(tx.sites) == 5 and 1000 <= sum(s.asic_mw for s in tx.sites) <= 1500
    assert len({lo.term_years for lo in tx.lease_offers}) == 2
    assert {f.kind for f in tx.debt_facilities} >= {"senior_secured", "convertible"}
    assert tx.treasury.btc_held > 0
    pm = load_scenario("public_miners_2026")
    assert len(pm.sites) == 12
    beacon = next(lo for lo in pm.lease_offers if lo.name.startswith("beacon-point"))
    assert beacon.it_mw == 352 and beacon.term_years == 15


def test_shipped_numbers_cite_domain_facts() -> None:
    for name in SHIPPED:
        text = shipped_path(name).read_text()
        assert text.count("§") >= 10, name


def test_horizon_arithmetic() -> None:
    h = load_scenario("demo").horizon
    assert h.n_periods == 20 and h.dt_years == 0.25 and h.hours_per_period == 2190.0
    assert str(h.period_start(4)) == "2028-01-01"


def test_cli_schema_is_valid_json_schema_and_accepts_shipped() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hashpivot.optimizer.cli", "schema"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    for name in SHIPPED:
        data = json.loads(json.dumps(parse_yaml(shipped_path(name).read_text()), default=str))
        jsonschema.Draft202012Validator(schema).validate(data)
    bad = json.loads(json.dumps(parse_yaml(shipped_path("demo").read_text()), default=str))
    bad["sites"][0]["interconect_mw"] = 5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_every_field_is_documented() -> None:
    def walk(model: type) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            ann = field.annotation
            for sub in getattr(ann, "__args__", ()) + (ann,):
                if isinstance(sub, type) and hasattr(sub, "model_fields"):
                    walk(sub)

    walk(Scenario)
