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
        """Plain JSON (``plan.json``): the input of ``hashpivot evaluate``."""
        return {
            "sites": list(self.site_names),
            "lease_offers": list(self.lease_names),
            "debt_facilities": list(self.facility_names),
            "periods": self.n_periods,
            "blocks": self.blocks.astype(int).tolist(),
            "racks_new": self.racks_new.astype(int).tolist(),
            "lease_signed": [bool(x) for x in self.lease_signed],
            "lease_it_mw": np.round(self.lease_it_mw, 9).tolist(),
            "draws_usd": np.round(self.draws_usd, 6).tolist(),
            "btc_sold": np.round(self.btc_sold, 9).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """Read a plan written by :meth:`to_json`; raises ``ValueError`` naming the field."""
        try:
            names = (
                tuple(data["sites"]),
                tuple(data["lease_offers"]),
                tuple(data["debt_facilities"]),
            )
            t = int(data["periods"])
            s, n_l, n_f = (len(x) for x in names)
            fields = {
                "blocks": (np.asarray(data["blocks"], dtype=float), (s, t)),
                "racks_new": (np.asarray(data["racks_new"], dtype=float), (s, t)),
                "lease_signed": (np.asarray(data["lease_signed"], dtype=bool), (n_l,)),
                "lease_it_mw": (
                    np.asarray(data["lease_it_mw"], dtype=float).reshape(-1),
                    (n_l, s, t),
                ),
                "draws_usd": (np.asarray(data["draws_usd"], dtype=float).reshape(-1), (n_f, t)),
                "btc_sold": (np.asarray(data["btc_sold"], dtype=float), (t,)),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"plan: cannot be read ({type(exc).__name__}: {exc})") from None
        out = {}
        for name, (arr, shape) in fields.items():
            if arr.size != int(np.prod(shape)):
                raise ValueError(f"plan.{name}: must have shape {shape} (got {arr.size} values)")
            arr = arr.reshape(shape)
            if arr.dtype != bool and not np.all(np.isfinite(arr)):
                raise ValueError(f"plan.{name}: must be finite numbers")
            out[name] = arr
        for name in ("blocks", "racks_new"):
            if np.any(out[name] != np.round(out[name])):
                raise ValueError(f"plan.{name}: must be whole numbers")
            out[name] = out[name].astype(np.int64)
        return cls(site_names=names[0], lease_names=names[1], facility_names=names[2], **out)


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
