"""Bad scenario files: one line per problem naming the field path, exit 2, no traceback."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from hashpivot.scenarios import (
    Problem,
    ScenarioError,
    load_scenario,
    parse_yaml,
    shipped_path,
    validate_data,
)
from hashpivot.scenarios.validate import MAX_PROBLEMS, format_path, show_value

BAD = sorted((Path(__file__).parent / "bad_scenarios").glob("*.yaml"))


def _expected(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            return line.removeprefix("# expect: ")
    raise AssertionError(f"{path.name} has no '# expect:' line")


def test_there_are_at_least_fifteen_distinct_bad_files() -> None:
    assert len(BAD) >= 15
    assert len({_expected(p).split(":")[0] for p in BAD}) >= 15


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_cli_names_field_path_and_exits_2(path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hashpivot.optimizer.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert _expected(path) in proc.stderr.splitlines()[1:] or any(
        line.startswith(_expected(path)) for line in proc.stderr.splitlines()
    ), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_loader_raises_scenario_error(path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.problems
    assert all(isinstance(p, Problem) for p in info.value.problems)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "bad_scenarios" / "negative_mw.yaml").read_text()
    text = text.replace("    asic_mw: 100\n", "    asic_mw: lots\n").replace(
        "period: quarter", "period: week"
    )
    bad = tmp_path / "many.yaml"
    bad.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    paths = [p.path for p in info.value.problems]
    assert paths == ["horizon.period", "sites[0].asic_mw", "sites[1].interconnect_mw"]


def test_unknown_scenario_name_lists_shipped() -> None:
    with pytest.raises(ScenarioError, match="shipped: demo"):
        load_scenario("no-such-scenario")


def test_format_path() -> None:
    assert format_path(("sites", 2, "interconnect_mw")) == "sites[2].interconnect_mw"
    assert (
        format_path(("market", "correlation", "matrix", 0, 1)) == "market.correlation.matrix[0][1]"
    )
    assert format_path(()) == ""


# --------------------------------------------------------------------------- no echo, bounded output
def _cli_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from hashpivot.optimizer.cli import main

    status = main(["validate", str(path)])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_validate_etc_passwd_does_not_echo_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    passwd = Path("/etc/passwd")
    if not passwd.is_file():  # pragma: no cover - every Linux has one
        pytest.skip("no /etc/passwd")
    status, out, err = _cli_validate(passwd, capsys)
    assert status == 2 and out == ""
    assert "not a mapping of scenario fields" in err
    for line in passwd.read_text().splitlines():
        for word in line.split(":")[:1] + line.split(":")[5:]:
            if len(word) >= 4:
                assert word not in err.replace(str(passwd), ""), word


def test_key_value_file_names_keys_only_shortened_and_never_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_key = "k" * 300
    lines = [f"user_{i}: s3cret-value-{i}" for i in range(5)]
    lines += [f"{long_key}: another-s3cret", '"\\e[31mred\\nline": 1']
    path = tmp_path / "kv.yaml"
    path.write_text("\n".join(lines) + "\n")
    status, out, err = _cli_validate(path, capsys)
    assert status == 2 and out == ""
    assert "s3cret" not in err
    assert "user_0: unknown key" in err
    assert "k" * 40 not in err and "kkkk...kkkk" in err and "kkkk': unknown key" in err
    assert "\x1b" not in err and "\\x1b[31mred\\nline" in err
    assert max(len(line) for line in err.splitlines()) < 200


def test_problems_are_capped_with_a_count_of_the_rest(tmp_path: Path) -> None:
    data = parse_yaml(Path(BAD[0]).read_text())
    data.update({f"extra_{i}": i for i in range(300)})
    with pytest.raises(ScenarioError) as info:
        validate_data(data)
    exc = info.value
    assert exc.n_problems >= 300
    assert len(exc.problems) == MAX_PROBLEMS + 1
    assert exc.problems[-1].message.startswith(f"... and {exc.n_problems - MAX_PROBLEMS:,} more")


def test_shown_values_are_bounded_whatever_their_size() -> None:
    nested: list = ["lol"] * 6
    for _ in range(9):  # 6**10 leaves, shared: what an alias bomb constructs
        nested = [nested] * 6
    assert len(show_value(nested)) < 100
    assert len(show_value("x" * 10**6)) < 60
    assert show_value(2**64) == "1.84467e+19"
    assert "digits" in show_value(10**1000)
    assert show_value(dt.date(9999, 12, 1)) == "9999-12-01"


def test_range_problem_names_field_value_and_plausible_range() -> None:
    data = parse_yaml(shipped_path("demo").read_text())
    data["gpu_racks"]["life_years"] = 1e30
    data["market"]["btc"]["price_usd"] = 1e-300
    with pytest.raises(ScenarioError) as info:
        validate_data(data)
    assert [str(p) for p in info.value.problems] == [
        "gpu_racks.life_years: outside the plausible range [1, 30] (got 1e+30)",
        "market.btc.price_usd: outside the plausible range [100, 1e+07] (got 1e-300)",
    ]


# --------------------------------------------------------------------------- one round of problems
def test_cross_field_problems_come_with_structural_ones() -> None:
    data = parse_yaml(shipped_path("demo").read_text())
    data["sites"][0]["uptime"] = "high"  # structural
    data["sites"][1]["asic_mw"] = 65.0  # cross-field: convertible 60 fine, interconnect 70 fine
    data["sites"][1]["convertible_mw"] = 66.0  # cross-field: above asic_mw
    data["treasury"]["btc_floor"] = 5000  # cross-field: above btc_held 1500
    data["lease_offers"][0]["eligible_sites"] = ["rockdale-east", "barber-wset"]  # cross-field
    data["horizon"]["period"] = "week"  # structural: horizon checks cannot run
    data["lease_offers"][0]["deliver_by_period"] = 99  # needs the horizon: not reported
    with pytest.raises(ScenarioError) as info:
        validate_data(data)
    assert [p.path for p in info.value.problems] == [
        "horizon.period",
        "sites[0].uptime",
        "sites[1].convertible_mw",
        "lease_offers[0].eligible_sites[1]",
        "treasury.btc_floor",
    ]


def test_cross_field_rules_skip_the_parts_that_did_not_parse() -> None:
    data = parse_yaml(shipped_path("demo").read_text())
    data["sites"][0]["asic_mw"] = "lots"  # the asic_mw <= interconnect rule cannot run here
    del data["sites"][1]["name"]  # names unknown: no unknown-site or duplicate checks
    data["debt_facilities"][0]["draw_start_period"] = 9  # after draw_end_period 8
    with pytest.raises(ScenarioError) as info:
        validate_data(data)
    assert [str(p) for p in info.value.problems] == [
        "sites[0].asic_mw: must be a number (got 'lots')",
        "sites[1].name: required field is missing",
        "debt_facilities[0].draw_end_period: must be >= draw_start_period (9) (got 8)",
    ]
