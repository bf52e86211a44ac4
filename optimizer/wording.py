"""How sure are we: the validation numbers of ``optimize`` in words a CFO reads.

The words are written once, here, and shown twice: in the terminal summary (``hashpivot
optimize``, plain lines within 80 columns, :func:`validation_lines`) and in ``report.html``
(:func:`how_sure_parts`, rendered to HTML by the report). The input is
``OptimizeResult.summary()["validation"]``: a dict with the blocks ``replications``,
``gap_ci``, ``covenant_bound``, ``calibration_rounds``, ``vss`` and ``evpi``; a block that is
``None`` (or absent) was skipped and gets one line that says so.

Money is in $M with one decimal; shares in % with one decimal, two below 1% or where one
decimal would hide on which side of a limit a number lies.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

#: Heading of the block in the terminal and the report.
HEADING = "How sure are we"
#: Paired differences within this many standard errors are called "within noise".
NOISE_SE = 2.0
#: Columns between two columns of a text table.
COLUMN_GAP = 2
#: Names of the covenants in ``covenant_bound.per_covenant``, in words.
COVENANT_WORDS = {
    "dscr": "DSCR covenant",
    "leverage": "leverage covenant",
    "min_cash": "minimum cash",
}


# --------------------------------------------------------------------------- numbers
def usd_m(x_usd: float) -> str:
    """Money as ``$12.3M`` (one decimal; ``-$1.3M`` below zero, never ``-$0.0M``)."""
    v = round(x_usd / 1e6, 1) + 0.0
    return f"-${-v:,.1f}M" if v < 0 else f"${v:,.1f}M"


def m1(x_usd: float) -> str:
    """Money in $M with one decimal, without the unit (table cells under a ``$M`` header)."""
    return f"{round(x_usd / 1e6, 1) + 0.0:,.1f}"


def rate(p: float, limit: float | None = None) -> str:
    """A share as a percentage: one decimal (``12.3%``), two below 1% (``0.35%``) or where one
    decimal would print the same as ``limit`` for a number on either side of it (``9.96%``
    against a 10% limit)."""
    if p != p:
        return "n/a"
    one = f"{p:.1%}"
    if 0 < abs(p) < 0.01 or (limit is not None and p != limit and one == f"{limit:.1%}"):
        return f"{p:.2%}"
    return one


def level(c: float) -> str:
    """A confidence level or limit as few digits as it has: 0.95 → ``95%``, 0.975 → ``97.5%``."""
    text = f"{c * 100:.3f}".rstrip("0").rstrip(".")
    return f"{text}%"


def pm(x_usd: float, se_usd: float) -> str:
    """``593.2 ± 1.4`` [$M]."""
    return f"{m1(x_usd)} ± {m1(se_usd)}"


# --------------------------------------------------------------------------- content
@dataclass(frozen=True)
class WordTable:
    """A small table: a title, a header, rows of text (the first column left-aligned, the
    others right-aligned) and a note under it."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    note: str = ""


@dataclass(frozen=True)
class Part:
    """One statement of the block: ``text`` (plain words), optionally ``tables`` under it;
    ``alarm`` marks bad news (a guarantee that does not hold), ``skipped`` a block not run."""

    key: str
    text: str
    tables: list[WordTable] = field(default_factory=list)
    alarm: bool = False
    skipped: bool = False


def _gap_part(g: dict[str, Any] | None) -> Part:
    if g is None:
        return Part(
            "gap_ci",
            "Distance to the best achievable plan: not estimated (skipped with --no-validate).",
            skipped=True,
        )
    upper = max(float(g["upper95_usd"]), 0.0)
    rel = g.get("upper95_rel")  # None where the objective is not positive
    share = f" ({rate(max(float(rel), 0.0))})" if rel is not None and rel == rel else ""
    mean_paths = g.get("batch_mean_paths")
    mean = f", each with its mean value over {mean_paths:,} further paths" if mean_paths else ""
    gbar = float(g["gbar_usd"])
    text = (
        f"This plan is within {usd_m(upper)}{share} of the best achievable plan, with "
        f"95% confidence (Mak–Morton–Wood, {g['batches']} batches of {g['batch_scenarios']:,} "
        f"scenarios{mean}). On each batch of fresh scenarios, a plan optimised for that batch "
        f"alone scored {usd_m(abs(gbar))} {'more' if gbar >= 0 else 'less'} than this plan on "
        f"average (standard deviation {usd_m(g['s_usd'])} across batches); a plan fitted to a "
        "batch looks better on it than it would on new scenarios, so this overstates the gap. "
        "The distance is in the MILP's model of cash (no recourse), where a covenant breach within "
        "the allowed rate costs nothing: plans this close in that model can still differ "
        "out of sample, where breaches have consequences."
    )
    return Part("gap_ci", text)


def _bound_row(what: str, b: dict[str, Any], target: float | None = None) -> tuple[str, ...]:
    return (what, rate(float(b["p"]), target), rate(float(b["upper95"]), target))


def _covenant_part(c: dict[str, Any] | None) -> Part:
    if c is None:
        return Part(
            "covenant_bound",
            "Out-of-sample covenant guarantee: not computed (skipped).",
            skipped=True,
        )
    target, conf = float(c["target"]), float(c["confidence"])
    holds = bool(c["holds"])
    verdict = "the guarantee holds" if holds else "the guarantee does NOT hold"
    why = str(c.get("why") or "").strip().rstrip(".")
    text = (
        f"Out of sample the plan breaches a covenant or minimum cash on "
        f"{rate(float(c['p_breach']), target)} of {int(c['paths']):,} fresh paths; with "
        f"{level(conf)} confidence the true rate is below {rate(float(c['upper95']), target)} "
        f"(Clopper–Pearson). The limit is {level(target)}: {verdict}"
        + (f" ({why})." if why else ".")
        + f" Cash runs out on {rate(float(c['p_default']))} of paths (with {level(conf)} "
        f"confidence below {rate(float(c['p_default_upper95']))})."
    )
    rows = [
        _bound_row(
            "covenant or minimum cash", {"p": c["p_breach"], "upper95": c["upper95"]}, target
        )
    ]
    for key, b in (c.get("per_covenant") or {}).items():
        rows.append(_bound_row(COVENANT_WORDS.get(key, key), b))
    for name, b in (c.get("per_facility") or {}).items():
        rows.append(_bound_row(f"facility {name}", b))
    rows.append(
        _bound_row(
            "default (cash below zero)", {"p": c["p_default"], "upper95": c["p_default_upper95"]}
        )
    )
    table = WordTable(
        "Breach rates out of sample",
        ("breach of", "observed", f"{level(conf)} bound"),
        rows,
        f"observed: share of the {int(c['paths']):,} paths; bound: the true rate is below it "
        f"with {level(conf)} confidence; the {level(target)} limit applies to the first row",
    )
    return Part("covenant_bound", text, [table], alarm=not holds)


def _calibration_part(rounds: list[dict[str, Any]] | None) -> Part:
    if not rounds:
        return Part(
            "calibration_rounds",
            "Calibration: no round was run (--calibration-rounds 0, or not needed).",
            skipped=True,
        )
    kept = [r for r in rounds if r.get("accepted")]
    n = len(rounds)
    if kept:
        r = kept[-1]
        held = int(r.get("hold_paths", 0))
        also = f", keeping {held:,} fresh paths earlier plans broke" if held else ""
        cushion = float(r.get("headroom", 0.0))
        if cushion:
            also += f", covenants kept with {level(cushion)} headroom"
        text = (
            f"Calibration: {n} round{'s' if n > 1 else ''}; the plan of round {r['round']} was "
            f"kept (in-sample confidence {level(float(r['in_sample_confidence']))}{also}; out of "
            f"sample {rate(float(r['oos_p_breach']))} of {int(r['paths']):,} selection paths, "
            f"with a 95% bound of {rate(float(r['oos_upper95']))})."
        )
    else:
        text = (
            f"Calibration: {n} round{'s' if n > 1 else ''}, none met the limit; covenant headroom, "
            "a tighter in-sample confidence (and holding fresh paths the plans broke) did not bring the "
            "out-of-sample bound down far enough."
        )
    if any(float(r.get("headroom", 0.0)) for r in rounds):
        text += (
            " Headroom: the MILP kept DSCR at least min DSCR × (1 + headroom) and leverage at "
            "most max leverage ÷ (1 + headroom) in its scenarios; out of sample a breach "
            "accelerates the debt and can end in default, so a cushion below the covenant can "
            "be worth more than the debt it forgoes; the round with the best objective on the "
            "selection paths among those that meet the limit is kept."
        )
    rows = [
        (
            str(r["round"]),
            level(float(r["in_sample_confidence"])),
            level(float(r.get("headroom", 0.0))),
            f"{int(r.get('hold_paths', 0)):,}",
            rate(float(r["in_sample_p_breach"])),
            rate(float(r["oos_p_breach"])),
            rate(float(r["oos_upper95"])),
            m1(float(r["objective_usd"])),
            "yes" if r.get("accepted") else "no",
        )
        for r in rounds
    ]
    paths = {int(r["paths"]) for r in rounds}
    table = WordTable(
        "Calibration rounds",
        (
            "round",
            "confidence",
            "headroom",
            "held",
            "in sample",
            "selection",
            "bound",
            "obj. $M",
            "kept",
        ),
        rows,
        "confidence: the in-sample covenant confidence the MILP was asked for; headroom: the "
        "covenant cushion it kept; held: fresh "
        "paths it also had to keep (calibration adds them while no round meets the limit); "
        "in sample / selection: share of scenarios / fresh selection paths ("
        + ", ".join(f"{p:,}" for p in sorted(paths))
        + ") with a breach of a covenant or minimum cash; bound: Clopper–Pearson 95% upper "
        "bound on the out-of-sample rate; obj.: objective on the selection paths",
    )
    return Part("calibration_rounds", text, [table], alarm=not kept)


def _interval(b: dict[str, Any], key: str) -> str:
    return f"{usd_m(b[key])} ± {usd_m(b['stderr_usd'])}"


def _vss_part(v: dict[str, Any] | None) -> Part:
    if v is None:
        return Part(
            "vss",
            "Value of planning for uncertainty (VSS): not estimated (skipped with --no-validate).",
            skipped=True,
        )
    lo, hi = float(v["lower95_usd"]), float(v["upper95_usd"])
    text = (
        f"Planning for uncertainty (VSS) is worth {_interval(v, 'vss_usd')} over planning on "
        f"the average scenario (95% interval {usd_m(lo)} to {usd_m(hi)}; this plan "
        f"{usd_m(v['rp_usd'])}, the average-scenario plan {usd_m(v['eev_usd'])}, both judged "
        "on the same fresh paths)"
    )
    if lo > 0:
        text += "."
    elif hi < 0:
        text += ": here planning on the average scenario did better."
    else:
        text += ": not distinguishable from zero."
    return Part("vss", text)


def _evpi_part(e: dict[str, Any] | None) -> Part:
    if e is None:
        return Part(
            "evpi",
            "Value of perfect foresight (EVPI): not estimated (skipped with --no-validate).",
            skipped=True,
        )
    text = (
        f"Perfect foresight (EVPI) would be worth at most {usd_m(max(e['upper95_usd'], 0.0))} "
        f"more (95% upper bound; estimate {_interval(e, 'evpi_usd')} from "
        f"{int(e['scenarios']):,} scenarios each solved as if its future were known). That "
        "caps what better forecasts could ever add."
    )
    return Part("evpi", text)


def _replications_part(r: dict[str, Any] | None) -> Part:
    if r is None or int(r.get("count", 1)) <= 1:
        return Part(
            "replications",
            "One replication was solved: there were no other candidate plans to compare "
            "(--replications R for R independent ones).",
            skipped=True,
        )
    cands = r["candidates"]
    chosen = int(r["chosen"])
    close = [
        c
        for c in cands
        if int(c["replication"]) != chosen
        and abs(float(c["diff_vs_chosen_usd"])) <= NOISE_SE * float(c["diff_stderr_usd"])
    ]
    text = (
        f"{r['count']} independent replications chose plans whose out-of-sample objectives "
        f"differ by up to {usd_m(r['spread_usd'])}; the best was kept (replication {chosen}, "
        f"all judged on the same {int(r['selection_paths']):,} fresh paths)."
    )
    if close:
        text += (
            f" {len(close)} other{'s are' if len(close) > 1 else ' is'} within "
            f"{NOISE_SE:g} standard errors of it: as good, given the noise."
        )
    rows = [
        (
            f"{c['replication']}{' kept' if int(c['replication']) == chosen else ''}",
            m1(float(c["in_sample_objective_usd"])),
            pm(float(c["selection_objective_usd"]), float(c["selection_stderr_usd"])),
            "—"
            if int(c["replication"]) == chosen
            else pm(float(c["diff_vs_chosen_usd"]), float(c["diff_stderr_usd"])),
            f"{float(c['converted_mw']):,.0f}",
            rate(float(c["gap"])),
        )
        for c in cands
    ]
    table = WordTable(
        "Candidate plans, one per replication",
        ("replication", "in sample", "out of sample", "− kept", "MW", "MIP gap"),
        rows,
        "objectives in $M; in sample: on the replication's own K scenarios (no standard "
        "error: they are not a sample); out of sample: on the same fresh paths, ± standard "
        "error; − kept: objective minus the kept plan's, ± s.e. of that paired difference; "
        "MW: converted; MIP gap: the solver's gap on its own K scenarios (not the distance to "
        "the best plan); each replication's seed: summary.json → validation.replications",
    )
    return Part("replications", text, [table])


def covenant_part(c: dict[str, Any] | None) -> Part:
    """The covenant guarantee alone (``evaluate`` shows it for any plan): the rate of breaching
    a covenant or minimum cash and of default, with their 95% bounds, against the limit."""
    return _covenant_part(c)


def how_sure_parts(v: dict[str, Any] | None) -> list[Part]:
    """The statements of the "How sure are we" block from ``summary["validation"]``, in the
    order they are shown: the gap to the best plan, the covenant guarantee, the calibration
    rounds, VSS, EVPI, the replications. ``None`` (validation off): one skipped part."""
    if v is None:
        return [
            Part(
                "validation",
                "Not assessed (skipped with --no-validate): no optimality-gap interval, "
                "covenant guarantee, VSS or EVPI, and a single replication.",
                skipped=True,
            )
        ]
    return [
        _gap_part(v.get("gap_ci")),
        _covenant_part(v.get("covenant_bound")),
        _calibration_part(v.get("calibration_rounds")),
        _vss_part(v.get("vss")),
        _evpi_part(v.get("evpi")),
        _replications_part(v.get("replications")),
    ]


# --------------------------------------------------------------------------- plain text
def table_lines(t: WordTable, width: int = 80) -> list[str]:
    """A text table: title, header, a rule, rows (first column left, the others right) and
    the note wrapped to ``width``."""
    cols = list(zip(t.header, *t.rows, strict=True))
    widths = [max(len(x) for x in col) for col in cols]

    def line(cells: tuple[str, ...]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return (" " * COLUMN_GAP).join(out).rstrip()

    rule = (" " * COLUMN_GAP).join("─" * w for w in widths)
    lines = [t.title, line(t.header), rule, *(line(r) for r in t.rows)]
    if t.note:
        lines += textwrap.wrap(t.note, width)
    return lines


def part_lines(p: Part, width: int = 80) -> list[str]:
    """One part as lines of at most ``width`` characters (its tables after the words)."""
    lines = textwrap.wrap(p.text, width, break_on_hyphens=False)
    for t in p.tables:
        lines += ["", *table_lines(t, width)]
    return lines


def validation_lines(v: dict[str, Any] | None, width: int = 80) -> list[str]:
    """The "How sure are we" block of the terminal summary: the heading, then each part
    (separated by blank lines), every line at most ``width`` characters."""
    lines = [HEADING]
    for p in how_sure_parts(v):
        lines += [*part_lines(p, width), ""]
    return lines[:-1]
