"""End-to-end time of ``hashpivot optimize`` (issue 11: ``optimize demo`` ≤ 60 s on 2 cores).

Runs the command as a user does (a new process each time, default settings unless flags are
given after ``--``) ``--runs`` times, and records per run the whole process's wall seconds and
CPU seconds (its children included: the solver pool's workers), the stage timings, the gap
bound and the covenant guarantee from ``summary.json``, and checks that every run chose the
same plan. Writes min, median and max to ``benchmarks/results/optimize-<scenario>-<device>.json``.

    python benchmarks/bench_optimize.py [--scenario demo] [--runs 5] [-- EXTRA FLAGS]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import metadata, write_result

from hashpivot.kernels.backend import cpu_description

#: The acceptance goal of issue 11 for ``optimize demo`` [s].
GOAL_S = 60.0


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenario", default="demo")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("extra", nargs="*", help="flags passed to optimize (after --)")
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("hashpivot")
    runs, plans = [], set()
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp:
        out = Path(tmp) / "out"
        for i in range(args.runs):
            cmd = [str(exe), "optimize", args.scenario, "--quiet", "--out", str(out)]
            cmd += ["--overwrite", *args.extra]
            cpu0, t0 = _children_cpu_s(), time.perf_counter()
            subprocess.run(cmd, check=True, env=os.environ)
            wall, cpu = time.perf_counter() - t0, _children_cpu_s() - cpu0
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
            plans.add((out / "plan.json").read_text(encoding="utf-8"))
            v = summary.get("validation") or {}
            gap = v.get("gap_ci") or {}
            runs.append(
                {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "stages_s": summary["timings_seconds"],
                    "gap_upper95_rel": gap.get("upper95_rel"),
                    "guarantee_holds": (v.get("covenant_bound") or {}).get("holds"),
                    "objective_usd": summary["plan"]["out_of_sample"]["objective_usd"],
                }
            )
            print(f"run {i + 1}: {wall:.1f} s wall, {cpu:.1f} CPU-s", flush=True)
    walls = [r["wall_s"] for r in runs]
    result = {
        **metadata(cpu_description()),
        "scenario": args.scenario,
        "flags": args.extra,
        "cores": len(os.sched_getaffinity(0)),
        "runs": runs,
        "wall_s": {"min": min(walls), "median": statistics.median(walls), "max": max(walls)},
        "goal_s": GOAL_S if args.scenario == "demo" and not args.extra else None,
        "every_run_within_goal": all(w <= GOAL_S for w in walls),
        "same_plan_every_run": len(plans) == 1,
    }
    path = write_result(f"optimize-{args.scenario}", cpu_description(), result)
    w = result["wall_s"]
    print(
        f"wall min {w['min']:.1f} s, median {w['median']:.1f} s, max {w['max']:.1f} s; "
        f"same plan every run: {result['same_plan_every_run']} -> {path}"
    )


if __name__ == "__main__":
    main()
