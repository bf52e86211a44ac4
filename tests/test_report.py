"""report.html: self-contained, dated, with the lender sections and an honest gap warning."""

from __future__ import annotations

import copy
import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import NO_VALIDATION, validation_example

from hashpivot.kernels.cashflow import cash_flows
from hashpivot.optimizer import optimize
from hashpivot.optimizer.charts import (
    candidates_chart,
    decimal_year,
    new_figure,
    period_label,
    plain_log_axis,
    quarter_label,
)
from hashpivot.optimizer.report import (
    gap_warning,
    how_sure_html,
    report_html,
    report_numbers,
    sources_and_uses,
    weighted_quantiles,
    write_optimize_outputs,
)

SECTIONS = (
    "What this means",
    "Plan",
    "Value and risk",
    "Cash and covenants",
    "Yearly results",
    "Sources and uses",
    "Debt schedule",
    "BTC treasury",
    "Market assumptions",
)


@pytest.fixture(scope="module")
def result():
    return optimize(
        "demo",
        paths=400,
        n_scenarios=4,
        eval_paths=400,
        seed=5,
        backend="numpy",
        time_limit_s=20,
        **NO_VALIDATION,
    )


@pytest.fixture(scope="module")
def written(result, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("rep") / "demo"
    write_optimize_outputs(result, out)
    return out, (out / "report.html").read_text(encoding="utf-8")


def test_report_references_no_external_file(written) -> None:
    _, page = written
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I)
    assert refs, "the page has images and anchors"
    for ref in refs:
        assert ref.startswith("data:") or ref.startswith("#"), ref[:60]
    assert "<img" in page and page.count("data:image/svg+xml;base64,") >= 6
    assert not re.search(r"<link\b|<script\b|@import|url\(", page, flags=re.I)


def test_report_has_every_section(written) -> None:
    _, page = written
    for title in SECTIONS:
        assert title in page, title
    assert "worst 5% of paths" in page  # CVaR in words
    assert "K scenarios" in page and "representative scenarios" in page


def test_plan_table_and_timeline_use_dates(result, written) -> None:
    _, page = written
    sc = result.scenario
    started = np.flatnonzero(result.plan.blocks.sum(axis=0) > 0)
    assert started.size  # demo converts
    first = sc.horizon.period_start(int(started[0]))
    assert f"{first.year} Q{(first.month - 1) // 3 + 1}" in page
    assert f"<td>{first.isoformat()}</td>" in page
    assert "started in periods" not in page  # the old table of period indices


def test_gap_warning_only_when_the_gap_is_missed(result, written) -> None:
    _, page = written
    summary = result.summary()
    summary["solver"].update(status="optimal", gap=0.0005, target_gap=0.001, gap_ok=True)
    assert gap_warning(summary, result.scenario) is None
    assert "id='gap-warning'" not in report_html(result, summary, [])
    summary["solver"].update(status="time_limit", gap=0.107, target_gap=0.001, gap_ok=False)
    summary["warnings"] = ["only 4 scenarios: covenant confidence is coarse"]
    page = report_html(result, summary, [])
    top = page[: page.index("What this means")]
    assert "id='gap-warning'" in top and "10.70%" in top
    assert "--time-limit" in top and "--scenarios" in top
    assert "only 4 scenarios: covenant confidence is coarse" in top


def test_gap_warning_without_the_new_summary_keys(result) -> None:
    """Before pipeline adds target_gap / gap_ok: a time limit above the scenario's gap warns."""
    summary = copy.deepcopy(result.summary())
    for k in ("target_gap", "gap_ok"):
        summary["solver"].pop(k, None)
    summary["solver"].update(status="time_limit", gap=0.2)
    assert "20.00%" in gap_warning(summary, result.scenario)
    summary["solver"].update(status="optimal", gap=0.0)
    assert gap_warning(summary, result.scenario) is None


def test_sources_equal_uses_and_match_the_cash_flows(result) -> None:
    """Yearly sums add up to the horizon totals, and the mean end cash is the kernel's."""
    sc, red = result.scenario, result.reduced
    nums = report_numbers(sc, result.plan, red)
    cf = cash_flows(sc, result.plan, red.coefficient_arrays())
    w = red.weights / red.weights.sum()
    assert nums.cash_end_usd == pytest.approx(float(w @ cf.cash_usd[:, -1]), rel=1e-12)
    assert nums.ebitda_usd == pytest.approx(w @ cf.ocf_usd, rel=1e-9, abs=1e-3)
    parts = (
        nums.mining_margin_usd
        - nums.mining_fixed_opex_usd
        + nums.lease_usd
        + nums.market_usd
        + nums.racks_usd
        - nums.it_opex_usd
        - nums.penalties_usd
    )
    assert parts == pytest.approx(nums.ebitda_usd, rel=1e-9, abs=1e-3)


def test_weighted_quantiles_by_hand() -> None:
    x = np.array([[1.0, np.nan], [2.0, np.nan], [10.0, np.nan]])
    w = np.array([0.5, 0.3, 0.2])
    q = weighted_quantiles(x, w, (0.05, 0.5, 0.6, 0.95))
    assert q[:, 0].tolist() == [1.0, 1.0, 2.0, 10.0]  # cumulative 0.5, 0.8, 1.0
    assert np.isnan(q[:, 1]).all()


def test_date_helpers() -> None:
    assert decimal_year(dt.date(2027, 7, 1)) == 2027.5
    assert quarter_label("2027-08-15") == "2027 Q3"
    assert period_label("2027-08-01", 4) == "2027 Q3"
    assert period_label("2027-08-01", 12) == "2027-08"


def test_log_axis_reads_plain_numbers() -> None:
    fig, ax = new_figure(4, 3)
    ax.plot([0, 1], [4.0, 60.0])
    plain_log_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"[0-9,.]+", s) for s in labels), labels


def test_capacity_chart_of_a_large_fleet_shows_the_fleet_and_top_sites(tmp_path: Path) -> None:
    """Beyond MAX_SITE_PANELS sites: a fleet-total panel and the sites converting most."""
    from types import SimpleNamespace  # noqa: PLC0415

    from hashpivot.kernels.plan import Plan  # noqa: PLC0415
    from hashpivot.optimizer.report import MAX_SITE_PANELS, mw_by_use_chart  # noqa: PLC0415
    from hashpivot.scenarios import load_scenario  # noqa: PLC0415

    sc = load_scenario("public_miners_2026")
    assert len(sc.sites) > MAX_SITE_PANELS
    caps = [s.interconnect_mw for s in sc.sites]
    small = int(np.argmin(caps))  # shown only because it converts
    plan = Plan.empty(sc)
    plan.blocks[small, 0] = 1
    svg = mw_by_use_chart(tmp_path / "mw.svg", SimpleNamespace(scenario=sc, plan=plan))
    text = svg.read_text(encoding="utf-8")
    assert f"fleet ({len(sc.sites)} sites)" in text
    assert sc.sites[small].name in text
    shown = [s.name for s in sc.sites if s.name in text]
    assert len(shown) == MAX_SITE_PANELS - 1, shown
    assert f"{len(sc.sites) - (MAX_SITE_PANELS - 1)} more sites in plan.csv" in text
    assert "<image" not in text  # vector lines, nothing raster


def test_matplotlib_is_imported_only_when_a_chart_is_drawn() -> None:
    """Commands that draw nothing (validate, schema, …) do not pay matplotlib's import."""
    code = (
        "import sys, hashpivot.optimizer.cli, hashpivot.optimizer.report, "
        "hashpivot.optimizer.charts; print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_gap_warning_when_no_gap_is_known(result) -> None:
    """A time limit without a bound (gap None) still warns; an optimal status does not."""
    summary = copy.deepcopy(result.summary())
    summary["solver"].update(status="time_limit", gap=None, target_gap=0.001, gap_ok=False)
    words = gap_warning(summary, result.scenario)
    assert "time_limit" in words and "without a proven gap" in words and "nan" not in words
    assert "id='gap-warning'" in report_html(result, summary, [])


def test_covenant_ratios_match_the_kernel(result) -> None:
    """Each scenario's lowest DSCR is the kernel's ``min_dscr``; leverage breaches are the
    kernel's leverage breaches; the plotted quantiles are values of the scenarios."""
    sc, red = result.scenario, result.reduced
    nums = report_numbers(sc, result.plan, red)
    cf = cash_flows(sc, result.plan, red.coefficient_arrays())
    assert nums.tested.any()  # demo draws covenant-bearing debt
    lowest = np.where(np.isnan(nums.dscr).all(axis=1), np.inf, np.nanmin(nums.dscr, axis=1))
    np.testing.assert_allclose(lowest, cf.min_dscr, rtol=1e-12)
    with np.errstate(invalid="ignore"):
        over = np.nan_to_num(nums.leverage, nan=0.0) > sc.covenants.max_leverage * (1 + 1e-9)
    assert (over.any(axis=1) <= cf.leverage_breach.any(axis=1)).all()
    for t in np.flatnonzero(~np.isnan(nums.dscr_q[1])):
        assert nums.dscr_q[1, t] in nums.dscr[:, t]


def test_sources_and_uses_balance_with_the_kernels_cash_interest(result) -> None:
    sc, red = result.scenario, result.reduced
    nums = report_numbers(sc, result.plan, red)
    sources, uses = sources_and_uses(sc, result.plan, nums)
    assert sum(v for _, v in sources) == pytest.approx(sum(v for _, v in uses), rel=1e-12)
    cf = cash_flows(sc, result.plan, red.coefficient_arrays())
    w = red.weights / red.weights.sum()
    h = sc.horizon
    prev = np.concatenate([np.full((len(w), 1), sc.treasury.cash_usd), cf.cash_usd[:, :-1]], 1)
    interest = float(w @ (prev * h.cash_interest_rate * h.dt_years).sum(axis=1))
    got = dict(sources)["interest on cash balances (net)"]
    assert got == pytest.approx(interest, rel=1e-9, abs=1.0)
    assert dict(uses)["capex (conversion and GPU racks)"] > 0  # demo converts


# --------------------------------------------------------------------------- how sure are we
def test_how_sure_section_in_words_and_tables() -> None:
    page = how_sure_html(validation_example(holds=True), "<figure>CANDIDATES</figure>")
    assert page.startswith("<h2 id='how-sure'>How sure are we</h2>")
    assert "This plan is within $4.3M (0.72%) of the best achievable plan" in page
    assert "The limit is 10%: the guarantee holds." in page
    assert "class='alarm'" not in page
    assert "<td>facility senior-secured-2031</td><td>6.0%</td><td>6.3%</td>" in page
    assert (
        "<td>1</td><td>97.5%</td><td>0%</td><td>0</td><td>0.0%</td><td>8.2%</td><td>8.7%</td>"
        in page
    )
    assert "Planning for uncertainty (VSS) is worth $40.6M ± $2.5M" in page
    assert "Perfect foresight (EVPI) would be worth at most $64.2M more" in page
    # the chart of the candidates right after the replications' words and table
    assert page.index("3 independent replications") < page.index("CANDIDATES")
    assert page.rstrip().endswith("<figure>CANDIDATES</figure>")


def test_how_sure_section_when_the_guarantee_fails() -> None:
    page = how_sure_html(validation_example(holds=False))
    alarm = re.search(r"<p class='alarm' id='how-sure-covenant_bound'>([^<]*)</p>", page)
    assert alarm and "the guarantee does NOT hold (3 calibration rounds" in alarm.group(1)
    assert "id='how-sure-calibration_rounds'" in page and "none met the limit" in page


def test_how_sure_section_says_what_was_skipped() -> None:
    v = validation_example()
    v |= {"gap_ci": None, "vss": None, "evpi": None, "replications": None}
    page = how_sure_html(v, "<figure>CANDIDATES</figure>")
    assert page.count("skipped with --no-validate") == 3
    assert "CANDIDATES" not in page  # one replication: nothing to chart
    assert "Mak–Morton–Wood" not in page and "<td>0.0%</td>" in page
    off = how_sure_html(None)
    assert "Not assessed (skipped with --no-validate)" in off and "<table" not in off


def test_candidates_chart_marks_the_kept_plan(tmp_path: Path) -> None:
    reps = validation_example()["replications"]
    svg = candidates_chart(tmp_path / "c.svg", reps["candidates"], reps["chosen"])
    text = svg.read_text(encoding="utf-8")
    assert "replication 1 (kept)" in text and "replication 0" in text
    assert "replication 0 (kept)" not in text and "<image" not in text


def test_report_shows_how_sure_after_what_this_means(
    result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = copy.deepcopy(result.summary())
    summary["validation"] = validation_example(holds=False)
    monkeypatch.setattr(result, "summary", lambda: copy.deepcopy(summary))
    monkeypatch.setattr(result, "timings", dict(result.timings))
    out = write_optimize_outputs(result, tmp_path / "demo")
    page = (out / "report.html").read_text(encoding="utf-8")
    where = page.index("<h2 id='how-sure'>")
    assert page.index("What this means") < where < page.index('<h2 id="plan">')
    section = page[where : page.index('<h2 id="plan">')]
    assert "the guarantee does NOT hold" in section
    assert "data:image/svg+xml;base64," in section  # the candidates chart, embedded
    assert "judged on the same fresh paths as the others" in section  # its caption
    assert "in sample (the MILP&#x27;s K = 4 scenarios)" in page
    assert "objective: plan − baseline ($M)" in page


def test_value_table_gives_the_objective_its_own_standard_error() -> None:
    from hashpivot.optimizer.report import _stats_rows

    oos = {
        "objective_usd": 424.75e6,
        "objective_stderr_usd": 2.26e6,  # CVaR term included: larger than the mean's
        "mean_equity_usd": 414.89e6,
        "stderr_usd": 1.93e6,
        "cvar_usd": -98.67e6,
        "p_default": 0.0292,
        "p_breach": 0.054,
        "p_min_cash_breach": 0.0337,
    }
    ins = {k: v for k, v in oos.items() if "stderr" not in k}  # K scenarios: no s.e.
    plan, in_sample = _stats_rows({"plan": oos, "plan, in sample": ins})
    assert plan[1:3] == ["424.8 ± 2.3", "414.9 ± 1.9"]
    assert in_sample[1:3] == ["424.8", "414.9"]


@pytest.mark.parametrize("holds", [True, False])
def test_what_this_means_states_the_guarantee_rates_with_their_bounds(result, holds) -> None:
    from hashpivot.optimizer.report import what_this_means

    summary = copy.deepcopy(result.summary())
    summary["validation"] = validation_example(holds=holds)
    nums = report_numbers(result.scenario, result.plan, result.reduced)
    text = " ".join(what_this_means(result, summary, nums).split())
    # the same rates as "How sure are we": covenant or minimum cash, with the 95% bounds
    assert "Cash runs out in 0.35% of paths (95% bound 0.44%)" in text
    if holds:
        assert "a covenant or the minimum cash is breached in 8.2% (95% bound 8.7%;" in text
        assert "cannot be shown" not in text and "more often than" not in text
    else:
        assert "a covenant or the minimum cash is breached in 13.2% (95% bound 13.6%;" in text
        assert "That cannot be shown to be within the 10% the covenants allow" in text


def test_solver_section_says_the_mip_gap_is_not_plan_quality(written) -> None:
    _, page = written
    solver = " ".join(page[page.index('<h2 id="solver">') :].split())
    assert "in-sample objective" in solver and "MIP gap" in solver
    assert (
        "on the K scenarios (how well that sample was solved, not the distance to the best plan"
        in solver
    )
    assert '<a href="#how-sure">How sure are we</a>' in solver and "id='how-sure'" in page
