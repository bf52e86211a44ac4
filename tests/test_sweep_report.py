"""Sweep table and report: main effects by hand, a self-contained page."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from hashpivot.optimizer.sweep import tornado
from hashpivot.optimizer.sweep_report import sweep_report_html


def _frame() -> pd.DataFrame:
    rows = []
    for a in (0.0, 0.4):
        for b in (9e6, 12e6):
            rows.append(
                {
                    "variant": f"a={a},b={b}",
                    "status": "ok",
                    "error": "",
                    "override:a": a,
                    "override:b": b,
                    "objective_usd": 100e6 + 500e6 * a - 10 * (b - 9e6),
                    "objective_low95_usd": 0.0,
                    "objective_high95_usd": 0.0,
                    "p_breach": 0.05,
                    "p_breach_upper95": 0.07,
                    "p_default": 0.0,
                    "converted_mw": 40.0 + 100 * a,
                    "leases_signed": "x",
                    "debt_drawn_usd": 1e6,
                    "solver_status": "optimal",
                    "solver_gap": 0.0005,
                }
            )
    rows.append({"variant": "bad", "status": "failed", "error": "no feasible plan: lease 'x'"})
    return pd.DataFrame(rows)


def test_tornado_main_effects_by_hand():
    t = tornado(_frame(), "objective_usd")
    # a: mean at 0.0 = 100e6 − 15e6 = 85e6; at 0.4 = 285e6; b: at 9e6 = 200e6; at 12e6 = 170e6
    assert list(t["field"]) == ["a", "b"]
    assert t.loc[0, "low"] == pytest.approx(85e6) and t.loc[0, "high"] == pytest.approx(285e6)
    assert t.loc[1, "swing"] == pytest.approx(30e6)
    assert t.loc[1, "at_high"] == "9000000.0"


def test_sweep_report_is_self_contained_and_names_failures():
    page = sweep_report_html(_frame(), "demo-sweep", "a test")
    for ref in re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)""", page):
        assert ref.startswith("data:"), ref
    assert page.count("<img") == 2
    assert "no feasible plan: lease &#x27;x&#x27;" in page
    assert "1 of 5 variants failed" in page


def test_sweep_report_judges_the_guarantee_on_covenant_or_minimum_cash():
    frame = _frame()
    ok = frame["status"] == "ok"
    frame.loc[ok, "p_breach_any"] = 0.12
    frame.loc[ok, "p_breach_any_upper95"] = 0.135
    frame.loc[ok, "guarantee_holds"] = [False, True, True, True]
    page = sweep_report_html(frame, "demo-sweep", "a test")
    # the bound of the guarantee (12% [13.5%]), not the covenant-only one (5% [7%])
    assert page.count("12.0% [13.5%]") == 4 and "5.0% [7.0%]" not in page
    assert page.count("NOT met") == 1 and page.count("<td>holds</td>") == 3
    assert "The covenant guarantee does NOT hold for 1 of 4 finished variants" in page
    assert "a=0.0,b=9000000.0." in page
    # the solver's gap is that of its own sample, not the plan's distance to the best
    assert "<th>solver (MIP gap on its K scenarios)</th>" in page and "optimal (0.05%)" in page
