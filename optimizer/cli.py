"""The ``hashpivot`` command line.

Every user error (a bad scenario, a missing GPU asked for by name, an impossible plan) prints
one line per problem on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hashpivot.scenarios import Scenario, ScenarioError, load_scenario, shipped_descriptions

#: Exit status of a user error.
EXIT_USAGE = 2


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
    table = Table(title="Shipped scenarios", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, text in shipped_descriptions().items():
        table.add_row(name, text)
    make_console().print(table)
    return 0


def scenario_tables(sc: Scenario) -> list[Table]:
    """Summary tables of a scenario's sites and lease offers."""
    h = sc.horizon
    sites = Table(
        title=(f"{sc.name}: {len(sc.sites)} sites, {h.n_periods} {h.period}s from {h.start_date}")
    )
    for col in (
        "site",
        "region",
        "interconnect MW",
        "ASIC MW",
        "J/TH",
        "convertible MW",
        "block MW",
        "capex $M/IT MW",
        "lead (periods)",
    ):
        sites.add_column(col, justify="left" if col in ("site", "region") else "right")
    for s in sc.sites:
        sites.add_row(
            s.name,
            s.region,
            f"{s.interconnect_mw:,.0f}",
            f"{s.asic_mw:,.0f}",
            f"{s.efficiency_j_per_th:.1f}",
            f"{s.convertible_mw:,.0f}",
            f"{s.conversion.block_mw:,.0f}",
            f"{s.conversion.capex_usd_per_it_mw / 1e6:.1f}",
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
    offers = Table(
        title=f"{len(sc.lease_offers)} lease offers, {len(sc.debt_facilities)} facilities"
    )
    for col in ("offer", "tenant", "IT MW", "$/kW-mo", "term y", "start", "deliver by", "sites"):
        offers.add_column(col, justify="left" if col in ("offer", "tenant", "sites") else "right")
    for lo in sc.lease_offers:
        offers.add_row(
            lo.name,
            lo.tenant,
            f"{lo.it_mw:,.0f}",
            f"{lo.rate_usd_per_kw_month:.0f}",
            f"{lo.term_years:g}",
            str(lo.earliest_start_period),
            f"{lo.deliver_by_period}{' (hard)' if lo.hard_deadline else ''}",
            ", ".join(lo.eligible_sites),
        )
    for f in sc.debt_facilities:
        offers.add_row(
            f.name,
            f.kind,
            "",
            f"{f.rate_per_year:.2%}",
            f"{f.tenor_years:g}",
            str(f.draw_start_period),
            str(f.draw_end_period),
            f"${f.size_usd / 1e6:,.0f}M {f.repayment}",
        )
    return [sites, offers]


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


def progress_display(console: Console) -> Progress:
    """A rich progress display on stderr; silent with ``--quiet``."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=make_console(console.quiet, stderr=True),
        transient=True,
        disable=console.quiet,
    )


@contextmanager
def progress_bar(console: Console, label: str) -> Iterator[Callable[[int, int], None]]:
    """One progress bar fed with (done, total)."""
    with progress_display(console) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def simulation_table(res) -> Table:
    """Summary of a simulation: each factor at the first, middle and last period."""
    last = len(res.t_years) - 1
    cols = sorted({0, last // 2, last})
    table = Table(
        title=f"{res.scenario}: {res.paths:,} paths on {res.backend} ({res.seconds:.2f} s)"
    )
    table.add_column("factor")
    for t in cols:
        table.add_column(escape(f"t={res.t_years[t]:g}y mean [p5, p95]"), justify="right")
    rows = [(k, v) for k, v in res.factors.items()]
    rows += [(f"power_price_usd_per_mwh[{r}]", v) for r, v in res.power.items()]
    for name, st in rows:
        table.add_row(
            escape(name),
            *(escape(f"{st.mean[t]:,.4g} [{st.p05[t]:,.3g}, {st.p95[t]:,.3g}]") for t in cols),
        )
    table.add_section()
    for i, site in enumerate(res.site_names):
        m, se = res.margin_mean_usd_per_mw[i], res.margin_stderr_usd_per_mw[i]
        table.add_row(
            escape(f"margin $/MW/period [{site}]"), *(f"{m[t]:,.0f} ± {se[t]:,.0f}" for t in cols)
        )
    return table


def cmd_simulate(args: argparse.Namespace) -> int:
    from hashpivot.kernels.simulate import simulate  # noqa: PLC0415

    from .charts import simulation_charts  # noqa: PLC0415
    from .outputs import atomic_output_dir, write_json  # noqa: PLC0415

    sc = load_scenario(args.scenario)
    be = _backend(args)
    console = _console(args)
    paths = args.paths or sc.defaults.paths
    seed = sc.defaults.seed if args.seed is None else args.seed
    out = Path(args.out or f"hashpivot-out/{sc.name}-simulate")
    with progress_bar(console, "simulating") as update:
        res = simulate(sc, paths, seed, backend=be, chunk_paths=args.chunk_paths, progress=update)
    with atomic_output_dir(out) as tmp:
        write_json(tmp / "simulation.json", res.to_json())
        simulation_charts(tmp, res)
    console.print(simulation_table(res))
    console.print(f"wrote {out}/simulation.json and fan charts")
    return 0


def _pipeline_progress(console: Console):
    """A progress callback for the pipeline's stages, and the display that shows it."""
    bar = progress_display(console)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return bar, update


def stats_table(title: str, rows: dict[str, dict]) -> Table:
    table = Table(title=title)
    for col in (
        "policy",
        "objective $M",
        "mean equity $M",
        "± s.e.",
        "CVaR $M",
        "P(default)",
        "P(breach)",
        "P(cash < min)",
    ):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name, st in rows.items():
        table.add_row(
            escape(name),
            f"{st['objective_usd'] / 1e6:,.1f}",
            f"{st['mean_equity_usd'] / 1e6:,.1f}",
            f"{st['stderr_usd'] / 1e6:,.1f}",
            f"{st['cvar_usd'] / 1e6:,.1f}",
            f"{st['p_default']:.2%}",
            f"{st['p_breach']:.2%}",
            f"{st.get('p_min_cash_breach', 0.0):.2%}",
        )
    return table


def cmd_optimize(args: argparse.Namespace) -> int:
    from .pipeline import optimize  # noqa: PLC0415
    from .report import write_optimize_outputs  # noqa: PLC0415
    from .solve import NoSolutionError  # noqa: PLC0415

    sc = load_scenario(args.scenario)
    be = _backend(args)
    console = _console(args)
    out = Path(args.out or f"hashpivot-out/{sc.name}")
    bar, update = _pipeline_progress(console)
    try:
        with bar:
            status = (
                console.status("solving the MILP (HiGHS)…", spinner="dots")
                if not (args.quiet or args.solver_log)
                else None
            )

            def progress(stage: str, done: int, total: int) -> None:
                update(stage, done, total)
                if stage == "simulate" and done >= total and status is not None:
                    status.start()
                if stage == "evaluate" and status is not None:
                    status.stop()

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
                progress=progress,
            )
            if status is not None:
                status.stop()
    except NoSolutionError as exc:
        lines = [f"no feasible plan ({exc.status}):"] + [f"  {r}" for r in exc.reasons]
        raise UserError(lines) from None
    write_optimize_outputs(res, out)
    summary = res.summary()
    s = summary["solver"]
    console.print(scenario_plan_table(res))
    for line in summary["warnings"]:
        console.print(f"[yellow]warning: {escape(line)}[/yellow]")
    console.print(
        f"solver: [bold]{s['status']}[/bold], objective {s['objective_usd'] / 1e6:,.1f} $M, bound "
        f"{s['bound_usd'] / 1e6:,.1f} $M, gap {s['gap']:.3%}"
    )
    rows = {
        "plan (out of sample)": summary["plan"]["out_of_sample"],
        "plan (in sample)": summary["plan"]["in_sample"],
        **summary["baselines"],
    }
    console.print(stats_table("Value and risk (discounted terminal equity)", rows))
    for name, v in summary["vs_baselines"].items():
        z = v["diff_usd"] / v["stderr_usd"] if v["stderr_usd"] > 0 else float("inf")
        console.print(
            f"plan − {name}: {v['diff_usd'] / 1e6:,.1f} ± {v['stderr_usd'] / 1e6:,.1f} $M (z = {z:.1f})"
        )
    if summary["best_baseline"]:
        console.print(f"[yellow]{escape(summary['best_baseline']['why'])}[/yellow]")
    console.print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items()))
    console.print(f"wrote {out}/ (plan.json, plan.csv, financing.csv, summary.json, report.html)")
    return 0


def scenario_plan_table(res) -> Table:
    """The plan per site: blocks, when, IT MW online and leased at the end."""
    frame = res.plan_frame()
    table = Table(title=f"Plan for {res.scenario.name}")
    for col in (
        "site",
        "blocks",
        "started in periods",
        "IT MW at end",
        "leased IT MW",
        "ASIC MW at end",
    ):
        table.add_column(col, justify="left" if col in ("site", "started in periods") else "right")
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
    table.caption = (
        f"leases signed: {', '.join(signed) or 'none'}; BTC sold {res.plan.btc_sold.sum():,.1f}"
    )
    return table


def cmd_evaluate(args: argparse.Namespace) -> int:
    from hashpivot.kernels.plan import Plan  # noqa: PLC0415

    from .pipeline import PlanError, evaluate  # noqa: PLC0415
    from .report import write_evaluate_outputs  # noqa: PLC0415

    sc = load_scenario(args.scenario)
    be = _backend(args)
    console = _console(args)
    plan = None
    if args.plan:
        try:
            data = json.loads(Path(args.plan).read_text(encoding="utf-8"))
            plan = Plan.from_json(data)
        except OSError as exc:
            raise UserError(f"plan: cannot be read ({exc.strerror}: {args.plan})") from None
        except json.JSONDecodeError as exc:
            raise UserError(
                f"plan: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        except ValueError as exc:
            raise UserError(str(exc)) from None
    out = Path(args.out or f"hashpivot-out/{sc.name}-evaluate")
    bar, update = _pipeline_progress(console)
    try:
        with bar:
            res = evaluate(
                sc,
                plan=plan,
                policy=args.policy,
                eval_paths=args.paths,
                seed=args.seed,
                backend=be,
                progress=update,
            )
    except PlanError as exc:
        raise UserError(
            [f"plan breaks {len(exc.lines)} constraint(s) of {sc.name}:"] + exc.lines
        ) from None
    write_evaluate_outputs(res, out)
    summary = res.summary()
    rows = {res.name: summary["out_of_sample"], **summary["baselines"]}
    console.print(stats_table(f"{res.name} on {summary['eval_paths']:,} paths", rows))
    for name, v in summary["vs_baselines"].items():
        console.print(
            f"{res.name} − {name}: {v['diff_usd'] / 1e6:,.1f} ± {v['stderr_usd'] / 1e6:,.1f} $M"
        )
    console.print(f"wrote {out}/summary.json")
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


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (accepts 1e6 and 1_000_000)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})") from None
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})")
    return int(value)


def nonneg_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {text!r})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {text!r})")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="YAML path or shipped scenario name")
    p.add_argument("--seed", type=nonneg_int, help="random seed (default: the scenario's)")
    p.add_argument(
        "--backend",
        choices=("auto", "numpy", "cupy"),
        help="array backend (default: $HASHPIVOT_BACKEND or auto)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashpivot",
        description="Plan the pivot of Bitcoin mining sites to AI data centers.",
    )
    parser.add_argument("--version", action="version", version=f"hashpivot {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("scenarios", help="list the shipped scenarios")
    p.set_defaults(func=cmd_scenarios)

    p = sub.add_parser("validate", help="check a scenario file; exit 2 with one line per problem")
    p.add_argument("scenario", help="YAML path or shipped scenario name")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="JSON Schema of the scenario format on stdout")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("simulate", help="market fan charts and mining-margin coefficients")
    _add_common(p)
    p.add_argument("--paths", type=positive_int, help="Monte Carlo paths (default: scenario's)")
    p.add_argument(
        "--chunk-paths", type=positive_int, help="paths per chunk (default: from memory)"
    )
    p.add_argument("--out", help="output directory (default: hashpivot-out/NAME-simulate)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("optimize", help="simulate, reduce, solve the MILP, evaluate, report")
    _add_common(p)
    p.add_argument("--paths", type=positive_int, help="Monte Carlo paths for the coefficients")
    p.add_argument("--scenarios", type=positive_int, help="reduced scenarios K in the MILP")
    p.add_argument(
        "--eval-paths", type=positive_int, help="fresh paths for out-of-sample evaluation"
    )
    p.add_argument("--time-limit", type=positive_float, help="HiGHS time limit in seconds")
    p.add_argument("--mip-gap", type=positive_float, help="relative MIP gap to stop at")
    p.add_argument("--threads", type=positive_int, default=2, help="HiGHS threads (default 2)")
    p.add_argument("--solver-log", action="store_true", help="show the HiGHS log")
    p.add_argument("--out", help="output directory (default: hashpivot-out/NAME)")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("evaluate", help="judge a plan (or a baseline policy) on fresh paths")
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
    p.add_argument("--paths", type=positive_int, help="evaluation paths (default: the scenario's)")
    p.add_argument("--out", help="output directory (default: hashpivot-out/NAME-evaluate)")
    p.set_defaults(func=cmd_evaluate)
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
        print(f"{where}{len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
