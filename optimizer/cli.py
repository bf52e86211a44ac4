"""The ``hashpivot`` command line.

Every user error (a bad scenario, a missing GPU asked for by name, an impossible plan) prints
one line per problem on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from hashpivot.scenarios import Scenario, ScenarioError, load_scenario, shipped_descriptions

from . import validation_settings as V_DEFAULTS
from .outputs import OutputError, default_output_dir, prepare_output

#: Exit status of a user error.
EXIT_USAGE = 2
#: Seconds to wait for a Dask scheduler given by address.
SCHEDULER_TIMEOUT_S = 30
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error in what the user asked for; its lines are printed as they are."""

    def __init__(self, lines: Sequence[str] | str) -> None:
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


def package_version() -> str:
    """Installed version of hashpivot."""
    try:
        return version("hashpivot")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


#: Width of tables when the output is not a terminal (files, pipes, CI logs).
PIPE_WIDTH = 160


def make_console(quiet: bool = False, *, stderr: bool = False) -> Console:
    """A rich console; wide when writing to a pipe so tables are not cut."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else PIPE_WIDTH
    return Console(quiet=quiet, highlight=False, width=width, stderr=stderr)


def _console(args: argparse.Namespace) -> Console:
    return make_console(getattr(args, "quiet", False))


# --------------------------------------------------------------------------- commands
def cmd_scenarios(args: argparse.Namespace) -> int:
    table = new_table("Shipped scenarios")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description")
    for name, text in shipped_descriptions().items():
        table.add_row(name, text)
    make_console().print(table)
    return 0


def pct(x: float, max_decimals: int = 4) -> str:
    """A share as a percentage with the precision the number has (0.07125 → '7.125%')."""
    text = f"{x * 100:.{max_decimals}f}".rstrip("0").rstrip(".")
    return f"{text}%"


def money_m(x_usd: float) -> str:
    """Money in $M with one decimal ($M columns and lines use this one format)."""
    return f"{x_usd / 1e6:,.1f}"


def _se(x_usd: float | None) -> str:
    """A standard error in $M, or a dash where there is none (in-sample numbers)."""
    return "—" if x_usd is None or x_usd != x_usd else money_m(x_usd)


def new_table(title: str) -> Table:
    """A table in the CLI's style: a rule under the header, two spaces between columns."""
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)


def _name_column(table: Table, header: str) -> None:
    """A column of names: never wrapped or cut."""
    table.add_column(header, no_wrap=True, overflow="ignore")


def _numbers(table: Table, *headers: str) -> None:
    """Right-aligned number columns: never wrapped or cut (the text columns give way)."""
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)


def scenario_tables(sc: Scenario) -> list[Table]:
    """Summary tables of a scenario: sites; lease offers (terms, then tenants and sites); debt
    facilities, each with its own columns, within 80 columns."""
    h = sc.horizon
    sites = new_table(
        f"{sc.name}: {len(sc.sites)} sites, {h.n_periods} {h.period}s from {h.start_date}"
    )
    _name_column(sites, "site")
    _name_column(sites, "region")
    _numbers(sites, "grid\nMW", "ASIC\nMW", "J/TH", "conv.\nMW", "block\nMW", "capex\n$M/MW")
    _numbers(sites, "lead")
    for s in sc.sites:
        sites.add_row(
            s.name,
            s.region,
            f"{s.interconnect_mw:,.0f}",
            f"{s.asic_mw:,.0f}",
            f"{s.efficiency_j_per_th:.1f}",
            f"{s.convertible_mw:,.0f}",
            f"{s.conversion.block_mw:,.0f}",
            money_m(s.conversion.capex_usd_per_it_mw),
            str(s.conversion.lead_time_periods),
        )
    sites.add_section()
    sites.add_row(
        "total",
        "",
        f"{sum(s.interconnect_mw for s in sc.sites):,.0f}",
        f"{sum(s.asic_mw for s in sc.sites):,.0f}",
        "",
        f"{sum(s.convertible_mw for s in sc.sites):,.0f}",
        "",
        "",
        "",
    )
    sites.caption = (
        "grid: interconnect; conv.: convertible; capex per IT MW; lead: conversion lead time "
        f"[{h.period}s]"
    )
    offers = new_table(f"{len(sc.lease_offers)} lease offers")
    _name_column(offers, "offer")
    _numbers(offers, "IT MW", "$/kW-mo", "escalator", "term\nyears", "start\nperiod", "deliver\nby")
    for lo in sc.lease_offers:
        offers.add_row(
            lo.name,
            f"{lo.it_mw:,.0f}",
            f"{lo.rate_usd_per_kw_month:,.2f}",
            pct(lo.escalator_per_year),
            f"{lo.term_years:g}",
            str(lo.earliest_start_period),
            f"{lo.deliver_by_period}{' (hard)' if lo.hard_deadline else ''}",
        )
    offers.caption = "escalator: rent increase per year; (hard): no delivery after that period"
    parties = new_table("lease tenants and eligible sites")
    _name_column(parties, "offer")
    parties.add_column("tenant", ratio=1)
    parties.add_column("eligible sites", ratio=1)  # wraps between names, never inside one
    for lo in sc.lease_offers:
        parties.add_row(lo.name, lo.tenant, ", ".join(lo.eligible_sites))
    tables = [sites, offers, parties]
    if sc.debt_facilities:
        fac = new_table(f"{len(sc.debt_facilities)} debt facilities")
        _name_column(fac, "facility (kind)")
        _numbers(fac, "rate", "size $M", "tenor\nyears", "draw\nperiods", "fee")
        fac.add_column("repay", no_wrap=True)
        fac.add_column("cov.", no_wrap=True)
        for f in sc.debt_facilities:
            fac.add_row(
                f"{escape(f.name)}\n[dim]{f.kind.replace('_', ' ')}[/dim]",
                pct(f.rate_per_year),
                money_m(f.size_usd),
                f"{f.tenor_years:g}",
                f"{f.draw_start_period}–{f.draw_end_period}",
                pct(f.upfront_fee_share),
                f.repayment,
                "yes" if f.covenants else "no",
            )
        fac.caption = "rate: per year; fee: upfront share of each draw; cov.: covenants apply"
        tables.append(fac)
    return tables


def cmd_validate(args: argparse.Namespace) -> int:
    sc = load_scenario(args.scenario)
    console = _console(args)
    for table in scenario_tables(sc):
        console.print(table)
    console.print(f"[green]{args.scenario}: valid[/green]")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hashpivot scenario"
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return 0


def _backend(args: argparse.Namespace):
    from hashpivot.kernels.backend import BackendError, get_backend  # noqa: PLC0415

    try:
        return get_backend(args.backend, notify=not args.quiet)
    except BackendError as exc:
        raise UserError(str(exc)) from None


#: Seconds between two plain progress lines when stderr is not a terminal.
PLAIN_EVERY_S = 5.0
#: Width of the stage name and of the bar in progress lines (the detail gets the rest of 80).
STAGE_WIDTH = 8
BAR_WIDTH = 12


class StageDisplay:
    """Progress of the pipeline's stages on stderr, at most 80 columns.

    On a terminal: one rich line per stage (name, bar, detail); finished stages stay, so the
    lines never redraw over each other. Elsewhere: plain lines, at most one per stage every
    ``PLAIN_EVERY_S`` and one when a stage ends; also with ``plain`` (``--solver-log``: the
    HiGHS log, labelled by phase, is then never mixed with redrawn bars). Silent when
    ``quiet``, but for warnings.
    """

    def __init__(
        self, quiet: bool = False, console: Console | None = None, *, plain: bool = False
    ) -> None:
        self.console = console or make_console(quiet, stderr=True)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet and not plain
        self.bar = Progress(
            TextColumn(f"[bold]{{task.description:<{STAGE_WIDTH}}}"),
            BarColumn(bar_width=BAR_WIDTH),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=False,
            disable=not self.live,
            refresh_per_second=4,
        )
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        self.last_plain: dict[str, float] = {}
        # a stage starts when the one before it ended (its first report comes after work)
        self.mark = time.perf_counter()

    def __enter__(self) -> StageDisplay:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def _show(self, stage: str, detail: str, done: float, total: float, final: bool) -> None:
        now = time.perf_counter()
        self.started.setdefault(stage, self.mark)
        if final:
            self.mark = now
        if self.live:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total, detail="")
            self.bar.update(self.tasks[stage], completed=done, total=total, detail=detail)
        elif not self.quiet and (
            final or now - self.last_plain.get(stage, -PLAIN_EVERY_S) >= PLAIN_EVERY_S
        ):
            self.last_plain[stage] = now
            self.console.print(f"{stage}: {detail}", markup=False, highlight=False)

    def paths(self, stage: str, done: int, total: int) -> None:
        """A stage measured in paths: (done, total)."""
        elapsed = time.perf_counter() - self.started.setdefault(stage, self.mark)
        detail = f"{done:,}/{total:,} paths  {elapsed:.1f} s"
        self._show(stage, detail, done, total, done >= total)

    def solve(self, p) -> None:
        """The solve: a :class:`~hashpivot.optimizer.solve.SolveProgress`."""
        head = f"{p.phase} {p.elapsed_s:.0f}/{p.limit_s:.0f} s"
        parts = []
        if p.gap is not None:
            parts.append(f"gap {p.gap:.2%}")
        if p.incumbent_usd is not None:
            parts.append(f"best {money_m(p.incumbent_usd)}")
        if p.bound_usd is not None:
            parts.append(f"bound {money_m(p.bound_usd)} $M")
        # on a terminal the numbers go on a second line, so the whole fits 80 columns
        detail = (head + "\n" if self.live else head + ", ") + ", ".join(parts)
        self._show("solve", detail.rstrip(", \n"), min(p.elapsed_s, p.limit_s), p.limit_s, False)

    def count(self, stage: str, done: int, total: int, detail: str) -> None:
        """A stage measured in items (sweep variants): (done, total) and a detail."""
        self._show(stage, detail, done, total, done >= total)

    def solve_done(self, res) -> None:
        """The solve ended: its status and gap."""
        detail = f"{res.status}, gap {res.gap:.2%} in {res.solve_seconds:.1f} s"
        self._show("solve", detail, 1, 1, True)

    def log(self, phase: str, line: str) -> None:
        """A HiGHS log line, labelled with its phase."""
        out = self.console if not self.quiet else make_console(False, stderr=True)
        out.print(f"[{phase}] {line}", markup=False, highlight=False, soft_wrap=True)

    def hard_stop(self) -> None:
        """Ctrl-C and HiGHS did not stop in time (called from another thread): end the
        process as ``main`` would for ``KeyboardInterrupt``, with nothing written."""
        if self.live:
            self.bar.stop()
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    def warn(self, text: str) -> None:
        """A warning in words (shown even when quiet: it changes what the numbers mean)."""
        out = self.console if not self.quiet else make_console(False, stderr=True)
        out.print(f"[bold yellow]warning:[/bold yellow] {escape(text)}")


@contextmanager
def progress_bar(console: Console, label: str) -> Iterator[Callable[[int, int], None]]:
    """One stage measured in paths, fed with (done, total)."""
    with StageDisplay(console.quiet) as display:
        yield lambda done, total: display.paths(label, done, total)


#: Labels and number formats of the simulated factors (one format per kind of quantity).
FACTOR_LABELS = {
    "btc_price_usd": ("BTC price $", "{:,.0f}"),
    "network_hashrate_eh_s": ("hashrate EH/s", "{:,.0f}"),
    "hashprice_usd_per_ph_day": ("hashprice $/PH/day", "{:,.2f}"),
    "ai_lease_usd_per_kw_month": ("AI lease $/kW-mo", "{:,.2f}"),
    "ai_occupancy": ("AI occupancy", "{:.1%}"),
    "gpu_hour_usd": ("GPU hour $", "{:,.2f}"),
}


def simulation_tables(res) -> list[Table]:
    """Summary of a simulation: each factor's mean and 5–95 % band at the first, middle and
    last period (one row per time); the mining margin per site with its standard error."""
    last = len(res.t_years) - 1
    cols = sorted({0, last // 2, last})
    table = new_table(f"{res.scenario}: {res.paths:,} paths on {res.backend} ({res.seconds:.2f} s)")
    _name_column(table, "factor")
    for col in ("year", "mean", "p5", "p95"):
        table.add_column(col, justify="right")
    rows = [(*FACTOR_LABELS.get(k, (k, "{:,.4g}")), v) for k, v in res.factors.items()]
    rows += [(f"power $/MWh [{r}]", "{:,.2f}", v) for r, v in res.power.items()]
    for label, fmt, st in rows:
        for i, t in enumerate(cols):
            table.add_row(
                escape(label) if i == 0 else "",
                f"{res.t_years[t]:g}",
                fmt.format(st.mean[t]),
                fmt.format(st.p05[t]),
                fmt.format(st.p95[t]),
            )
    table.caption = "year: years from the start; p5, p95: 5th and 95th percentiles of the paths"
    margins = new_table("Mining margin [$/MW/period]")
    _name_column(margins, "site")
    _numbers(margins, "year", "mean", "± s.e.")
    for i, site in enumerate(res.site_names):
        m, se = res.margin_mean_usd_per_mw[i], res.margin_stderr_usd_per_mw[i]
        for j, t in enumerate(cols):
            margins.add_row(
                escape(site) if j == 0 else "",
                f"{res.t_years[t]:g}",
                f"{m[t]:,.0f}",
                f"{se[t]:,.0f}",
            )
    return [table, margins]


def cmd_simulate(args: argparse.Namespace) -> int:
    from hashpivot.kernels.simulate import simulate  # noqa: PLC0415

    from .charts import simulation_charts  # noqa: PLC0415
    from .outputs import atomic_output_dir, write_json  # noqa: PLC0415

    sc = load_scenario(args.scenario)
    out = prepare_output(
        args.out or default_output_dir(sc.name, "simulate"), overwrite=args.overwrite
    )
    be = _backend(args)
    console = _console(args)
    paths = args.paths or sc.defaults.paths
    seed = sc.defaults.seed if args.seed is None else args.seed
    with split_executor(args) as executor, progress_bar(console, "simulating") as update:
        res = simulate(
            sc,
            paths,
            seed,
            backend=be,
            chunk_paths=args.chunk_paths,
            progress=update,
            executor=executor,
        )
    with atomic_output_dir(out, overwrite=args.overwrite, command=f"simulate {sc.name}") as tmp:
        write_json(tmp / "simulation.json", res.to_json())
        simulation_charts(tmp, res)
    for table in simulation_tables(res):
        console.print(table)
    console.print(f"wrote {out}/simulation.json and fan charts")
    return 0


def stats_table(
    title: str, rows: dict[str, dict], *, in_sample: bool = False, period: str = "quarter"
) -> Table:
    """Value and risk per policy, in $M with one decimal and percentages (fits 80 columns);
    ``in_sample``: a row is on the MILP's K scenarios (the caption says why it has no s.e.);
    ``period``: the horizon's period (``quarter`` or ``month``)."""
    table = new_table(title)
    _name_column(table, "policy")
    table.padding = (0, 0)  # eight columns in 80: the box's one space between them
    # the s.e. beside the objective it belongs to, not beside the mean
    for col in ("objective", "s.e.", "mean", "CVaR", "default", "breach", "cash<min"):
        table.add_column(col, justify="right", no_wrap=True)
    for name, st in rows.items():
        table.add_row(
            escape(name),
            money_m(st["objective_usd"]),
            _se(st.get("objective_stderr_usd")),
            money_m(st["mean_equity_usd"]),
            money_m(st["cvar_usd"]),
            # one decimal: the standard error of a share over 20,000 paths is ~0.2 points
            f"{st['p_default']:.1%}",
            f"{st['p_breach']:.1%}",
            f"{st.get('p_min_cash_breach', 0.0):.1%}",
        )
    table.caption = (
        "$M of discounted terminal equity: objective = mean − risk weight × CVaR, CVaR = mean "
        "loss in the worst tail (negative: even those paths end with positive equity); s.e.: "
        "of the objective, CVaR term included"
        + (" (none in sample: K weighted scenarios are not a sample)" if in_sample else "")
        + "; default, breach, cash<min: share of paths where cash falls below zero, where a "
        f"covenant breaks, where cash ends a {period} below the minimum"
    )
    return table


def paired_line(name: str, diff_usd: float, stderr_usd: float) -> str:
    """``− greedy: 12.3 ± 0.9 $M (z = 13.7)``: a paired difference of objectives with the
    standard error of that difference (CVaR term included) and its z score."""
    z = diff_usd / stderr_usd if stderr_usd > 0 else float("inf")
    return f"− {name}: {money_m(diff_usd)} ± {money_m(stderr_usd)} $M (z = {z:.1f})"


def print_validation(console: Console, validation: dict | None) -> None:
    """The "How sure are we" block (:mod:`.wording`), within 80 columns; the parts with bad
    news (a guarantee that does not hold) in red, skipped ones dimmed."""
    from .wording import HEADING, how_sure_parts, part_lines  # noqa: PLC0415

    console.print()
    console.print(f"[bold]{HEADING}[/bold]")
    for part in how_sure_parts(validation):
        style = "red" if part.alarm else "dim" if part.skipped else None
        for line in part_lines(part, VALIDATION_WIDTH):
            console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
        console.print()


def guarantee_alarms(validation: dict | None) -> list[str]:
    """The words of the covenant guarantee when it does not hold (empty when it holds)."""
    from .wording import how_sure_parts  # noqa: PLC0415

    return [p.text for p in how_sure_parts(validation) if p.alarm and p.key == "covenant_bound"]


#: Width of the "How sure are we" block, whatever the console's width (a pipe is wider).
VALIDATION_WIDTH = 80
#: Validation flags of ``optimize``: (flag, keyword of ``optimize``, smallest value, why).
VALIDATION_FLAGS = (
    ("--replications", "replications", 1, "at least one replication is solved"),
    ("--batches", "batches", 2, "the gap's standard deviation needs two batches"),
    ("--calibration-rounds", "calibration_rounds", 0, "0 turns calibration off"),
    ("--batch-scenarios", "batch_scenarios", 2, "a batch needs two scenarios"),
)


def validation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``optimize`` for the validation flags the user set (only those: the
    others take the scenario's defaults); raises :class:`UserError` naming a flag out of range."""
    out: dict[str, Any] = {}
    for flag, key, least, why in VALIDATION_FLAGS:
        text = getattr(args, key, None)
        if text is None:
            continue
        try:
            value = int(str(text).replace("_", ""))
        except ValueError:
            raise UserError(f"{flag} {text}: must be an integer >= {least}") from None
        if value < least:
            raise UserError(f"{flag} {text}: must be an integer >= {least} ({why})")
        out[key] = value
    if getattr(args, "no_validate", False):
        out["validate"] = False
    return out


def connect_scheduler(address: str) -> Any:
    """A ``dask.distributed.Client`` of the scheduler at ``address``; a user error if none
    answers within :data:`SCHEDULER_TIMEOUT_S`."""
    try:
        from distributed import Client  # noqa: PLC0415

        return Client(address, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"--scheduler {address}: cannot connect ({exc})") from None


@contextmanager
def split_executor(args: argparse.Namespace) -> Iterator[Any]:
    """The executor that splits the Monte Carlo paths: ``--workers N`` local processes, or the
    workers of the Dask scheduler at ``--scheduler``; ``None`` (neither flag): in this process.
    The statistics do not depend on it."""
    from .executor import get_executor  # noqa: PLC0415

    if getattr(args, "scheduler", None):
        client = connect_scheduler(args.scheduler)
        try:
            yield get_executor(client=client)
        finally:
            client.close()
    elif getattr(args, "workers", None):
        with _closing(get_executor(args.workers)) as pool:
            yield pool
    else:
        yield None


@contextmanager
def _closing(pool: Any) -> Iterator[Any]:
    """``pool``, closed on the way out where it has a ``close`` (local process pools)."""
    try:
        yield pool
    finally:
        close = getattr(pool, "close", None)
        if close is not None:
            close()


def cmd_optimize(args: argparse.Namespace) -> int:
    checks = validation_options(args)  # before any other work
    sc = load_scenario(args.scenario)
    out = prepare_output(args.out or default_output_dir(sc.name), overwrite=args.overwrite)
    with _solver_pool(args, checks) as pool:
        return _optimize(args, checks, sc, out, pool)


@contextmanager
def _solver_pool(args: argparse.Namespace, checks: dict[str, Any]) -> Iterator[Any]:
    """The process pool of the validation's repeated solves, its workers importing the solver
    while this process imports the pipeline (``None``: ``--workers``/``--scheduler`` give the
    executor, or a run without validation needs none)."""
    from .executor import solver_pool  # noqa: PLC0415

    if getattr(args, "scheduler", None) or getattr(args, "workers", None):
        yield None
        return
    if not checks.get("validate", True):
        yield None
        return
    with _closing(solver_pool(preload="hashpivot.optimizer.validation")) as pool:
        yield pool


def _optimize(
    args: argparse.Namespace, checks: dict[str, Any], sc: Scenario, out: Any, pool: Any
) -> int:
    from .charts import preload_matplotlib  # noqa: PLC0415
    from .pipeline import gap_warning, input_warnings, optimize  # noqa: PLC0415
    from .report import write_optimize_outputs  # noqa: PLC0415
    from .solve import NoSolutionError  # noqa: PLC0415

    be = _backend(args)
    console = _console(args)
    d = sc.defaults
    k = args.scenarios or d.scenarios
    m = args.eval_paths or d.eval_paths
    if args.mip_gap is None and not d.mip_gap < 1.0:  # --mip-gap itself is checked by argparse
        raise UserError(
            f"defaults.mip_gap: {d.mip_gap:g} would call any plan optimal; use a gap below 1 "
            "(e.g. 0.01 for 1%) or --mip-gap"
        )
    with (
        split_executor(args) as executor,
        StageDisplay(args.quiet, plain=args.solver_log) as display,
    ):
        for text in input_warnings(sc, k, m):
            display.warn(text)
        preload_matplotlib()  # the report's import runs beside the Monte Carlo stages
        try:
            res = optimize(
                sc,
                paths=args.paths,
                n_scenarios=args.scenarios,
                eval_paths=args.eval_paths,
                seed=args.seed,
                backend=be,
                time_limit_s=args.time_limit,
                mip_gap=args.mip_gap,
                threads=args.threads,
                tee=args.solver_log,
                progress=display.paths,
                solve_progress=display.solve,
                solver_log=display.log if args.solver_log else None,
                on_solved=display.solve_done,
                hard_stop=display.hard_stop,
                validation_progress=display.count,
                executor=executor,
                solver_pool=pool if executor is None else None,
                **checks,
            )
        except NoSolutionError as exc:
            lines = [f"no feasible plan ({exc.status}):"] + [f"  {r}" for r in exc.reasons]
            raise UserError(lines) from None
        display.count("report", 0, 1, "charts, tables, report.html…")
        t_report = time.perf_counter()
        write_optimize_outputs(res, out, overwrite=args.overwrite)
        display.count("report", 1, 1, f"written in {time.perf_counter() - t_report:.1f} s")
    summary = res.summary()
    s = summary["solver"]
    console.print(scenario_plan_table(res))
    for line in summary["warnings"]:
        console.print(f"[yellow]warning: {escape(line)}[/yellow]")
    # the MIP gap is that of one sample's solve, not the distance to the best plan
    console.print(
        f"solver: [bold]{s['status']}[/bold], MIP gap {s['gap']:.2%} (target "
        f"{pct(s['target_gap'])}) on the MILP's K = {res.n_scenarios} scenarios"
    )
    console.print(
        f"  in-sample objective {money_m(s['objective_usd'])} $M, bound "
        f"{money_m(s['bound_usd'])} $M"
    )
    rows = {
        "plan": summary["plan"]["out_of_sample"],
        "plan, in sample": summary["plan"]["in_sample"],
        **summary["baselines"],
    }
    table = stats_table(
        f"Value and risk on {res.eval_paths:,} fresh paths",
        rows,
        in_sample=True,
        period=res.scenario.horizon.period,
    )
    table.caption += f"; plan, in sample: on the MILP's K = {res.n_scenarios} scenarios"
    console.print(table)
    console.print("objective of plan − baseline, same paths (± s.e. of the difference):")
    for name, v in summary["vs_baselines"].items():
        console.print(f"  {paired_line(name, v['diff_usd'], v['stderr_usd'])}")
    if summary["best_baseline"]:
        console.print(f"[yellow]{escape(summary['best_baseline']['why'])}[/yellow]")
    if "validation" in summary:
        print_validation(console, summary["validation"])
        if args.quiet:  # a guarantee that does not hold is said even then, as the gap is
            for text in guarantee_alarms(summary["validation"]):
                make_console(stderr=True).print(
                    f"[bold yellow]warning:[/bold yellow] {escape(text)}"
                )
    console.print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items()))
    gap = gap_warning(res.solve, res.time_limit_s)
    if gap:  # at the end, where it is read with the numbers it qualifies (even with --quiet)
        where = make_console(stderr=True) if args.quiet else console
        where.print(f"[bold yellow]warning:[/bold yellow] {escape(gap)}")
    console.print(
        f"wrote {out}/ (plan.json, plan.csv, financing.csv, treasury.csv, summary.json, "
        "report.html)"
    )
    return 0


def scenario_plan_table(res) -> Table:
    """The plan per site: blocks, when, IT MW online and leased at the end."""
    frame = res.plan_frame()
    table = new_table(f"Plan for {res.scenario.name}")
    _name_column(table, "site")
    table.add_column("blocks", justify="right")
    table.add_column("started in periods")
    for col in ("IT MW\nat end", "leased\nIT MW", "ASIC MW\nat end"):
        table.add_column(col, justify="right")
    for name, g in frame.groupby("site", sort=False):
        started = g.loc[g.blocks_started > 0, "period"].tolist()
        table.add_row(
            escape(name),
            str(int(g.blocks_started.sum())),
            ", ".join(map(str, started)) or "—",
            f"{g.it_online_mw.iloc[-1]:,.0f}",
            f"{g.lease_it_mw.iloc[-1]:,.0f}",
            f"{g.asic_mw.iloc[-1]:,.0f}",
        )
    signed = [n for n, y in zip(res.plan.lease_names, res.plan.lease_signed, strict=True) if y]
    sold = res.plan.btc_sold
    # the last period's sales are the terminal valuation of the treasury, not a decision
    caption = f"leases signed: {', '.join(signed) or 'none'}; BTC sold {sold[:-1].sum():,.2f} BTC"
    if len(sold) and sold[-1] > 0:
        caption += f" (and {sold[-1]:,.2f} BTC valued at the horizon's end)"
    table.caption = caption
    return table


def cmd_evaluate(args: argparse.Namespace) -> int:
    from hashpivot.kernels.plan import read_plan_file  # noqa: PLC0415

    from .pipeline import PlanError, eval_paths_warning, evaluate  # noqa: PLC0415
    from .report import write_evaluate_outputs  # noqa: PLC0415

    sc = load_scenario(args.scenario)
    plan = None
    if args.plan:  # read first: a bad plan is refused before any other work or message
        try:
            plan = read_plan_file(args.plan, sc)
        except OSError as exc:
            raise UserError(f"{args.plan}: cannot be read ({exc.strerror})") from None
        except ValueError as exc:
            raise UserError(str(exc)) from None
    be = _backend(args)
    console = _console(args)
    out = prepare_output(
        args.out or default_output_dir(sc.name, "evaluate"), overwrite=args.overwrite
    )
    try:
        with split_executor(args) as executor, StageDisplay(args.quiet) as display:
            warn = eval_paths_warning(args.paths or sc.defaults.eval_paths, "--paths")
            if warn:
                display.warn(warn)
            res = evaluate(
                sc,
                plan=plan,
                policy=args.policy,
                eval_paths=args.paths,
                seed=args.seed,
                backend=be,
                progress=display.paths,
                executor=executor,
            )
    except PlanError as exc:
        from .checker import violation_count  # noqa: PLC0415

        n = violation_count(exc.lines)
        raise UserError([f"plan breaks {n} constraint(s) of {sc.name}:"] + exc.lines) from None
    write_evaluate_outputs(res, out, overwrite=args.overwrite)
    summary = res.summary()
    rows = {res.name: summary["out_of_sample"], **summary["baselines"]}
    title = f"{res.name} on {summary['eval_paths']:,} paths"
    console.print(stats_table(title, rows, period=sc.horizon.period))
    console.print(f"objective of {res.name} − baseline, same paths (± s.e. of the difference):")
    for name, v in summary["vs_baselines"].items():
        console.print(f"  {paired_line(name, v['diff_usd'], v['stderr_usd'])}")
    from .wording import covenant_part, part_lines  # noqa: PLC0415

    guarantee = covenant_part(summary["covenant_bound"])
    console.print()
    for line in part_lines(guarantee, VALIDATION_WIDTH):
        style = "red" if guarantee.alarm else None
        console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
    if guarantee.alarm and args.quiet:  # said even then, as optimize does
        make_console(stderr=True).print(
            f"[bold yellow]warning:[/bold yellow] {escape(guarantee.text)}"
        )
    console.print(
        f"wrote {out}/ (summary.json, plan.json, equity_distribution.png, ai_share.png, "
        "cash_debt.png)"
    )
    return 0


def sweep_table(frame, name: str) -> Table:
    """One row per variant: status, objective with its 95% interval, the covenant
    guarantee's breach bound and whether it holds, MW."""
    from .sweep import guarantee_bound  # noqa: PLC0415

    table = Table(title=f"sweep {name}: {len(frame)} variants")
    table.add_column("variant", overflow="fold")
    for col in ("status", "objective $M", "95% CI $M", "P(breach) ≤", "guarantee", "MW"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in frame.to_dict("records"):
        if r["status"] == "ok":
            bound, holds = guarantee_bound(r)
            table.add_row(
                escape(r["variant"]),
                "ok",
                money_m(r["objective_usd"]),
                f"{money_m(r['objective_low95_usd'])}–{money_m(r['objective_high95_usd'])}",
                f"{bound:.1%}",
                "—" if holds is None else "holds" if holds else "[red]NOT met[/red]",
                f"{r['converted_mw']:,.0f}",
            )
        else:
            table.add_row(escape(r["variant"]), "[red]failed[/red]", "", "", "", "", "")
    table.caption = (
        "P(breach) ≤: 95% upper bound on the share of fresh paths that breach a covenant or "
        "minimum cash; guarantee: whether that bound is within the allowed rate "
        "(1 − covenants.confidence)"
    )
    return table


def sweep_alarms(frame) -> list[str]:
    """One line per finished variant whose covenant guarantee does not hold."""
    from .sweep import guarantee_bound  # noqa: PLC0415

    out = []
    for r in frame.to_dict("records"):
        if r["status"] != "ok":
            continue
        bound, holds = guarantee_bound(r)
        if holds is False:
            out.append(
                f"{r['variant']}: the covenant guarantee does NOT hold (95% bound {bound:.1%} on "
                "breaching a covenant or minimum cash is above the allowed rate)"
            )
    return out


def cmd_sweep(args: argparse.Namespace) -> int:
    from hashpivot.scenarios.sweep_spec import load_sweep  # noqa: PLC0415

    from .sweep import FAILED, prepare_sweep_output, sweep  # noqa: PLC0415

    ex = load_sweep(args.sweep)  # every variant built and validated before any work
    out = prepare_sweep_output(
        args.out or default_output_dir(ex.sweep.name, "sweep"),
        ex.sweep.name,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    console = _console(args)
    client = connect_scheduler(args.scheduler) if args.scheduler else None
    t0 = time.perf_counter()
    try:
        with StageDisplay(args.quiet) as display:

            def progress(done: int, running: int, failed: int, total: int) -> None:
                elapsed = time.perf_counter() - t0
                left = (
                    f", ~{elapsed / done * (total - done):.0f} s left" if 0 < done < total else ""
                )
                display.count(
                    "sweep",
                    done,
                    total,
                    f"{done}/{total} done, {running} running, {failed} failed, "
                    f"{elapsed:.0f} s{left}",
                )

            frame = sweep(
                ex,
                client,
                workers=args.workers,
                out=out,
                resume=args.resume,
                overwrite=args.overwrite,
                backend=args.backend or "numpy",
                progress=progress,
            )
    finally:
        if client is not None:
            client.close()
    console.print(sweep_table(frame, ex.sweep.name))
    for text in sweep_alarms(frame):  # said even with --quiet, as optimize does
        where = make_console(stderr=True) if args.quiet else console
        where.print(f"[bold yellow]warning:[/bold yellow] {escape(text)}")
    for r in frame[frame["status"] == FAILED].to_dict("records"):
        console.print(f"[red]{escape(r['variant'])}[/red]: {escape(str(r['error']))}")
    console.print(f"wrote {out}/ (sweep.csv, sweep_report.html, one directory per variant)")
    return 0


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number (got {text!r})") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number (got {text!r})")
    return value


def gap_fraction(text: str) -> float:
    """argparse type: a relative gap strictly between 0 and 1 (0.01 is 1 %)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1) (got {text!r})") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"must be a relative gap in (0, 1), e.g. 0.01 for 1% (got {text!r})"
        )
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (accepts 1e6 and 1_000_000)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})") from None
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})")
    return int(value)


def out_dir(text: str) -> str:
    """argparse type of ``--out``: a path, not empty (an empty one, e.g. from an unset shell
    variable, would silently mean the default directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must be a directory path (got {text!r})")
    return text


def nonneg_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {text!r})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {text!r})")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default; for options whose default comes from the scenario, the
    field and its value in each shipped scenario (read only when help is printed)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        field = getattr(action, "scenario_default", None)
        text = action.help or ""
        if field is None:
            if action.default in (None, False) or "default" in text:
                return text
            return super()._get_help_string(action) or ""
        return f"{action.help} (default: the scenario's defaults.{field}: {_shipped(field)})"


def _shipped(field: str) -> str:
    """'demo 20,000, texas_hybrid 50,000, ...': a defaults field in the shipped scenarios."""
    values = {}
    for name in shipped_descriptions():
        value = getattr(load_scenario(name).defaults, field)
        if isinstance(value, float):
            values[name] = f"{value:,g}"
        else:
            values[name] = str(value) if field == "seed" else f"{value:,}"
    if len(set(values.values())) == 1:
        return f"{next(iter(values.values()))} in every shipped scenario"
    return ", ".join(f"{name} {v}" for name, v in values.items())


def _scenario_default(action: argparse.Action, field: str) -> None:
    action.scenario_default = field  # type: ignore[attr-defined]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="YAML path or shipped scenario name")
    _scenario_default(p.add_argument("--seed", type=nonneg_int, help="random seed"), "seed")
    p.add_argument(
        "--backend",
        choices=("auto", "numpy", "cupy"),
        help="array backend (default: $HASHPIVOT_BACKEND, else auto)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")


def _add_workers(p: argparse.ArgumentParser, workers_help: str) -> None:
    """``--workers N`` or ``--scheduler ADDRESS`` (not both)."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="N", help=workers_help)
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of an existing Dask scheduler, e.g. tcp://host:8786 (its workers need "
        "hashpivot installed)",
    )


#: Help of ``--workers`` where the Monte Carlo paths are split.
SPLIT_WORKERS_HELP = (
    "split the evaluation paths over N local processes (default: in this process; the "
    "statistics are the same bit for bit; on a GPU the paths stay in this process, on the "
    "device, and the processes take the repeated MILP solves)"
)


#: Help of ``simulate``'s ``--workers``.
SIMULATE_WORKERS_HELP = (
    "split the simulated paths over N local processes in fixed blocks (default: in this "
    "process; the statistics are the same bit for bit; on a GPU the paths stay in this "
    "process, on the device)"
)


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous hashpivot output in --out (never any other directory)",
    )


# --------------------------------------------------------------------------- parser
class ArgumentParser(argparse.ArgumentParser):
    """argparse with one line per usage error (the problem and where to read the usage), not
    the whole usage block before it; its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="hashpivot",
        description="Plan the pivot of Bitcoin mining sites to AI data centers.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hashpivot {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)

    p = command("scenarios", "list the shipped scenarios")
    p.set_defaults(func=cmd_scenarios)

    p = command("validate", "check a scenario file; exit 2 with one line per problem")
    p.add_argument("scenario", help="YAML path or shipped scenario name")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_validate)

    p = command("schema", "JSON Schema of the scenario format on stdout")
    p.set_defaults(func=cmd_schema)

    p = command("simulate", "market fan charts and mining-margin coefficients")
    _add_common(p)
    _scenario_default(
        p.add_argument("--paths", type=positive_int, help="Monte Carlo paths"), "paths"
    )
    p.add_argument(
        "--chunk-paths", type=positive_int, help="paths per chunk (default: from free memory)"
    )
    p.add_argument(
        "--out", type=out_dir, help="output directory (default: hashpivot-out/NAME-simulate)"
    )
    _add_overwrite(p)
    _add_workers(p, SIMULATE_WORKERS_HELP)
    p.set_defaults(func=cmd_simulate)

    p = command("optimize", "simulate, reduce, solve the MILP, evaluate, report")
    _add_common(p)
    _scenario_default(
        p.add_argument("--paths", type=positive_int, help="Monte Carlo paths for the coefficients"),
        "paths",
    )
    _scenario_default(
        p.add_argument("--scenarios", type=positive_int, help="reduced scenarios K in the MILP"),
        "scenarios",
    )
    _scenario_default(
        p.add_argument(
            "--eval-paths", type=positive_int, help="fresh paths for out-of-sample evaluation"
        ),
        "eval_paths",
    )
    _scenario_default(
        p.add_argument("--time-limit", type=positive_float, help="solver time limit [s]"),
        "solver_time_limit_s",
    )
    _scenario_default(
        p.add_argument(
            "--mip-gap", type=gap_fraction, help="relative MIP gap to stop at, in (0, 1)"
        ),
        "mip_gap",
    )
    p.add_argument(
        "--replications",
        metavar="R",
        help="independent SAA replications; the best plan on common fresh paths is kept "
        f"(default: {V_DEFAULTS.REPLICATIONS})",
    )
    p.add_argument(
        "--batches",
        metavar="B",
        help="batches of fresh scenarios for the optimality-gap interval, at least 2 "
        f"(default: {V_DEFAULTS.BATCHES})",
    )
    p.add_argument(
        "--batch-scenarios",
        metavar="N",
        help="i.i.d. scenarios per gap batch: more give a tighter interval and slower solves "
        f"(default: {V_DEFAULTS.BATCH_SCENARIOS})",
    )
    p.add_argument(
        "--calibration-rounds",
        metavar="N",
        help="re-solves that keep the covenants with more headroom (then hold fresh paths "
        "the plan broke) until the out-of-sample breach bound meets the limit and the value "
        "peaks; 0 turns calibration off "
        f"(default: {V_DEFAULTS.CALIBRATION_ROUNDS})",
    )
    p.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the optimality-gap interval, VSS and EVPI (the fast path)",
    )
    p.add_argument("--threads", type=positive_int, default=2, help="HiGHS threads")
    p.add_argument(
        "--solver-log", action="store_true", help="show the HiGHS log, each line labelled by phase"
    )
    _add_workers(p, SPLIT_WORKERS_HELP)
    p.add_argument("--out", type=out_dir, help="output directory (default: hashpivot-out/NAME)")
    _add_overwrite(p)
    p.set_defaults(func=cmd_optimize)

    p = command("evaluate", "judge a plan (or a baseline policy) on fresh paths")
    _add_common(p)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--plan", help="plan.json written by optimize (possibly edited)")
    group.add_argument(
        "--policy",
        choices=(
            "stay_mining",
            "convert_all",
            "greedy",
            "expected_value",
            "convert_all_expected_cash",
            "greedy_expected_cash",
        ),
        help="a baseline policy (the *_expected_cash ones keep only expected cash: naive)",
    )
    _scenario_default(
        p.add_argument("--paths", type=positive_int, help="evaluation paths"), "eval_paths"
    )
    _add_workers(p, SPLIT_WORKERS_HELP)
    p.add_argument(
        "--out", type=out_dir, help="output directory (default: hashpivot-out/NAME-evaluate)"
    )
    _add_overwrite(p)
    p.set_defaults(func=cmd_evaluate)

    p = command("sweep", "run every variant of a sweep file on Dask (a local cluster by default)")
    p.add_argument("sweep", help="sweep YAML: a base scenario and a grid or list of variants")
    _add_workers(p, "local worker processes (default: the cores available)")
    p.add_argument(
        "--backend",
        choices=("numpy", "cupy"),
        help="Monte Carlo backend of every variant (cupy tasks ask for the Dask resource GPU)",
    )
    p.add_argument(
        "--out", type=out_dir, help="output directory (default: hashpivot-out/NAME-sweep)"
    )
    p.add_argument(
        "--resume", action="store_true", help="skip variants whose outputs are already in --out"
    )
    _add_overwrite(p)
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except ScenarioError as exc:
        where = f"{exc.source}: " if exc.source else ""
        print(f"{where}{exc.n_problems} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except OutputError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
