"""Property test: any mutation of a valid scenario is either accepted or refused with the
format's own error type, never another exception."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashpivot.scenarios import ScenarioError, load_scenario, parse_yaml, shipped_path

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
