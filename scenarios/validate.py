"""Validation of scenario data: every problem at once, one line each, naming the field path.

A line reads ``field.path[index].name: message (got VALUE)``. Field-level problems come from
pydantic (types, plausible ranges, unknown keys with a did-you-mean suggestion); cross-field
problems (:func:`cross_field_problems`) run on every part of the file that is valid, so that
both kinds are reported in one round. Values are shortened before they are formatted and
unknown keys are named without their values: a message never reprints a file's content.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import math
import re
import reprlib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from .schema import (
    MARKET_FACTORS,
    MAX_DEBT_FACILITIES,
    MAX_LEASE_OFFERS,
    MAX_SITES,
    BtcPrice,
    Correlation,
    Covenants,
    DebtFacility,
    Horizon,
    LeaseOffer,
    Scenario,
    Site,
    Treasury,
    range_text,
)

#: Tolerance on correlation symmetry and unit diagonal.
CORRELATION_TOL = 1e-9
#: Smallest eigenvalue accepted for a positive semi-definite correlation matrix.
PSD_EIG_TOL = -1e-9
#: Largest absolute relative mismatch between ``years`` and a whole number of periods.
PERIOD_FIT_TOL = 1e-9
#: Most problems kept (and printed) for one file; the rest are counted.
MAX_PROBLEMS = 50
#: Longest excerpt of a key or text value shown in a message [characters].
MAX_SHOWN_CHARS = 40
#: Longest rendering of a value in a message [characters].
MAX_SHOWN_LINE = 80

_MISSING = object()


@dataclass(frozen=True)
class Problem:
    """One problem in a scenario: where it is, what is wrong, and the offending value."""

    path: str
    message: str
    value: Any = _MISSING

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def __str__(self) -> str:
        where = self.path or "(scenario)"
        if self.value is _MISSING:
            return f"{where}: {self.message}"
        return f"{where}: {self.message} (got {show_value(self.value)})"


class ScenarioError(ValueError):
    """A scenario that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        problems = list(problems)
        #: Number of problems found; ``problems`` keeps the first :data:`MAX_PROBLEMS` of them
        #: and one last line counting the others.
        self.n_problems = len(problems)
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = problems[:MAX_PROBLEMS] + [
                Problem("", f"... and {more:,} more problems (the first {MAX_PROBLEMS} are shown)")
            ]
        self.problems = problems
        self.source = source
        super().__init__("\n".join(str(p) for p in self.problems))


def _short_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel = 2
    r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 4
    r.maxdict = 0
    r.maxstring = r.maxlong = r.maxother = MAX_SHOWN_CHARS
    return r


_REPR = _short_repr()
_PLAIN_KEY = re.compile(rf"^[A-Za-z0-9_:+.-]{{1,{MAX_SHOWN_CHARS}}}$")


def show_value(value: Any) -> str:
    """A short rendering of ``value``: its size is bounded whatever the size of ``value``
    (nested or aliased lists, long strings, huge integers)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return "a mapping" if value else "{}"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list) and len(value) > 6:
        return f"a list of {len(value)} items"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{float(value):g}" if digits < 300 else f"an integer of about {digits} digits"
    text = _REPR.repr(value)
    return text if len(text) <= MAX_SHOWN_LINE else text[: MAX_SHOWN_LINE - 3] + "..."


def _key(part: Any) -> str:
    """A mapping key as shown in a path: as written when plain, else a short quoted excerpt."""
    text = str(part) if isinstance(part, str | int | float) else type(part).__name__
    if _PLAIN_KEY.match(text):
        return text
    return _REPR.repr(text) if isinstance(part, str) else f"<{_REPR.repr(part)}>"


def _num(value: Any) -> Any:
    return f"{value:g}" if isinstance(value, float) else value


def format_path(loc: Iterable[Any]) -> str:
    """``('sites', 2, 'interconnect_mw')`` → ``sites[2].interconnect_mw``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _key(part)
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
        key = str(loc[-1])[: 2 * MAX_SHOWN_CHARS]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key{hint}"
    if kind in _RANGE_ERRORS:
        text = _field_range(loc)
        if text:
            return f"outside the plausible range {text}"
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
        "string_too_long": "must have at most {max_length} characters",
        "too_long": "must have at most {max_length} items",
        "string_pattern_mismatch": (
            "must be a plain identifier: 1 to 64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        ),
        "int_parsing_size": "must be an integer of plausible size",
    }
    if kind in simple:
        try:
            return simple[kind].format(**{k: _num(v) for k, v in ctx.items()})
        except (KeyError, IndexError):
            return simple[kind]
    return str(err["msg"][:1].lower() + err["msg"][1:])


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _field_range(loc: Sequence[Any]) -> str:
    """The plausible range of the field at ``loc`` (``""`` where it has none)."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    model = _model_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model else None
    return range_text(field.metadata) if field else ""


def problems_from_validation_error(exc: ValidationError) -> list[Problem]:
    """One :class:`Problem` per pydantic error, in file order; unknown keys without their
    values."""
    out = []
    for err in exc.errors(include_url=False):
        hidden = err["type"] in ("missing", "extra_forbidden")
        value = _MISSING if hidden else err.get("input", _MISSING)
        if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            value = err.get("input", _MISSING)
        out.append(Problem(format_path(err["loc"]), _message(err), value))
    return out


# --------------------------------------------------------------------------- cross-field rules
@dataclass(frozen=True)
class _Parts:
    """The parts of a scenario that passed their own validation, with their list indices.

    Built from a valid :class:`Scenario`, or from raw data whose other parts have problems;
    a rule runs when the parts it needs are here. Name lists are ``None`` when some entry has
    no valid name (a rule that looks names up would then report false problems).
    """

    horizon: Horizon | None
    sites: list[tuple[int, Site]]
    site_names: list[str] | None
    offers: list[tuple[int, LeaseOffer]]
    offer_names: list[str] | None
    facilities: list[tuple[int, DebtFacility]]
    facility_names: list[str] | None
    regions: list[str] | None
    treasury: Treasury | None
    covenants: Covenants | None
    btc: BtcPrice | None
    correlation: Correlation | None

    @classmethod
    def of_scenario(cls, sc: Scenario) -> _Parts:
        return cls(
            horizon=sc.horizon,
            sites=list(enumerate(sc.sites)),
            site_names=[s.name for s in sc.sites],
            offers=list(enumerate(sc.lease_offers)),
            offer_names=[o.name for o in sc.lease_offers],
            facilities=list(enumerate(sc.debt_facilities)),
            facility_names=[f.name for f in sc.debt_facilities],
            regions=list(sc.market.power_regions),
            treasury=sc.treasury,
            covenants=sc.covenants,
            btc=sc.market.btc,
            correlation=sc.market.correlation,
        )

    @classmethod
    def of_data(cls, data: dict[Any, Any]) -> _Parts:
        def one(model: type[BaseModel], key: str, where: Any, default: bool) -> Any:
            if not isinstance(where, dict):
                return None
            if key not in where:
                return model() if default else None
            try:
                return model.model_validate(where[key])
            except (ValidationError, TypeError, ValueError, OverflowError):
                return None

        def entries(model: type[BaseModel], key: str) -> tuple[list[tuple[int, Any]], Any]:
            raw = data.get(key, [])
            if not isinstance(raw, list):
                return [], None
            good = []
            for i, item in enumerate(raw):
                with contextlib.suppress(ValidationError, TypeError, ValueError, OverflowError):
                    good.append((i, model.model_validate(item)))
            names = [item.get("name") if isinstance(item, dict) else None for item in raw]
            ok = all(isinstance(n, str) and 0 < len(n) <= 64 for n in names)
            return good, (names if ok else None)

        sites, site_names = entries(Site, "sites")
        offers, offer_names = entries(LeaseOffer, "lease_offers")
        facilities, facility_names = entries(DebtFacility, "debt_facilities")
        market = data.get("market")
        raw_regions = market.get("power_regions") if isinstance(market, dict) else None
        regions = (
            list(raw_regions)
            if isinstance(raw_regions, dict) and all(isinstance(k, str) for k in raw_regions)
            else None
        )
        return cls(
            horizon=one(Horizon, "horizon", data, default=False),
            sites=sites,
            site_names=site_names,
            offers=offers,
            offer_names=offer_names,
            facilities=facilities,
            facility_names=facility_names,
            regions=regions,
            treasury=one(Treasury, "treasury", data, default=True),
            covenants=one(Covenants, "covenants", data, default=True),
            btc=one(BtcPrice, "btc", market, default=False),
            correlation=one(Correlation, "correlation", market, default=True),
        )


def _unique(names: list[str] | None, path: str, what: str) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names or []):
        if name in seen:
            out.append(Problem(f"{path}[{i}].name", f"duplicate {what} name", name))
        seen.add(name)
    return out


def _check_sites(sc: _Parts) -> list[Problem]:
    out = _unique(sc.site_names, "sites", "site")
    for i, s in sc.sites:
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
        if sc.regions is not None and s.region not in sc.regions:
            known = sc.regions
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


def _check_periods(sc: _Parts) -> list[Problem]:
    out: list[Problem] = []
    h = sc.horizon
    if h is None:
        return out
    exact = h.years * h.periods_per_year
    if abs(exact - round(exact)) > PERIOD_FIT_TOL * max(1.0, exact):
        out.append(Problem("horizon.years", f"must be a whole number of {h.period}s", h.years))
    last = h.n_periods - 1
    for i, lo in sc.offers:
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
    for i, f in sc.facilities:
        p = f"debt_facilities[{i}]"
        if f.draw_end_period > last:
            out.append(
                Problem(
                    f"{p}.draw_end_period",
                    f"must be inside the horizon (<= {last})",
                    f.draw_end_period,
                )
            )
    return out


def _check_windows(sc: _Parts) -> list[Problem]:
    """Windows ordered within one entry (needs no horizon)."""
    out = []
    for i, lo in sc.offers:
        if lo.deliver_by_period < lo.earliest_start_period:
            out.append(
                Problem(
                    f"lease_offers[{i}].deliver_by_period",
                    f"must be >= earliest_start_period ({lo.earliest_start_period})",
                    lo.deliver_by_period,
                )
            )
    for i, f in sc.facilities:
        if f.draw_end_period < f.draw_start_period:
            out.append(
                Problem(
                    f"debt_facilities[{i}].draw_end_period",
                    f"must be >= draw_start_period ({f.draw_start_period})",
                    f.draw_end_period,
                )
            )
    return out


def _check_leases(sc: _Parts) -> list[Problem]:
    out = _unique(sc.offer_names, "lease_offers", "lease offer")
    sites = sc.site_names
    for i, lo in sc.offers:
        for j, name in enumerate(lo.eligible_sites):
            if sites is not None and name not in sites:
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


def _check_money(sc: _Parts) -> list[Problem]:
    out = _unique(sc.facility_names, "debt_facilities", "facility")
    t = sc.treasury
    if t is None:
        return out
    if t.btc_floor > t.btc_held:
        out.append(
            Problem("treasury.btc_floor", f"must be <= btc_held ({t.btc_held:g})", t.btc_floor)
        )
    if (
        sc.covenants is not None
        and sc.btc is not None
        and sc.covenants.min_cash_usd > t.cash_usd + t.btc_held * sc.btc.price_usd
    ):
        out.append(
            Problem(
                "covenants.min_cash_usd",
                "exceeds the opening cash plus the BTC treasury at the start price",
                sc.covenants.min_cash_usd,
            )
        )
    return out


def _check_correlation(sc: _Parts) -> list[Problem]:
    corr = sc.correlation
    out: list[Problem] = []
    if corr is None:
        return out
    if sc.regions is not None:
        known = list(MARKET_FACTORS) + [f"power:{r}" for r in sc.regions]
        for i, name in enumerate(corr.factors):
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
                out.append(
                    Problem(f"market.correlation.factors[{i}]", f"unknown factor{hint}", name)
                )
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


def _cross_field(parts: _Parts) -> list[Problem]:
    return (
        _check_periods(parts)
        + _check_windows(parts)
        + _check_sites(parts)
        + _check_leases(parts)
        + _check_money(parts)
        + _check_correlation(parts)
    )


def cross_field_problems(sc: Scenario) -> list[Problem]:
    """Problems that involve more than one field of an otherwise well-typed scenario."""
    return _cross_field(_Parts.of_scenario(sc))


def _what(data: Any) -> str:
    """What a parsed file is, in words, without its content."""
    if data is None:
        return "the file is empty"
    if isinstance(data, str):
        return f"the file reads as one text of {len(data):,} characters"
    if isinstance(data, list):
        return f"the file reads as a list of {len(data):,} items"
    return f"the file reads as a single {type(data).__name__} value"


#: Lists of a scenario whose length is checked before their entries are.
_LIST_CAPS = {
    "sites": MAX_SITES,
    "lease_offers": MAX_LEASE_OFFERS,
    "debt_facilities": MAX_DEBT_FACILITIES,
}


def validate_data(data: Any, source: str = "") -> Scenario:
    """Validate a parsed mapping into a :class:`Scenario`, or raise :class:`ScenarioError`.

    Problems of single fields and cross-field problems among the parts that are valid are
    raised together.
    """
    if not isinstance(data, dict):
        raise ScenarioError(
            [Problem("", f"not a mapping of scenario fields ({_what(data)})")], source
        )
    too_long = [
        Problem(key, f"must have at most {cap:,} items (got {len(data[key]):,})")
        for key, cap in _LIST_CAPS.items()
        if isinstance(data.get(key), list) and len(data[key]) > cap
    ]
    if too_long:  # refused before validating (and reporting on) every entry
        raise ScenarioError(too_long, source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation_error(exc)
        problems += _cross_field(_Parts.of_data(data))
        raise ScenarioError(problems, source) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # defensive
        raise ScenarioError(
            [Problem("", f"cannot be read ({type(exc).__name__})")], source
        ) from None
    problems = cross_field_problems(scenario)
    if problems:
        raise ScenarioError(problems, source)
    return scenario
