"""Outputs of ``hashpivot sweep``: the tidy table and a self-contained sensitivity report.

``sweep.csv`` (and ``sweep.parquet`` when pyarrow is installed) holds one row per variant;
``sweep_report.html`` embeds its charts as data URIs, so the one file can be emailed: a
tornado chart of the objective and of the converted MW against each swept field (the swing of
the field's main effect: the mean over the other fields at each of its values), and the table.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io

import pandas as pd

from .sweep import OK, guarantee_bound, tornado

#: Resolution of the embedded charts [dots per inch].
DPI = 90


def _png_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def tornado_chart(frame: pd.DataFrame, value: str, title: str, unit: str, scale: float) -> str:
    """A tornado chart of ``value`` as a PNG data URI ('' when nothing varies)."""
    t = tornado(frame, value)
    if t.empty:
        return ""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ok = frame[frame["status"] == OK]
    center = float(ok[value].mean()) / scale
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(t)))
    for i, r in enumerate(t.itertuples()):
        lo, hi = r.low / scale, r.high / scale
        ax.barh(i, hi - lo, left=lo, color="#1f77b4", alpha=0.8)
        ax.text(lo, i, f"{r.at_low} ", ha="right", va="center", fontsize=7)
        ax.text(hi, i, f" {r.at_high}", ha="left", va="center", fontsize=7)
    ax.axvline(center, color="black", lw=1, ls="--", label="mean over variants")
    ax.set_yticks(range(len(t)), [str(f) for f in t["field"]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.25)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    uri = _png_data_uri(fig)
    plt.close(fig)
    return uri


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}"
    return html.escape(str(v))


def sweep_table_html(frame: pd.DataFrame) -> str:
    """The variants as an HTML table: overrides, value with its 95% interval, risk, plan."""
    overrides = [c for c in frame.columns if c.startswith("override:")]
    cols = ["variant", "status", *overrides]
    head = "".join(f"<th>{html.escape(c.removeprefix('override:'))}</th>" for c in cols)
    head += (
        "<th>objective $M [95% CI]</th><th>P(breach) [95% upper]</th><th>guarantee</th>"
        "<th>P(default)</th>"
        "<th>converted MW</th><th>leases</th><th>debt $M</th><th>solver (MIP gap on its K scenarios)</th>"
    )
    rows = []
    for r in frame.to_dict("records"):
        cells = "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in cols)
        if r["status"] == OK:
            bound, holds = guarantee_bound(r)
            p = r["p_breach_any"] if holds is not None else r["p_breach"]
            verdict = (
                "—" if holds is None else "holds" if holds else "<span class='warn'>NOT met</span>"
            )
            cells += (
                f"<td>{r['objective_usd'] / 1e6:,.1f} [{r['objective_low95_usd'] / 1e6:,.1f}, "
                f"{r['objective_high95_usd'] / 1e6:,.1f}]</td>"
                f"<td>{p:.1%} [{bound:.1%}]</td><td>{verdict}</td>"
                f"<td>{r['p_default']:.1%}</td><td>{r['converted_mw']:,.0f}</td>"
                f"<td>{html.escape(str(r['leases_signed']) or '—')}</td>"
                f"<td>{r['debt_drawn_usd'] / 1e6:,.1f}</td>"
                f"<td>{html.escape(str(r['solver_status']))} ({r['solver_gap']:.2%})</td>"
            )
        else:
            cells += f"<td colspan='8' class='warn'>{html.escape(str(r['error']))}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def sweep_report_html(frame: pd.DataFrame, name: str, description: str) -> str:
    """A self-contained sensitivity report of a sweep (charts embedded)."""
    ok = frame[frame["status"] == OK]
    failed = len(frame) - len(ok)
    charts = [
        tornado_chart(frame, "objective_usd", "Objective: swing of each swept field", "$M", 1e6),
        tornado_chart(frame, "converted_mw", "Converted MW: swing of each swept field", "MW", 1),
    ]
    figs = "".join(f"<figure><img src='{c}' alt='tornado chart'></figure>" for c in charts if c)
    best = ok.loc[ok["objective_usd"].idxmax()] if len(ok) else None
    lead = (
        f"<p>Best variant: <b>{html.escape(str(best['variant']))}</b>, objective "
        f"{best['objective_usd'] / 1e6:,.1f} $M (95% interval {best['objective_low95_usd'] / 1e6:,.1f} to "
        f"{best['objective_high95_usd'] / 1e6:,.1f} $M). Each bar shows how far the mean objective "
        "moves across the values of one swept field, averaged over the others: the longest bars "
        "are the assumptions the plan's value depends on most.</p>"
        if best is not None
        else "<p class='warn'>No variant finished.</p>"
    )
    warn = (
        f"<p class='warn'>{failed} of {len(frame)} variants failed; their errors are in the table.</p>"
        if failed
        else ""
    )
    broken = [str(r["variant"]) for r in ok.to_dict("records") if guarantee_bound(r)[1] is False]
    if broken:
        warn += (
            f"<p class='warn'>The covenant guarantee does NOT hold for {len(broken)} of "
            f"{len(ok)} finished variants (95% bound on breaching a covenant or minimum cash "
            "above the allowed rate, 1 − covenants.confidence): "
            f"{html.escape(', '.join(broken))}.</p>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hashpivot sweep — {html.escape(name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 90%; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; }} .warn {{ color: #a04000; }}
</style></head><body>
<h1>hashpivot sweep: {html.escape(name)}</h1>
<p>{html.escape(description)}</p>
<p>{len(frame)} variants, {len(ok)} finished.</p>
{warn}{lead}
{figs}
<h2>Variants</h2>
{sweep_table_html(frame)}
</body></html>
"""


def sweep_table_bytes(frame: pd.DataFrame) -> dict[str, bytes]:
    """``sweep.csv`` (and ``sweep.parquet`` when pyarrow is installed) as bytes by file name."""
    table = frame.drop(columns=[c for c in ("traceback",) if c in frame.columns])
    out = {"sweep.csv": table.to_csv(index=False).encode("utf-8")}
    if importlib.util.find_spec("pyarrow") is not None:
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        out["sweep.parquet"] = buf.getvalue()
    return out
