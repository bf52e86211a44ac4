"""Charts (matplotlib, headless): fan charts of the simulated factors and margins."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hashpivot.kernels.simulate import FactorStats, SimulationResult  # noqa: E402

DPI = 110


def finish(
    fig: plt.Figure,
    ax: plt.Axes,
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    legend: bool = True,
    legend_cols: int = 1,
) -> Path:
    """Title, labels, grid and legend; save as PNG and close."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, ncol=legend_cols)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _fan(ax: plt.Axes, t: np.ndarray, st: FactorStats, label: str, color: str) -> None:
    ax.fill_between(t, st.p05, st.p95, color=color, alpha=0.18, label=f"{label} 5–95%")
    ax.plot(t, st.p50, color=color, lw=1.2, ls="--", label=f"{label} median")
    ax.plot(t, st.mean, color=color, lw=2.0, label=f"{label} mean")


def fan_chart(
    path: Path,
    t: np.ndarray,
    series: dict[str, FactorStats],
    title: str,
    ylabel: str,
    log: bool = False,
) -> Path:
    """One fan chart (mean, median, 5–95% band) per series on shared axes."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, st) in enumerate(series.items()):
        _fan(ax, t, st, label, colors[i % len(colors)])
    if log:
        ax.set_yscale("log")
    return finish(fig, ax, path, title, "years from start", ylabel, legend_cols=2)


def margin_chart(path: Path, res: SimulationResult) -> Path:
    """Expected mining margin per MW of each site with ±2 standard errors."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, name in enumerate(res.site_names):
        m = res.margin_mean_usd_per_mw[i] / 1e3
        se = res.margin_stderr_usd_per_mw[i] / 1e3
        ax.plot(res.t_years, m, lw=1.5, label=name)
        ax.fill_between(res.t_years, m - 2 * se, m + 2 * se, alpha=0.2)
    return finish(
        fig,
        ax,
        path,
        "Expected mining margin per MW (curtailment option, after power)",
        "years from start",
        "k$ per MW per period",
        legend=len(res.site_names) <= 12,
        legend_cols=2,
    )


def simulation_charts(out: Path, res: SimulationResult) -> list[Path]:
    """The fan charts of ``hashpivot simulate``: BTC, hashprice, power, AI lease, margins."""
    t = res.t_years
    f = res.factors
    return [
        fan_chart(
            out / "btc_price.png", t, {"BTC": f["btc_price_usd"]}, "BTC price", "$/BTC", log=True
        ),
        fan_chart(
            out / "hashprice.png",
            t,
            {"hashprice": f["hashprice_usd_per_ph_day"]},
            "Hashprice",
            "$/PH/day",
            log=True,
        ),
        fan_chart(out / "power_price.png", t, res.power, "Power price by region", "$/MWh"),
        fan_chart(
            out / "ai_lease_rate.png",
            t,
            {"market lease": f["ai_lease_usd_per_kw_month"]},
            "AI lease market rate",
            "$/kW-month",
        ),
        margin_chart(out / "mining_margin.png", res),
    ]
