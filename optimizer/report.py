"""Outputs of ``hashpivot optimize`` (DESIGN.md §7): files, charts and an HTML report.

``plan.json`` (the decisions; the input of ``evaluate``), ``plan.csv``, ``financing.csv``,
``summary.json``, ``simulation.json``, PNG charts and ``report.html``, written into a temporary
directory that replaces the output directory only when complete.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hashpivot.kernels.plan import schedule  # noqa: E402

from .baselines import POLICIES  # noqa: E402
from .charts import DPI, finish, simulation_charts  # noqa: E402
from .outputs import atomic_output_dir, write_json  # noqa: E402
from .pipeline import EvaluateResult, OptimizeResult  # noqa: E402

COLORS = {
    "plan": "#1f77b4",
    "stay_mining": "#7f7f7f",
    "convert_all": "#d62728",
    "greedy": "#2ca02c",
}


def mw_by_use_chart(path: Path, res: OptimizeResult) -> Path:
    """Per site: ASIC MW mining, IT MW under construction, leased, racks and market, over time."""
    sc = res.scenario
    sch = schedule(sc, res.plan)
    n = len(sc.sites)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False, sharex=True
    )
    t = res.simulation.t_years
    for i, s in enumerate(sc.sites):
        ax = axes[i // cols][i % cols]
        lease = res.plan.lease_it_mw[:, i, :].sum(axis=0)
        ax.stackplot(
            t,
            sch.asic_mw[i],
            sch.converting_mw[i],
            lease,
            sch.rack_it_mw[i],
            np.maximum(sch.market_it_mw[i], 0),
            labels=[
                "mining (utility MW)",
                "under construction (IT MW)",
                "leased (IT MW)",
                "own racks (IT MW)",
                "market (IT MW)",
            ],
            colors=["#f2a900", "#bbbbbb", "#1f77b4", "#9467bd", "#17becf"],
            alpha=0.85,
        )
        ax.set_title(s.name, fontsize=9)
        ax.grid(alpha=0.3)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=6, loc="upper right")
    fig.supxlabel("years from start")
    fig.supylabel("MW")
    fig.suptitle("MW by use per site")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def equity_chart(path: Path, stats: dict) -> Path:
    """Distribution of discounted terminal equity: the plan against each baseline (ECDF)."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for name, st in stats.items():
        w = np.sort(st.equity_sample_usd) / 1e6
        ax.plot(
            w,
            np.linspace(0, 1, len(w)),
            lw=2.2 if name == "plan" else 1.4,
            color=COLORS.get(name),
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
        "discounted terminal equity [$M] (0.5–99% of paths shown)",
        "share of paths ≤ x",
    )


def ai_share_chart(path: Path, t: np.ndarray, stats: dict) -> Path:
    """Mean share of AI in operating revenue over time."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for name, st in stats.items():
        ax.plot(
            t,
            100 * st.ai_share_mean,
            color=COLORS.get(name),
            lw=2.2 if name == "plan" else 1.4,
            label=name,
        )
    ax.set_ylim(0, 100)
    return finish(
        fig,
        ax,
        path,
        "AI share of operating revenue (mean over paths)",
        "years from start",
        "AI share of revenue [%]",
    )


def cash_debt_chart(path: Path, t: np.ndarray, stats: dict, plan_name: str = "plan") -> Path:
    """Cash of the plan (5–95% band, median) and mean debt, with the baselines' median cash."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    st = stats[plan_name]
    q = st.cash_quantiles_usd / 1e6
    ax.fill_between(
        t, q[0], q[2], color=COLORS["plan"], alpha=0.18, label=f"{plan_name} cash 5–95%"
    )
    ax.plot(t, q[1], color=COLORS["plan"], lw=2, label=f"{plan_name} cash median")
    ax.plot(
        t, st.debt_mean_usd / 1e6, color="black", lw=1.8, ls="--", label=f"{plan_name} debt (mean)"
    )
    for name, other in stats.items():
        if name != plan_name:
            ax.plot(
                t,
                other.cash_quantiles_usd[1] / 1e6,
                color=COLORS.get(name),
                lw=1,
                label=f"{name} cash median",
            )
    return finish(fig, ax, path, "Cash and debt over time", "years from start", "$M", legend_cols=2)


def _money(x: float) -> str:
    return f"{x / 1e6 + 0.0:,.1f}"  # + 0.0 turns -0.0 into 0.0


def _stats_rows(stats: dict) -> str:
    out = []
    for name, st in stats.items():
        out.append(
            f"<tr><td>{html.escape(name)}</td><td>{_money(st['objective_usd'])}</td>"
            f"<td>{_money(st['mean_equity_usd'])} ± {_money(st['stderr_usd'])}</td>"
            f"<td>{_money(st['cvar_usd'])}</td><td>{st['p_default']:.2%}</td><td>{st['p_breach']:.2%}</td>"
            f"<td>{st.get('p_min_cash_breach', 0.0):.2%}</td></tr>"
        )
    return "\n".join(out)


def report_html(res: OptimizeResult, summary: dict, charts: list[str]) -> str:
    """A self-contained HTML page (charts as relative PNG links)."""
    sc = res.scenario
    s = summary["solver"]
    table = {
        "plan (out of sample)": summary["plan"]["out_of_sample"],
        "plan (in sample, K scenarios)": summary["plan"]["in_sample"],
        **summary["baselines"],
    }
    vs = "\n".join(
        f"<tr><td>{html.escape(n)}</td><td>{_money(v['diff_usd'])}</td><td>{_money(v['stderr_usd'])}</td>"
        f"<td>{v['diff_usd'] / v['stderr_usd'] if v['stderr_usd'] > 0 else float('inf'):.1f}</td></tr>"
        for n, v in summary["vs_baselines"].items()
    )
    frame = res.plan_frame()
    sites = []
    for name, g in frame.groupby("site", sort=False):
        started = g.loc[g.blocks_started > 0, "period"].tolist()
        sites.append(
            f"<tr><td>{html.escape(name)}</td><td>{int(g.blocks_started.sum())}</td>"
            f"<td>{', '.join(map(str, started)) or '—'}</td><td>{g.it_online_mw.iloc[-1]:,.0f}</td>"
            f"<td>{g.lease_it_mw.iloc[-1]:,.0f}</td><td>{g.asic_mw.iloc[-1]:,.0f}</td></tr>"
        )
    leases = (
        ", ".join(
            n
            for n, signed in zip(res.plan.lease_names, res.plan.lease_signed, strict=True)
            if signed
        )
        or "none"
    )
    draws = (
        ", ".join(
            f"{n}: {_money(v)} $M"
            for n, v in zip(res.plan.facility_names, res.plan.draws_usd.sum(axis=1), strict=True)
        )
        or "none"
    )
    best = summary.get("best_baseline")
    note = (
        f"<p class='warn'>{html.escape(best['why'])}</p>"
        if best
        else (
            "<p>The plan beats every baseline by more than 3 standard errors of the paired difference.</p>"
        )
    )
    imgs = "\n".join(f"<figure><img src='{c}' alt='{c}'></figure>" for c in charts)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings_seconds"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hashpivot — {html.escape(sc.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} th {{ background: #f3f3f3; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }} .warn {{ color: #a04000; }}
</style></head><body>
<h1>hashpivot: {html.escape(sc.name)}</h1>
<p>{html.escape(sc.description)}</p>
<p>{summary["paths"]:,} paths → {summary["scenarios"]} scenarios; {summary["eval_paths"]:,} fresh evaluation paths;
seed {summary["seed"]}; backend {summary["backend"]} ({html.escape(summary["device"])}); hashpivot {summary["version"]}.</p>
<h2>Solver</h2>
<p>Status <b>{s["status"]}</b>; objective {_money(s["objective_usd"])} $M; bound {_money(s["bound_usd"])} $M;
gap {s["gap"]:.3%}; {s["rows"]:,} rows × {s["columns"]:,} columns, {s["nonzeros"]:,} nonzeros.
Stage timings: {timings}.</p>
<h2>Plan</h2>
<p>Leases signed: <b>{html.escape(leases)}</b>. Draws: {html.escape(draws)}. BTC sold: {res.plan.btc_sold.sum():,.1f}.</p>
<table><tr><th>site</th><th>blocks</th><th>started in periods</th><th>IT MW at end</th><th>leased IT MW at end</th><th>ASIC MW at end</th></tr>
{"".join(sites)}</table>
<h2>Value and risk ($M, discounted terminal equity)</h2>
<table><tr><th>policy</th><th>objective</th><th>mean ± s.e.</th><th>CVaR<sub>{sc.risk.cvar_alpha:g}</sub> of loss</th><th>P(default)</th><th>P(covenant breach)</th><th>P(cash below minimum)</th></tr>
{_stats_rows(table)}</table>
<p>Covenant breaches out of sample: <b>{html.escape(sc.covenants.on_breach)}</b>.</p>
<h3>Plan against the baselines (paired, same paths)</h3>
<table><tr><th>baseline</th><th>plan − baseline ($M)</th><th>s.e.</th><th>z</th></tr>{vs}</table>
{note}
<h2>Charts</h2>
{imgs}
</body></html>
"""


def write_optimize_outputs(res: OptimizeResult, out: str | Path) -> Path:
    """Write every output of ``optimize`` atomically into ``out``."""
    t0 = time.perf_counter()
    out = Path(out)
    with atomic_output_dir(out) as tmp:
        write_json(tmp / "plan.json", res.plan.to_json())
        res.plan_frame().to_csv(tmp / "plan.csv", index=False)
        res.financing_frame().to_csv(tmp / "financing.csv", index=False)
        write_json(tmp / "simulation.json", res.simulation.to_json())
        charts = [p.name for p in simulation_charts(tmp, res.simulation)]
        t = res.simulation.t_years
        stats = res.evaluation.stats
        charts = [
            mw_by_use_chart(tmp / "mw_by_use.png", res).name,
            equity_chart(tmp / "equity_distribution.png", stats).name,
            ai_share_chart(tmp / "ai_share.png", t, stats).name,
            cash_debt_chart(tmp / "cash_debt.png", t, stats).name,
            *charts,
        ]
        res.timings["report"] = time.perf_counter() - t0
        summary = res.summary()
        write_json(tmp / "summary.json", summary)
        (tmp / "report.html").write_text(report_html(res, summary, charts), encoding="utf-8")
    return out


def write_evaluate_outputs(res: EvaluateResult, out: str | Path) -> Path:
    """Write ``evaluate``'s summary and charts atomically into ``out``."""
    out = Path(out)
    sc = res.scenario
    t = (np.arange(sc.horizon.n_periods) + 1) * sc.horizon.dt_years
    with atomic_output_dir(out) as tmp:
        write_json(tmp / "summary.json", res.summary())
        write_json(tmp / "plan.json", res.plan.to_json())
        stats = res.evaluation.stats
        equity_chart(tmp / "equity_distribution.png", stats)
        ai_share_chart(tmp / "ai_share.png", t, stats)
        cash_debt_chart(tmp / "cash_debt.png", t, stats, plan_name=res.name)
    return out


__all__ = ["POLICIES", "write_evaluate_outputs", "write_optimize_outputs"]
