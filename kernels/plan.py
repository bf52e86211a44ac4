r"""A plan (the first-stage decisions) and its deterministic schedule.

The plan is plain data: per site and period the conversion blocks started and the GPU racks
installed; per lease offer whether it is signed and the IT MW delivered at each site and period;
per facility and period the draws; per period the BTC sold. Everything that follows from it
without a market path is derived here, once:

- ASIC MW mining: A[s,t] = asic_s − block_s·Σ_{τ≤t} n[s,τ] (a block stops mining when work starts);
- IT MW online: I[s,t] = ρ_s·block_s·Σ_{τ≤t−lead_s} n[s,τ];
- racks active: K[s,t] = Σ_{t−life<τ≤t} r[s,τ]; their IT MW = rack_kw/1000·K;
- market IT MW (offered at the market rate × occupancy): I − Σ_l d[l,s,t] − rack IT MW;
- capex: ρ_s·block_s·capex_s spread evenly over the lead time from the start (all at the
  start when lead is 0), plus racks at installation; ASIC salvage cashed at conversion start;
- leases: rent per delivered IT MW rate·(1+esc)^{⌊(t−start)/ppy⌋}·1000·12Δ for t in
  [start, start + term); shortfall it_mw·y − D from ``deliver_by`` to the end of the term;
- debt: maturity M = draw_end + round(tenor/Δ); principal D_total/(M − draw_end) in each period
  of (draw_end, M] (linear) or all at M (bullet); interest rate·Δ on the opening balance; fee
  on each draw. Scheduled debt service (for DSCR) is interest plus linear amortisation: a
  bullet is a refinancing event that cash must still meet, not part of the covenant ratio;
  dilution of a convertible c_f·Δ on the opening balance (non-cash: deducted from terminal
  equity, see :mod:`~hashpivot.kernels.cashflow`);
- treasury: BTC held = held₀ − Σ_{τ≤t} b[τ].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashpivot.scenarios import Scenario


@dataclass
class Plan:
    """First-stage decisions; arrays are indexed [site, period], [lease, site, period], ..."""

    site_names: tuple[str, ...]
    lease_names: tuple[str, ...]
    facility_names: tuple[str, ...]
    blocks: np.ndarray
    """Conversion blocks started, (S, T) int."""
    racks_new: np.ndarray
    """GPU racks installed, (S, T) int."""
    lease_signed: np.ndarray
    """Offer signed, (L,) bool."""
    lease_it_mw: np.ndarray
    """IT MW delivered to each lease at each site, (L, S, T) [IT MW]."""
    draws_usd: np.ndarray
    """Draws of each facility, (F, T) [$]."""
    btc_sold: np.ndarray
    """BTC sold, (T,) [BTC]."""

    @property
    def n_periods(self) -> int:
        return int(self.blocks.shape[1])

    @classmethod
    def empty(cls, sc: Scenario) -> Plan:
        """The plan that does nothing: keep mining, sign nothing, borrow and sell nothing."""
        s, t = len(sc.sites), sc.horizon.n_periods
        n_l, n_f = len(sc.lease_offers), len(sc.debt_facilities)
        return cls(
            site_names=tuple(x.name for x in sc.sites),
            lease_names=tuple(x.name for x in sc.lease_offers),
            facility_names=tuple(x.name for x in sc.debt_facilities),
            blocks=np.zeros((s, t), dtype=np.int64),
            racks_new=np.zeros((s, t), dtype=np.int64),
            lease_signed=np.zeros(n_l, dtype=bool),
            lease_it_mw=np.zeros((n_l, s, t)),
            draws_usd=np.zeros((n_f, t)),
            btc_sold=np.zeros(t),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (``plan.json``): the input of ``hashpivot evaluate``; MW to 1e-6, USD to
        the cent, BTC to 1e-8 (``MW_DECIMALS``, ``USD_DECIMALS``, ``BTC_DECIMALS``)."""
        return {
            "sites": list(self.site_names),
            "lease_offers": list(self.lease_names),
            "debt_facilities": list(self.facility_names),
            "periods": self.n_periods,
            "blocks": self.blocks.astype(int).tolist(),
            "racks_new": self.racks_new.astype(int).tolist(),
            "lease_signed": [bool(x) for x in self.lease_signed],
            "lease_it_mw": (np.round(self.lease_it_mw, MW_DECIMALS) + 0.0).tolist(),
            "draws_usd": (np.round(self.draws_usd, USD_DECIMALS) + 0.0).tolist(),
            "btc_sold": (np.round(self.btc_sold, BTC_DECIMALS) + 0.0).tolist(),
        }

    @classmethod
    def from_json(cls, data: Any, scenario: Scenario | None = None) -> Plan:
        """Read a plan written by :meth:`to_json`, strictly.

        Exact JSON types and shapes: names are lists of strings, ``periods`` a JSON integer
        (equal to the scenario's when ``scenario`` is given), ``blocks`` and ``racks_new``
        nested lists of JSON integers, ``lease_signed`` a list of JSON booleans, the rest
        nested lists of finite numbers, none negative beyond the rounding of its unit (then read
        as zero). Raises ``ValueError`` with one line naming the field path.
        """
        if not isinstance(data, dict):
            raise ValueError(f"plan: must be a JSON object (got {_kind(data)})")
        unknown = sorted(set(data) - set(PLAN_FIELDS))
        if unknown:
            raise ValueError(
                f"plan.{unknown[0]}: unknown field (expected {', '.join(PLAN_FIELDS)})"
            )
        missing = [k for k in PLAN_FIELDS if k not in data]
        if missing:
            raise ValueError(f"plan.{missing[0]}: missing")
        names = tuple(_names(data[k], k) for k in ("sites", "lease_offers", "debt_facilities"))
        t = data["periods"]
        if not _is_int(t) or not 1 <= t <= MAX_PLAN_PERIODS:
            raise ValueError(
                f"plan.periods: must be a JSON integer in [1, {MAX_PLAN_PERIODS}] (got {_show(t)})"
            )
        if scenario is not None and t != scenario.horizon.n_periods:
            raise ValueError(
                f"plan.periods: {t} does not match the scenario's {scenario.horizon.n_periods}"
            )
        s, n_l, n_f = (len(x) for x in names)
        out: dict[str, np.ndarray] = {}
        out["blocks"] = _array(data["blocks"], "blocks", (s, t), "int", MAX_PLAN_COUNT)
        out["racks_new"] = _array(data["racks_new"], "racks_new", (s, t), "int", MAX_PLAN_COUNT)
        out["lease_signed"] = _array(data["lease_signed"], "lease_signed", (n_l,), "bool", 1)
        out["lease_it_mw"] = _array(
            data["lease_it_mw"], "lease_it_mw", (n_l, s, t), "num", MAX_PLAN_MW, 10.0**-MW_DECIMALS
        )
        out["draws_usd"] = _array(
            data["draws_usd"], "draws_usd", (n_f, t), "num", MAX_PLAN_USD, 10.0**-USD_DECIMALS
        )
        out["btc_sold"] = _array(
            data["btc_sold"], "btc_sold", (t,), "num", MAX_PLAN_BTC, 10.0**-BTC_DECIMALS
        )
        return cls(site_names=names[0], lease_names=names[1], facility_names=names[2], **out)


#: Fields of ``plan.json``, in order.
PLAN_FIELDS = (
    "sites",
    "lease_offers",
    "debt_facilities",
    "periods",
    "blocks",
    "racks_new",
    "lease_signed",
    "lease_it_mw",
    "draws_usd",
    "btc_sold",
)
#: Decimals of plan quantities in files: MW to 1e-6, USD to the cent, BTC to 1e-8.
MW_DECIMALS = 6
USD_DECIMALS = 2
BTC_DECIMALS = 8
#: Ranges ``plan.json`` values must keep (far beyond any real fleet).
MAX_PLAN_PERIODS = 10_000
MAX_PLAN_COUNT = 10**7
MAX_PLAN_MW = 1.0e7
MAX_PLAN_USD = 1.0e15
MAX_PLAN_BTC = 2.1e7
#: Largest ``plan.json`` read [bytes], and the deepest nesting of lists and objects (the
#: format itself is 4 deep).
MAX_PLAN_BYTES = 50 * 2**20
MAX_PLAN_DEPTH = 8
#: Digits of the longest integer literal parsed as a number.
MAX_INT_DIGITS = 20


class _LongInt:
    """An integer literal too long to be a plan value (kept to name it in the error)."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))


def _kind(x: Any) -> str:
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, _LongInt):
        return f"an integer of {x.digits} digits"
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(x), type(x).__name__)


def _show(x: Any) -> str:
    """A short description of a JSON value for an error message."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int | float) and not isinstance(x, bool):
        return repr(x) if len(repr(x)) <= 24 else _kind(x)
    if isinstance(x, str):
        return repr(x) if len(x) <= 24 else "a string"
    return _kind(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _names(x: Any, field: str) -> tuple[str, ...]:
    if not isinstance(x, list) or not all(isinstance(v, str) for v in x):
        raise ValueError(f"plan.{field}: must be a list of names (strings)")
    return tuple(x)


def _array(
    x: Any, field: str, shape: tuple[int, ...], kind: str, limit: float, slack: float = 0.0
) -> np.ndarray:
    """Nested JSON lists of exactly ``shape`` holding ``kind`` values ("int": integers in
    [0, limit]; "bool": booleans; "num": finite numbers in [−slack, limit], negatives within
    the slack read as 0)."""
    flat: list[Any] = []

    def walk(v: Any, path: str, dims: tuple[int, ...]) -> None:
        if not dims:
            flat.append(_value(v, path, kind, limit, slack))
            return
        if not isinstance(v, list):
            raise ValueError(f"{path}: must be a list of {dims[0]} (got {_kind(v)})")
        if len(v) != dims[0]:
            raise ValueError(f"{path}: must have {dims[0]} entries (got {len(v)})")
        for i, item in enumerate(v):
            walk(item, f"{path}[{i}]", dims[1:])

    walk(x, f"plan.{field}", shape)
    dtype = {"int": np.int64, "bool": bool, "num": np.float64}[kind]
    return np.array(flat, dtype=dtype).reshape(shape)


def _value(v: Any, path: str, kind: str, limit: float, slack: float) -> Any:
    if kind == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"{path}: must be true or false (got {_show(v)})")
        return v
    if kind == "int":
        if not _is_int(v) or not 0 <= v <= limit:
            raise ValueError(
                f"{path}: must be a JSON integer in [0, {limit:,.0f}] (got {_show(v)})"
            )
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{path}: must be a number (got {_show(v)})")
    if not np.isfinite(v) or abs(v) > limit:
        raise ValueError(f"{path}: must be a finite number of at most {limit:g} (got {_show(v)})")
    if v < -slack:
        raise ValueError(f"{path}: must not be negative (got {_show(v)})")
    return max(float(v), 0.0)


def _nesting_depth(text: str) -> int:
    """Deepest nesting of lists and objects in JSON ``text`` (strings skipped)."""
    import re  # noqa: PLC0415

    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    b = np.frombuffer(bare.encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(b, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def read_plan_file(path: str | Path, scenario: Scenario | None = None) -> Plan:
    """Read ``plan.json`` with bounded parsing: at most ``MAX_PLAN_BYTES``, UTF-8 only, nesting
    at most ``MAX_PLAN_DEPTH``, then :meth:`Plan.from_json`. Raises ``ValueError`` with one line
    naming the file or the field (``OSError`` when the file cannot be read)."""
    import json  # noqa: PLC0415

    p = Path(path)
    with p.open("rb") as f:  # read at most one byte past the cap (a device never ends)
        raw = f.read(MAX_PLAN_BYTES + 1)
    if len(raw) > MAX_PLAN_BYTES:
        raise ValueError(f"{p}: larger than a plan can be ({MAX_PLAN_BYTES:,} bytes)")
    for bom, enc in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if raw.startswith(bom):
            raise ValueError(f"{p}: is {enc} text; plans must be UTF-8")
    if len(raw) >= 2 and (raw[0] == 0 or raw[1] == 0):
        raise ValueError(f"{p}: looks like UTF-16 or UTF-32 text; plans must be UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{p}: is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    if _nesting_depth(text) > MAX_PLAN_DEPTH:
        raise ValueError(f"{p}: lists or objects nested deeper than {MAX_PLAN_DEPTH} levels")
    try:
        data = json.loads(
            text,
            parse_int=lambda s: int(s) if len(s.lstrip("-")) <= MAX_INT_DIGITS else _LongInt(s),
            parse_constant=float,
        )
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{p}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:  # pragma: no cover - the depth scan refuses these first
        raise ValueError(f"{p}: nested too deeply") from None
    return Plan.from_json(data, scenario)


# --------------------------------------------------------------------------- schedule
@dataclass
class Schedule:
    """Deterministic consequences of a plan (see the module docstring)."""

    asic_mw: np.ndarray  # (S, T)
    converting_mw: np.ndarray  # (S, T) started, not yet online
    it_online_mw: np.ndarray  # (S, T)
    racks_active: np.ndarray  # (S, T)
    rack_it_mw: np.ndarray  # (S, T)
    lease_total_it_mw: np.ndarray  # (L, T)
    market_it_mw: np.ndarray  # (S, T)
    lease_short_it_mw: np.ndarray  # (L, T) shortfall after deliver-by
    capex_usd: np.ndarray  # (T,)
    salvage_usd: np.ndarray  # (T,)
    fees_usd: np.ndarray  # (F, T)
    interest_usd: np.ndarray  # (F, T)
    principal_usd: np.ndarray  # (F, T)
    balance_usd: np.ndarray  # (F, T) end of period
    debt_service_usd: np.ndarray  # (T,) interest and all principal (cash)
    scheduled_service_usd: np.ndarray  # (T,) interest and amortisation, no bullets (DSCR)
    btc_held: np.ndarray  # (T,) end of period
    dilution_usd: np.ndarray  # (F, T) conversion-option cost on the opening balance (non-cash)


def lease_terms(sc: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rent per delivered IT MW [$/IT MW/period], active mask and penalty mask, each (L, T)."""
    h = sc.horizon
    t = np.arange(h.n_periods)
    n_l = len(sc.lease_offers)
    rent = np.zeros((n_l, h.n_periods))
    active = np.zeros((n_l, h.n_periods), dtype=bool)
    late = np.zeros((n_l, h.n_periods), dtype=bool)
    for i, lo in enumerate(sc.lease_offers):
        start = lo.earliest_start_period
        end = start + round(lo.term_years * h.periods_per_year)
        active[i] = (t >= start) & (t < end)
        years = np.floor((t - start) / h.periods_per_year).clip(0)
        rent[i] = np.where(
            active[i],
            lo.rate_usd_per_kw_month
            * (1 + lo.escalator_per_year) ** years
            * 1000.0
            * 12
            * h.dt_years,
            0.0,
        )
        late[i] = active[i] & (t >= lo.deliver_by_period)
    return rent, active, late


def debt_terms(sc: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Per facility and period: draw allowed (F, T) and share of total draws repaid (F, T)."""
    h = sc.horizon
    t = np.arange(h.n_periods)
    n_f = len(sc.debt_facilities)
    allowed = np.zeros((n_f, h.n_periods), dtype=bool)
    repay = np.zeros((n_f, h.n_periods))
    for i, f in enumerate(sc.debt_facilities):
        allowed[i] = (t >= f.draw_start_period) & (t <= f.draw_end_period)
        maturity = f.draw_end_period + max(1, round(f.tenor_years * h.periods_per_year))
        n_amort = 1 if f.repayment == "bullet" else maturity - f.draw_end_period
        first = maturity - n_amort + 1
        repay[i] = np.where((t >= first) & (t <= maturity), 1.0 / n_amort, 0.0)
    return allowed, repay


def covenant_windows(sc: Scenario) -> np.ndarray:
    """Periods each facility's covenants are in force if it is drawn: draw start to maturity
    (to the horizon's end), for facilities with covenants; (F, T) bool."""
    h = sc.horizon
    t = np.arange(h.n_periods)
    out = np.zeros((len(sc.debt_facilities), h.n_periods), dtype=bool)
    for i, f in enumerate(sc.debt_facilities):
        maturity = f.draw_end_period + max(1, round(f.tenor_years * h.periods_per_year))
        out[i] = f.covenants & (t >= f.draw_start_period) & (t <= maturity)
    return out


def covenant_periods(sc: Scenario, plan: Plan) -> np.ndarray:
    """Periods the covenants are tested for ``plan``: inside the window of a drawn facility with
    covenants, from the first full year on; (T,) bool."""
    drawn = plan.draws_usd.sum(axis=1) > 0
    windows = covenant_windows(sc)
    live = (
        (windows & drawn[:, None]).any(axis=0)
        if windows.size
        else np.zeros(sc.horizon.n_periods, bool)
    )
    return live & (np.arange(sc.horizon.n_periods) >= sc.horizon.periods_per_year - 1)


def rack_life_periods(sc: Scenario) -> int:
    """Periods a rack earns after installation."""
    return max(1, round(sc.gpu_racks.life_years * sc.horizon.periods_per_year))


def schedule(sc: Scenario, plan: Plan) -> Schedule:
    """Derive the deterministic schedule of ``plan`` under scenario ``sc``."""
    h = sc.horizon
    n_t = h.n_periods
    dt = h.dt_years
    block = np.array([s.conversion.block_mw for s in sc.sites])[:, None]
    rho = np.array([s.conversion.it_mw_per_utility_mw for s in sc.sites])[:, None]
    lead = np.array([s.conversion.lead_time_periods for s in sc.sites])
    started = np.cumsum(plan.blocks, axis=1) * block
    asic = np.array([s.asic_mw for s in sc.sites])[:, None] - started
    online = np.zeros_like(started, dtype=float)
    capex = np.zeros(n_t)
    for i, s in enumerate(sc.sites):
        lag = int(lead[i])
        if lag < n_t:
            online[i, lag:] = started[i, : n_t - lag] * rho[i, 0]
        per_block = s.conversion.capex_usd_per_it_mw * rho[i, 0] * block[i, 0]
        spread = max(lag, 1)
        for t0 in np.flatnonzero(plan.blocks[i]):
            for t in range(t0, min(n_t, t0 + spread)):
                capex[t] += plan.blocks[i, t0] * per_block / spread
    converting = started * rho - online
    life = rack_life_periods(sc)
    c = np.cumsum(plan.racks_new, axis=1)
    racks_active = c - np.concatenate([np.zeros((c.shape[0], life)), c], axis=1)[:, :n_t]
    rack_it = racks_active * sc.gpu_racks.rack_kw / 1000.0
    capex += plan.racks_new.sum(axis=0) * sc.gpu_racks.capex_usd_per_rack
    salvage = (
        plan.blocks * block * np.array([s.asic_salvage_usd_per_mw for s in sc.sites])[:, None]
    ).sum(axis=0)
    lease_total = plan.lease_it_mw.sum(axis=1)
    market = online - plan.lease_it_mw.sum(axis=0) - rack_it
    _, _, late = lease_terms(sc)
    it_mw = np.array([lo.it_mw for lo in sc.lease_offers])[:, None]
    short = np.where(late, it_mw * plan.lease_signed[:, None] - lease_total, 0.0)
    _, repay = debt_terms(sc)
    total_draw = plan.draws_usd.sum(axis=1, keepdims=True)
    principal = repay * total_draw
    balance = np.cumsum(plan.draws_usd - principal, axis=1)
    opening = np.concatenate([np.zeros((balance.shape[0], 1)), balance[:, :-1]], axis=1)
    rates = np.array([f.rate_per_year for f in sc.debt_facilities])[:, None]
    interest = rates * dt * opening
    fees = np.array([f.upfront_fee_share for f in sc.debt_facilities])[:, None] * plan.draws_usd
    amortising = np.array([f.repayment == "linear" for f in sc.debt_facilities], dtype=float)
    dilution = np.array([f.dilution_per_year for f in sc.debt_facilities])[:, None] * dt * opening
    return Schedule(
        asic_mw=asic,
        converting_mw=converting,
        it_online_mw=online,
        racks_active=racks_active,
        rack_it_mw=rack_it,
        lease_total_it_mw=lease_total,
        market_it_mw=market,
        lease_short_it_mw=short,
        capex_usd=capex,
        salvage_usd=salvage,
        fees_usd=fees,
        interest_usd=interest,
        principal_usd=principal,
        balance_usd=balance,
        debt_service_usd=(interest + principal).sum(axis=0),
        scheduled_service_usd=(interest + principal * amortising[:, None]).sum(axis=0),
        btc_held=sc.treasury.btc_held - np.cumsum(plan.btc_sold),
        dilution_usd=dilution,
    )
