"""Sweep files: many variants of one scenario, by overrides keyed by field path.

A sweep file (YAML) names a base scenario (a shipped name, or a path relative to the sweep
file) and either a ``grid`` — the cartesian product of values per field path — or a list of
named ``variants``, each a set of overrides, plus the pipeline options every variant runs
with::

    name: btc-drift-vs-capex
    base: demo
    grid:
      market.btc.drift_per_year: [0.0, 0.2, 0.4]
      sites[0].conversion.capex_usd_per_it_mw: [9.0e+6, 1.2e+7]
    options: {paths: 5000, scenarios: 16, eval_paths: 5000, seed: 7}

Every variant is built and validated before any work starts (:func:`expand_sweep`); a bad
override path or value is reported naming the variant and the path. Variant names come from the
overrides (``market.btc.drift_per_year=0.2,sites.0.conversion.capex_usd_per_it_mw=9000000.0``), so the
same override always gets the same name and results can be joined across runs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from .loader import parse_yaml, read_source
from .schema import Scenario, _Model
from .validate import Problem, ScenarioError, problems_from_validation_error, validate_data

#: A sweep's or a variant's name: a plain identifier (it names output directories).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: Most variants one sweep may expand to.
MAX_VARIANTS = 10_000
#: Longest derived variant name before it is shortened with a hash.
MAX_NAME_CHARS = 120

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\.)")


class SweepOptions(_Model):
    """Pipeline options shared by every variant (unset: the base scenario's ``defaults``)."""

    paths: Annotated[int, Field(ge=100, le=10**9)] | None = None
    """Monte Carlo paths for the MILP's coefficients [range 100–1e9]."""
    scenarios: Annotated[int, Field(ge=1, le=4096)] | None = None
    """Reduced scenarios K in the MILP [range 1–4096]."""
    eval_paths: Annotated[int, Field(ge=100, le=10**10)] | None = None
    """Fresh paths for out-of-sample evaluation [range 100–1e10]."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    """Random seed, the same for every variant (common random numbers across variants)."""
    time_limit_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    """HiGHS time limit per solve [s, range 0–86,400]."""
    mip_gap: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Relative MIP gap to stop at [range 0–1, exclusive]."""
    threads: Annotated[int, Field(ge=1, le=256)] = 1
    """HiGHS threads per variant (one per Dask worker process by default) [range 1–256]."""
    replications: Annotated[int, Field(ge=1, le=64)] | None = None
    """SAA replications per variant (default: ``optimize``'s) [range 1–64]."""
    batches: Annotated[int, Field(ge=2, le=256)] | None = None
    """Mak–Morton–Wood batches of the optimality-gap interval [range 2–256]."""
    calibration_rounds: Annotated[int, Field(ge=0, le=32)] | None = None
    """Calibration rounds of the covenant chance constraint (0: none) [range 0–32]."""
    run_validation: bool = Field(True, alias="validate")
    """``validate``: estimate the optimality-gap interval, VSS and EVPI (false: the fast path);
    named apart from pydantic's ``BaseModel.validate``."""


class Variant(_Model):
    """One named set of overrides."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    """Name of the variant (default: derived from its overrides)."""
    overrides: dict[str, Any]
    """Values by field path, e.g. ``market.btc.drift_per_year: 0.4`` or ``sites[0].asic_mw: 120``."""


class Sweep(_Model):
    """A sweep file: a base scenario and the variants to run."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    """Name of the sweep (a plain identifier: it names the output directory)."""
    base: str
    """Base scenario: a shipped name or a YAML path (relative to the sweep file)."""
    description: str = ""
    """What the sweep asks."""
    grid: dict[str, Annotated[list[Any], Field(min_length=1, max_length=1000)]] | None = None
    """Cartesian product of values per field path."""
    variants: Annotated[list[Variant], Field(min_length=1, max_length=MAX_VARIANTS)] | None = None
    """Named variants, each a set of overrides."""
    options: SweepOptions = SweepOptions()
    """Pipeline options for every variant."""

    @model_validator(mode="after")
    def _one_kind(self) -> Sweep:
        if (self.grid is None) == (self.variants is None):
            raise ValueError("give exactly one of 'grid' or 'variants'")
        return self


@dataclass(frozen=True)
class VariantSpec:
    """A validated variant: its stable name, overrides and the scenario they make."""

    name: str
    overrides: dict[str, Any]
    scenario: Scenario


@dataclass(frozen=True)
class ExpandedSweep:
    """A sweep with every variant built and validated."""

    sweep: Sweep
    base: Scenario
    variants: list[VariantSpec]


def parse_field_path(path: str) -> list[str | int]:
    """``sites[0].conversion.capex_usd_per_it_mw`` → ``['sites', 0, 'conversion', ...]``.

    Raises ``ValueError`` for a malformed path.
    """
    parts: list[str | int] = []
    pos, expect_name = 0, True
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"unexpected character {path[pos]!r} at position {pos}")
        name, index, dot = m.groups()
        if name is not None:
            if not expect_name:
                raise ValueError(f"missing '.' before {name!r}")
            parts.append(name)
            expect_name = False
        elif index is not None:
            if expect_name:
                raise ValueError("an index must follow a field name")
            parts.append(int(index))
        else:
            if expect_name:
                raise ValueError("empty field name")
            expect_name = True
        pos = m.end()
    if expect_name:
        raise ValueError("empty path" if not parts else "path ends with '.'")
    return parts


def apply_override(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at field ``path`` of scenario ``data`` in place.

    Lists must already have the index; a missing last key of a mapping is added (the schema
    then accepts it or names it as unknown). Raises ``ValueError`` saying what is missing.
    """
    parts = parse_field_path(path)
    node: Any = data
    for depth, key in enumerate(parts[:-1]):
        where = _show_path(parts[: depth + 1])
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ValueError(f"{where}: no such item (the list has {size})")
            node = node[key]
        else:
            if not isinstance(node, dict) or key not in node:
                raise ValueError(f"{where}: no such field in the base scenario")
            node = node[key]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ValueError(f"{_show_path(parts)}: no such item")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise ValueError(f"{_show_path(parts[:-1])}: is not a mapping")
        node[last] = value


def _show_path(parts: list[str | int]) -> str:
    return "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(parts)
    )


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | str):
        return str(value)
    return hashlib.sha1(repr(value).encode()).hexdigest()[:8]


def variant_name(overrides: dict[str, Any]) -> str:
    """Stable name of a set of overrides: ``path=value`` pairs in order, file-name safe."""
    text = ",".join(
        f"{'.'.join(str(p) for p in parse_field_path(k))}={_value_text(v)}"
        for k, v in overrides.items()
    )
    text = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text) or "base"
    if len(text) > MAX_NAME_CHARS:
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        text = f"{text[: MAX_NAME_CHARS - 11]}~{digest}"
    return text


def _raw_variants(sw: Sweep) -> list[tuple[str | None, dict[str, Any]]]:
    if sw.grid is not None:
        keys = list(sw.grid)
        count = 1
        for k in keys:
            count *= len(sw.grid[k])
        if count > MAX_VARIANTS:
            raise ScenarioError(
                [Problem("grid", f"expands to {count:,} variants (most {MAX_VARIANTS:,})")]
            )
        return [
            (None, dict(zip(keys, combo, strict=True)))
            for combo in itertools.product(*(sw.grid[k] for k in keys))
        ]
    return [(v.name, dict(v.overrides)) for v in sw.variants or []]


def expand_sweep(sw: Sweep, base_data: dict[str, Any], source: str = "") -> ExpandedSweep:
    """Build and validate every variant; all problems of all variants are raised at once."""
    problems: list[Problem] = []
    base = validate_data(copy.deepcopy(base_data), sw.base)
    out: list[VariantSpec] = []
    seen: dict[str, int] = {}
    for i, (given, overrides) in enumerate(_raw_variants(sw)):
        where = f"variants[{i}]" if sw.variants is not None else "grid"
        try:
            name = given or variant_name(overrides)
        except ValueError as exc:
            problems.append(Problem(where, f"bad override path: {exc}"))
            continue
        if name in seen:
            problems.append(Problem(where, f"variant '{name}' is the same as variant {seen[name]}"))
            continue
        seen[name] = i
        data = copy.deepcopy(base_data)
        bad = False
        for path, value in overrides.items():
            try:
                apply_override(data, path, value)
            except ValueError as exc:
                problems.append(Problem(f"variant '{name}': override {path}", str(exc)))
                bad = True
        if bad:
            continue
        try:
            out.append(VariantSpec(name, overrides, validate_data(data, name)))
        except ScenarioError as exc:
            problems += [
                Problem(f"variant '{name}': {p.path}", p.message, p.value) for p in exc.problems
            ]
    if problems:
        raise ScenarioError(problems, source)
    return ExpandedSweep(sw, base, out)


def load_sweep(source: str | Path | dict[str, Any]) -> ExpandedSweep:
    """Load a sweep file (or mapping), its base scenario, and build every variant.

    Raises
    ------
    ScenarioError
        One problem per line, naming the field path (and the variant) of each.
    """
    if isinstance(source, dict):
        data, name, folder = source, "<mapping>", Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ScenarioError([Problem("sweep", "no such file", str(source))], str(source))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(
                [Problem("sweep", f"cannot be read ({type(exc).__name__})")], str(source)
            ) from None
        data, name, folder = parse_yaml(text, str(source)), str(source), path.parent
    if not isinstance(data, dict):
        raise ScenarioError([Problem("", "a sweep must be a mapping of keys to values")], name)
    problems = []
    if (data.get("grid") is None) == (data.get("variants") is None):
        problems.append(Problem("grid", "give exactly one of 'grid' or 'variants'"))
    try:
        sw = Sweep.model_validate(data)
    except ValidationError as exc:
        found = problems_from_validation_error(exc)
        problems = [q for q in found if "exactly one of 'grid'" not in q.message] + problems
    if problems:
        raise ScenarioError(problems, name)
    base_path = folder / sw.base
    base_source: str | Path = base_path if base_path.suffix and base_path.is_file() else sw.base
    try:
        base_data, _ = read_source(base_source)
    except ScenarioError as exc:
        if any(q.path != "scenario" for q in exc.problems):
            raise  # problems inside the base file: named in that file
        # the base cannot be found or read: the problem is the sweep file's `base` field
        moved = [Problem("base", q.message, sw.base) for q in exc.problems]
        raise ScenarioError(moved, name) from None
    if not isinstance(base_data, dict):
        raise ScenarioError([Problem("base", "the base scenario is not a mapping", sw.base)], name)
    return expand_sweep(sw, base_data, name)
