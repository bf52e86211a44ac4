"""Bad scenario files: one line per problem naming the field path, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hashpivot.scenarios import Problem, ScenarioError, load_scenario
from hashpivot.scenarios.validate import format_path

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
