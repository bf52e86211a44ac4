"""Fuzzed scenarios: every mutation of a shipped scenario is refused with field-path problems,
or accepted and then runs through ``optimize`` without a traceback or a hang.

Also one regression test per finding of the fuzz campaign of issue 9: values that
``validate`` used to accept and that then crashed or hung ``optimize``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import NO_VALIDATION
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashpivot.scenarios import ScenarioError, load_scenario, parse_yaml, shipped_path
from hashpivot.scenarios.schema import range_text
from hashpivot.scenarios.validate import _model_at

SHIPPED = ("demo", "texas_hybrid", "public_miners_2026")
BASES = {name: parse_yaml(shipped_path(name).read_text()) for name in SHIPPED}

#: Values of the fuzz campaign: zero, negative, huge, tiny, beyond float64, not finite,
#: wrong types.
EXTREMES: tuple[Any, ...] = (
    0,
    -1,
    1e30,
    1e308,
    1e-300,
    2**64,
    10**400,
    math.nan,
    math.inf,
    -math.inf,
    "abc",
    [1, 2],
    {"a": 1},
    None,
    True,
)

#: A tiny optimize: seconds, not minutes.
TINY = {"paths": 200, "n_scenarios": 4, "eval_paths": 200, "time_limit_s": 10.0, **NO_VALIDATION}


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


ALL_PATHS = {name: _paths(base) for name, base in BASES.items()}
NUMERIC_PATHS = {
    name: [
        p
        for p in paths
        if isinstance(_get(BASES[name], p), int | float)
        and not isinstance(_get(BASES[name], p), bool)
    ]
    for name, paths in ALL_PATHS.items()
}
LIST_ITEM_PATHS = {
    name: [p for p in paths if isinstance(p[-1], int)] for name, paths in ALL_PATHS.items()
}


def _bounds(path: tuple) -> list[Any]:
    """The plausible-range bounds of the field at ``path`` (empty for list entries)."""
    model = _model_at(path[:-1])
    field = model.model_fields.get(path[-1]) if model and isinstance(path[-1], str) else None
    if field is None:
        return []
    out = []
    for m in field.metadata:
        for attr in ("ge", "le", "gt", "lt"):
            value = getattr(m, attr, None)
            if isinstance(value, int | float):
                out.append(value)
    return out


ALL_OPS = ("replace", "replace", "replace", "bound", "delete", "dup")


@st.composite
def mutated(
    draw: st.DrawFn,
    names: tuple[str, ...] = SHIPPED,
    ops: tuple[str, ...] = ALL_OPS,
    most: int = 3,
) -> tuple[str, dict, list]:
    """A shipped scenario with 1 to ``most`` mutations, and the mutations for the failure
    report: ``replace`` a number by an extreme value, set it to a ``bound`` of its plausible
    range, ``delete`` a key or list entry, ``dup``licate a list entry."""
    name = draw(st.sampled_from(names))
    data = copy.deepcopy(BASES[name])
    done = []
    for _ in range(draw(st.integers(1, most))):
        op = draw(st.sampled_from(ops))
        pool = {"dup": LIST_ITEM_PATHS, "delete": ALL_PATHS}.get(op, NUMERIC_PATHS)[name]
        path = draw(st.sampled_from(pool))
        try:
            parent = _get(data, path[:-1])
            key = path[-1]
            if op == "delete":
                del parent[key]
            elif op == "dup":
                parent.insert(key, copy.deepcopy(parent[key]))
            else:
                choices = list(EXTREMES) if op == "replace" else _bounds(path) or [0]
                value = draw(st.sampled_from(choices))
                if not isinstance(parent[key], int | float):
                    continue  # an earlier mutation replaced it
                parent[key] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
        done.append((op, path))
    return name, data, done


def _assert_clean_refusal(exc: ScenarioError) -> None:
    assert exc.problems
    assert exc.problems[0].path, str(exc.problems[0])
    for problem in exc.problems:
        text = str(problem)
        assert "\n" not in text and len(text) < 300, text


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=mutated())
def test_mutated_shipped_scenario_refused_with_field_paths_or_valid(
    case: tuple[str, dict, list],
) -> None:
    _, data, _ = case
    try:
        sc = load_scenario(data)
    except ScenarioError as exc:
        _assert_clean_refusal(exc)
    else:
        assert sc.name


@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=mutated(("demo",), ("bound", "bound", "bound", "replace"), most=2))
def test_accepted_mutation_runs_through_optimize(case: tuple[str, dict, list]) -> None:
    from hashpivot.optimizer.pipeline import optimize
    from hashpivot.optimizer.solve import NoSolutionError

    _, data, _ = case
    try:
        sc = load_scenario(data)
    except ScenarioError as exc:
        _assert_clean_refusal(exc)
        return
    with contextlib.suppress(NoSolutionError):  # the pipeline's own clean user error
        optimize(sc, backend="numpy", **TINY)


# --------------------------------------------------------------------------- fuzz findings
FINDINGS = [
    # (path, value as YAML text, what crashed before)
    (("gpu_racks", "life_years"), "1.0e+308", "OverflowError"),
    (("gpu_racks", "life_years"), "1.0e+30", "ValueError: maximum allowed dimension"),
    (("gpu_racks", "gpus_per_rack"), "1000000000000000000000000000000", "RecursionError"),
    (("market", "btc", "price_usd"), "1.0e+308", "IndexError"),
    (("treasury", "btc_held"), "1.0e+308", "IndexError"),
    (("market", "btc", "price_usd"), "1.0e-300", "matplotlib: axis limits NaN"),
    (("horizon", "start_date"), "9999-12-01", "year 10000 out of range"),
    (("lease_offers", 0, "it_mw"), "18446744073709551616", "hang"),
]


def _with_yaml_value(name: str, path: tuple, text: str) -> str:
    """The shipped scenario's YAML with the leaf at ``path`` set to the YAML scalar ``text``
    (line-based: the leaf is written ``key: value`` on its own line in block style)."""
    data = copy.deepcopy(BASES[name])
    marker = "__FUZZ_VALUE__"
    parent = _get(data, path[:-1])
    parent[path[-1]] = marker
    return yaml.safe_dump(data, sort_keys=False).replace(f"'{marker}'", text).replace(marker, text)


@pytest.mark.parametrize(
    ("path", "value", "crash"),
    FINDINGS,
    ids=[f"{'.'.join(map(str, p))}={v}" for p, v, _ in FINDINGS],
)
def test_fuzz_finding_is_refused_with_its_plausible_range(
    tmp_path: Path, path: tuple, value: str, crash: str
) -> None:
    file = tmp_path / "finding.yaml"
    file.write_text(_with_yaml_value("demo", path, value))
    with pytest.raises(ScenarioError) as info:
        load_scenario(file)
    field = ".".join(str(p) for p in path).replace(".0.", "[0].")
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{field}: outside the plausible range "), problems
    model = _model_at(path[:-1])
    assert model is not None
    assert range_text(model.model_fields[path[-1]].metadata) in problems[0]


def test_cli_validate_on_mutated_files_exits_2_without_traceback(tmp_path: Path) -> None:
    files = []
    for i, (path, value, _) in enumerate(FINDINGS[:3]):
        file = tmp_path / f"m{i}.yaml"
        file.write_text(_with_yaml_value("texas_hybrid", path, value))
        files.append(file)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("sites: [[[[\n  - {a: *nope}\n")
    files.append(garbage)
    for file in files:
        proc = subprocess.run(
            [sys.executable, "-m", "hashpivot.optimizer.cli", "validate", str(file)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        assert len(proc.stderr.splitlines()) >= 2
