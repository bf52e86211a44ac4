"""The "How sure are we" words: numbers formatted one way, verdicts that follow the numbers,
skipped blocks said in one line, everything within 80 columns."""

from __future__ import annotations

import pytest
from helpers import validation_example

from hashpivot.optimizer.wording import (
    HEADING,
    how_sure_parts,
    level,
    part_lines,
    rate,
    usd_m,
    validation_lines,
)


def _part(v: dict | None, key: str):
    return next(p for p in how_sure_parts(v) if p.key == key)


def _words(v: dict | None, key: str) -> str:
    return " ".join(part_lines(_part(v, key), 10_000))


def test_numbers_in_millions_and_percent() -> None:
    assert usd_m(4.31e6) == "$4.3M" and usd_m(1_234.56e6) == "$1,234.6M"
    assert usd_m(-1.26e6) == "-$1.3M" and usd_m(-0.04e6) == "$0.0M"
    assert rate(0.0823) == "8.2%" and rate(0.1362) == "13.6%" and rate(0.0) == "0.0%"
    assert rate(0.0035) == "0.35%"  # below 1%: two decimals
    # one decimal would print 10.0% on either side of a 10% limit
    assert rate(0.0996, 0.10) == "9.96%" and rate(0.1004, 0.10) == "10.04%"
    assert rate(0.10, 0.10) == "10.0%" and rate(0.0871, 0.10) == "8.7%"
    assert level(0.95) == "95%" and level(0.975) == "97.5%" and level(0.1) == "10%"


def test_gap_interval_in_words() -> None:
    v = validation_example()
    text = _words(v, "gap_ci")
    assert "This plan is within $4.3M (0.72%) of the best achievable plan, with 95% " in text
    assert (
        "(Mak–Morton–Wood, 10 batches of 32 scenarios, each with its mean value over 4,000" in text
    )
    del v["gap_ci"]["batch_mean_paths"]  # a summary written before the averaging paths
    assert "(Mak–Morton–Wood, 10 batches of 32 scenarios)" in _words(v, "gap_ci")
    assert (
        "a plan optimised for that batch alone scored $3.1M more than this plan on average "
        "(standard deviation $2.0M across batches)" in " ".join(text.split())
    )
    # the batch optimum is fitted to its batch: the words say the comparison flatters it
    assert "so this overstates the gap" in text and "beat this plan" not in text
    # what the bound is about: the MILP's model of cash, not the out-of-sample objective
    assert "The distance is in the MILP's model of cash (no recourse)" in " ".join(text.split())


def test_gap_average_below_zero_reads_less_not_a_negative_win() -> None:
    v = validation_example()
    v["gap_ci"] |= {"gbar_usd": -1.26e6}
    text = _words(v, "gap_ci")
    assert "scored $1.3M less than this plan on average" in text
    assert "-$" not in text


def test_negative_gap_bound_reads_zero() -> None:
    v = validation_example()
    v["gap_ci"] |= {"upper95_usd": -0.4e6, "upper95_rel": -0.0007}
    assert "within $0.0M (0.0%)" in _words(v, "gap_ci")
    v["gap_ci"]["upper95_rel"] = None  # no share of a non-positive objective
    assert "within $0.0M of the best achievable plan" in _words(v, "gap_ci")


def test_guarantee_holds_in_words() -> None:
    part = _part(validation_example(holds=True), "covenant_bound")
    text = " ".join(part_lines(part, 10_000))
    assert "breaches a covenant or minimum cash on 8.2% of 20,000 fresh paths" in text
    assert "with 95% confidence the true rate is below 8.7%" in text
    assert "The limit is 10%: the guarantee holds." in text
    assert "Cash runs out on 0.35% of paths (with 95% confidence below 0.44%)" in text
    assert not part.alarm


def test_guarantee_that_fails_says_so_and_why() -> None:
    part = _part(validation_example(holds=False), "covenant_bound")
    text = " ".join(part_lines(part, 10_000))
    assert "below 13.6%" in text
    assert (
        "the guarantee does NOT hold (3 calibration rounds could not bring the bound below "
        "the limit)." in text
    )
    assert part.alarm


def test_breach_table_per_covenant_and_facility() -> None:
    (table,) = _part(validation_example(), "covenant_bound").tables
    rows = {r[0]: r[1:] for r in table.rows}
    assert rows["covenant or minimum cash"] == ("8.2%", "8.7%")
    assert rows["DSCR covenant"] == ("5.1%", "5.4%")
    assert rows["leverage covenant"] == ("3.1%", "3.3%")
    assert rows["minimum cash"] == ("0.24%", "0.31%")
    assert rows["facility senior-secured-2031"] == ("6.0%", "6.3%")
    assert rows["facility gpu-equipment-financing"] == ("0.0%", "0.01%")
    assert rows["default (cash below zero)"] == ("0.35%", "0.44%")
    assert table.header == ("breach of", "observed", "95% bound")


def test_calibration_rounds_table_and_kept_round() -> None:
    part = _part(validation_example(), "calibration_rounds")
    assert part.text.startswith("Calibration: 2 rounds; the plan of round 1 was kept")
    assert (
        "(in-sample confidence 97.5%; out of sample 8.2% of 5,000 selection paths, with a 95% "
        "bound of 8.7%)" in part.text
    )
    (table,) = part.tables
    assert table.rows == [
        ("0", "90%", "0%", "0", "6.2%", "14.1%", "14.6%", "606.0", "no"),
        ("1", "97.5%", "0%", "0", "0.0%", "8.2%", "8.7%", "601.2", "yes"),
    ]
    assert "Headroom:" not in part.text
    v = validation_example()
    v["calibration_rounds"][1] |= {"in_sample_confidence": 1.0, "hold_paths": 16}
    held = _part(v, "calibration_rounds")
    assert "(in-sample confidence 100%, keeping 16 fresh paths earlier plans broke; " in held.text
    assert held.tables[0].rows[1][3] == "16"
    v = validation_example()
    v["calibration_rounds"][1] |= {"headroom": 0.05}
    cushion = _part(v, "calibration_rounds")
    assert "(in-sample confidence 97.5%, covenants kept with 5% headroom; " in cushion.text
    assert "DSCR at least min DSCR × (1 + headroom)" in cushion.text
    assert cushion.tables[0].rows[1][2] == "5%"
    # the in-sample column counts minimum cash too (the value table's "breach" does not)
    assert "with a breach of a covenant or minimum cash;" in " ".join(table.note.split())
    failed = _part(validation_example(holds=False), "calibration_rounds")
    assert "none met the limit" in failed.text and failed.alarm


def test_vss_and_evpi_in_words() -> None:
    v = validation_example()
    vss = _words(v, "vss")
    assert "Planning for uncertainty (VSS) is worth $40.6M ± $2.5M over planning on the " in vss
    assert "(95% interval $35.6M to $45.6M;" in vss and vss.endswith("fresh paths).")
    evpi = _words(v, "evpi")
    assert "Perfect foresight (EVPI) would be worth at most $64.2M more" in evpi
    assert "estimate $54.1M ± $6.1M from 64 scenarios" in evpi


@pytest.mark.parametrize(
    ("low", "high", "words"),
    [
        (-1.0e6, 9.0e6, "not distinguishable from zero."),
        (-9.0e6, -1.0e6, "here planning on the average scenario did better."),
    ],
)
def test_vss_verdict_follows_its_interval(low: float, high: float, words: str) -> None:
    v = validation_example()
    v["vss"] |= {"lower95_usd": low, "upper95_usd": high}
    assert _words(v, "vss").endswith(words)


def test_replications_spread_and_candidates() -> None:
    part = _part(validation_example(), "replications")
    assert part.text.startswith(
        "3 independent replications chose plans whose out-of-sample objectives differ by up "
        "to $8.0M; the best was kept (replication 1, all judged on the same 20,000 fresh paths)."
    )
    # replication 2: |−1.22| ≤ 2 × 0.88; replication 0: |−7.96| > 2 × 0.91
    assert "1 other is within 2 standard errors of it" in part.text
    (table,) = part.tables
    assert table.rows[0] == ("0", "617.2", "593.2 ± 1.4", "-8.0 ± 0.9", "140", "0.01%")
    assert table.rows[1][0] == "1 kept" and table.rows[1][3] == "—"


def test_skipped_blocks_get_one_line_each() -> None:
    v = validation_example()
    v |= {"gap_ci": None, "vss": None, "evpi": None, "calibration_rounds": [], "replications": None}
    parts = {p.key: p for p in how_sure_parts(v)}
    for key in ("gap_ci", "vss", "evpi"):
        assert parts[key].skipped and "skipped with --no-validate" in parts[key].text
        assert not parts[key].tables
    assert parts["calibration_rounds"].skipped and not parts["calibration_rounds"].tables
    assert "One replication was solved" in parts["replications"].text
    assert not parts["covenant_bound"].skipped  # computed also on the fast path
    (off,) = how_sure_parts(None)
    assert off.skipped and "skipped with --no-validate" in off.text


@pytest.mark.parametrize("holds", [True, False])
def test_lines_fit_80_columns(holds: bool) -> None:
    v = validation_example(holds=holds)
    v["covenant_bound"]["per_facility"]["mezzanine-notes-2033-tranche-b-usd"] = {
        "p": 0.0123,
        "upper95": 0.0141,
    }
    for c in v["replications"]["candidates"]:  # the seeds optimize derives: 19 digits
        c["seed"] += 1469177890940918339
    lines = validation_lines(v)
    assert lines[0] == HEADING
    assert max(len(line) for line in lines) <= 80
    assert lines[-1] != ""  # no trailing blank line
    text = "\n".join(lines)
    for words in ("Mak–Morton–Wood", "Clopper–Pearson", "(VSS)", "(EVPI)", "replications"):
        assert words in text
