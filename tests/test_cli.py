"""The command line: version, listing, validation summary, flags, help, tables, progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import snapshot, validation_example
from rich.console import Console

from hashpivot.optimizer.cli import (
    StageDisplay,
    build_parser,
    gap_fraction,
    guarantee_alarms,
    main,
    money_m,
    paired_line,
    pct,
    print_validation,
    scenario_tables,
    simulation_tables,
    stats_table,
    validation_options,
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


# --------------------------------------------------------------------------- safe --out
CLI = [sys.executable, "-m", "hashpivot.optimizer.cli"]
#: Sizes that would run for minutes: a refusal must come before any of this work.
HUGE = {
    "simulate": ["simulate", "demo", "--paths", "50000000"],
    "optimize": ["optimize", "demo", "--paths", "50000000", "--eval-paths", "50000000"],
    "evaluate": ["evaluate", "demo", "--policy", "stay_mining", "--paths", "50000000"],
}
#: Seconds within which a refused --out exits, imports included, on a loaded 2-core machine
#: (about 1 s on a quiet one); the HUGE sizes would take minutes had any work started.
REFUSAL_S = 15.0


def user_tree(root: Path) -> None:
    (root / "proj" / "sub").mkdir(parents=True)
    (root / "proj" / "important.txt").write_bytes(b"keep \x00\xff me\n")
    (root / "proj" / "sub" / "x.txt").write_text("x")
    (root / "afile.txt").write_text("a user's file")
    (root / "link").symlink_to(root / "proj")
    (root / "dangling").symlink_to(root / "nowhere")


@pytest.mark.parametrize("command", sorted(HUGE))
@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("proj", "not a hashpivot output"),
        ("proj/sub/..", "not a hashpivot output"),
        ("afile.txt", "not a directory"),
        ("afile.txt/sub", "afile.txt is not a directory"),
        ("link", "symbolic link"),
        ("dangling", "symbolic link"),
        ("/proc/x", "cannot create directories in /proc"),
    ],
)
def test_unsafe_out_refused_before_any_work(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    out: str,
    why: str,
) -> None:
    if out.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    user_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    for extra in ([], ["--overwrite"]):
        assert main([*HUGE[command], "--backend", "numpy", "--out", out, *extra]) == 2
    assert time.perf_counter() - t0 < 2 * REFUSAL_S  # two runs
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(why in line and out in line for line in err), err
    assert snapshot(tmp_path) == before


def test_unwritable_out_one_line_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("f")
    for out in ("/proc/x", "/sys/x", str(tmp_path / "f.txt" / "sub")):
        if not Path(out).parent.exists() and out.startswith("/"):
            continue
        t0 = time.perf_counter()
        proc = subprocess.run(
            CLI + [*HUGE["simulate"], "--backend", "numpy", "--out", out],
            capture_output=True,
            text=True,
            timeout=120,
        )
        seconds = time.perf_counter() - t0
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"output directory {out}: ")
        assert seconds < REFUSAL_S
    assert (tmp_path / "f.txt").read_text() == "f"


def test_overwrite_replaces_only_previous_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    args = ["simulate", "demo", "--paths", "200", "--backend", "numpy", "--quiet"]
    args += ["--out", str(out)]
    assert main(args) == 0
    manifest = json.loads((out / ".hashpivot-manifest.json").read_text())
    assert manifest["command"] == "simulate demo" and "simulation.json" in manifest["files"]
    first = snapshot(out)
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == first
    (out / "notes.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "simulation.json").is_file()
    (out / "notes.txt").unlink()
    assert main([*args, "--overwrite", "--seed", "9"]) == 0
    assert set(os.listdir(out)) == set(first)
    assert (out / "simulation.json").read_bytes() != first["simulation.json"]
    assert sorted(os.listdir(tmp_path)) == ["sim"]


@pytest.mark.parametrize("name", ["..", "../victim", "/tmp/x", ".hidden"])
def test_default_output_never_leaves_hashpivot_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    text = (Path(__file__).parents[1] / "scenarios" / "shipped" / "demo.yaml").read_text()
    assert "\nname: demo\n" in text
    proj = tmp_path / "proj"
    proj.mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "v.txt").write_text("v")
    sc = proj / "sc.yaml"
    sc.write_text(text.replace("\nname: demo\n", f"\nname: {json.dumps(name)}\n"))
    (proj / "important.txt").write_text("keep")
    before = snapshot(tmp_path)
    monkeypatch.chdir(proj)
    code = main(["simulate", str(sc), "--paths", "200", "--backend", "numpy", "--quiet"])
    assert code in (0, 2)  # refused by validate, or written under hashpivot-out/
    after = snapshot(tmp_path)
    new = {k for k in after if k not in before}
    assert all(k.startswith("proj/hashpivot-out") for k in new), new
    assert {k: after[k] for k in before} == before
    if code == 0:
        (made,) = os.listdir(proj / "hashpivot-out")
        assert made.endswith("-simulate") and not made.startswith(".")


def test_sigkill_while_computing_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        CLI
        + ["optimize", "demo", "--paths", "2000", "--scenarios", "4", "--eval-paths", "200"]
        + ["--time-limit", "20", "--backend", "numpy", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3.0)
    assert proc.poll() is None, "finished before the kill: the test proves nothing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert list(tmp_path.iterdir()) == []  # no hashpivot-out/, no output, no temporary dir


# --------------------------------------------------------------------------- flags and help
@pytest.mark.parametrize("gap", ["2", "1", "0", "-0.1", "nan", "x"])
def test_mip_gap_outside_zero_one_is_a_usage_error(
    gap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["optimize", "demo", "--mip-gap", gap])
    assert info.value.code == 2
    assert "--mip-gap" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["optimize", "demo", "--paths", "-5"],
        ["optimize", "demo", "--replicatoins", "2"],
        ["evaluate", "demo"],
        ["evaluate", "demo", "--policy", "greedy", "--workers", "2", "--scheduler", "x"],
        ["frobnicate"],
        ["evaluate", "demo", "--policy", "greedy", "--out", ""],  # not the default directory
        ["sweep", "s.yaml", "--out", " "],
    ],
)
def test_a_usage_error_is_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()  # no usage block before the problem
    assert line.startswith("hashpivot") and " error: " in line and line.endswith("--help')")


def test_gap_fraction_accepts_inside() -> None:
    assert gap_fraction("0.01") == 0.01 and gap_fraction("1e-4") == 1e-4


def test_optimize_help_shows_real_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    sc = load_scenario("texas_hybrid")
    assert f"texas_hybrid {sc.defaults.scenarios}" in out  # --scenarios
    assert f"texas_hybrid {sc.defaults.mip_gap:g}" in out  # --mip-gap
    assert f"demo {load_scenario('demo').defaults.solver_time_limit_s:g}" in out  # --time-limit
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
        "p_min_cash_breach": 0.123,
    }
    names = ["plan", "plan, in sample", "stay_mining", "convert_all", "greedy", "expected_value"]
    text = _render(stats_table("Value and risk", dict.fromkeys(names, st)))
    _fits(text)
    for name in names:
        assert name in text
    assert "-12,345.6" in text and "99.8%" in text and "100.0%" in text and "12.3%" in text


def test_stats_table_caption_explains_a_negative_cvar_and_speaks_only_of_rows_it_has() -> None:
    st = {
        "objective_usd": 424.8e6,
        "mean_equity_usd": 414.9e6,
        "stderr_usd": 1.9e6,
        "cvar_usd": -98.7e6,
        "p_default": 0.03,
        "p_breach": 0.05,
    }
    evaluate = " ".join(_render(stats_table("t", {"greedy": st}, period="month")).split())
    assert "(negative: even those paths end with positive equity)" in evaluate
    assert "in sample" not in evaluate  # evaluate has no in-sample row
    assert "where cash ends a month below the minimum" in evaluate
    optimize = " ".join(_render(stats_table("t", {"plan": st}, in_sample=True)).split())
    assert "(none in sample: K weighted scenarios are not a sample)" in optimize
    assert "where cash ends a quarter below the minimum" in optimize
    st["objective_stderr_usd"] = 2.3e6
    (row,) = [
        line for line in _render(stats_table("t", {"plan": st})).splitlines() if "plan" in line
    ]
    assert row.split() == ["plan", "424.8", "2.3", "414.9", "-98.7", "3.0%", "5.0%", "0.0%"]


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


# --------------------------------------------------------------------------- how sure are we
@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--replications", "0"),
        ("--replications", "x"),
        ("--batches", "1"),
        ("--batches", "2.5"),
        ("--calibration-rounds", "-1"),
    ],
)
def test_validation_flag_out_of_range_is_one_line(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert main(["optimize", "demo", flag, value, "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{flag} {value}: must be an integer >= ")
    assert not out.exists()  # refused before any work


def test_only_the_validation_flags_set_reach_optimize() -> None:
    parser = build_parser()
    assert validation_options(parser.parse_args(["optimize", "demo"])) == {}
    args = parser.parse_args(
        ["optimize", "demo", "--replications", "3", "--batches", "2", "--calibration-rounds", "0"]
    )
    assert validation_options(args) == {"replications": 3, "batches": 2, "calibration_rounds": 0}
    args = parser.parse_args(["optimize", "demo", "--no-validate", "--batches", "10"])
    assert validation_options(args) == {"batches": 10, "validate": False}


def test_validation_flags_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--replications R", "--batches B", "--calibration-rounds N", "--no-validate"):
        assert flag in out
    for flag, default in (
        ("--replications R", "(default: 2)"),
        ("--batches B", "(default: 4)"),
        ("--batch-scenarios N", "(default: 64)"),
        ("--calibration-rounds N", "(default: 3)"),
    ):
        assert default in out.rsplit(flag, 1)[1].split(" --", 1)[0], flag
    assert "0 turns calibration off" in out and "(the fast path)" in out


def test_paired_line_names_the_objective_difference() -> None:
    assert paired_line("greedy", 12.34e6, 0.9e6) == "− greedy: 12.3 ± 0.9 $M (z = 13.7)"
    assert paired_line("stay_mining", 1.0e6, 0.0).endswith("(z = inf)")


@pytest.mark.parametrize("holds", [True, False])
def test_how_sure_block_fits_80_columns_on_a_wide_console(holds: bool) -> None:
    console = Console(width=160, record=True)  # a pipe: wider than the block
    print_validation(console, validation_example(holds=holds))
    text = console.export_text()
    _fits(text)
    assert "How sure are we" in text and "within $4.3M (0.72%)" in text
    verdict = "the guarantee holds" if holds else "the guarantee does NOT hold"
    assert verdict in " ".join(text.split())


def test_how_sure_block_when_validation_is_off() -> None:
    console = Console(width=80, record=True)
    print_validation(console, None)
    text = console.export_text()
    assert "Not assessed (skipped with --no-validate)" in " ".join(text.split())
    assert "Mak–Morton–Wood" not in text


def test_a_guarantee_that_fails_is_an_alarm() -> None:
    assert guarantee_alarms(validation_example(holds=True)) == []
    assert guarantee_alarms(None) == []
    (text,) = guarantee_alarms(validation_example(holds=False))
    assert "the guarantee does NOT hold" in text and "13.6%" in text


# --------------------------------------------------------------------------- split Monte Carlo
@pytest.mark.slow  # ~15 s on a quiet 2-core machine: two evaluations and two spawned workers
def test_evaluate_on_two_workers_writes_the_same_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--workers 2`` splits the paths in blocks over two processes (three blocks here) and
    the summary's statistics are those of the run in this process, bit for bit."""
    import hashpivot.kernels.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "EVAL_BLOCK_PATHS", 512)
    args = ["evaluate", "demo", "--policy", "greedy", "--paths", "1500", "--backend", "numpy"]
    assert main(args + ["--quiet", "--out", str(tmp_path / "one")]) == 0
    assert main(args + ["--quiet", "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    for key in ("out_of_sample", "baselines", "vs_baselines"):
        assert one[key] == two[key], key
    assert one["out_of_sample"]["paths"] == 1500


@pytest.mark.slow  # two simulations of 140,000 paths with charts, two spawned workers
def test_simulate_on_two_workers_writes_the_same_statistics(tmp_path: Path) -> None:
    """``simulate --workers 2``: 140,000 paths in three fixed blocks over two processes give
    the statistics of the run in this process, bit for bit."""
    args = ["simulate", "demo", "--paths", "140000", "--backend", "numpy", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    assert main(args + ["--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / d / "simulation.json").read_text()) for d in ("one", "two"))
    assert one.pop("seconds") > 0 and two.pop("seconds") > 0  # wall clock: the only difference
    assert one == two


def test_workers_and_scheduler_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in (
        ["simulate", "demo"],
        ["optimize", "demo"],
        ["evaluate", "demo", "--policy", "greedy"],
    ):
        with pytest.raises(SystemExit) as info:
            main(cmd + ["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"])
        assert info.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err


# --------------------------------------------------------------------------- sweep table
def _sweep_frame():
    import pandas as pd

    base = {
        "status": "ok",
        "error": "",
        "objective_usd": 270.2e6,
        "objective_low95_usd": 261.0e6,
        "objective_high95_usd": 279.3e6,
        "p_breach_upper95": 0.021,  # covenants only
        "converted_mw": 80.0,
    }
    return pd.DataFrame(
        [
            base | {"variant": "a", "p_breach_any_upper95": 0.386, "guarantee_holds": False},
            base | {"variant": "b", "p_breach_any_upper95": 0.057, "guarantee_holds": True},
            {"variant": "c", "status": "failed", "error": "boom"},
        ]
    )


def test_sweep_table_shows_the_guarantee_bound_and_flags_a_variant_that_breaks_it() -> None:
    from hashpivot.optimizer.cli import sweep_alarms, sweep_table

    frame = _sweep_frame()
    console = Console(width=160, record=True)
    console.print(sweep_table(frame, "s"))
    rows = {
        line.split("│")[1].strip(): line
        for line in console.export_text().splitlines()
        if line.count("│") > 3
    }
    # the bound the guarantee is judged on (covenant or minimum cash), not the covenant-only one
    assert "38.6%" in rows["a"] and "NOT met" in rows["a"] and "2.1%" not in rows["a"]
    assert "5.7%" in rows["b"] and "holds" in rows["b"]
    assert "failed" in rows["c"]
    (alarm,) = sweep_alarms(frame)
    assert alarm.startswith("a: the covenant guarantee does NOT hold (95% bound 38.6%")


def test_sweep_table_without_guarantee_columns_falls_back_to_the_covenant_bound() -> None:
    from hashpivot.optimizer.cli import sweep_alarms, sweep_table

    frame = _sweep_frame().drop(columns=["p_breach_any_upper95", "guarantee_holds"])
    console = Console(width=160, record=True)
    console.print(sweep_table(frame, "s"))
    text = console.export_text()
    assert "2.1%" in text and "NOT met" not in text
    assert sweep_alarms(frame) == []


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``hashpivot evaluate demo --policy convert_all`` on 400 paths: its folder and stdout."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("evaluate") / "ev"
    argv = ["evaluate", "demo", "--policy", "convert_all", "--paths", "400", "--out", str(out)]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([*argv, "--backend", "numpy", "--seed", "3"]) == 0
    return out, buf.getvalue()


def test_evaluate_names_every_file_it_wrote(evaluated) -> None:
    out, text = evaluated
    (line,) = [x for x in text.splitlines() if x.startswith("wrote ")]
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert sorted(line.split("(", 1)[1].rstrip(")").split(", ")) == written


def test_evaluate_gives_the_breach_and_default_rates_their_exact_bounds(evaluated) -> None:
    from hashpivot.kernels.stats import clopper_pearson_upper
    from hashpivot.optimizer.wording import rate

    out, text = evaluated
    summary = json.loads((out / "summary.json").read_text())
    st, c = summary["out_of_sample"], summary["covenant_bound"]
    m, n_any = st["paths"], st["breach_events"]["any"]
    assert c["p_breach"] == n_any / m and c["upper95"] == clopper_pearson_upper(n_any, m)
    assert c["p_default_upper95"] == clopper_pearson_upper(st["default_events"], m)
    assert c["target"] == pytest.approx(0.10) and c["holds"] == (c["upper95"] <= 0.10)
    words = " ".join(text.split())
    shown = rate(c["p_breach"], c["target"])
    assert f"breaches a covenant or minimum cash on {shown} of 400 fresh paths" in words
    assert "with 95% confidence the true rate is below" in words and "Clopper–Pearson" in words
    assert "the guarantee holds" in words or "the guarantee does NOT hold" in words
