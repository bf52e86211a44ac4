"""Property test: any mutation of a valid scenario is either accepted or refused with the
format's own error type, never another exception."""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashpivot.scenarios import ScenarioError, load_scenario, parse_yaml, shipped_path
from hashpivot.scenarios.loader import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from hashpivot.scenarios.schema import MAX_SITES

BASE = parse_yaml(shipped_path("demo").read_text())


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


PATHS = _paths(BASE)

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.floats(-2, 2), max_size=4),
    st.lists(st.lists(st.floats(-2, 2), max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
    st.dates().map(str),
)


def _mutate(data: dict, path: tuple, op: str, value: Any) -> dict:
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    key = path[-1]
    if op == "delete":
        del node[key]
    elif op == "unknown" and isinstance(node, dict):
        node[f"{key}x"] = value
    else:
        node[key] = value
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "delete", "unknown"]), values),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_scenario_accepted_or_scenario_error(mutations: list) -> None:
    data = BASE
    for path, op, value in mutations:
        try:
            data = _mutate(data, path, op, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    try:
        load_scenario(data)
    except ScenarioError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert "\n" not in str(problem)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_random_yaml_text_parses_or_scenario_error(text: str) -> None:
    try:
        data = parse_yaml(text)
    except ScenarioError:
        return
    if isinstance(data, dict):
        with contextlib.suppress(ScenarioError):
            load_scenario(data)


def test_unsafe_yaml_tags_are_refused() -> None:
    evil = "!!python/object/apply:os.system ['echo hacked']"
    try:
        parse_yaml(evil)
    except ScenarioError as exc:
        assert "invalid YAML" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("unsafe tag was accepted")
    assert yaml.safe_load("a: 1") == {"a": 1}


# --------------------------------------------------------------------------- bounded parsing
def _refused(text: str) -> tuple[str, float]:
    start = time.perf_counter()
    with pytest.raises(ScenarioError) as info:
        parse_yaml(text)
    elapsed = time.perf_counter() - start
    assert len(info.value.problems) == 1
    return str(info.value.problems[0]), elapsed


def _alias_bomb() -> str:
    """The "billion laughs" of the fuzz report: lists of 6 items, 9 levels, 6**9 strings."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_well_under_a_second() -> None:
    bomb = _alias_bomb()
    assert len(bomb) < 400
    message, elapsed = _refused(bomb)
    assert message.startswith("line 7, column 4:") and "aliases expand the file past" in message
    assert elapsed < 0.5


def test_alias_bomb_file_through_load_scenario(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match="aliases expand"):
        load_scenario(path)
    assert time.perf_counter() - start < 1.0


def test_too_many_aliases_refused() -> None:
    text = "x: &x 1\ny: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n"
    message, _ = _refused(text)
    assert f"more than {MAX_ALIASES} aliases" in message


def test_alias_inside_its_own_anchor_refused() -> None:
    message, _ = _refused("a: &a [1, *a]\n")
    assert "refers to the value that contains it" in message


def test_deep_nesting_refused_with_its_line() -> None:
    depth = MAX_DEPTH + 5
    message, _ = _refused("a:\n  b: " + "[" * depth + "]" * depth + "\n")
    assert message.startswith("line 2, column") and f"more than {MAX_DEPTH} levels" in message


def test_too_many_values_refused_quickly() -> None:
    text = "a: [" + ",".join(["0"] * (MAX_NODES + 10)) + "]\n"
    assert len(text) < MAX_FILE_BYTES
    message, elapsed = _refused(text)
    assert f"more than {MAX_NODES:,} values" in message
    assert elapsed < 10.0  # ~0.3 s on an idle core; generous for a shared machine


def test_file_over_the_size_cap_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written or read
    start = time.perf_counter()
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert time.perf_counter() - start < 0.5
    assert [str(p) for p in info.value.problems] == [
        f"scenario: larger than {MAX_FILE_BYTES // 2**20} MB; not read"
    ]


def test_integer_of_thousands_of_digits_refused() -> None:
    message, _ = _refused("name: " + "9" * 5000 + "\n")
    assert message == "YAML: invalid YAML: a value cannot be read (ValueError)"


def test_non_utf8_file_refused_without_codec_dump(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert [str(p) for p in info.value.problems] == [
        "scenario: not UTF-8 text (byte 9 cannot be decoded)"
    ]


def test_yaml_error_messages_are_short_and_one_line() -> None:
    message, _ = _refused("a: !!python/object/apply:os.system\n  - " + "x" * 500 + "\n")
    assert len(message) < 200 and "\n" not in message


def test_lists_over_their_cap_refused_before_their_entries_are_validated() -> None:
    data = parse_yaml(shipped_path("demo").read_text())
    data["sites"] = [data["sites"][0]] * 330_000  # the fuzz report's 330k extra sites
    start = time.perf_counter()
    with pytest.raises(ScenarioError) as info:
        load_scenario(data)
    assert time.perf_counter() - start < 0.5
    assert [str(p) for p in info.value.problems] == [
        f"sites: must have at most {MAX_SITES:,} items (got 330,000)"
    ]


def test_shipped_files_stay_far_inside_the_parsing_limits() -> None:
    for name in ("demo", "texas_hybrid", "public_miners_2026"):
        assert shipped_path(name).stat().st_size < MAX_FILE_BYTES // 50


def test_a_directory_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path)
    (problem,) = info.value.problems
    assert str(problem).startswith("scenario: is a directory, not a scenario file (got '")
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "missing.yaml")
    assert "no such file or shipped scenario" in str(info.value)
