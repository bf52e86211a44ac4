"""The command line: version, listing, validation summary, flags, help, tables, progress."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from hashpivot.optimizer.cli import (
    StageDisplay,
    gap_fraction,
    main,
    money_m,
    pct,
    scenario_tables,
    simulation_tables,
    stats_table,
)
from hashpivot.optimizer.solve import SolveProgress
from hashpivot.scenarios import load_scenario, shipped_path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("hashpivot ")


def test_scenarios_lists_shipped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "texas_hybrid", "public_miners_2026"):
        assert name in out


def test_validate_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "demo"]) == 0
    out = capsys.readouterr().out
    assert "rockdale-east" in out and "fluidstack-a" in out and "valid" in out


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2


# --------------------------------------------------------------------------- flags and help
@pytest.mark.parametrize("gap", ["2", "1", "0", "-0.1", "nan", "x"])
def test_mip_gap_outside_zero_one_is_a_usage_error(
    gap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["optimize", "demo", "--mip-gap", gap])
    assert info.value.code == 2
    assert "--mip-gap" in capsys.readouterr().err


def test_gap_fraction_accepts_inside() -> None:
    assert gap_fraction("0.01") == 0.01 and gap_fraction("1e-4") == 1e-4


def test_optimize_help_shows_real_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    sc = load_scenario("texas_hybrid")
    assert f"texas_hybrid {sc.defaults.scenarios}" in out  # --scenarios
    assert f"texas_hybrid {sc.defaults.mip_gap:g}" in out  # --mip-gap
    assert "demo 30" in out  # --time-limit of demo
    assert "HiGHS threads (default: 2)" in out
    assert "(default: None)" not in out and "(default: False)" not in out


# --------------------------------------------------------------------------- number formats
def test_percentages_keep_their_precision() -> None:
    assert pct(0.07125) == "7.125%"
    assert pct(0.0775) == "7.75%" and pct(0.0) == "0%" and pct(0.015) == "1.5%"
    assert pct(0.061925) == "6.1925%"
    assert money_m(2.5e9) == "2,500.0" and money_m(-1.26e6) == "-1.3"


def _render(*tables) -> str:
    console = Console(width=80, record=True)
    for table in tables:
        console.print(table)
    return console.export_text()


def _fits(text: str) -> None:
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # nothing cut


@pytest.mark.parametrize("name", ["demo", "texas_hybrid", "public_miners_2026"])
def test_scenario_tables_fit_80_columns_with_whole_names(name: str) -> None:
    sc = load_scenario(name)
    text = _render(*scenario_tables(sc))
    _fits(text)
    words = set(text.replace(",", " ").split())
    for s in sc.sites:
        assert s.name in words and s.region in words
    for lo in sc.lease_offers:
        assert lo.name in words
        assert all(site in words for site in lo.eligible_sites)
    for f in sc.debt_facilities:
        assert f.name in words


def test_validate_puts_facilities_in_their_own_table() -> None:
    sc = load_scenario("texas_hybrid")
    tables = scenario_tables(sc)
    fac = tables[-1]
    assert "debt facilities" in str(fac.title)
    headers = [str(c.header).replace("\n", " ") for c in fac.columns]
    assert headers[:3] == ["facility (kind)", "rate", "size $M"]
    assert {"tenor years", "draw periods", "repay", "cov."} <= set(headers)
    text = _render(fac)
    # senior-secured-2031: 7.125 %, $2,500M, draws in periods 0–12, linear repayment
    assert "7.125%" in text and "2,500.0" in text and "0–12" in text and "linear" in text
    offer_headers = {str(c.header) for t in tables[1:-1] for c in t.columns}
    assert "rate" not in offer_headers and "size $M" not in offer_headers


def test_stats_table_fits_80_columns() -> None:
    st = {
        "objective_usd": -12_345.6e6,
        "mean_equity_usd": 23_456.7e6,
        "stderr_usd": 123.4e6,
        "cvar_usd": -4_337.9e6,
        "p_default": 0.998,
        "p_breach": 1.0,
    }
    names = ["plan", "plan, in sample", "stay_mining", "convert_all", "greedy"]
    text = _render(stats_table("Value and risk", dict.fromkeys(names, st)))
    _fits(text)
    for name in names:
        assert name in text
    assert "-12,345.6" in text and "99.80%" in text and "100.00%" in text


def _factor(values: list[float]) -> SimpleNamespace:
    a = np.array(values)
    return SimpleNamespace(mean=a, p05=0.5 * a, p95=2.0 * a)


def test_simulation_table_one_format_per_kind() -> None:
    res = SimpleNamespace(
        scenario="texas_hybrid",
        paths=50_000,
        backend="numpy",
        seconds=1.0,
        t_years=np.array([0.25, 0.5, 0.75, 1.0, 1.25]),
        factors={
            "btc_price_usd": _factor([61_658.4, 7e4, 8e4, 9e4, 147_724.8]),
            "hashprice_usd_per_ph_day": _factor([26.94, 20, 10, 5, 0.877]),
            "ai_occupancy": _factor([0.76, 0.77, 0.78, 0.79, 0.4]),
        },
        power={"ercot-north": _factor([40.78, 41, 41, 41, 41.75])},
        site_names=["garden-city", "rockdale"],
        margin_mean_usd_per_mw=np.full((2, 5), 5538.7),
        margin_stderr_usd_per_mw=np.full((2, 5), 503.3),
    )
    text = _render(*simulation_tables(res))
    _fits(text)
    assert "e+0" not in text and "e-0" not in text  # no scientific notation
    assert "61,658" in text and "295,450" in text  # BTC price: whole dollars (p95 = 2 × mean)
    assert "0.88" in text and "26.94" in text  # hashprice: cents
    assert "76.0%" in text  # occupancy: a percentage
    assert "garden-city" in text and "5,539" in text and " 503" in text


# --------------------------------------------------------------------------- progress lines
def test_stage_display_plain_lines_when_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with StageDisplay() as display:
        for done in range(0, 10_001, 1000):
            display.paths("reduce", done, 10_000)
        display.solve(SolveProgress("regime 01", 12.0, 120.0, 625.7e6, 632.8e6, 0.01135))
        display.log("regime 01", "Solving MIP model with:")
    err = capsys.readouterr().err.splitlines()
    reduce = [line for line in err if line.startswith("reduce:")]
    # at most one line every few seconds, and one at the end
    assert reduce[0].startswith("reduce: 0/10,000 paths") and reduce[-1].startswith(
        "reduce: 10,000/10,000 paths"
    )
    assert len(reduce) == 2
    assert "solve: regime 01 12/120 s, gap 1.14%, best 625.7, bound 632.8 $M" in err
    assert "[regime 01] Solving MIP model with:" in err
    assert all(len(line) <= 80 for line in err)


def test_stage_display_quiet_prints_only_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    with StageDisplay(quiet=True) as display:
        display.paths("simulate", 5, 5)
        display.warn("too few paths")
    err = capsys.readouterr().err
    assert "simulate" not in err and "warning: too few paths" in err


def test_stage_display_on_a_terminal_fits_80_columns() -> None:
    console = Console(width=80, force_terminal=True, record=True)
    display = StageDisplay(console=console)
    display.paths("simulate", 50_000, 50_000)
    display.paths("reduce", 12_000, 100_000)
    display.solve(SolveProgress("without covenants", 117.0, 300.0, 12_345.6e6, 23_456.7e6, 0.9))
    assert display.live
    table = display.bar.make_tasks_table(display.bar.tasks)
    probe = Console(width=80, record=True)
    probe.print(table)
    text = probe.export_text()
    _fits(text)
    assert "without covenants 117/300 s" in text
    assert "gap 90.00%, best 12,345.6, bound 23,456.7 $M" in text
    assert "100,000" in text


def test_a_scenario_gap_of_one_is_refused_in_words(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = shipped_path("demo").read_text()
    assert "  mip_gap: 0.001" in text
    path = tmp_path / "gap1.yaml"
    path.write_text(text.replace("  mip_gap: 0.001", "  mip_gap: 1.0"))
    assert main(["optimize", str(path), "--backend", "numpy", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    # refused by the CLI here, or by the scenario's own range where the schema has one
    assert "defaults.mip_gap" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
