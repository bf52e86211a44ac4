"""Outputs of ``hashpivot optimize`` (DESIGN.md §7): files, charts and an HTML report.

``plan.json`` (the decisions; the input of ``evaluate``), ``plan.csv``, ``financing.csv``,
``summary.json``, ``simulation.json``, SVG charts and ``report.html`` (``evaluate``: PNG charts),
written into a temporary directory that replaces the output directory only when complete.

``report.html`` is one self-contained file (charts embedded as ``data:`` URIs, no external
style or script) written for a CFO or a lender: what the plan means in words at the top, a
warning box when the solver stopped far from the best plan, then the plan with dates, value and
risk, covenants over time, yearly operating results, capex with sources and uses, the debt
schedule, the BTC treasury and the market assumptions.
"""

from __future__ import annotations

import dataclasses
import html
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashpivot.kernels.cashflow import cash_flows, covenant_terms, operating_flows
from hashpivot.kernels.plan import Schedule, schedule
from hashpivot.scenarios import Scenario

from .baselines import POLICIES
from .charts import (
    PALETTE,
    WIDTH_IN,
    candidates_chart,
    data_uri,
    date_axis,
    finish,
    market_chart,
    new_figure,
    period_label,
    period_x,
    save,
    single_axes,
    title,
)
from .outputs import atomic_output_dir, write_json
from .pipeline import EvaluateResult, OptimizeResult
from .wording import HEADING, Part, WordTable, how_sure_parts, rate

COLORS = {
    "plan": "#1f77b4",
    "stay_mining": "#7f7f7f",
    "convert_all": "#d62728",
    "greedy": "#2ca02c",
    "expected_value": "#9467bd",
    "convert_all_expected_cash": "#ff7f0e",
    "greedy_expected_cash": "#8c564b",
}
MARKERS = {
    "plan": "o",
    "stay_mining": "s",
    "convert_all": "^",
    "greedy": "D",
    "expected_value": "v",
}
LINESTYLES = {
    "plan": "-",
    "stay_mining": "--",
    "convert_all": "-.",
    "greedy": ":",
    "expected_value": (0, (5, 1, 1, 1)),
}
#: Paired z above which the plan is called better than a baseline ("3 standard errors").
Z_SURE = 3.0
#: Weighted quantiles of the covenant ratios across the K scenarios.
BAND_QUANTILES = (0.05, 0.5, 0.95)
#: Rounding allowance on cumulative weights when locating a quantile.
QUANTILE_TOL = 1e-12
#: Site panels in the capacity chart; beyond, the fleet total and the sites converting most.
MAX_SITE_PANELS = 6
#: Points drawn on each equity distribution curve (quantiles of the sample).
ECDF_POINTS = 401
#: Tail equity below this share of the mean equity reads "all but wiped out".
WIPED_OUT_SHARE = 0.01
#: Quantities below this are shown as zero in tables [$].
ZERO_USD = 0.5


# --------------------------------------------------------------------------- numbers
def weighted_quantiles(x: np.ndarray, weights: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Weighted quantiles along axis 0 of ``x`` (n, T), NaN ignored: shape (len(qs), T).

    The q-quantile is the smallest value whose cumulative weight reaches q (NaN where a column
    has no finite-or-infinite value).
    """
    x = np.asarray(x, dtype=float)
    out = np.full((len(qs), x.shape[1]), np.nan)
    for t in range(x.shape[1]):
        ok = ~np.isnan(x[:, t])
        if not ok.any():
            continue
        order = np.argsort(x[ok, t], kind="stable")
        v, w = x[ok, t][order], weights[ok][order]
        cum = np.cumsum(w) / w.sum()
        for j, q in enumerate(qs):
            out[j, t] = v[min(int(np.searchsorted(cum, q - QUANTILE_TOL)), len(v) - 1)]
    return out


@dataclass
class ReportNumbers:
    """In-sample numbers of a plan on the MILP's K reduced scenarios (weighted), by period.

    Money arrays are weighted means over the scenarios [$ per period], ``(T,)``; ratios are
    weighted quantiles ``(3, T)`` (5%, 50%, 95%), NaN where no covenant is tested.
    """

    x: np.ndarray  # decimal years of the period starts
    dates: list[str]  # ISO period starts
    years: np.ndarray  # calendar year of each period start
    sch: Schedule
    mining_margin_usd: np.ndarray  # after power, before fixed mining opex
    mining_fixed_opex_usd: np.ndarray
    lease_usd: np.ndarray
    market_usd: np.ndarray
    racks_usd: np.ndarray  # net of rack power and opex
    it_opex_usd: np.ndarray
    penalties_usd: np.ndarray
    ebitda_usd: np.ndarray  # operating cash flow (OCF)
    btc_sales_usd: np.ndarray
    cash_end_usd: float
    dscr: np.ndarray  # (K, T) trailing-year DSCR where tested with debt service, else NaN
    leverage: np.ndarray  # (K, T) debt / annualised trailing OCF where tested (inf: OCF ≤ 0)
    dscr_q: np.ndarray
    leverage_q: np.ndarray
    tested: np.ndarray  # (T,) bool


def report_numbers(sc: Scenario, plan: Any, red: Any) -> ReportNumbers:
    """Cash flows, covenant ratios and operating results by use of ``plan`` on ``red``."""
    coeffs = red.coefficient_arrays()
    w = np.asarray(red.weights, dtype=float)
    w = w / w.sum()
    cf = cash_flows(sc, plan, coeffs)
    sch = cf.schedule
    h = sc.horizon
    ppy, n_t = h.periods_per_year, h.n_periods

    def ai_revenue_without(*uses: str) -> np.ndarray:
        """AI revenue of the schedule with the capacity of ``uses`` set to zero (by the kernel)."""
        s = dataclasses.replace(sch, **{k: np.zeros_like(getattr(sch, k)) for k in uses})
        return np.asarray(operating_flows(sc, s, coeffs).ai_revenue_usd)

    lease = ai_revenue_without("racks_active", "market_it_mw")
    racks = ai_revenue_without("lease_total_it_mw", "market_it_mw")
    market = ai_revenue_without("lease_total_it_mw", "racks_active")
    op = operating_flows(sc, sch, coeffs)
    ai_rev, ai_noi = np.asarray(op.ai_revenue_usd), np.asarray(op.ai_noi_usd)
    gross, mining = np.asarray(op.gross_mining_usd), np.asarray(op.mining_usd)
    ocf = np.asarray(op.ocf_usd)
    ct = covenant_terms(sc, plan, sch, ocf)
    tested = np.asarray(ct.tested, dtype=bool)
    ds = np.asarray(ct.service_trail_usd)
    ocf_trail = np.asarray(ct.ocf_trail_usd)
    with np.errstate(divide="ignore", invalid="ignore"):
        dscr = np.where((tested & (ds > 0))[None], ocf_trail / np.where(ds > 0, ds, 1.0), np.nan)
        window = np.minimum(np.arange(n_t) + 1, ppy)
        annual = ocf_trail * (ppy / window)[None]
        debt = np.asarray(ct.debt_usd)[None] * np.ones_like(annual)
        lev = np.where(annual > 0, debt / np.where(annual > 0, annual, 1.0), np.inf)
        lev = np.where(tested[None] & (debt > 0), lev, np.nan)
    btc = np.asarray(coeffs["btc_price_usd"])
    dates = [str(h.period_start(t)) for t in range(n_t)]
    return ReportNumbers(
        x=period_x(dates),
        dates=dates,
        years=np.array([int(d[:4]) for d in dates]),
        sch=sch,
        mining_margin_usd=w @ gross,
        mining_fixed_opex_usd=w @ (gross - mining),
        lease_usd=w @ lease,
        market_usd=w @ market,
        racks_usd=w @ racks,
        it_opex_usd=w @ (ai_rev - ai_noi),
        penalties_usd=w @ (mining + ai_noi - ocf),
        ebitda_usd=w @ ocf,
        btc_sales_usd=(w @ btc) * np.asarray(plan.btc_sold),
        cash_end_usd=float(w @ np.asarray(cf.cash_usd)[:, -1]),
        dscr=dscr,
        leverage=lev,
        dscr_q=weighted_quantiles(dscr, w, BAND_QUANTILES),
        leverage_q=weighted_quantiles(lev, w, BAND_QUANTILES),
        tested=tested,
    )


def period_end(x: np.ndarray) -> np.ndarray:
    """Decimal years of the period ends, from those of the period starts."""
    dt = float(x[1] - x[0]) if len(x) > 1 else 0.25
    return x + dt


def by_year(years: np.ndarray, values: np.ndarray) -> dict[int, float]:
    """Sum of per-period ``values`` by calendar year."""
    out: dict[int, float] = {}
    for y, v in zip(years.tolist(), np.asarray(values).tolist(), strict=True):
        out[y] = out.get(y, 0.0) + v
    return out


# --------------------------------------------------------------------------- charts
def mw_by_use_chart(path: Path, res: OptimizeResult, x: np.ndarray | None = None) -> Path:
    """Per site, lines (never stacked): ASIC utility MW mining against IT MW by use."""
    sc = res.scenario
    sch = schedule(sc, res.plan)
    if x is None:
        x = period_x([sc.horizon.period_start(t) for t in range(sc.horizon.n_periods)])
    lease = res.plan.lease_it_mw.sum(axis=0)  # (S, T)
    uses = np.stack(
        [
            sch.asic_mw,
            sch.it_online_mw,
            sch.converting_mw,
            lease,
            sch.rack_it_mw,
            np.maximum(sch.market_it_mw, 0.0),
        ]
    )  # (6, S, T)
    caps = np.array([s.interconnect_mw for s in sc.sites])
    panels: list[tuple[str, np.ndarray, float]] = []
    n = len(sc.sites)
    if n > MAX_SITE_PANELS:  # the fleet, then the sites that convert most
        panels.append((f"fleet ({n} sites)", uses.sum(axis=1), float(caps.sum())))
        order = np.lexsort((-caps, -sch.it_online_mw[:, -1]))[: MAX_SITE_PANELS - 1]
    else:
        order = np.arange(n)
    panels += [(sc.sites[i].name, uses[:, i], float(caps[i])) for i in order]
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    height = 0.7 + 2.3 * rows
    fig, axes = new_figure(WIDTH_IN, height, nrows=rows, ncols=cols, squeeze=False, sharex=True)
    fig.subplots_adjust(
        left=0.06,
        right=0.79,
        top=1 - 0.55 / height,
        bottom=0.4 / height,
        hspace=0.3,
        wspace=0.15,
    )
    styles = (
        ("ASIC mining [utility MW]", "#f2a900", "-", 2.2),
        ("IT online [IT MW]", "#1f77b4", "-", 2.0),
        ("under construction [IT MW]", "#888888", ":", 1.4),
        ("leased [IT MW]", "#2ca02c", "--", 1.6),
        ("own GPU racks [IT MW]", "#9467bd", "-.", 1.4),
        ("market leasing [IT MW]", "#17becf", "--", 1.2),
    )
    for k, (name, u, cap) in enumerate(panels):
        ax = axes[k // cols][k % cols]
        for (label, color, ls, lw), y in zip(styles, u, strict=True):
            ax.step(x, y, where="post", color=color, ls=ls, lw=lw, label=label)
        title(ax, name, 9)
        ax.set_ylim(-0.03 * cap, 1.05 * cap)
        date_axis(ax, x)
        if k % cols == 0:
            ax.set_ylabel("MW", fontsize=8)
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    more = f"; {n - len(order)} more sites in plan.csv" if len(order) < n else ""
    fig.suptitle(
        "Capacity by use: ASIC in utility MW (from the grid), IT in IT MW; lines, not stacked"
        + more,
        fontsize=10,
    )
    return save(fig, path)


def equity_chart(path: Path, stats: dict) -> Path:
    """Distribution of discounted terminal equity: the plan against each baseline (ECDF)."""
    fig, ax = single_axes()
    levels = np.linspace(0.0, 1.0, ECDF_POINTS)
    for name, st in stats.items():
        w = np.quantile(st.equity_sample_usd, levels) / 1e6
        ax.plot(
            w,
            levels,
            lw=2.2 if name == "plan" else 1.4,
            color=COLORS.get(name),
            ls=LINESTYLES.get(name, "-"),
            label=f"{name} (mean {st.mean_equity_usd / 1e6:,.0f} $M)",
        )
    lo = min(np.quantile(st.equity_sample_usd, 0.005) for st in stats.values()) / 1e6
    hi = max(np.quantile(st.equity_sample_usd, 0.99) for st in stats.values()) / 1e6
    ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))  # the top 1% stretches the axis
    return finish(
        fig,
        ax,
        path,
        "Terminal equity out of sample (same paths for every policy)",
        "share of paths ≤ x",
        xlabel="discounted terminal equity [$M] (0.5–99% of paths shown)",
    )


def ai_share_chart(path: Path, x: np.ndarray, stats: dict) -> Path:
    """Mean share of AI in operating revenue over time; y padded so 0% and 100% stay visible."""
    fig, ax = single_axes()
    every = max(1, len(x) // 10)
    for k, (name, st) in enumerate(stats.items()):
        ax.plot(
            x,
            100 * st.ai_share_mean,
            color=COLORS.get(name, PALETTE[k % len(PALETTE)]),
            lw=2.2 if name == "plan" else 1.4,
            ls=LINESTYLES.get(name, "-"),
            marker=MARKERS.get(name, "x"),
            markevery=(k % every, every),
            markersize=5,
            label=name,
        )
    ax.set_ylim(-6, 106)
    return finish(
        fig,
        ax,
        path,
        "AI share of operating revenue (mean over out-of-sample paths)",
        "AI share of revenue [%]",
        x=x,
    )


def cash_debt_chart(
    path: Path,
    x: np.ndarray,
    stats: dict,
    plan_name: str = "plan",
    min_cash_usd: float | None = None,
) -> Path:
    """Cash of the plan (5–95% band, median) against the minimum-cash line, and mean debt.

    ``x`` are the period starts; balances are drawn at the period ends.
    """
    x = period_end(x)
    fig, ax = single_axes(3.6)
    st = stats[plan_name]
    q = st.cash_quantiles_usd / 1e6
    ax.fill_between(
        x, q[0], q[2], color=COLORS["plan"], alpha=0.18, lw=0, label="cash 5–95% of paths"
    )
    ax.plot(x, q[0], color=COLORS["plan"], lw=0.7)
    ax.plot(x, q[1], color=COLORS["plan"], lw=2, label="cash median")
    ax.plot(x, st.debt_mean_usd / 1e6, color="black", lw=1.8, ls="--", label="debt (mean)")
    if min_cash_usd is not None:
        ax.axhline(
            min_cash_usd / 1e6,
            color="#8b0000",
            lw=2.2,
            ls=(0, (1, 1)),
            label=f"minimum cash ({_money(min_cash_usd)} $M)",
        )
    ax.axhline(0.0, color="#444444", lw=0.6)
    for name, other in stats.items():
        if name != plan_name:
            ax.plot(
                x,
                other.cash_quantiles_usd[1] / 1e6,
                color=COLORS.get(name),
                ls=LINESTYLES.get(name, "-"),
                lw=1,
                label=f"{name} cash median",
            )
    return finish(
        fig,
        ax,
        path,
        f"Cash at period end, {plan_name}, out of sample, against the minimum cash",
        "$M",
        x=x,
        xlabel="period end",
    )


def covenant_chart(path: Path, nums: ReportNumbers, sc: Scenario) -> Path:
    """Trailing-year DSCR and leverage (5/50/95% across the K scenarios) against the covenants."""
    fig, (a1, a2) = new_figure(WIDTH_IN, 3.5, ncols=2)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.85, bottom=0.22, wspace=0.15)
    cov = sc.covenants
    x = period_end(nums.x)  # trailing-year ratios at the end of each period
    for ax, q, level, name, worse in (
        (a1, nums.dscr_q, cov.min_dscr, "DSCR (trailing-year OCF / debt service)", "below"),
        (a2, nums.leverage_q, cov.max_leverage, "Leverage (debt / annualised OCF)", "above"),
    ):
        if np.isnan(q).all():
            ax.text(
                0.5,
                0.5,
                "not tested: no covenant-bearing\ndebt outstanding",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=9,
            )
            ax.set_ylim(0, 2 * level)
        else:
            cap = 3.0 * level
            qq = np.clip(q, 0.0 if worse == "below" else -cap, cap)  # inf (OCF ≤ 0) at the top
            ax.fill_between(
                x, qq[0], qq[2], color="#1f77b4", alpha=0.2, lw=0, label="5–95% of K scenarios"
            )
            ax.plot(x, qq[1], color="#1f77b4", lw=2, marker=".", label="weighted median")
            top = min(cap, max(1.5 * level, 1.1 * float(np.nanmax(qq))))
            ax.set_ylim(min(0.0, float(np.nanmin(qq))), top * 1.05)
        ax.axhline(
            level,
            color="#d62728",
            lw=1.5,
            ls="--",
            label=f"covenant: {'min' if worse == 'below' else 'max'} {level:g}×",
        )
        title(ax, name, 9)
        date_axis(ax, x)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    fig.suptitle(
        "Covenants over time on the optimizer's K reduced scenarios (weighted quantiles; "
        "ratios beyond 3× the covenant drawn at the top)",
        fontsize=10,
    )
    return save(fig, path)


def yearly_chart(path: Path, nums: ReportNumbers, sch: Schedule, plan: Any) -> Path:
    """Yearly operating margin by use with EBITDA; capex against its sources."""
    years = sorted(set(nums.years.tolist()))
    yx = np.arange(len(years))

    def yr(v: np.ndarray) -> np.ndarray:
        d = by_year(nums.years, v)
        return np.array([d[y] for y in years]) / 1e6

    fig, (a1, a2) = new_figure(WIDTH_IN, 3.7, ncols=2)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.86, bottom=0.25, wspace=0.15)
    parts = (
        ("mining (after power)", nums.mining_margin_usd, "#f2a900"),
        ("AI leases", nums.lease_usd, "#2ca02c"),
        ("market IT", nums.market_usd, "#17becf"),
        ("own GPU racks (net)", nums.racks_usd, "#9467bd"),
        (
            "opex & penalties",
            -(nums.mining_fixed_opex_usd + nums.it_opex_usd + nums.penalties_usd),
            "#bbbbbb",
        ),
    )
    pos, neg = np.zeros(len(years)), np.zeros(len(years))
    for label, v, color in parts:
        y = yr(v)
        bottom = np.where(y >= 0, pos, neg)
        a1.bar(yx, y, bottom=bottom, color=color, width=0.7, label=label)
        pos, neg = pos + np.maximum(y, 0), neg + np.minimum(y, 0)
    a1.plot(yx, yr(nums.ebitda_usd), color="black", marker="o", lw=1.5, label="EBITDA (OCF)")
    a1.set_ylim(min(neg.min(), 0.0) * 1.1 - 1e-9, max(pos.max(), 0.0) * 1.1 + 1e-9)
    title(a1, "Operating results by use [$M per year]", 9)
    sources = (
        ("debt draws", plan.draws_usd.sum(axis=0), "#1f77b4"),
        ("BTC sales", nums.btc_sales_usd, "#f2a900"),
    )
    width = 0.27
    a2.bar(yx - width, yr(sch.capex_usd), width=width, color="#d62728", label="capex")
    for k, (label, v, color) in enumerate(sources):
        a2.bar(yx + k * width, yr(v), width=width, color=color, label=label)
    a2.plot(yx, yr(nums.ebitda_usd), color="black", marker="o", lw=1.2, label="EBITDA (OCF)")
    title(a2, "Capex and its sources [$M per year]", 9)
    step = max(1, len(years) // 12)
    for ax in (a1, a2):
        ax.set_xticks(yx[::step], [str(y) for y in years[::step]], fontsize=8)
        ax.axhline(0, color="#444444", lw=0.6)
        ax.grid(False, axis="x")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3)
    fig.suptitle(
        "Calendar years; weighted mean over the optimizer's K reduced scenarios (no recourse)",
        fontsize=10,
    )
    return save(fig, path)


def report_charts(
    tmp: Path,
    res: OptimizeResult,
    nums: ReportNumbers,
    validation: dict[str, Any] | None = None,
) -> list[tuple[str, Path]]:
    """Every chart of ``report.html`` written as SVG into ``tmp``: (section id, path) pairs;
    ``validation`` (``summary["validation"]``) adds the candidates of the replications."""
    sc = res.scenario
    stats = res.evaluation.stats
    x = nums.x
    reps = (validation or {}).get("replications")
    extra = []
    if reps and len(reps.get("candidates") or []) > 1:
        extra.append(
            (
                "how-sure",
                candidates_chart(tmp / "candidates.svg", reps["candidates"], int(reps["chosen"])),
            )
        )
    return extra + [
        ("plan", mw_by_use_chart(tmp / "mw_by_use.svg", res, x)),
        (
            "cash",
            cash_debt_chart(
                tmp / "cash_debt.svg", x, stats, min_cash_usd=sc.covenants.min_cash_usd
            ),
        ),
        ("covenants", covenant_chart(tmp / "covenants.svg", nums, sc)),
        ("yearly", yearly_chart(tmp / "yearly.svg", nums, nums.sch, res.plan)),
        ("value", equity_chart(tmp / "equity_distribution.svg", stats)),
        ("value", ai_share_chart(tmp / "ai_share.svg", x, stats)),
        ("market", market_chart(tmp / "market.svg", res.simulation)),
    ]


# --------------------------------------------------------------------------- html pieces
def _label(h: Any, t_or_date: int | str) -> str:
    """``2027 Q3`` (quarters) or ``2027-08`` (months) for period ``t`` or a start date."""
    d = h.period_start(t_or_date) if isinstance(t_or_date, int) else t_or_date
    return period_label(d, h.periods_per_year)


def _money(x: float) -> str:
    """$M with one decimal (``-0.0`` shown as ``0.0``)."""
    return f"{x / 1e6 + 0.0:,.1f}"


def _m(x: float) -> str:
    return "—" if abs(x) < ZERO_USD else _money(x)


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table class='{cls}'><tr>{head}</tr>\n{body}</table>"


def _with_se(x_usd: float, se_usd: float | None) -> str:
    """``424.8 ± 2.3`` [$M], or the number alone where it has no standard error (in sample)."""
    return _money(x_usd) if se_usd is None else f"{_money(x_usd)} ± {_money(se_usd)}"


def _stats_rows(stats: dict) -> list[list[str]]:
    """Rows of the value-and-risk table: the objective with its own standard error (CVaR term
    included), the mean with its standard error, CVaR and the rates."""
    return [
        [
            _esc(name),
            _with_se(st["objective_usd"], st.get("objective_stderr_usd")),
            (
                f"{_money(st['mean_equity_usd'])} ± {_money(st['stderr_usd'])}"
                if st.get("stderr_usd") is not None
                else _money(st["mean_equity_usd"])
            ),
            _money(st["cvar_usd"]),
            f"{st['p_default']:.2%}",
            f"{st['p_breach']:.2%}",
            f"{st.get('p_min_cash_breach', 0.0):.2%}",
        ]
        for name, st in stats.items()
    ]


def _float(x: Any) -> float:
    """A summary number, NaN when absent (``None``)."""
    return math.nan if x is None else float(x)


def gap_warning(summary: dict, sc: Scenario) -> str | None:
    """Words for the warning box when the solver stopped short of its target gap (or None)."""
    s = summary.get("solver", {})
    gap = _float(s.get("gap"))
    target = s.get("target_gap")
    gap_ok = s.get("gap_ok")
    if gap_ok is None:
        limit = float(target) if target is not None else sc.defaults.mip_gap
        gap_ok = str(s.get("status")) == "optimal" or gap <= limit
    elif target is not None and math.isfinite(gap) and gap > float(target):
        gap_ok = False
    if gap_ok:
        return None
    aim = f" (target {float(target):.2%})" if target is not None else ""
    status = _esc(s.get("status", "?"))
    bound, obj = _float(s.get("bound_usd")), _float(s.get("objective_usd"))
    if math.isfinite(gap) and math.isfinite(bound) and math.isfinite(obj):
        where = (
            f"at a gap of {gap:.2%}{aim}: a plan worth up to {gap:.1%} more may exist (the "
            f"solver's bound is {_money(bound)} $M against this plan's {_money(obj)} $M)"
        )
    else:
        where = f"without a proven gap{aim}: nothing says how far the best plan may be"
    return (
        f"The solver stopped with status '{status}' {where}. To close the gap, give the solver "
        "more time (raise <code>--time-limit</code>) or a smaller model (fewer "
        "<code>--scenarios</code>), and compare the plans."
    )


def _sites_rows(res: OptimizeResult) -> list[list[str]]:
    sc = res.scenario
    h = sc.horizon
    sch = schedule(sc, res.plan)
    rows = []
    for i, s in enumerate(sc.sites):
        blocks = res.plan.blocks[i]
        started = [f"{_label(h, t)} ({int(b)})" for t, b in enumerate(blocks) if b > 0]
        online = sch.it_online_mw[i]
        full = np.flatnonzero(online >= online[-1] - 1e-6)
        when = _label(h, int(full[0])) if online[-1] > 1e-6 else "—"
        rows.append(
            [
                _esc(s.name),
                f"{int(blocks.sum())} × {s.conversion.block_mw:g}",
                ", ".join(started) or "—",
                when,
                f"{online[-1]:,.0f}",
                f"{res.plan.lease_it_mw[:, i, -1].sum():,.0f}",
                f"{sch.racks_active[i, -1]:,.0f}",
                f"{sch.asic_mw[i, -1]:,.0f}",
            ]
        )
    return rows


def _timeline_rows(res: OptimizeResult) -> list[list[str]]:
    """Periods in which the plan does something, with their start dates."""
    sc, plan = res.scenario, res.plan
    h = sc.horizon
    rows = []
    for t in range(h.n_periods):
        what = []
        for i, s in enumerate(sc.sites):
            if plan.blocks[i, t]:
                what.append(f"start {int(plan.blocks[i, t])} block(s) at {_esc(s.name)}")
            if plan.racks_new[i, t]:
                what.append(f"install {int(plan.racks_new[i, t])} GPU racks at {_esc(s.name)}")
        for f, name in enumerate(plan.facility_names):
            if plan.draws_usd[f, t] > ZERO_USD:
                what.append(f"draw {_money(plan.draws_usd[f, t])} $M from {_esc(name)}")
        if plan.btc_sold[t] > 1e-6:
            what.append(f"sell {plan.btc_sold[t]:,.1f} BTC")
        for li, lo in enumerate(sc.lease_offers):
            prev = plan.lease_it_mw[li, :, t - 1].sum() if t else 0.0
            now = plan.lease_it_mw[li, :, t].sum()
            if now > prev + 1e-6:
                what.append(f"deliver {now - prev:,.0f} IT MW to lease {_esc(lo.name)}")
        if what:
            rows.append([_label(h, t), str(h.period_start(t)), "; ".join(what)])
    return rows


def _debt_rows(res: OptimizeResult) -> list[list[str]]:
    fr = res.financing_frame()
    if fr.empty or "facility" not in fr.columns:
        return []
    fr = fr[fr["facility"].astype(str) != ""].copy()
    fr["year"] = fr["start"].astype(str).str[:4]
    rows = []
    for (year, fac), g in fr.groupby(["year", "facility"], sort=True):
        vals = [
            g[c].sum() if c in g else 0.0
            for c in ("draw_usd", "fee_usd", "interest_usd", "repayment_usd")
        ]
        bal = float(g["balance_usd"].iloc[-1]) if "balance_usd" in g else 0.0
        if max(abs(v) for v in [*vals, bal]) < ZERO_USD:
            continue
        rows.append([year, _esc(fac), *(_m(v) for v in vals), _m(bal)])
    return rows


def _treasury_rows(res: OptimizeResult, nums: ReportNumbers) -> list[list[str]]:
    plan = res.plan
    held = nums.sch.btc_held
    out = []
    for t in range(res.scenario.horizon.n_periods):
        if plan.btc_sold[t] > 1e-6:
            out.append(
                [
                    _label(res.scenario.horizon, nums.dates[t]),
                    f"{plan.btc_sold[t]:,.1f}",
                    _m(nums.btc_sales_usd[t]),
                    f"{held[t]:,.1f}",
                ]
            )
    return out


def _yearly_rows(res: OptimizeResult, nums: ReportNumbers) -> list[list[str]]:
    sch = nums.sch
    cols = (
        nums.mining_margin_usd,
        nums.lease_usd,
        nums.market_usd,
        nums.racks_usd,
        -(nums.mining_fixed_opex_usd + nums.it_opex_usd + nums.penalties_usd),
        nums.ebitda_usd,
        -sch.capex_usd,
        res.plan.draws_usd.sum(axis=0),
        nums.btc_sales_usd,
        -sch.debt_service_usd,
    )
    yearly = [by_year(nums.years, c) for c in cols]
    return [[str(y), *(_m(d[y]) for d in yearly)] for y in sorted(yearly[0])]


def sources_and_uses(
    sc: Scenario, plan: Any, nums: ReportNumbers
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(sources, uses) over the horizon [$], weighted means over the K scenarios.

    Interest on cash is what the cash balance needs besides every other line, so the two sides
    are equal; it matches Σ cash[t−1]·i_c·Δ of the kernel's recursion.
    """
    sch = nums.sch
    cash0 = sc.treasury.cash_usd
    draws = float(plan.draws_usd.sum())
    fees = float(sch.fees_usd.sum())
    interest = float(sch.interest_usd.sum())
    principal = float(sch.principal_usd.sum())
    capex = float(sch.capex_usd.sum())
    salvage = float(sch.salvage_usd.sum())
    ocf = float(nums.ebitda_usd.sum())
    btc = float(nums.btc_sales_usd.sum())
    cash_interest = (
        nums.cash_end_usd
        - cash0
        - ocf
        - draws
        - btc
        - salvage
        + fees
        + interest
        + principal
        + capex
    )
    sources = [
        ("starting cash", cash0),
        ("operating cash flow (EBITDA)", ocf),
        ("debt draws", draws),
        ("BTC sales", btc),
        ("ASIC salvage on conversion", salvage),
        ("interest on cash balances (net)", cash_interest),
    ]
    uses = [
        ("capex (conversion and GPU racks)", capex),
        ("debt fees", fees),
        ("interest paid", interest),
        ("principal repaid", principal),
        ("cash at the end of the horizon", nums.cash_end_usd),
    ]
    return sources, uses


def _sources_uses(res: OptimizeResult, nums: ReportNumbers) -> str:
    src, use = sources_and_uses(res.scenario, res.plan, nums)
    sources: list[tuple[str, float | None]] = list(src)
    uses: list[tuple[str, float | None]] = list(use)
    n = max(len(sources), len(uses))
    sources += [("", None)] * (n - len(sources))
    uses += [("", None)] * (n - len(uses))
    rows = [
        [_esc(a), "" if x is None else _money(x), _esc(b), "" if y is None else _money(y)]
        for (a, x), (b, y) in zip(sources, uses, strict=True)
    ]
    rows.append(
        [
            "<b>total sources</b>",
            f"<b>{_money(sum(v for _, v in sources if v is not None))}</b>",
            "<b>total uses</b>",
            f"<b>{_money(sum(v for _, v in uses if v is not None))}</b>",
        ]
    )
    return _table(["sources", "$M", "uses", "$M"], rows, "su")


def _market_rows(sc: Scenario) -> list[list[str]]:
    m = sc.market
    rows = [
        ["BTC price at start", f"{m.btc.price_usd:,.0f} $/BTC"],
        [
            "BTC drift / volatility",
            f"{m.btc.drift_per_year:.1%} / {m.btc.vol_per_year:.0%} per year",
        ],
        [
            "BTC jumps",
            f"{m.btc.jump_intensity_per_year:g} per year, mean log size {m.btc.jump_mean_log:+g}, "
            f"s.d. {m.btc.jump_std_log:g}",
        ],
        ["Network hashrate at start", f"{m.hashrate.hashrate_eh_s:,.0f} EH/s"],
        [
            "Hashrate drift / volatility",
            f"{m.hashrate.drift_per_year:.1%} / {m.hashrate.vol_per_year:.0%} per year; "
            f"elasticity to BTC {m.hashrate.elasticity_to_btc:g} (lag {m.hashrate.lag_periods} "
            f"period{'' if m.hashrate.lag_periods == 1 else 's'}); halving step {m.hashrate.halving_step_log:+g} (log)",
        ],
        ["Transaction fees", f"{m.fees_btc_per_block:g} BTC per block"],
    ]
    for name, r in m.power_regions.items():
        rows.append(
            [
                f"Power price, {_esc(name)}",
                f"{r.initial_usd_per_mwh:,.1f} → mean {r.mean_usd_per_mwh:,.1f} $/MWh; "
                f"reversion {r.reversion_per_year:g}/y, volatility {r.vol_per_year:.0%}, "
                f"intra-period dispersion {r.intra_period_dispersion:g}",
            ]
        )
    al, oc, g = m.ai_lease, m.ai_occupancy, m.gpu_hour
    rows += [
        [
            "AI lease market rate",
            f"{al.rate_usd_per_kw_month:,.1f} $/kW-month, mean drift {al.mean_drift_per_year:+.1%}/y, "
            f"volatility {al.vol_per_year:.0%}, reversion {al.reversion_per_year:g}/y; re-let gap "
            f"{al.releasing_gap_periods} periods",
        ],
        [
            "AI occupancy (uncontracted IT MW)",
            f"{oc.initial:.0%} → {oc.mean:.0%}, volatility {oc.vol_per_year:g} (logit)",
        ],
        [
            "GPU-hour price",
            f"{g.price_usd:,.2f} $/GPU-h, decline {g.decline_per_year:.0%}/y, "
            f"volatility {g.vol_per_year:.0%}",
        ],
    ]
    for lo in sc.lease_offers:
        rows.append(
            [
                f"Lease offer {_esc(lo.name)}",
                f"{_esc(lo.tenant or '—')}: {lo.it_mw:,.0f} IT MW at "
                f"{lo.rate_usd_per_kw_month:,.2f} $/kW-month (+{lo.escalator_per_year:.1%}/y), "
                f"{lo.term_years:g} years, tenant default {lo.tenant_default_prob_per_year:.1%}/y"
                f"{', committed' if lo.committed else ''}",
            ]
        )
    for f in sc.debt_facilities:
        rows.append(
            [
                f"Debt facility {_esc(f.name)}",
                f"{f.kind}, up to {_money(f.size_usd)} $M at {f.rate_per_year:.3%}, "
                f"{f.repayment}, tenor {f.tenor_years:g} y, fee {f.upfront_fee_share:.2%}"
                f"{', covenants' if f.covenants else ''}",
            ]
        )
    cov = sc.covenants
    rows.append(
        [
            "Covenants",
            f"DSCR ≥ {cov.min_dscr:g}, leverage ≤ {cov.max_leverage:g}× trailing OCF, minimum cash "
            f"{_money(cov.min_cash_usd)} $M, to hold with probability {cov.confidence:g}",
        ]
    )
    return rows


def what_this_means(res: OptimizeResult, summary: dict, nums: ReportNumbers) -> str:
    """The plan, its value, risk and how sure we are, in words."""
    sc, plan = res.scenario, res.plan
    h = sc.horizon
    sch = nums.sch
    parts = []
    util = sum(int(plan.blocks[i].sum()) * s.conversion.block_mw for i, s in enumerate(sc.sites))
    if util > 0:
        it_end = float(sch.it_online_mw[:, -1].sum())
        online = sch.it_online_mw.sum(axis=0)
        t_full = int(np.flatnonzero(online >= online[-1] - 1e-6)[0])
        t_first = int(np.flatnonzero(plan.blocks.sum(axis=0) > 0)[0])
        result = (
            f"giving {it_end:,.0f} IT MW online by {_label(h, t_full)}"
            if it_end > 1e-6
            else "none of it online within the horizon"
        )
        parts.append(
            f"<b>Convert {util:,.0f} utility MW</b> of mining to AI data-centre capacity, starting "
            f"in {_label(h, t_first)}, {result}."
        )
    else:
        parts.append("<b>Convert nothing</b>: keep every site mining.")
    signed = [lo for lo, ok in zip(sc.lease_offers, plan.lease_signed, strict=True) if ok]
    if signed:
        parts.append(
            "Sign "
            + "; ".join(
                f"<b>{_esc(lo.name)}</b> ({_esc(lo.tenant or 'tenant')}, {lo.it_mw:,.0f} IT MW at "
                f"{lo.rate_usd_per_kw_month:,.2f} $/kW-month for {lo.term_years:g} years)"
                for lo in signed
            )
            + "."
        )
    else:
        parts.append("Sign no lease offer.")
    drawn = [
        (name, plan.draws_usd[f])
        for f, name in enumerate(plan.facility_names)
        if plan.draws_usd[f].sum() > ZERO_USD
    ]
    if drawn:
        parts.append(
            "Draw "
            + "; ".join(
                f"<b>{_money(d.sum())} $M</b> from {_esc(n)} "
                f"({_label(h, int(np.flatnonzero(d > ZERO_USD)[0]))}–"
                f"{_label(h, int(np.flatnonzero(d > ZERO_USD)[-1]))})"
                for n, d in drawn
            )
            + "."
        )
    else:
        parts.append("Borrow nothing.")
    sold = float(plan.btc_sold.sum())
    if sold > 1e-6:
        ts = np.flatnonzero(plan.btc_sold > 1e-6)
        parts.append(
            f"Sell <b>{sold:,.1f} BTC</b> between {_label(h, int(ts[0]))} and "
            f"{_label(h, int(ts[-1]))} (about {_money(nums.btc_sales_usd.sum())} "
            f"$M at the scenarios' prices), keeping {sch.btc_held[-1]:,.1f} BTC."
        )
    else:
        parts.append(f"Sell no BTC (keep {sch.btc_held[-1]:,.1f} BTC).")
    oos = summary["plan"]["out_of_sample"]
    tail = 1.0 - sc.risk.cvar_alpha
    cv = oos["cvar_usd"]
    if cv > 0:
        risk = f"in the worst {tail:.0%} of paths the average loss is <b>{_money(cv)} $M</b>"
    elif -cv < WIPED_OUT_SHARE * max(oos["mean_equity_usd"], 1.0):
        risk = (
            f"in the worst {tail:.0%} of paths the equity is all but wiped out (it averages "
            f"<b>{_money(-cv)} $M</b> there)"
        )
    else:
        risk = (
            f"even in the worst {tail:.0%} of paths there is no loss on average: equity "
            f"averages <b>{_money(-cv)} $M</b> there"
        )
    value = (
        f"<p>On {summary['eval_paths']:,} fresh simulated market paths the plan has never seen "
        f"(out of sample), its discounted terminal equity is <b>{_money(oos['mean_equity_usd'])} "
        f"± {_money(oos['stderr_usd'])} $M</b> (mean ± standard error); {risk} (CVaR at "
        f"{sc.risk.cvar_alpha:g}). "
    )
    allowed = 1.0 - sc.covenants.confidence
    cov = (summary.get("validation") or {}).get("covenant_bound")
    if cov:  # the guarantee's own numbers: the same as "How sure are we" says
        value += (
            f"Cash runs out in {rate(cov['p_default'])} of paths (95% bound "
            f"{rate(cov['p_default_upper95'])}) and a covenant or the minimum cash is breached "
            f"in {rate(cov['p_breach'], allowed)} (95% bound {rate(cov['upper95'], allowed)}; "
            f"the plan is built to keep them with probability {sc.covenants.confidence:g})."
        )
        too_often = not cov["holds"]
        what = f"That cannot be shown to be within the {allowed:.0%} the covenants allow"
    else:
        value += (
            f"Cash runs out in {oos['p_default']:.1%} of paths and a debt covenant is breached "
            f"in {oos['p_breach']:.1%} (the plan is built to keep the covenants with probability "
            f"{sc.covenants.confidence:g})."
        )
        m = summary["eval_paths"]
        too_often = oos["p_breach"] > allowed + 2 * math.sqrt(allowed * (1 - allowed) / m)
        what = f"That is more often than the {allowed:.0%} the covenants allow"
    if too_often:
        value += (
            f" <span class='note'>{what}: the optimizer's "
            f"{summary.get('scenarios', res.n_scenarios)} scenarios understate the spread of "
            "outcomes; raise <code>--scenarios</code> (and <code>--paths</code>) before relying "
            "on the covenant margin.</span>"
        )
    value += "</p>"
    sure = []
    for name, v in summary.get("vs_baselines", {}).items():
        d, se = v["diff_usd"], v["stderr_usd"]
        z = d / se if se > 0 else math.inf
        verdict = (
            "better beyond doubt"
            if z > Z_SURE
            else "not distinguishable"
            if z > -Z_SURE
            else "worse"
        )
        sure.append(f"plan − {_esc(name)} = {_money(d)} ± {_money(se)} $M (z = {z:.1f}: {verdict})")
    conf = (
        "<p>Against the baselines: the plan and the baselines are run on the <em>same</em> "
        "paths, so the differences of their objectives are measured with little noise (paired "
        "comparison; ± the standard error of each difference, CVaR term included): "
        + "; ".join(sure)
        + ". |z| above 3 means the difference is not chance.</p>"
    )
    best = summary.get("best_baseline")
    if best:
        conf += f"<p class='note'>{_esc(best['why'])}.</p>"
    k = summary.get("scenarios", res.n_scenarios)
    kwords = (
        f"<p class='small'>“K scenarios”: the optimizer cannot weigh all {summary['paths']:,} "
        f"simulated paths at once, so it groups them into K = {k} representative scenarios, each "
        "a simulated path standing for a cluster of similar ones and weighted by the cluster's "
        "share of paths (bad outcomes get clusters of their own, so the tail is not averaged "
        "away). The plan is chosen on these K scenarios (“in sample”) and then judged on fresh "
        "paths (“out of sample”), where it may also use emergency recourse.</p>"
    )
    return "<p>" + " ".join(parts) + "</p>\n" + value + conf + kwords


def _word_table(t: WordTable) -> str:
    """A :class:`~.wording.WordTable` as HTML: its title, the table and its note."""
    rows = [[_esc(c) for c in r] for r in t.rows]
    note = f"<p class='small'>{_esc(t.note)}</p>" if t.note else ""
    return f"<h3>{_esc(t.title)}</h3>\n{_table([_esc(h) for h in t.header], rows)}\n{note}"


def _part_html(p: Part) -> str:
    cls = " class='alarm'" if p.alarm else " class='small'" if p.skipped else ""
    return f"<p{cls} id='how-sure-{p.key}'>{_esc(p.text)}</p>" + "".join(
        _word_table(t) for t in p.tables
    )


def how_sure_html(validation: dict[str, Any] | None, candidates_figure: str = "") -> str:
    """The "How sure are we" section of the report from ``summary["validation"]``: the words
    and tables of :func:`~.wording.how_sure_parts` (one line for each skipped block), with
    ``candidates_figure`` (HTML) after the replications."""
    body = []
    for p in how_sure_parts(validation):
        body.append(_part_html(p))
        if p.key == "replications" and not p.skipped:
            body.append(candidates_figure)
    return f"<h2 id='how-sure'>{HEADING}</h2>\n" + "\n".join(b for b in body if b)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
  max-width: 1080px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.15em;
  margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
td:first-child, th:first-child { text-align: left; } th { background: #f3f3f3; }
table.left td, table.left th { text-align: left; } table.su td:nth-child(3), table.su th:nth-child(3) { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.warnbox { border: 2px solid #c0392b; background: #fdecea; padding: 0.6em 1em; margin: 1em 0;
  border-radius: 4px; }
.warnbox b.title { color: #c0392b; }
.warnbox.soft { border-color: #d68910; background: #fef5e7; }
.warnbox.soft b.title { color: #9c640c; }
.warnbox ul { margin: 0.3em 0; }
.summary { background: #f5f8fc; border-left: 4px solid #1f77b4; padding: 0.4em 1em; }
.alarm { color: #c0392b; font-weight: bold; }
.note { color: #a04000; } .small { font-size: 0.88em; color: #444; }
table.timeline td:nth-child(-n+2) { white-space: nowrap; }
@media print { figure, table, .warnbox { break-inside: avoid; } nav { display: none; } }
nav { font-size: 0.9em; } nav a { margin-right: 0.8em; }
"""

CAPTIONS = {
    "mw_by_use.svg": "Each line is one use of a site's capacity. ASIC MW are utility MW drawn "
    "from the grid; IT MW are what tenants or racks can use (IT MW = IT/utility ratio × utility "
    "MW converted), so the two are not added.",
    "cash_debt.svg": "Out of sample: cash at each period end (median and 5–95% of paths) against "
    "the minimum cash the covenants require, with the mean debt outstanding.",
    "covenants.svg": "Trailing-year DSCR and leverage of the plan on the K reduced scenarios the "
    "optimizer used (weighted 5%, 50% and 95% quantiles across those scenarios), where a drawn "
    "facility's covenants are in force; gaps are periods without a test.",
    "yearly.svg": "Calendar years; weighted means over the K reduced scenarios without recourse.",
    "equity_distribution.svg": "Share of out-of-sample paths whose discounted terminal equity "
    "is at most x, for the plan and each baseline on the same paths.",
    "ai_share.svg": "Share of operating revenue from AI (leases, market IT, own racks).",
    "candidates.svg": "Each replication solves the MILP on its own independent set of K "
    "scenarios; its plan is then judged on the same fresh paths as the others (dots, ±2 "
    "standard errors). Crosses: the objective the MILP promised on its own scenarios (in "
    "sample), which is optimistic.",
    "market.svg": "Mean, median and 5–95% of the simulated paths by period; log scales for "
    "BTC and hashprice. Mining margin: expected margin per utility MW after power, with the "
    "option to curtail.",
}


def report_html(
    res: OptimizeResult,
    summary: dict,
    charts: list[tuple[str, Path]],
    nums: ReportNumbers | None = None,
) -> str:
    """The self-contained HTML report (charts as ``data:`` URIs; no external reference)."""
    sc = res.scenario
    nums = nums if nums is not None else report_numbers(sc, res.plan, res.reduced)
    s = summary["solver"]
    figs: dict[str, list[str]] = {}
    for section, p in charts:
        cap = CAPTIONS.get(p.name, "")
        figs.setdefault(section, []).append(
            f"<figure><img src='{data_uri(p)}' alt='{_esc(p.name)}'>"
            + (f"<figcaption>{_esc(cap)}</figcaption>" if cap else "")
            + "</figure>"
        )

    def fig(section: str) -> str:
        return "\n".join(figs.get(section, []))

    boxes = []
    gw = gap_warning(summary, sc)
    if gw:
        boxes.append(
            f"<div class='warnbox' id='gap-warning'><b class='title'>Warning: the plan may be far "
            f"from the best.</b> {gw}</div>"
        )
    warnings = [str(w) for w in summary.get("warnings", []) or []]
    if warnings:
        items = "".join(f"<li>{_esc(w)}</li>" for w in warnings)
        boxes.append(
            f"<div class='warnbox soft' id='warnings'><b class='title'>Warnings</b><ul>{items}</ul>"
            "</div>"
        )
    table = {
        "plan (out of sample)": summary["plan"]["out_of_sample"],
        f"plan, in sample (the MILP's K = {summary['scenarios']} scenarios)": summary["plan"][
            "in_sample"
        ],
        **summary["baselines"],
    }
    vs = [
        [
            _esc(n),
            _money(v["diff_usd"]),
            _money(v["stderr_usd"]),
            f"{v['diff_usd'] / v['stderr_usd'] if v['stderr_usd'] > 0 else float('inf'):.1f}",
        ]
        for n, v in summary["vs_baselines"].items()
    ]
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings_seconds"].items())
    debt = _debt_rows(res)
    treasury = _treasury_rows(res, nums)
    timeline = _timeline_rows(res)
    alpha = sc.risk.cvar_alpha
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hashpivot — {_esc(sc.name)}</title>
<style>{STYLE}</style></head><body>
<h1>hashpivot: {_esc(sc.name)}</h1>
<p>{_esc(sc.description)}</p>
{"".join(boxes)}
<h2 id="summary">What this means</h2>
<div class="summary">{what_this_means(res, summary, nums)}</div>
{how_sure_html(summary["validation"], fig("how-sure")) if "validation" in summary else ""}
<nav><a href="#plan">Plan</a><a href="#value">Value and risk</a><a href="#cash">Cash and
covenants</a><a href="#yearly">Yearly results</a><a href="#sources-uses">Sources and uses</a>
<a href="#debt">Debt schedule</a><a href="#treasury">BTC treasury</a><a href="#market">Market
assumptions</a><a href="#solver">Solver</a></nav>

<h2 id="plan">Plan</h2>
{
        _table(
            [
                "site",
                "blocks × utility MW",
                "blocks started (number)",
                "IT fully online",
                "IT MW at end",
                "leased IT MW at end",
                "GPU racks at end",
                "ASIC MW at end",
            ],
            _sites_rows(res),
        )
    }
<h3>Timeline (period start dates)</h3>
{
        _table(["quarter", "period start", "action"], timeline, "left")
        if timeline
        else "<p>The plan takes no action.</p>"
    }
{fig("plan")}

<h2 id="value">Value and risk ($M, discounted terminal equity)</h2>
{
        _table(
            [
                "policy",
                "objective ± s.e.",
                "mean ± s.e.",
                f"CVaR<sub>{alpha:g}</sub> of loss",
                "P(default)",
                "P(covenant breach)",
                "P(cash below minimum)",
            ],
            _stats_rows(table),
        )
    }
<p>Covenant breaches out of sample: <b>{_esc(sc.covenants.on_breach)}</b> (accelerate: the
breaching facility's balance falls due, paid from cash then treasury BTC, else default).</p>
<p class="small">CVaR<sub>{alpha:g}</sub> of loss: the average loss over the worst
{1 - alpha:.0%} of paths (negative: even those paths end with positive equity). Objective:
mean − {sc.risk.cvar_weight:g} × CVaR. In sample: on the optimizer's K scenarios, without
recourse, and without a standard error (the K weighted scenarios are not a sample).</p>
<h3>Plan against the baselines (paired, same paths)</h3>
{_table(["baseline", "objective: plan − baseline ($M)", "s.e. of the difference", "z"], vs)}
{fig("value")}

<h2 id="cash">Cash and covenants</h2>
{fig("cash")}
{fig("covenants")}

<h2 id="yearly">Yearly results, capex and financing ($M)</h2>
{fig("yearly")}
{
        _table(
            [
                "year",
                "mining (after power)",
                "AI leases",
                "market IT",
                "own racks (net)",
                "opex & penalties",
                "EBITDA (OCF)",
                "capex",
                "debt draws",
                "BTC sales",
                "debt service",
            ],
            _yearly_rows(res, nums),
        )
    }
<p class="small">Weighted means over the optimizer's K reduced scenarios, without recourse;
capex and debt service as negative numbers.</p>
<h3 id="sources-uses">Sources and uses over the horizon ($M)</h3>
{_sources_uses(res, nums)}
<p class="small">Weighted mean over the K scenarios; sources equal uses by construction of the
cash balance.</p>

<h2 id="debt">Debt schedule by year ($M)</h2>
{
        _table(
            [
                "year",
                "facility",
                "draws",
                "fees",
                "interest",
                "principal repaid",
                "balance at year end",
            ],
            debt,
        )
        if debt
        else "<p>No debt is drawn.</p>"
    }

<h2 id="treasury">BTC treasury</h2>
<p>Held at start: {sc.treasury.btc_held:,.1f} BTC; policy floor {sc.treasury.btc_floor:,.1f}
BTC; at most {sc.treasury.max_btc_sale_per_period:,.1f} BTC sold per period.</p>
{
        _table(["quarter", "BTC sold", "proceeds (mean, $M)", "BTC held after"], treasury)
        if treasury
        else "<p>No BTC is sold.</p>"
    }

<h2 id="market">Market assumptions</h2>
{_table(["factor", "assumption"], _market_rows(sc), "left")}
<p class="small">Simulated on {summary["paths"]:,} paths (mean, median and 5–95% of paths
below).</p>
{fig("market")}

<h2 id="solver">Solver and run</h2>
<p>{summary["paths"]:,} paths → K = {summary["scenarios"]} scenarios;
{summary["eval_paths"]:,} fresh evaluation paths; seed {summary["seed"]}; backend
{_esc(summary["backend"])} ({_esc(summary["device"])}); hashpivot {_esc(summary["version"])}.</p>
<p>Status <b>{_esc(s["status"])}</b>; in-sample objective {_money(s["objective_usd"])} $M;
bound {_money(s["bound_usd"])} $M; MIP gap {_float(s.get("gap")):.3%}{
        f" (target {float(s['target_gap']):.3%})" if s.get("target_gap") is not None else ""
    } on the K scenarios (how well that sample was solved, not the distance to the best plan:
see <a href="#how-sure">How sure are we</a>);
{s["rows"]:,} rows × {s["columns"]:,} columns, {s["nonzeros"]:,} nonzeros.
Stage timings: {timings}.</p>
</body></html>
"""


def write_optimize_outputs(
    res: OptimizeResult, out: str | Path, *, overwrite: bool = False
) -> Path:
    """Write every output of ``optimize`` atomically into ``out``."""
    t0 = time.perf_counter()
    out = Path(out)
    with atomic_output_dir(
        out, overwrite=overwrite, command=f"optimize {res.scenario.name}"
    ) as tmp:
        write_json(tmp / "plan.json", res.plan.to_json())
        res.plan_frame().to_csv(tmp / "plan.csv", index=False)
        res.financing_frame().to_csv(tmp / "financing.csv", index=False)
        res.treasury_frame().to_csv(tmp / "treasury.csv", index=False)
        write_json(tmp / "simulation.json", res.simulation.to_json())
        nums = report_numbers(res.scenario, res.plan, res.reduced)
        charts = report_charts(tmp, res, nums, res.summary().get("validation"))
        res.timings["report"] = time.perf_counter() - t0
        summary = res.summary()
        write_json(tmp / "summary.json", summary)
        (tmp / "report.html").write_text(report_html(res, summary, charts, nums), encoding="utf-8")
    return out


def write_evaluate_outputs(
    res: EvaluateResult, out: str | Path, *, overwrite: bool = False
) -> Path:
    """Write ``evaluate``'s summary and charts atomically into ``out``."""
    out = Path(out)
    sc = res.scenario
    x = period_x([sc.horizon.period_start(t) for t in range(sc.horizon.n_periods)])
    with atomic_output_dir(out, overwrite=overwrite, command=f"evaluate {sc.name}") as tmp:
        write_json(tmp / "summary.json", res.summary())
        write_json(tmp / "plan.json", res.plan.to_json())
        stats = res.evaluation.stats
        equity_chart(tmp / "equity_distribution.png", stats)
        ai_share_chart(tmp / "ai_share.png", x, stats)
        cash_debt_chart(
            tmp / "cash_debt.png",
            x,
            stats,
            plan_name=res.name,
            min_cash_usd=sc.covenants.min_cash_usd,
        )
    return out


__all__ = [
    "POLICIES",
    "gap_warning",
    "report_html",
    "report_numbers",
    "weighted_quantiles",
    "write_evaluate_outputs",
    "write_optimize_outputs",
]
