"""Scenario format: pydantic models for every entity of a hashpivot scenario.

Units live in field names (``interconnect_mw``, ``capex_usd_per_it_mw``) and in each field's
docstring. Power is utility (gross) MW unless the name says ``it_mw``; rates are annual unless
the name says otherwise; periods are indices ``0 .. n_periods-1`` of the horizon's periods.

Type and range rules are declared on the fields; rules that span fields (ASIC MW within the
interconnect, lease sites that exist, windows inside the horizon, a valid correlation matrix)
live in :func:`hashpivot.scenarios.validate.cross_field_problems`, so that every problem of a
file is reported at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Factor names the correlation matrix may use; ``power:<region>`` adds one per power region.
MARKET_FACTORS: tuple[str, ...] = ("btc", "hashrate", "ai_lease", "ai_occupancy", "gpu_hour")

PeriodIndex = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        validate_default=True,
        frozen=True,
    )


# --------------------------------------------------------------------------- horizon
class Horizon(_Model):
    """Planning horizon and discounting."""

    start_date: dt.date
    """First day of period 0 (ISO date)."""
    years: Annotated[float, Field(gt=0.0, le=40.0)]
    """Length of the horizon [years]; a whole number of periods."""
    period: Literal["quarter", "month"] = "quarter"
    """Period length: ``quarter`` (Δ = 0.25 y) or ``month`` (Δ = 1/12 y)."""
    discount_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.10
    """Annual discount rate of equity cash flows [1/year]."""
    cash_interest_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.03
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
    fixed_price_usd_per_mwh: NonNeg = 0.0
    """Price of the fixed-price share [$/MWh]."""
    resale_allowed: bool = False
    """Whether unused fixed-price power can be resold at the market price (ERCOT-style)."""


class Conversion(_Model):
    """How a site converts from ASIC mining to AI data-center capacity."""

    block_mw: Positive
    """Utility MW converted per construction block [MW]."""
    capex_usd_per_it_mw: Positive
    """Construction cost per MW of IT capacity delivered [$/IT MW]."""
    it_mw_per_utility_mw: Annotated[float, Field(gt=0.0, le=1.0)] = 0.70
    """IT MW obtained per utility MW converted, ρ [IT MW/MW]."""
    lead_time_periods: Annotated[int, Field(ge=0, le=40)] = 4
    """Periods between the start of a block and its IT capacity coming online."""
    max_blocks_per_period: Annotated[int, Field(ge=0)] = 2
    """Blocks that can be started at this site in one period."""
    opex_usd_per_it_mw_year: NonNeg = 0.0
    """Landlord operating cost of online IT capacity (NNN leases pass power to tenants) [$/IT MW/year]."""


class Site(_Model):
    """One mining site (campus)."""

    name: Annotated[str, Field(min_length=1)]
    """Unique site name."""
    region: Annotated[str, Field(min_length=1)]
    """Power region; must be a key of ``market.power_regions``."""
    interconnect_mw: Positive
    """Utility interconnection capacity [MW]."""
    asic_mw: NonNeg
    """Utility MW of ASICs installed at the start [MW]."""
    efficiency_j_per_th: Annotated[float, Field(gt=0.0, le=200.0)]
    """Fleet-average ASIC efficiency [J/TH]."""
    uptime: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    """Share of hours the ASICs can run when it pays [0–1]."""
    power: PowerContract = PowerContract()
    """Power contract."""
    convertible_mw: NonNeg
    """Utility MW that may be converted to AI capacity [MW]."""
    conversion: Conversion
    """Conversion economics."""
    asic_salvage_usd_per_mw: NonNeg = 0.0
    """Resale value of ASICs per utility MW at the end of the horizon [$/MW]."""
    fixed_opex_usd_per_mw_year: NonNeg = 0.0
    """Fixed mining opex per utility MW of ASICs still mining [$/MW/year]."""


class Construction(_Model):
    """Fleet-wide construction limits."""

    max_blocks_per_period: Annotated[int, Field(ge=0)] = 4
    """Blocks that can be started across the fleet in one period."""


class GpuRacks(_Model):
    """Option to self-operate GPU racks (GPU cloud) in online IT capacity."""

    enabled: bool = True
    """Whether self-operated racks are allowed."""
    rack_kw: Positive = 132.0
    """IT power per rack [kW]."""
    gpus_per_rack: Annotated[int, Field(gt=0)] = 72
    """GPUs per rack."""
    capex_usd_per_rack: Positive = 5.5e6
    """All-in purchase cost per rack (GPUs, network, storage) [$/rack]."""
    life_years: Positive = 5.0
    """Economic life of a rack; it earns nothing after [years]."""
    utilization: Share = 0.80
    """Share of GPU-hours sold [0–1]."""
    pue: Annotated[float, Field(ge=1.0, le=3.0)] = 1.15
    """Power usage effectiveness of the racks; power drawn = rack_kw·PUE [-]."""
    opex_usd_per_rack_year: NonNeg = 0.0
    """Operating cost per rack besides power [$/rack/year]."""
    max_racks_per_period: Annotated[int, Field(ge=0)] = 1000
    """Racks that can be installed across the fleet in one period."""


# --------------------------------------------------------------------------- contracts
class LeaseOffer(_Model):
    """A long-term AI lease offer from a tenant."""

    name: Annotated[str, Field(min_length=1)]
    """Unique offer name."""
    tenant: str = ""
    """Tenant name (for reports)."""
    it_mw: Positive
    """IT capacity leased [IT MW]."""
    rate_usd_per_kw_month: Positive
    """Rent in the first lease year [$/kW-month of IT]."""
    escalator_per_year: Annotated[float, Field(ge=0.0, le=0.2)] = 0.03
    """Annual rent escalator [1/year]."""
    term_years: Annotated[float, Field(gt=0.0, le=40.0)]
    """Base term of the lease from its start period [years]."""
    earliest_start_period: PeriodIndex = 0
    """First period the lease may start paying rent."""
    deliver_by_period: PeriodIndex
    """Period by which the full IT MW must be online and delivered."""
    late_penalty_usd_per_mw_period: NonNeg = 0.0
    """Penalty per IT MW short per period after ``deliver_by_period`` [$/IT MW/period]."""
    hard_deadline: bool = False
    """If true, delivering late is forbidden instead of penalised."""
    committed: bool = False
    """Already signed: the plan must deliver it (otherwise it is an offer the plan may sign)."""
    eligible_sites: Annotated[list[str], Field(min_length=1)]
    """Sites (campuses) that can host the lease."""
    single_campus: bool = True
    """Whether the whole lease must sit at one campus."""
    tenant_default_prob_per_year: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.01
    """Annual probability that the tenant defaults [1/year]."""


class DebtFacility(_Model):
    """A debt facility that can be drawn to fund conversion."""

    name: Annotated[str, Field(min_length=1)]
    """Unique facility name."""
    kind: Literal["senior_secured", "convertible", "project_loan", "term_loan", "btc_backed"]
    """Instrument kind (for reports; terms below set the cash flows)."""
    size_usd: Positive
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


class Covenants(_Model):
    """Debt covenants and liquidity rules, tested per scenario."""

    min_dscr: NonNeg = 1.25
    """Minimum debt service coverage ratio over the trailing year [-]."""
    max_leverage: Positive = 6.0
    """Maximum debt / trailing-year EBITDA [-]."""
    min_cash_usd: NonNeg = 0.0
    """Minimum cash balance at every period end [$]."""
    confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    """Probability weight of scenarios in which the covenants must hold [0–1]."""


class Treasury(_Model):
    """BTC treasury and opening cash."""

    btc_held: NonNeg = 0.0
    """BTC held at the start [BTC]."""
    btc_floor: NonNeg = 0.0
    """Minimum BTC holding by policy [BTC]."""
    max_btc_sale_per_period: NonNeg = 0.0
    """Most BTC that may be sold in one period [BTC/period]."""
    cash_usd: NonNeg = 0.0
    """Cash at the start [$]."""


# --------------------------------------------------------------------------- market
class BtcPrice(_Model):
    """BTC price: Merton jump-diffusion, E[P_t] = P0·e^{μt}."""

    price_usd: Positive
    """Price at the start, P0 [$/BTC]."""
    drift_per_year: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.10
    """Expected growth rate μ of the price [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=3.0)] = 0.55
    """Diffusion volatility σ [1/√year]."""
    jump_intensity_per_year: Annotated[float, Field(ge=0.0, le=50.0)] = 0.0
    """Jump intensity λ [1/year]."""
    jump_mean_log: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    """Mean m_J of the log jump size."""
    jump_std_log: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0
    """Standard deviation s_J of the log jump size."""


class NetworkHashrate(_Model):
    """Network hashrate: log drift and volatility, elasticity to lagged BTC returns, halving steps."""

    hashrate_eh_s: Positive
    """Network hashrate at the start [EH/s]."""
    drift_per_year: Annotated[float, Field(ge=-1.0, le=2.0)] = 0.25
    """Drift g of ln H [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=3.0)] = 0.15
    """Volatility σ_H of ln H [1/√year]."""
    elasticity_to_btc: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.3
    """Elasticity β of ln H to the demeaned BTC log-return ``lag_periods`` earlier [-]."""
    lag_periods: Annotated[int, Field(ge=0, le=24)] = 1
    """Lag ℓ of the hashrate response to BTC returns [periods]."""
    halving_step_log: Annotated[float, Field(ge=-2.0, le=0.0)] = 0.0
    """Step added to ln H in a period containing a halving (≤ 0) [-]."""


class Halving(_Model):
    """Block subsidy schedule by block height (protocol rules)."""

    block_height_at_start: Annotated[int, Field(ge=0)]
    """Block height on ``horizon.start_date``."""
    blocks_per_day: Positive = 144.0
    """Blocks mined per day [1/day]."""
    initial_subsidy_btc: Positive = 50.0
    """Subsidy of block 0 [BTC]; halves every ``interval_blocks``."""
    interval_blocks: Annotated[int, Field(gt=0)] = 210_000
    """Blocks between halvings."""


class PowerRegion(_Model):
    """Regional power price: log Ornstein–Uhlenbeck with stationary mean ``mean_usd_per_mwh``."""

    mean_usd_per_mwh: Positive
    """Stationary mean of the period power price [$/MWh]."""
    initial_usd_per_mwh: Positive
    """Power price at the start [$/MWh]."""
    reversion_per_year: Annotated[float, Field(gt=0.0, le=100.0)] = 2.0
    """Mean-reversion speed κ of the log price [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=5.0)] = 0.4
    """Volatility σ of the log price [1/√year]."""
    intra_period_dispersion: Annotated[float, Field(ge=0.0, le=5.0)] = 0.6
    """Lognormal σ_intra of hourly prices around the period price [-]."""


class AiLeaseMarket(_Model):
    """Market lease rate for uncontracted IT capacity: log-OU deviation around a drifting mean."""

    rate_usd_per_kw_month: Positive
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

    price_usd: Positive
    """Price at the start [$/GPU-hour]."""
    decline_per_year: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.20
    """Expected decline d [1/year]."""
    vol_per_year: Annotated[float, Field(ge=0.0, le=3.0)] = 0.25
    """Volatility of the log price [1/√year]."""


class Correlation(_Model):
    """Correlation of the factor shocks; factors not listed are independent."""

    factors: list[str] = []
    """Factor names: ``btc``, ``hashrate``, ``ai_lease``, ``ai_occupancy``, ``gpu_hour``, ``power:<region>``."""
    matrix: list[list[float]] = []
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
    power_regions: Annotated[dict[str, PowerRegion], Field(min_length=1)]
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
    """Value at the end of the horizon, added to terminal equity."""

    ai_noi_multiple: NonNeg = 8.0
    """Multiple of last-period annualised AI net operating income (leases, market, racks) [years]."""
    mining_margin_multiple: NonNeg = 0.0
    """Multiple of last-period annualised mining margin net of fixed opex [years]."""


class Risk(_Model):
    """Risk measure in the objective: maximise E[W] − λ·CVaR_α(−W)."""

    cvar_alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95
    """CVaR level α: the worst 1−α share of outcomes [0–1]."""
    cvar_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    """Weight λ of CVaR in the objective; 0 is risk-neutral [-]."""


class RunDefaults(_Model):
    """Defaults of a run; the command line overrides them."""

    paths: Annotated[int, Field(gt=0, le=10**9)] = 20_000
    """Monte Carlo paths for the coefficients."""
    scenarios: Annotated[int, Field(gt=0, le=4096)] = 16
    """Reduced scenarios K in the MILP."""
    eval_paths: Annotated[int, Field(gt=0, le=10**9)] = 20_000
    """Fresh paths for out-of-sample evaluation."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 20260101
    """Random seed."""
    solver_time_limit_s: Annotated[float, Field(gt=0.0)] = 60.0
    """Wall-clock safety net of the MILP solve [s]; the solve itself stops on node budgets."""
    mip_gap: Annotated[float, Field(ge=0.0, le=1.0)] = 0.001
    """Relative MIP gap at which HiGHS stops [-]."""


class Scenario(_Model):
    """A hashpivot scenario: a miner's fleet, its offers, financing and the market model."""

    name: Annotated[str, Field(min_length=1)]
    """Short scenario name."""
    description: str = ""
    """One-line description."""
    horizon: Horizon
    """Planning horizon."""
    sites: Annotated[list[Site], Field(min_length=1)]
    """Sites of the fleet."""
    construction: Construction = Construction()
    """Fleet-wide construction limits."""
    gpu_racks: GpuRacks = GpuRacks()
    """Self-operated GPU rack option."""
    lease_offers: list[LeaseOffer] = []
    """Lease offers that may be signed."""
    debt_facilities: list[DebtFacility] = []
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
