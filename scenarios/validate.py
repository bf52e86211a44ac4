"""Validation of scenario data: every problem at once, one line each, naming the field path.

A line reads ``field.path[index].name: message (got VALUE)``. Field-level problems come from
pydantic (types, ranges, unknown keys with a did-you-mean suggestion); cross-field problems
(:func:`cross_field_problems`) run once every field is valid.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from .schema import MARKET_FACTORS, Scenario

#: Tolerance on correlation symmetry and unit diagonal.
CORRELATION_TOL = 1e-9
#: Smallest eigenvalue accepted for a positive semi-definite correlation matrix.
PSD_EIG_TOL = -1e-9
#: Largest absolute relative mismatch between ``years`` and a whole number of periods.
PERIOD_FIT_TOL = 1e-9

_MISSING = object()


@dataclass(frozen=True)
class Problem:
    """One problem in a scenario: where it is, what is wrong, and the offending value."""

    path: str
    message: str
    value: Any = _MISSING

    def __str__(self) -> str:
        where = self.path or "(scenario)"
        if self.value is _MISSING:
            return f"{where}: {self.message}"
        return f"{where}: {self.message} (got {_show(self.value)})"


class ScenarioError(ValueError):
    """A scenario that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(str(p) for p in self.problems))


def _show(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping" if value else "{}"
    if isinstance(value, list) and len(value) > 6:
        return f"a list of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _num(value: Any) -> Any:
    return f"{value:g}" if isinstance(value, float) else value


def format_path(loc: Iterable[Any]) -> str:
    """``('sites', 2, 'interconnect_mw')`` → ``sites[2].interconnect_mw``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# --------------------------------------------------------------------------- pydantic errors
def _unwrap(annotation: Any, key: Any) -> Any:
    """Type reached from ``annotation`` by indexing with ``key`` (list index or dict key)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0], key)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg, key)
    if origin in (list, tuple, Sequence):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    return annotation


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class found by walking ``loc`` from :class:`Scenario`."""
    current: Any = Scenario
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        else:
            current = _unwrap(current, part)
        while typing.get_origin(current) is typing.Annotated:
            current = typing.get_args(current)[0]
    if typing.get_origin(current) in (typing.Union, types.UnionType):
        current = _unwrap(current, None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx", {})
    loc = err["loc"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key{hint}"
    simple = {
        "missing": "required field is missing",
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "finite_number": "must be a finite number",
        "too_short": "must have at least {min_length} item(s)",
        "string_too_short": "must not be empty",
        "int_type": "must be an integer",
        "int_from_float": "must be a whole number",
        "int_parsing": "must be an integer",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
        "date_type": "must be a date (YYYY-MM-DD)",
        "date_parsing": "must be a date (YYYY-MM-DD)",
        "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
        "date_from_datetime_inexact": "must be a date without a time",
        "literal_error": "must be one of {expected}",
    }
    if kind in simple:
        try:
            return simple[kind].format(**{k: _num(v) for k, v in ctx.items()})
        except (KeyError, IndexError):
            return simple[kind]
    return str(err["msg"][:1].lower() + err["msg"][1:])


def problems_from_validation_error(exc: ValidationError) -> list[Problem]:
    """One :class:`Problem` per pydantic error, in file order."""
    out = []
    for err in exc.errors(include_url=False):
        value = _MISSING if err["type"] == "missing" else err.get("input", _MISSING)
        if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            value = err.get("input", _MISSING)
        out.append(Problem(format_path(err["loc"]), _message(err), value))
    return out


# --------------------------------------------------------------------------- cross-field rules
def _unique(names: list[str], path: str, what: str) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        if name in seen:
            out.append(Problem(f"{path}[{i}].name", f"duplicate {what} name", name))
        seen.add(name)
    return out


def _check_sites(sc: Scenario) -> list[Problem]:
    out = _unique([s.name for s in sc.sites], "sites", "site")
    for i, s in enumerate(sc.sites):
        p = f"sites[{i}]"
        if s.asic_mw > s.interconnect_mw:
            out.append(
                Problem(
                    f"{p}.asic_mw",
                    f"must be <= interconnect_mw ({s.interconnect_mw:g})",
                    s.asic_mw,
                )
            )
        if s.convertible_mw > s.asic_mw:
            out.append(
                Problem(
                    f"{p}.convertible_mw", f"must be <= asic_mw ({s.asic_mw:g})", s.convertible_mw
                )
            )
        if s.region not in sc.market.power_regions:
            known = list(sc.market.power_regions)
            close = difflib.get_close_matches(s.region, known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
            out.append(
                Problem(f"{p}.region", f"no power model in market.power_regions{hint}", s.region)
            )
        if s.power.market_indexed_share < 1.0 and s.power.fixed_price_usd_per_mwh <= 0.0:
            out.append(
                Problem(
                    f"{p}.power.fixed_price_usd_per_mwh",
                    "must be > 0 when part of the power is fixed-price",
                    s.power.fixed_price_usd_per_mwh,
                )
            )
    return out


def _check_periods(sc: Scenario) -> list[Problem]:
    out = []
    h = sc.horizon
    exact = h.years * h.periods_per_year
    if abs(exact - round(exact)) > PERIOD_FIT_TOL * max(1.0, exact):
        out.append(Problem("horizon.years", f"must be a whole number of {h.period}s", h.years))
    last = h.n_periods - 1
    for i, lo in enumerate(sc.lease_offers):
        p = f"lease_offers[{i}]"
        if lo.earliest_start_period > last:
            out.append(
                Problem(
                    f"{p}.earliest_start_period",
                    f"must be inside the horizon (<= {last})",
                    lo.earliest_start_period,
                )
            )
        if lo.deliver_by_period > last:
            out.append(
                Problem(
                    f"{p}.deliver_by_period",
                    f"must be inside the horizon (<= {last})",
                    lo.deliver_by_period,
                )
            )
        if lo.deliver_by_period < lo.earliest_start_period:
            out.append(
                Problem(
                    f"{p}.deliver_by_period",
                    f"must be >= earliest_start_period ({lo.earliest_start_period})",
                    lo.deliver_by_period,
                )
            )
    for i, f in enumerate(sc.debt_facilities):
        p = f"debt_facilities[{i}]"
        if f.draw_end_period > last:
            out.append(
                Problem(
                    f"{p}.draw_end_period",
                    f"must be inside the horizon (<= {last})",
                    f.draw_end_period,
                )
            )
        if f.draw_end_period < f.draw_start_period:
            out.append(
                Problem(
                    f"{p}.draw_end_period",
                    f"must be >= draw_start_period ({f.draw_start_period})",
                    f.draw_end_period,
                )
            )
    return out


def _check_leases(sc: Scenario) -> list[Problem]:
    out = _unique([lo.name for lo in sc.lease_offers], "lease_offers", "lease offer")
    sites = [s.name for s in sc.sites]
    for i, lo in enumerate(sc.lease_offers):
        for j, name in enumerate(lo.eligible_sites):
            if name not in sites:
                close = difflib.get_close_matches(name, sites, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                out.append(
                    Problem(f"lease_offers[{i}].eligible_sites[{j}]", f"unknown site{hint}", name)
                )
        if lo.late_penalty_usd_per_mw_period > 0 and lo.hard_deadline:
            out.append(
                Problem(
                    f"lease_offers[{i}].late_penalty_usd_per_mw_period",
                    "a hard deadline takes no late penalty; set one or the other",
                    lo.late_penalty_usd_per_mw_period,
                )
            )
    return out


def _check_money(sc: Scenario) -> list[Problem]:
    out = _unique([f.name for f in sc.debt_facilities], "debt_facilities", "facility")
    t = sc.treasury
    if t.btc_floor > t.btc_held:
        out.append(
            Problem("treasury.btc_floor", f"must be <= btc_held ({t.btc_held:g})", t.btc_floor)
        )
    if sc.covenants.min_cash_usd > t.cash_usd + t.btc_held * sc.market.btc.price_usd:
        out.append(
            Problem(
                "covenants.min_cash_usd",
                "exceeds the opening cash plus the BTC treasury at the start price",
                sc.covenants.min_cash_usd,
            )
        )
    o = sc.market.ai_occupancy
    if not (0.0 < o.initial < 1.0 and 0.0 < o.mean < 1.0):  # pragma: no cover - schema enforces
        out.append(Problem("market.ai_occupancy", "levels must be inside (0, 1)", o.initial))
    return out


def _check_correlation(sc: Scenario) -> list[Problem]:
    corr = sc.market.correlation
    out = []
    known = list(MARKET_FACTORS) + [f"power:{r}" for r in sc.market.power_regions]
    for i, name in enumerate(corr.factors):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
            out.append(Problem(f"market.correlation.factors[{i}]", f"unknown factor{hint}", name))
    seen: set[str] = set()
    for i, name in enumerate(corr.factors):
        if name in seen:
            out.append(Problem(f"market.correlation.factors[{i}]", "duplicate factor", name))
        seen.add(name)
    n = len(corr.factors)
    m = corr.matrix
    if len(m) != n:
        out.append(
            Problem(
                "market.correlation.matrix", f"must have {n} rows, one per factor", f"{len(m)} rows"
            )
        )
        return out
    for i, row in enumerate(m):
        if len(row) != n:
            out.append(
                Problem(
                    f"market.correlation.matrix[{i}]",
                    f"must have {n} entries",
                    f"{len(row)} entries",
                )
            )
    if out or n == 0:
        return out
    a = np.asarray(m, dtype=float)
    for i in range(n):
        if abs(a[i, i] - 1.0) > CORRELATION_TOL:
            out.append(
                Problem(f"market.correlation.matrix[{i}][{i}]", "diagonal must be 1", a[i, i])
            )
        for j in range(n):
            if abs(a[i, j]) > 1.0 + CORRELATION_TOL:
                out.append(
                    Problem(f"market.correlation.matrix[{i}][{j}]", "must be in [-1, 1]", a[i, j])
                )
            if j > i and abs(a[i, j] - a[j, i]) > CORRELATION_TOL:
                out.append(
                    Problem(
                        f"market.correlation.matrix[{i}][{j}]",
                        f"must equal matrix[{j}][{i}] ({a[j, i]:g}); the matrix must be symmetric",
                        a[i, j],
                    )
                )
    if not out:
        smallest = float(np.linalg.eigvalsh(a).min())
        if not math.isfinite(smallest) or smallest < PSD_EIG_TOL:
            out.append(
                Problem(
                    "market.correlation.matrix",
                    "must be positive semi-definite",
                    f"smallest eigenvalue {smallest:.4g}",
                )
            )
    return out


def cross_field_problems(sc: Scenario) -> list[Problem]:
    """Problems that involve more than one field of an otherwise well-typed scenario."""
    return (
        _check_periods(sc)
        + _check_sites(sc)
        + _check_leases(sc)
        + _check_money(sc)
        + _check_correlation(sc)
    )


def validate_data(data: Any, source: str = "") -> Scenario:
    """Validate a parsed mapping into a :class:`Scenario`, or raise :class:`ScenarioError`."""
    if not isinstance(data, dict):
        raise ScenarioError(
            [Problem("", "a scenario must be a mapping of keys to values", data)], source
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(problems_from_validation_error(exc), source) from None
    except (TypeError, ValueError, OverflowError) as exc:  # defensive: never another exception type
        raise ScenarioError([Problem("", f"cannot be read: {exc}")], source) from None
    problems = cross_field_problems(scenario)
    if problems:
        raise ScenarioError(problems, source)
    return scenario
