"""Sweep files: field paths, overrides, stable names, all problems before any work."""

from __future__ import annotations

import pytest

from hashpivot.scenarios import ScenarioError
from hashpivot.scenarios.sweep_spec import (
    apply_override,
    load_sweep,
    parse_field_path,
    variant_name,
)


def test_parse_field_path():
    assert parse_field_path("market.btc.drift_per_year") == ["market", "btc", "drift_per_year"]
    assert parse_field_path("sites[12].conversion.capex_usd_per_it_mw") == [
        "sites",
        12,
        "conversion",
        "capex_usd_per_it_mw",
    ]
    for bad in ("", "a..b", "a.", "[0]", "a[x]", "a b", "a.[0]"):
        with pytest.raises(ValueError):
            parse_field_path(bad)


def test_apply_override_sets_nested_values_and_names_what_is_missing():
    data = {"sites": [{"asic_mw": 10, "conversion": {"block_mw": 5}}], "market": {"btc": {}}}
    apply_override(data, "sites[0].conversion.block_mw", 7.5)
    apply_override(data, "market.btc.drift_per_year", 0.3)
    assert data["sites"][0]["conversion"]["block_mw"] == 7.5
    assert data["market"]["btc"]["drift_per_year"] == 0.3
    with pytest.raises(ValueError, match=r"sites\[3\]: no such item \(the list has 1\)"):
        apply_override(data, "sites[3].asic_mw", 1)
    with pytest.raises(ValueError, match="markt: no such field"):
        apply_override(data, "markt.btc.drift", 1)


def test_variant_names_are_stable_and_file_safe():
    a = variant_name(
        {"market.btc.drift_per_year": 0.2, "sites[0].conversion.capex_usd_per_it_mw": 9.0e6}
    )
    assert a == "market.btc.drift_per_year=0.2,sites.0.conversion.capex_usd_per_it_mw=9000000.0"
    assert a == variant_name(
        {"market.btc.drift_per_year": 0.2, "sites[0].conversion.capex_usd_per_it_mw": 9e6}
    )
    assert "/" not in variant_name({"name": "a/b"})
    long = variant_name({f"market.x{i}": i for i in range(40)})
    assert len(long) <= 120 and long == variant_name({f"market.x{i}": i for i in range(40)})


def test_grid_expands_to_validated_scenarios():
    ex = load_sweep(
        {
            "name": "drift-capex",
            "base": "demo",
            "grid": {
                "market.btc.drift_per_year": [0.0, 0.4],
                "sites[0].conversion.capex_usd_per_it_mw": [9.0e6, 1.2e7],
            },
            "options": {"paths": 500, "scenarios": 4},
        }
    )
    assert len(ex.variants) == 4
    drifts = sorted({v.scenario.market.btc.drift_per_year for v in ex.variants})
    assert drifts == [0.0, 0.4]
    capex = {v.scenario.sites[0].conversion.capex_usd_per_it_mw for v in ex.variants}
    assert capex == {9.0e6, 1.2e7}
    assert ex.sweep.options.paths == 500


def test_every_bad_variant_is_reported_before_any_work():
    with pytest.raises(ScenarioError) as err:
        load_sweep(
            {
                "name": "bad",
                "base": "demo",
                "variants": [
                    {"name": "ok", "overrides": {"market.btc.drift_per_year": 0.1}},
                    {"name": "typo", "overrides": {"market.btc.drfit_per_year": 0.1}},
                    {"name": "range", "overrides": {"sites[0].asic_mw": -5}},
                    {"name": "nosite", "overrides": {"sites[99].asic_mw": 5}},
                ],
            }
        )
    text = str(err.value)
    assert "variant 'typo'" in text and "drfit" in text
    assert "variant 'range'" in text and "asic_mw" in text
    assert "variant 'nosite'" in text and "sites[99]" in text
    assert "variant 'ok'" not in text


def test_sweep_file_structure_errors_name_the_field(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: ../x\nbase: demo\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_sweep(f)
    text = str(err.value)
    assert "name" in text and "exactly one of 'grid' or 'variants'" in text


def test_a_missing_base_is_the_sweep_files_base_field(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: s\nbase: nope.yaml\ngrid:\n  market.btc.drift_per_year: [0.1]\n")
    with pytest.raises(ScenarioError) as err:
        load_sweep(f)
    assert err.value.source == str(f)
    (problem,) = err.value.problems
    assert str(problem).startswith("base: no such file or shipped scenario")
    assert str(problem).endswith("(got 'nope.yaml')")
    # a problem inside the base file stays named in the base file
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    f.write_text("name: s\nbase: bad.yaml\ngrid:\n  market.btc.drift_per_year: [0.1]\n")
    with pytest.raises(ScenarioError) as err:
        load_sweep(f)
    assert err.value.source.endswith("bad.yaml") and "invalid YAML" in str(err.value)
