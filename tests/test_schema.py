"""Shipped scenarios validate; the JSON Schema is valid and accepts them."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hashpivot.scenarios import (
    Scenario,
    ScenarioError,
    load_scenario,
    parse_yaml,
    shipped_names,
    shipped_path,
    validate_data,
)
from hashpivot.scenarios.schema import SCENARIO_NAME_PATTERN

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


SOURCES = Path(__file__).parents[1] / "scenarios" / "SOURCES.md"
_CITED_ID = re.compile(r"\[(S-[a-z0-9-]+)\]")


def test_shipped_numbers_cite_sources_listed_in_the_repository() -> None:
    listed = set(re.findall(r"^\| `\[(S-[a-z0-9-]+)\]` \|", SOURCES.read_text(), flags=re.M))
    assert len(listed) >= 30
    for name in SHIPPED:
        text = shipped_path(name).read_text()
        cited = _CITED_ID.findall(text)
        assert len(cited) >= 10, name
        assert set(cited) <= listed, (name, set(cited) - listed)
        assert "domain_facts" not in text and "§" not in text, name


def test_horizon_arithmetic() -> None:
    h = load_scenario("demo").horizon
    assert h.n_periods == 20 and h.dt_years == 0.25 and h.hours_per_period == 2190.0
    assert str(h.period_start(4)) == "2028-01-01"


def _json_compatible(data: object) -> object:
    """YAML data as JSON would carry it: the JSON Schema describes JSON, where a date is an
    ISO string (``format: date``); PyYAML gives ``datetime.date`` objects for unquoted dates."""
    return json.loads(json.dumps(data, default=str))


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
        data = _json_compatible(parse_yaml(shipped_path(name).read_text()))
        jsonschema.Draft202012Validator(schema).validate(data)
    bad = _json_compatible(parse_yaml(shipped_path("demo").read_text()))
    bad["sites"][0]["interconect_mw"] = 5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_yaml_reads_the_same_under_yaml_1_1_and_validates_with_jsonschema(
    name: str,
) -> None:
    """A plain YAML 1.1 reader (PyYAML ``safe_load``, as editors and CI use it) sees numbers
    where the loader (YAML 1.2 floats) does, and the JSON Schema accepts the result."""
    text = shipped_path(name).read_text()
    plain = _json_compatible(yaml.safe_load(text))
    errors = list(jsonschema.Draft202012Validator(Scenario.model_json_schema()).iter_errors(plain))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []
    assert plain == _json_compatible(parse_yaml(text))


def test_json_schema_descriptions_carry_plausible_ranges() -> None:
    defs = Scenario.model_json_schema()["$defs"]
    life = defs["GpuRacks"]["properties"]["life_years"]
    assert life["minimum"] == 1 and life["maximum"] == 30
    assert life["description"].endswith(" Plausible range: [1, 30].")
    it_mw = defs["LeaseOffer"]["properties"]["it_mw"]
    assert it_mw["exclusiveMinimum"] == 0 and it_mw["description"].endswith("range: (0, 10,000].")
    start = defs["Horizon"]["properties"]["start_date"]["description"]
    assert start.endswith("Plausible range: [2000-01-01, 2100-12-31].")
    name = Scenario.model_json_schema()["properties"]["name"]
    assert name["pattern"] == SCENARIO_NAME_PATTERN


def _numeric_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        subs = [a for a in (*typing.get_args(ann), ann) if isinstance(a, type)]
        for sub in subs:
            if issubclass(sub, BaseModel):
                out += _numeric_fields(sub, f"{prefix}{name}.")
        if ann in (int, float, dt.date):
            out.append((f"{prefix}{name}", field))
    return out


def test_every_numeric_field_has_a_plausible_range() -> None:
    fields = _numeric_fields(Scenario)
    assert len(fields) >= 80
    for path, field in fields:
        bounds = {type(m).__name__ for m in field.metadata}
        assert bounds & {"Gt", "Ge"} and bounds & {"Lt", "Le"}, path


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("demo", True),
        ("public_miners_2026", True),
        ("a-b_c9", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("..", False),
        ("../x", False),
        ("a/b", False),
        (".hidden", False),
        ("has space", False),
        ("-leading-dash", False),
        ("", False),
        ("caf\u00e9", False),
    ],
)
def test_scenario_name_is_a_plain_identifier(name: str, ok: bool) -> None:
    data = parse_yaml(shipped_path("demo").read_text())
    data["name"] = name
    if ok:
        assert validate_data(data).name == name
    else:
        with pytest.raises(ScenarioError) as info:
            validate_data(data)
        assert [p.path for p in info.value.problems] == ["name"]
        assert "plain identifier" in str(info.value)


def test_every_field_is_documented() -> None:
    def walk(model: type) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            ann = field.annotation
            for sub in getattr(ann, "__args__", ()) + (ann,):
                if isinstance(sub, type) and hasattr(sub, "model_fields"):
                    walk(sub)

    walk(Scenario)


def test_true_false_or_yes_no_is_not_read_as_a_number() -> None:
    # pydantic alone reads true as 1 and false as 0; YAML 1.1 reads yes/no/on/off as true/false
    text = shipped_path("demo").read_text()
    for old, new in (
        ("  years: 5 ", "  years: true "),
        ("interconnect_mw: 120", "interconnect_mw: yes"),
        ("  btc_held: 1500", "  btc_held: no"),
        ("      - [1.00, 0.30, 0.00, 0.00, 0.00]", "      - [1.00, on, 0.00, 0.00, 0.00]"),
    ):
        assert old in text
        text = text.replace(old, new)
    with pytest.raises(ScenarioError) as info:
        validate_data(parse_yaml(text))
    lines = [str(p) for p in info.value.problems]
    bad = "must be a number, not true/false or yes/no"
    assert f"horizon.years: {bad} (got True)" in lines
    assert f"sites[0].interconnect_mw: {bad} (got True)" in lines
    assert f"treasury.btc_held: {bad} (got False)" in lines
    assert any(line.startswith(f"market.correlation.matrix: {bad}") for line in lines)
    # true/false stays valid where the field is a switch
    sc = load_scenario("demo")
    assert sc.sites[1].power.resale_allowed is True and sc.valuation.conversion_option is True
