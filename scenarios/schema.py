"""Scenario format: pydantic models for every entity of a hashpivot scenario.

Units live in field names (``interconnect_mw``, ``capex_usd_per_it_mw``) and in each field's
docstring. Power is utility (gross) MW unless the name says ``it_mw``; rates are annual unless
the name says otherwise; periods are indices ``0 .. n_periods-1`` of the horizon's periods.

Type rules and plausible ranges (bounds a real fleet or market can have) are declared on the
fields; the JSON Schema (``hashpivot schema``) carries each range in the field's description
as ``Plausible range: [lo, hi].``. Rules that span fields (ASIC MW within the interconnect,
lease sites that exist, windows inside the horizon, a valid correlation matrix) live in
:func:`hashpivot.scenarios.validate.cross_field_problems`, so that every problem of a file is
reported at once.
"""

from __future__ import annotations

import datetime as dt
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

#: Factor names the correlation matrix may use; ``power:<region>`` adds one per power region.
MARKET_FACTORS: tuple[str, ...] = ("btc", "hashrate", "ai_lease", "ai_occupancy", "gpu_hour")

#: Most periods of any horizon: 40 years of months.
MAX_PERIODS = 480
#: Largest fleet, offer book and debt stack a scenario may describe (bounds parsing work).
MAX_SITES = 1000
MAX_LEASE_OFFERS = 1000
MAX_DEBT_FACILITIES = 100
#: Longest name of a site, offer, facility, region or factor [characters].
MAX_NAME_CHARS = 64
#: Plausible calendar window of a horizon start.
EARLIEST_START = dt.date(2000, 1, 1)
LATEST_START = dt.date(2100, 12, 31)
#: A scenario name is a plain identifier: it becomes part of default output paths.
SCENARIO_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

PeriodIndex = Annotated[int, Field(ge=0, le=MAX_PERIODS)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
#: Power of one site, lease or region [MW]: the largest campuses are a few GW.
Megawatts = Annotated[float, Field(ge=0.0, le=10_000.0)]
PositiveMegawatts = Annotated[float, Field(gt=0.0, le=10_000.0)]
#: Money amounts of a fleet's balance sheet [$]: up to $1T.
Usd = Annotated[float, Field(ge=0.0, le=1.0e12)]
#: Per-unit annual costs and values [$/MW/year, $/rack/year, $/MW]: up to $10M.
UsdPerUnit = Annotated[float, Field(ge=0.0, le=1.0e7)]
#: Energy prices [$/MWh].
UsdPerMwh = Annotated[float, Field(ge=0.0, le=1000.0)]
#: BTC amounts [BTC]: at most the 21M supply.
Btc = Annotated[float, Field(ge=0.0, le=2.1e7)]
#: Valuation multiples [years].
Multiple = Annotated[float, Field(ge=0.0, le=50.0)]


def _bound(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        value = int(value)
    if isinstance(value, int | float):
        return f"{value:,g}" if isinstance(value, float) else f"{value:,}"
    return str(value)


def range_text(metadata: list[object], what: str = "items") -> str:
    """The plausible range of a field from its constraints, e.g. ``(0, 10,000]``, or its
    length (``1 to 64 characters``, with ``what="characters"``); ``""`` if it has none."""
    lo = hi = None
    lo_open = hi_open = False
    n_min = n_max = None
    for m in metadata:
        for attr, is_lo, is_open in (
            ("gt", True, True),
            ("ge", True, False),
            ("lt", False, True),
            ("le", False, False),
        ):
            v = getattr(m, attr, None)
            if v is None:
                continue
            if is_lo:
                lo, lo_open = v, is_open
            else:
                hi, hi_open = v, is_open
        n_min = getattr(m, "min_length", n_min)
        n_max = getattr(m, "max_length", n_max)
    if lo is None and hi is None:
        if n_max is not None:
            if n_min is None:
                return f"at most {n_max:,} {what}"
            return f"{n_min:,} to {n_max:,} {what}"
        return ""
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{left}{_bound(lo) if lo is not None else '-inf'}, {_bound(hi) if hi is not None else 'inf'}{right}"


def _add_ranges(schema: dict[str, object], model: type[BaseModel]) -> None:
    """JSON Schema hook: append each field's plausible range to its description."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return
    for name, info in model.model_fields.items():
        text = range_text(info.metadata, "characters" if info.annotation is str else "items")
        prop = props.get(info.alias or name)
        if text and isinstance(prop, dict):
            desc = str(prop.get("description", "")).rstrip()
            prop["description"] = f"{desc} Plausible range: {text}.".strip()


#: Default dilution cost of a convertible [1/year of principal outstanding]: the Black–Scholes
#: value of the conversion option per unit of principal and year,
#: C(S=1, K=1+premium, σ, T, r)/((1+premium)·T), at a 42.5% premium and T = 6 y (IREN 0% 2031, domain_facts §3 'Converts'), σ = 40% equity
#: volatility (below BTC's 40–55%, §1 'BTC volatility') and r = 4% (§3 'Rates'): 3.98%/yr. A
#: 25% premium gives 5.1%/yr, σ = 35% gives 3.4%/yr; §3 'Cost of debt in model' lists converts
#: at 0–3.5% cash coupon plus this dilution cost.
CONVERTIBLE_DILUTION_PER_YEAR = 0.04


def _admits(annotation: object, kinds: tuple[object, ...]) -> bool:
    """Whether a field's type has one of ``kinds`` anywhere in it (``Any`` admits all)."""
    if annotation is Any or annotation in kinds:
        return True
    return any(_admits(a, kinds) for a in typing.get_args(annotation))


def _holds_bool(value: object) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, list | tuple) and any(_holds_bool(v) for v in value)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        validate_default=True,
        frozen=True,
        json_schema_extra=_add_ranges,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse true/false where a number is expected (pydantic would read it as 1 or 0;
        YAML 1.1 reads ``yes``, ``no``, ``on``, ``off`` as true/false)."""
        if _holds_bool(value) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if _admits(annotation, (int, float)) and not _admits(annotation, (bool,)):
                raise PydanticCustomError(
                    "bool_not_number",
                    "must be a number, not true/false or yes/no",
                )
        return value


# --------------------------------------------------------------------------- horizon
class Horizon(_Model):
    """Planning horizon and discounting."""

    start_date: Annotated[dt.date, Field(ge=EARLIEST_START, le=LATEST_START)]
    """First day of period 0 (ISO date)."""
    years: Annotated[float, Field(gt=0.0, le=40.0)]
    """Length of the horizon [years]; a whole number of periods."""
    period: Literal["quarter", "month"] = "quarter"
    """Period length: ``quarter`` (Δ = 0.25 y) or ``month`` (Δ = 1/12 y)."""
    discount_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.10
    """Annual discount rate of equity cash flows [1/year]."""
    cash_interest_rate: Annotated[float, Field(ge=0.0, le=0.5)] = 0.03
    """Annual interest earned on cash balances [1/year]."""

    @property
    def periods_per_year(self) -> int:
        """Periods per year [1/year]."""
        return 4 if self.period == "quarter" else 12

    @property
    def dt_years(self) -> float:
        """Period length Δ [years]."""
        return 1.0 / self.periods_per_year

    @property
    def n_periods(self) -> int:
        """Number of periods T."""
        return round(self.years * self.periods_per_year)

    @property
    def hours_per_period(self) -> float:
        """Hours in one period, 8760·Δ [h]."""
        return 8760.0 * self.dt_years

    def period_start(self, t: int) -> dt.date:
        """Calendar start of period ``t``."""
        months = t * (12 // self.periods_per_year)
        y, m = divmod(self.start_date.month - 1 + months, 12)
        day = min(self.start_date.day, 28)
        return dt.date(self.start_date.year + y, m + 1, day)


# --------------------------------------------------------------------------- sites
class PowerContract(_Model):
    """How a site buys power."""

    market_indexed_share: Share = 1.0
    """Share of the site's energy bought at the regional market price [0–1]; the rest is fixed-price."""
    fixed_price_usd_per_mwh: UsdPerMwh = 0.0
    """Price of the fixed-price share [$/MWh]."""
    resale_allowed: bool = False
    """Whether unused fixed-price power can be resold at the market price (ERCOT-style)."""


class Conversion(_Model):
    """How a site converts from ASIC mining to AI data-center capacity."""

    block_mw: Annotated[float, Field(gt=0.0, le=1000.0)]
    """Utility MW converted per construction block [MW]."""
    capex_usd_per_it_mw: Annotated[float, Field(ge=1.0e5, le=1.0e8)]
    """Construction cost per MW of IT capacity delivered [$/IT MW]."""
    it_mw_per_utility_mw: Annotated[float, Field(ge=0.1, le=1.0)] = 0.70
    """IT MW obtained per utility MW converted, ρ [IT MW/MW]."""
    lead_time_periods: Annotated[int, Field(ge=0, le=40)] = 4
    """Periods between the start of a block and its IT capacity coming online."""
    max_blocks_per_period: Annotated[int, Field(ge=0, le=100)] = 2
    """Blocks that can be started at this site in one period."""
    opex_usd_per_it_mw_year: UsdPerUnit = 0.0
    """Landlord operating cost of online IT capacity (NNN leases pass power to tenants) [$/IT MW/year]."""


class Site(_Model):
    """One mining site (campus)."""

    name: Name
    """Unique site name."""
    region: Name
    """Power region; must be a key of ``market.power_regions``."""
    interconnect_mw: PositiveMegawatts
    """Utility interconnection capacity [MW]."""
    asic_mw: Megawatts
    """Utility MW of ASICs installed at the start [MW]."""
    efficiency_j_per_th: Annotated[float, Field(ge=1.0, le=200.0)]
    """Fleet-average ASIC efficiency [J/TH]."""
    uptime: Annotated[float, Field(ge=0.01, le=1.0)] = 0.95
    """Share of hours the ASICs can run when it pays [0–1]."""
    power: PowerContract = PowerContract()
    """Power contract."""
    convertible_mw: Megawatts
    """Utility MW that may be converted to AI capacity [MW]."""
    conversion: Conversion
    """Conversion economics."""
    asic_salvage_usd_per_mw: UsdPerUnit = 0.0
    """Resale value of ASICs per utility MW at the end of the horizon [$/MW]."""
    fixed_opex_usd_per_mw_year: UsdPerUnit = 0.0
    """Fixed mining opex per utility MW of ASICs still mining [$/MW/year]."""


class Construction(_Model):
    """Fleet-wide construction limits."""

    max_blocks_per_period: Annotated[int, Field(ge=0, le=1000)] = 4
    """Blocks that can be started across the fleet in one period."""


class GpuRacks(_Model):
    """Option to self-operate GPU racks (GPU cloud) in online IT capacity."""

    enabled: bool = True
    """Whether self-operated racks are allowed."""
    rack_kw: Annotated[float, Field(ge=1.0, le=1000.0)] = 132.0
    """IT power per rack [kW]."""
    gpus_per_rack: Annotated[int, Field(ge=1, le=1000)] = 72
    """GPUs per rack."""
    capex_usd_per_rack: Annotated[float, Field(ge=1.0e4, le=1.0e8)] = 5.5e6
    """All-in purchase cost per rack (GPUs, network, storage) [$/rack]."""
    life_years: Annotated[float, Field(ge=1.0, le=30.0)] = 5.0
    """Economic life of a rack; it earns nothing after [years]."""
    utilization: Share = 0.80
    """Share of GPU-hours sold [0–1]."""
    pue: Annotated[float, Field(ge=1.0, le=3.0)] = 1.15
    """Power usage effectiveness of the racks; power drawn = rack_kw·PUE [-]."""
    opex_usd_per_rack_year: UsdPerUnit = 0.0
    """Operating cost per rack besides power [$/rack/year]."""
    max_racks_per_period: Annotated[int, Field(ge=0, le=100_000)] = 1000
    """Racks that can be installed across the fleet in one period."""


# --------------------------------------------------------------------------- contracts
class LeaseOffer(_Model):
    """A long-term AI lease offer from a tenant."""

    name: Name
    """Unique offer name."""
    tenant: Annotated[str, Field(max_length=200)] = ""
    """Tenant name (for reports)."""
    it_mw: PositiveMegawatts
    """IT capacity leased [IT MW]."""
    rate_usd_per_kw_month: Annotated[float, Field(ge=1.0, le=1000.0)]
    """Rent in the first lease year [$/kW-month of IT]."""
    escalator_per_year: Annotated[float, Field(ge=0.0, le=0.2)] = 0.03
    """Annual rent escalator [1/year]."""
    term_years: Annotated[float, Field(gt=0.0, le=40.0)]
    """Base term of the lease from its start period [years]."""
    earliest_start_period: PeriodIndex = 0
    """First period the lease may start paying rent."""
    deliver_by_period: PeriodIndex
    """Period by which the full IT MW must be online and delivered."""
    late_penalty_usd_per_mw_period: Annotated[float, Field(ge=0.0, le=1.0e8)] = 0.0
    """Penalty per IT MW short per period after ``deliver_by_period`` [$/IT MW/period]."""
    hard_deadline: bool = False
    """If true, delivering late is forbidden instead of penalised."""
    committed: bool = False
    """Already signed: the plan must deliver it (otherwise it is an offer the plan may sign)."""
    eligible_sites: Annotated[list[Name], Field(min_length=1, max_length=MAX_SITES)]
    """Sites (campuses) that can host the lease."""
    single_campus: bool = True
    """Whether the whole lease must sit at one campus."""
    tenant_default_prob_per_year: Annotated[float, Field(ge=0.0, le=0.5)] = 0.01
    """Annual probability that the tenant defaults [1/year]."""


class DebtFacility(_Model):
    """A debt facility that can be drawn to fund conversion."""

    name: Name
    """Unique facility name."""
    kind: Literal["senior_secured", "convertible", "project_loan", "term_loan", "btc_backed"]
    """Instrument kind (for reports; terms below set the cash flows)."""
    size_usd: Annotated[float, Field(ge=1.0e3, le=1.0e12)]
    """Maximum total draws [$]."""
    rate_per_year: Annotated[float, Field(ge=0.0, le=0.5)]
    """Cash interest rate on the outstanding balance [1/year]."""
    draw_start_period: PeriodIndex = 0
    """First period draws are allowed."""
    draw_end_period: PeriodIndex
    """Last period draws are allowed."""
    tenor_years: Annotated[float, Field(gt=0.0, le=40.0)]
    """Years from the end of the draw window to final maturity [years]."""
    repayment: Literal["bullet", "linear"] = "bullet"
    """``bullet``: all principal at maturity; ``linear``: equal principal each period of the tenor."""
    upfront_fee_share: Annotated[float, Field(ge=0.0, lt=0.2)] = 0.0
    """Fee paid on each draw, as a share of the draw [0–1]."""
    covenants: bool = True
    """Whether the maintenance covenants (DSCR, leverage) are in force while it is drawn, from
    the draw start to maturity (convertibles usually carry none)."""
    dilution_cost_per_year: Annotated[float, Field(ge=0.0, le=0.2)] | None = None
    """Cost to shareholders of an embedded conversion option, per year of principal outstanding
    [1/year] (range 0–0.2); default 0.04 for ``kind: convertible`` (see
    :data:`CONVERTIBLE_DILUTION_PER_YEAR`), 0 otherwise. Non-cash: it accrues on the opening
    balance like interest, compounds at the cash rate and is deducted from terminal equity."""

    @property
    def dilution_per_year(self) -> float:
        """Dilution cost in force [1/year]: the field, or the default of the kind."""
        if self.dilution_cost_per_year is not None:
            return self.dilution_cost_per_year
        return CONVERTIBLE_DILUTION_PER_YEAR if self.kind == "convertible" else 0.0


class Covenants(_Model):
    """Debt covenants and liquidity rules, tested per scenario."""

    min_dscr: Annotated[float, Field(ge=0.0, le=10.0)] = 1.25
    """Minimum debt service coverage ratio over the trailing year [-]."""
    max_leverage: Annotated[float, Field(gt=0.0, le=1000.0)] = 6.0
    """Maximum debt / trailing-year EBITDA [-]."""
    min_cash_usd: Usd = 0.0
    """Minimum cash balance at every period end [$]."""
    confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    """Probability weight of scenarios in which the covenants must hold [0–1]."""
    on_breach: Literal["accelerate", "waiver", "ignore"] = "accelerate"
    """What a covenant breach does out of sample: ``accelerate`` (the lender's right: the
    breaching facilities' balance falls due, paid from cash, then treasury BTC and open
    facilities, else default), ``waiver`` (a fee and a rate step-up for the rest of the term) or
    ``ignore`` (no consequence; for comparison only)."""
    waiver_fee: Annotated[float, Field(ge=0.0, le=0.2)] = 0.01
    """Waiver fee per breached test date, as a share of the breaching facilities' balance
    [0–0.2]; amendment fees run 0.25–2% of the facility (typical range 0.0025–0.02)."""
    waiver_step_up_bp: Annotated[float, Field(ge=0.0, le=2000.0)] = 200.0
    """Interest-rate step-up after a waiver, for the rest of the facility's term [bp/year];
    typical range 50–500 bp."""


class Treasury(_Model):
    """BTC treasury and opening cash."""

    btc_held: Btc = 0.0
    """BTC held at the start [BTC]."""
    btc_floor: Btc = 0.0
    """Minimum BTC holding by policy [BTC]."""
    max_btc_sale_per_period: Btc = 0.0
    """Most BTC that may be sold in one period [BTC/period]."""
    cash_usd: Usd = 0.0
    """Cash at the start [$]."""


# --------------------------------------------------------------------------- market
class BtcPrice(_Model):
    """BTC price: Merton jump-diffusion, E[P_t] = P0·e^{μt}."""

    price_usd: Annotated[float, Field(ge=1.0e2, le=1.0e7)]
    """Price at the start, P0 [$/BTC]."""
    drift_per_year: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.10
    """Expected growth rate μ of the price [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=1.5)] = 0.55
    """Diffusion volatility σ [1/√year]; realised 40–55% in 2023–24, 120–150% at the 2017 peak."""
    jump_intensity_per_year: Annotated[float, Field(ge=0.0, le=12.0)] = 0.0
    """Jump intensity λ [1/year]."""
    jump_mean_log: Annotated[float, Field(ge=-0.5, le=0.5)] = 0.0
    """Mean m_J of the log jump size."""
    jump_std_log: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    """Standard deviation s_J of the log jump size."""


class NetworkHashrate(_Model):
    """Network hashrate: growth pulled towards the level at which a marginal fleet breaks even
    (fast down, lagged up), a drift for efficiency gains, shocks and halving steps
    (equation in :mod:`hashpivot.kernels.market`)."""

    hashrate_eh_s: Annotated[float, Field(ge=0.1, le=1.0e6)]
    """Network hashrate at the start [EH/s]."""
    drift_per_year: Annotated[float, Field(ge=-0.5, le=1.0)] = 0.10
    """Drift η of ln H from efficiency gains [1/year]: the marginal fleet's J/TH falls as e^{−ηt},
    so H grows at η with the network's power unchanged and the breakeven hashprice falls at η."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15
    """Volatility σ_H of ln H [1/√year]."""
    marginal_efficiency_j_per_th: Annotated[float, Field(gt=1.0, le=100.0)] = 22.0
    """Efficiency of the marginal fleet at the start, e_m [J/TH] (range 1–100; 19–25 typical)."""
    marginal_power_usd_per_mwh: Annotated[float, Field(gt=0.0, le=500.0)] = 45.0
    """Power cost of the marginal fleet, p_m [$/MWh] (range 0–500; 40–80 typical); breakeven
    hashprice 24·e_m·p_m/1000 [$/PH/day]."""
    down_response_per_year: Annotated[float, Field(ge=0.0, le=100.0)] = 10.0
    """Speed a_down at which hashrate falls towards breakeven when hashprice is below it
    [1/year] (range 0–100; 10 ≈ a 5-week time constant; 0 switches the response off)."""
    up_response_per_year: Annotated[float, Field(ge=0.0, le=50.0)] = 2.0
    """Speed a_up at which hashrate grows towards breakeven when hashprice is above it, after
    ``lag_periods`` [1/year] (range 0–50; 2 ≈ a 6-month time constant; 0 switches it off)."""
    elasticity_to_btc: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    """Optional extra elasticity β of ln H to the demeaned BTC log-return ``lag_periods`` earlier
    [-]; 0 by default, since BTC reaches hashrate through hashprice."""
    lag_periods: Annotated[int, Field(ge=0, le=24)] = 1
    """Lag L of the upward response (ASIC orders, delivery, energization) [periods]."""
    halving_step_log: Annotated[float, Field(ge=-2.0, le=0.0)] = 0.0
    """Extra step added to ln H in a period containing a halving (≤ 0) [-]; 0 by default, since
    the halving reaches hashrate through hashprice."""


class Halving(_Model):
    """Block subsidy schedule by block height (protocol rules)."""

    block_height_at_start: Annotated[int, Field(ge=0, le=5_000_000)]
    """Block height on ``horizon.start_date``."""
    blocks_per_day: Annotated[float, Field(ge=100.0, le=200.0)] = 144.0
    """Blocks mined per day [1/day]."""
    initial_subsidy_btc: Annotated[float, Field(gt=0.0, le=100.0)] = 50.0
    """Subsidy of block 0 [BTC]; halves every ``interval_blocks``."""
    interval_blocks: Annotated[int, Field(ge=100_000, le=1_000_000)] = 210_000
    """Blocks between halvings."""


class PowerRegion(_Model):
    """Regional power price: log Ornstein–Uhlenbeck with stationary mean ``mean_usd_per_mwh``."""

    mean_usd_per_mwh: Annotated[float, Field(ge=1.0, le=1000.0)]
    """Stationary mean of the period power price [$/MWh]."""
    initial_usd_per_mwh: Annotated[float, Field(ge=1.0, le=1000.0)]
    """Power price at the start [$/MWh]."""
    reversion_per_year: Annotated[float, Field(gt=0.0, le=100.0)] = 2.0
    """Mean-reversion speed κ of the log price [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=5.0)] = 0.4
    """Volatility σ of the log price [1/√year]."""
    intra_period_dispersion: Annotated[float, Field(ge=0.0, le=5.0)] = 0.6
    """Lognormal σ_intra of hourly prices around the period price [-]."""


class AiLeaseMarket(_Model):
    """Market lease rate for uncontracted IT capacity: log-OU deviation around a drifting mean."""

    rate_usd_per_kw_month: Annotated[float, Field(ge=1.0, le=1000.0)]
    """Mean market rate at the start [$/kW-month]."""
    mean_drift_per_year: Annotated[float, Field(ge=-0.5, le=0.5)] = 0.0
    """Growth of the mean rate [1/year]; E[L_t] = L0·e^{g t}."""
    reversion_per_year: Annotated[float, Field(gt=0.0, le=100.0)] = 0.5
    """Mean reversion κ of the log deviation [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=3.0)] = 0.2
    """Volatility of the log deviation [1/√year]."""
    releasing_gap_periods: Annotated[int, Field(ge=0, le=40)] = 2
    """Periods a defaulted tenant's MW stay empty before re-leasing at market."""


class AiOccupancy(_Model):
    """Share of uncontracted IT capacity that finds a tenant: logit-OU in (0, 1)."""

    initial: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.7
    """Occupancy at the start [0–1]."""
    mean: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8
    """Long-run level (logistic of the mean logit) [0–1]."""
    reversion_per_year: Annotated[float, Field(gt=0.0, le=100.0)] = 1.0
    """Mean reversion κ of the logit [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=5.0)] = 0.5
    """Volatility of the logit [1/√year]."""


class GpuHour(_Model):
    """Price of a GPU-hour: deterministic decline with lognormal shocks, E[G_t] = G0·(1−d)^t."""

    price_usd: Annotated[float, Field(ge=0.01, le=100.0)]
    """Price at the start [$/GPU-hour]."""
    decline_per_year: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.20
    """Expected decline d [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=3.0)] = 0.25
    """Volatility of the log price [1/√year]."""


class Correlation(_Model):
    """Correlation of the factor shocks; factors not listed are independent."""

    factors: Annotated[list[Name], Field(max_length=64)] = []
    """Factor names: ``btc``, ``hashrate``, ``ai_lease``, ``ai_occupancy``, ``gpu_hour``, ``power:<region>``."""
    matrix: Annotated[list[Annotated[list[float], Field(max_length=64)]], Field(max_length=64)] = []
    """Symmetric, unit-diagonal, positive semi-definite matrix, rows in the order of ``factors``."""


class Market(_Model):
    """Market model of every stochastic factor (DESIGN.md §4)."""

    btc: BtcPrice
    """BTC price."""
    hashrate: NetworkHashrate
    """Network hashrate."""
    halving: Halving
    """Subsidy schedule."""
    fees_btc_per_block: Annotated[float, Field(ge=0.0, le=50.0)] = 0.03
    """Transaction fees per block [BTC/block]."""
    power_regions: Annotated[dict[Name, PowerRegion], Field(min_length=1, max_length=100)]
    """Power price model per region, keyed by region name."""
    ai_lease: AiLeaseMarket
    """Market lease rate for uncontracted IT capacity."""
    ai_occupancy: AiOccupancy = AiOccupancy()
    """Occupancy of uncontracted IT capacity."""
    gpu_hour: GpuHour
    """GPU-hour price for self-operated racks."""
    correlation: Correlation = Correlation()
    """Correlation of the factor shocks."""


# --------------------------------------------------------------------------- objective and run
class Valuation(_Model):
    """Value at the end of the horizon, added to terminal equity: one rule for both uses of a
    site (rule in :mod:`hashpivot.kernels.cashflow`), value = multiple × last-period NOI
    annualised, plus the option to convert the convertible MW still mining."""

    ai_noi_multiple: Annotated[float, Field(ge=0.0, le=30.0)] = 6.0
    """Multiple of last-period annualised AI net operating income (leases, market, racks)
    [years] (range 0–30). Default 6: the annuity factor of 10 years at 10% (6.1), a powered site's
    remaining life after the horizon ([S-lease-terms]: 10–15-yr base terms)."""
    mining_margin_multiple: Annotated[float, Field(ge=0.0, le=30.0)] = 6.0
    """Multiple of last-period annualised mining margin net of fixed opex [years] (range 0–30).
    Default 6, as AI: the same site and NOI are worth the same whatever the use ([E-asic-life]:
    a 10-yr rig lifecycle at Block; set 3–4 for a 3–5-yr ASIC life without refresh)."""
    conversion_option: bool = True
    """Value the convertible MW still mining at the horizon at max(mining value, AI value at the
    market lease rate × occupancy − conversion capex) per MW."""


class Risk(_Model):
    """Risk measure in the objective: maximise E[W] − λ·CVaR_α(−W)."""

    cvar_alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95
    """CVaR level α: the worst 1−α share of outcomes [0–1]."""
    cvar_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    """Weight λ of CVaR in the objective; 0 is risk-neutral [-]."""


class RunDefaults(_Model):
    """Defaults of a run; the command line overrides them."""

    paths: Annotated[int, Field(ge=1, le=10**7)] = 20_000
    """Monte Carlo paths for the coefficients."""
    scenarios: Annotated[int, Field(ge=1, le=4096)] = 16
    """Reduced scenarios K in the MILP."""
    eval_paths: Annotated[int, Field(ge=1, le=10**7)] = 20_000
    """Fresh paths for out-of-sample evaluation."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 20260101
    """Random seed."""
    solver_time_limit_s: Annotated[float, Field(gt=0.0, le=604_800.0)] = 60.0
    """Wall-clock safety net of the MILP solve [s]; the solve itself stops on node budgets."""
    mip_gap: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.001
    """Relative MIP gap at which HiGHS stops [-]."""


class Scenario(_Model):
    """A hashpivot scenario: a miner's fleet, its offers, financing and the market model."""

    name: Annotated[str, Field(pattern=SCENARIO_NAME_PATTERN)]
    """Short scenario name: a plain identifier (letters, digits, ``_``, ``-``; 1 to 64
    characters, starting with a letter or digit), used in default output paths."""
    description: Annotated[str, Field(max_length=1000)] = ""
    """One-line description."""
    horizon: Horizon
    """Planning horizon."""
    sites: Annotated[list[Site], Field(min_length=1, max_length=MAX_SITES)]
    """Sites of the fleet."""
    construction: Construction = Construction()
    """Fleet-wide construction limits."""
    gpu_racks: GpuRacks = GpuRacks()
    """Self-operated GPU rack option."""
    lease_offers: Annotated[list[LeaseOffer], Field(max_length=MAX_LEASE_OFFERS)] = []
    """Lease offers that may be signed."""
    debt_facilities: Annotated[list[DebtFacility], Field(max_length=MAX_DEBT_FACILITIES)] = []
    """Debt facilities that may be drawn."""
    covenants: Covenants = Covenants()
    """Covenants and liquidity rules."""
    treasury: Treasury = Treasury()
    """BTC treasury and cash."""
    market: Market
    """Market model."""
    valuation: Valuation = Valuation()
    """Terminal value."""
    risk: Risk = Risk()
    """Risk measure."""
    defaults: RunDefaults = RunDefaults()
    """Run defaults."""

    @property
    def region_names(self) -> list[str]:
        """Power regions in file order."""
        return list(self.market.power_regions)

    def site_index(self, name: str) -> int:
        """Index of the site called ``name``."""
        return [s.name for s in self.sites].index(name)
