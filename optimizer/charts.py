"""Charts (matplotlib, headless): fan charts of the simulated factors and margins.

matplotlib is imported on first use (not at import) and figures are drawn on a bare Agg canvas
without pyplot, at a fixed layout (no ``tight_layout``, which draws every figure twice): the
report's charts stay within a couple of seconds. Time axes are calendar dates: a period is
plotted at its start date, as a decimal year labelled ``2027`` or ``2027 Q3``.
"""

from __future__ import annotations

import base64
import datetime as dt
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from hashpivot.kernels.simulate import FactorStats, SimulationResult

#: Resolution of the PNG charts [dots per inch]; figures are sized for a ~1000 px wide page.
DPI = 90
#: zlib level of the PNGs: 1 is several times faster than the default 6 for ~15% larger files.
PNG_COMPRESS_LEVEL = 1
#: Width of every chart [in]: 990 px at :data:`DPI`, the report's column.
WIDTH_IN = 11.0
#: Relative margin beyond the view within which :func:`in_view` keeps a tick (matplotlib draws
#: ticks within 1e-10 of the view's ends).
VIEW_TOL = 1e-6
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


#: Style of every chart; ``axes.titley`` fixes titles (auto-placement measures every tick).
RC = {
    "axes.titlesize": 10,
    "axes.titley": 1.0,
    "axes.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
}


_preload: threading.Thread | None = None


def preload_matplotlib() -> threading.Thread | None:
    """Start importing matplotlib (figure, Agg and SVG backends, ticker) in a background thread,
    once; returns the thread (``None`` when matplotlib is loaded or loading already).

    ``hashpivot optimize`` calls this before its NumPy stages so that the import (0.5–1 s of
    CPU) runs beside them instead of opening the report stage. A chart drawn before the
    thread is done waits on Python's import lock; a failed import is raised again there.
    """
    global _preload
    if _preload is not None or "matplotlib.figure" in sys.modules:
        return None
    _preload = threading.Thread(target=_import_matplotlib, name="hashpivot-matplotlib-import")
    _preload.start()
    return _preload


def _import_matplotlib() -> None:
    try:
        import matplotlib.backends.backend_agg  # noqa: F401, PLC0415
        import matplotlib.backends.backend_svg  # noqa: F401, PLC0415
        import matplotlib.figure  # noqa: F401, PLC0415
        import matplotlib.ticker  # noqa: F401, PLC0415
    except Exception:  # the report's own import raises it where it can be reported
        return


def new_figure(width_in: float, height_in: float, **subplots: Any) -> tuple[Figure, Any]:
    """A figure on an Agg canvas (no pyplot state) and its axes (``subplots`` kwargs)."""
    from matplotlib import rc_context  # noqa: PLC0415
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import AutoLocator  # noqa: PLC0415

    with rc_context(RC):
        fig = Figure(figsize=(width_in, height_in), dpi=DPI)
        FigureCanvasAgg(fig)
        axes = fig.subplots(**subplots) if subplots else fig.add_subplot()
    for ax in fig.axes:  # the default locators, without the ticks beyond the view
        ax.xaxis.set_major_locator(in_view(AutoLocator()))
        ax.yaxis.set_major_locator(in_view(AutoLocator()))
    return fig, axes


def save(fig: Figure, path: Path) -> Path:
    """Save ``fig`` by the suffix of ``path`` (``.svg``: text kept as text, no date stamp;
    otherwise PNG at :data:`DPI`)."""
    from matplotlib import rc_context  # noqa: PLC0415

    if path.suffix == ".svg":
        with rc_context({"svg.fonttype": "none"}):
            fig.savefig(path, format="svg", metadata={"Date": None})
    else:
        fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    return path  # no fig.clear(): it costs as much as a small chart; the figure is dropped


MIME = {".svg": "image/svg+xml", ".png": "image/png"}


def data_uri(path: Path) -> str:
    """The image at ``path`` as a ``data:`` URI (for a self-contained HTML page)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{MIME.get(path.suffix, 'application/octet-stream')};base64,{data}"


# --------------------------------------------------------------------------- dates
def decimal_year(d: dt.date | str) -> float:
    """A date as a decimal year (month resolution): 2027-07-01 → 2027.5."""
    if isinstance(d, str):
        d = dt.date.fromisoformat(d)
    return d.year + (d.month - 1) / 12.0


def quarter_label(d: dt.date | str) -> str:
    """``2027 Q3`` for any date in July–September 2027."""
    if isinstance(d, str):
        d = dt.date.fromisoformat(d)
    return f"{d.year} Q{(d.month - 1) // 3 + 1}"


def period_label(d: dt.date | str, periods_per_year: int = 4) -> str:
    """A period by its start: ``2027 Q3`` for quarters, ``2027-08`` for months."""
    if isinstance(d, str):
        d = dt.date.fromisoformat(d)
    return quarter_label(d) if periods_per_year <= 4 else f"{d.year}-{d.month:02d}"


def _year_label(x: float, _pos: int = 0) -> str:
    year = int(np.floor(x + 1e-6))
    q = int(round((x - year) * 4)) + 1
    return str(year) if q == 1 else f"{year} Q{q}"


def in_view(locator: Any) -> Any:
    """``locator`` restricted to the ticks inside the axis' view interval.

    matplotlib builds a tick (three lines and two labels, ~2 ms) for every location a locator
    returns and draws only those in view; most locators return one or more beyond each end
    (a log locator whole decades). Dropping them changes nothing drawn.
    """
    from matplotlib.ticker import Locator  # noqa: PLC0415

    class InView(Locator):
        def __init__(self, base: Any) -> None:
            self.base = base

        def set_axis(self, axis: Any) -> None:
            super().set_axis(axis)
            self.base.set_axis(axis)

        def tick_values(self, vmin: float, vmax: float) -> Any:
            return self._clip(self.base.tick_values(vmin, vmax), vmin, vmax)

        def __call__(self) -> Any:
            return self._clip(self.base(), *self.axis.get_view_interval())

        def nonsingular(self, v0: float, v1: float) -> tuple[float, float]:
            return self.base.nonsingular(v0, v1)

        def view_limits(self, vmin: float, vmax: float) -> tuple[float, float]:
            return self.base.view_limits(vmin, vmax)

        @staticmethod
        def _clip(locs: Any, vmin: float, vmax: float) -> Any:
            lo, hi = min(vmin, vmax), max(vmin, vmax)
            tol = VIEW_TOL * (hi - lo)
            locs = np.asarray(locs)
            return locs[(locs >= lo - tol) & (locs <= hi + tol)]

    return InView(locator)


def date_axis(ax: Axes, x: np.ndarray, max_ticks: int | None = None) -> None:
    """Calendar ticks on a decimal-year x axis: years (``2027``), half-years or quarters
    (``2027 Q3``) on short spans, at most ``max_ticks`` labels (default: by the axes' width)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator  # noqa: PLC0415

    if ax.get_yscale() == "linear":  # fewer ticks: each one is several artists to draw
        ax.yaxis.set_major_locator(in_view(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10])))
    if max_ticks is None:
        width_in = ax.get_position().width * ax.figure.get_figwidth()
        max_ticks = max(4, int(width_in / 0.7))
    span = float(x[-1] - x[0]) if len(x) > 1 else 1.0
    step = next(s for s in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0) if span / s <= max_ticks or s == 10.0)
    ax.xaxis.set_major_locator(in_view(MultipleLocator(step)))
    ax.xaxis.set_major_formatter(FuncFormatter(_year_label))
    ax.set_xlim(x[0] - 0.05, x[-1] + 0.3)


def plain_log_axis(ax: Axes) -> None:
    """A log y axis that reads plain numbers (``40``, ``60``, ``100``), not ``4×10¹``."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator  # noqa: PLC0415

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(in_view(LogLocator(base=10, subs=(1.0, 2.0, 5.0))))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.6g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    lo, hi = ax.get_ylim()
    if hi / lo < 5:  # at most two 1-2-5 ticks: label 1, 2, 3, … 9 instead
        ax.yaxis.set_major_locator(in_view(LogLocator(base=10, subs=np.arange(1.0, 10.0))))


def title(ax: Axes, text: str, fontsize: float = 10) -> None:
    """Axes title at a fixed height (auto-positioning measures every tick: slow)."""
    ax.set_title(text, fontsize=fontsize, y=1.0, pad=5)


def single_axes(height_in: float = 3.3) -> tuple[Figure, Axes]:
    """A full-width figure with one axes and room on the right for the legend."""
    fig, ax = new_figure(WIDTH_IN, height_in)
    fig.subplots_adjust(left=0.07, right=0.77, top=0.9, bottom=0.16)
    return fig, ax


def finish(
    fig: Figure,
    ax: Axes,
    path: Path,
    title_text: str,
    ylabel: str,
    *,
    x: np.ndarray | None = None,
    xlabel: str = "period start",
    legend: bool = True,
) -> Path:
    """Title, labels, grid, date axis (when ``x`` is given), legend right of the axes; save."""
    title(ax, title_text)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if x is not None:
        date_axis(ax, x)
    if legend:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return save(fig, path)


def _fan(ax: Axes, x: np.ndarray, st: FactorStats, label: str, color: str) -> None:
    """Band 5–95% (light, outlined), median dashed, mean solid."""
    lab = f"{label} " if label else ""
    ax.fill_between(x, st.p05, st.p95, color=color, alpha=0.15, lw=0, label=f"{lab}5–95%")
    ax.plot(x, st.p05, color=color, lw=0.6, alpha=0.7)
    ax.plot(x, st.p95, color=color, lw=0.6, alpha=0.7)
    ax.plot(x, st.p50, color=color, lw=1.2, ls="--", label=f"{lab}median")
    ax.plot(x, st.mean, color=color, lw=2.0, label=f"{lab}mean")


def fan_chart(
    path: Path,
    x: np.ndarray,
    series: dict[str, FactorStats],
    title: str,
    ylabel: str,
    log: bool = False,
) -> Path:
    """One fan chart (mean, median, 5–95% band) per series on shared axes."""
    fig, ax = single_axes()
    for i, (label, st) in enumerate(series.items()):
        _fan(ax, x, st, label, PALETTE[i % len(PALETTE)])
    if log:
        plain_log_axis(ax)
    return finish(fig, ax, path, title, ylabel, x=x)


def power_chart(path: Path, x: np.ndarray, power: dict[str, FactorStats]) -> Path:
    """Power price fans, one panel per region on a shared y axis (overlapping bands stay legible)."""
    n = len(power)
    cols = min(3, n)
    rows = -(-n // cols)
    height = 0.5 + 2.4 * rows
    fig, axes = new_figure(WIDTH_IN, height, nrows=rows, ncols=cols, squeeze=False, sharey=True)
    fig.subplots_adjust(
        left=0.07,
        right=0.77,
        top=1 - 0.5 / height,
        bottom=0.45 / height,
        wspace=0.08,
        hspace=0.45,
    )
    for i, (region, st) in enumerate(power.items()):
        ax = axes[i // cols][i % cols]
        _fan(ax, x, st, "price", PALETTE[i % len(PALETTE)])
        title(ax, region, 9)
        date_axis(ax, x)
        if i % cols == 0:
            ax.set_ylabel("$/MWh", fontsize=8)
    axes[0][-1 if n >= cols else 0].legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0
    )
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("Power price by region (mean, median, 5–95% of paths)", fontsize=10)
    return save(fig, path)


def margin_chart(path: Path, x: np.ndarray, res: SimulationResult) -> Path:
    """Expected mining margin per MW of each site with ±2 standard errors."""
    fig, ax = single_axes()
    for i, name in enumerate(res.site_names):
        m = res.margin_mean_usd_per_mw[i] / 1e3
        se = res.margin_stderr_usd_per_mw[i] / 1e3
        color = PALETTE[i % len(PALETTE)]
        ax.plot(x, m, lw=1.5, color=color, label=name)
        ax.fill_between(x, m - 2 * se, m + 2 * se, color=color, alpha=0.2, lw=0)
    return finish(
        fig,
        ax,
        path,
        "Expected mining margin per utility MW (curtailment option, after power; ±2 s.e.)",
        "k$ per MW per period",
        x=x,
        legend=len(res.site_names) <= 12,
    )


def market_chart(path: Path, res: SimulationResult) -> Path:
    """Every market fan chart in one figure: BTC, hashprice (log, plain numbers), AI lease
    rate, mining margin per site and one panel per power region (bands never overlap)."""
    x = period_x(res.period_starts)
    f = res.factors
    panels: list[tuple[str, str, Any]] = [
        ("BTC price [$/BTC], log scale", "log", f["btc_price_usd"]),
        ("Hashprice [$/PH/day], log scale", "log", f["hashprice_usd_per_ph_day"]),
        ("AI lease market rate [$/kW-month]", "lin", f["ai_lease_usd_per_kw_month"]),
        ("Expected mining margin [k$ per utility MW per period], ±2 s.e.", "margin", None),
    ]
    panels += [(f"Power price, {r} [$/MWh]", "lin", st) for r, st in res.power.items()]
    cols = 2
    rows = -(-len(panels) // cols)
    height = 0.6 + 2.5 * rows
    fig, axes = new_figure(WIDTH_IN, height, nrows=rows, ncols=cols, squeeze=False)
    fig.subplots_adjust(
        left=0.07,
        right=0.98,
        top=1 - 0.6 / height,
        bottom=0.3 / height,
        wspace=0.18,
        hspace=0.42,
    )
    for k, (name, kind, st) in enumerate(panels):
        ax = axes[k // cols][k % cols]
        if kind == "margin":
            for i, site in enumerate(res.site_names):
                m = res.margin_mean_usd_per_mw[i] / 1e3
                se = res.margin_stderr_usd_per_mw[i] / 1e3
                color = PALETTE[(i + 1) % len(PALETTE)]
                ax.plot(x, m, lw=1.5, color=color, label=site)
                ax.fill_between(x, m - 2 * se, m + 2 * se, color=color, alpha=0.2, lw=0)
            if len(res.site_names) <= 8:
                ax.legend(fontsize=7, loc="upper right")
        else:
            _fan(ax, x, st, "", PALETTE[0])
            if kind == "log":
                plain_log_axis(ax)
        title(ax, name, 9)
        date_axis(ax, x)
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        ["5–95% of paths", "median", "mean"],
        loc="upper right",
        ncol=3,
        fontsize=8,
        bbox_to_anchor=(0.98, 1.0),
    )
    fig.suptitle("Market simulation", fontsize=10, x=0.07, ha="left", y=1 - 0.15 / height)
    return save(fig, path)


def period_x(period_starts: Sequence[dt.date | str]) -> np.ndarray:
    """Decimal years of the period start dates (the x values of every time chart)."""
    return np.array([decimal_year(d) for d in period_starts])


def simulation_charts(out: Path, res: SimulationResult) -> list[Path]:
    """The fan charts of ``hashpivot simulate``: BTC, hashprice, power, AI lease, margins."""
    x = period_x(res.period_starts)
    f = res.factors
    return [
        fan_chart(
            out / "btc_price.png",
            x,
            {"BTC": f["btc_price_usd"]},
            "BTC price (log scale)",
            "$/BTC",
            log=True,
        ),
        fan_chart(
            out / "hashprice.png",
            x,
            {"hashprice": f["hashprice_usd_per_ph_day"]},
            "Hashprice (log scale)",
            "$/PH/day",
            log=True,
        ),
        power_chart(out / "power_price.png", x, res.power),
        fan_chart(
            out / "ai_lease_rate.png",
            x,
            {"market lease": f["ai_lease_usd_per_kw_month"]},
            "AI lease market rate",
            "$/kW-month",
        ),
        margin_chart(out / "mining_margin.png", x, res),
    ]


#: Standard errors on each side of a candidate's out-of-sample objective (≈ 95%).
CANDIDATE_BAR_SE = 2.0


def candidates_chart(path: Path, candidates: Sequence[dict[str, Any]], chosen: int) -> Path:
    """The plan of each SAA replication: its objective out of sample (on the common selection
    paths) with ±2 standard errors, and in sample (on its own K scenarios, no error bar); the
    kept replication ``chosen`` in bold. ``candidates`` are the dicts of
    ``summary["validation"]["replications"]["candidates"]``."""
    n = len(candidates)
    height = min(1.3 + 0.32 * n, 6.0)
    fig, ax = new_figure(WIDTH_IN, height)
    fig.subplots_adjust(left=0.14, right=0.77, top=1 - 0.4 / height, bottom=0.5 / height)
    y = np.arange(n)[::-1]  # the first replication at the top
    obj = np.array([c["selection_objective_usd"] for c in candidates], dtype=float) / 1e6
    se = np.array([c["selection_stderr_usd"] for c in candidates], dtype=float) / 1e6
    ins = np.array([c["in_sample_objective_usd"] for c in candidates], dtype=float) / 1e6
    kept = np.array([int(c["replication"]) == chosen for c in candidates])
    for mask, color, label in (
        (~kept, PALETTE[0], "out of sample ±2 s.e."),
        (kept, PALETTE[3], "kept plan, out of sample ±2 s.e."),
    ):
        if mask.any():
            ax.errorbar(
                obj[mask],
                y[mask],
                xerr=CANDIDATE_BAR_SE * se[mask],
                fmt="o",
                color=color,
                ms=6,
                capsize=4,
                lw=1.6,
                label=label,
            )
    ax.plot(
        ins,
        y,
        ls="none",
        marker="x",
        color="#7f7f7f",
        ms=6,
        label="in sample (its own K scenarios)",
    )
    ax.set_yticks(
        y,
        [
            f"replication {c['replication']}" + (" (kept)" if k else "")
            for c, k in zip(candidates, kept, strict=True)
        ],
        fontsize=8,
    )
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(False, axis="y")
    return finish(
        fig,
        ax,
        path,
        "Candidate plans of the replications, judged on the same fresh paths",
        "",
        xlabel="objective [$M]",
    )
