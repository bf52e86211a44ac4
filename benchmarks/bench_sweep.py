"""Wall time of an 8-variant demo sweep on 1 and on 2 Dask workers, and the speed-up.

The sweep is a 2 × 2 × 2 grid on demo (BTC drift, the first site's conversion capex, the CVaR
weight) at small sizes, so that one variant takes ~10–20 s on one core. Two ``LocalCluster`` s
(processes, one thread each) of 1 and 2 workers are started once and warmed up (every worker
imports the pipeline); then the whole sweep runs on each, interleaved (1, 2, 1, 2, …) so that a
change in machine load hits both alike. Each run writes the usual outputs into a fresh temporary
directory, as ``hashpivot sweep`` does (``--no-outputs``: the table only). Reported: every
wall time, their min and median per worker count, and the speed-up median(1) / median(2) (and
min(1) / min(2)) against the goal of 1.7× on 2 cores. Writes
``benchmarks/results/sweep-<host>.json``.

    python benchmarks/bench_sweep.py [--repeats 3] [--paths 2000] [--scenarios 8]
                                     [--eval-paths 4000] [--time-limit 60] [--no-outputs]

Pick the sizes so that ``seconds_per_variant_1_worker`` is ~10–20 s on the machine measured
(shorter variants measure Dask's overhead more than the parallel work).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
from typing import Any

from _common import metadata, write_result

from hashpivot.kernels.backend import cpu_description
from hashpivot.optimizer.executor import available_cores
from hashpivot.optimizer.sweep import OK, sweep

#: Speed-up of 2 workers over 1 that the sweep should reach on 2 cores.
GOAL_SPEEDUP = 1.7
#: Worker counts compared.
WORKERS = (1, 2)
#: The swept fields: 2 × 2 × 2 = 8 variants.
GRID = {
    "market.btc.drift_per_year": [0.06, 0.18],
    "sites[0].conversion.capex_usd_per_it_mw": [9.0e6, 1.2e7],
    "risk.cvar_weight": [0.05, 0.2],
}


def sweep_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark's sweep file content."""
    return {
        "name": "bench-demo-8",
        "base": "demo",
        "grid": GRID,
        "options": {
            "paths": args.paths,
            "scenarios": args.scenarios,
            "eval_paths": args.eval_paths,
            "seed": 7,
            "time_limit_s": args.time_limit,
            "mip_gap": args.gap,
            "threads": 1,
            # the pipeline without its validation: a variant of ~10-20 s, so the benchmark
            # measures the sweep's parallelism over variants
            "replications": 1,
            "calibration_rounds": 0,
            "validate": False,
        },
    }


def warm_up() -> str:
    """Import what a variant needs (run on every worker before timing)."""
    import hashpivot.optimizer.pipeline  # noqa: F401, PLC0415
    import hashpivot.optimizer.report  # noqa: F401, PLC0415

    return platform.node()


def timed_sweep(spec: dict[str, Any], client: Any, outputs: bool) -> tuple[float, int]:
    """Wall seconds of one whole sweep on ``client`` and its number of failed variants."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        t0 = time.perf_counter()
        frame = sweep(spec, client, out=f"{tmp}/out" if outputs else None)
        seconds = time.perf_counter() - t0
    return seconds, int((frame["status"] != OK).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs per worker count")
    ap.add_argument("--paths", type=int, default=2000)
    ap.add_argument("--scenarios", type=int, default=8)
    ap.add_argument("--eval-paths", type=int, default=4000)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--gap", type=float, default=0.01)
    ap.add_argument("--no-outputs", action="store_true", help="do not write variant outputs")
    args = ap.parse_args()
    from distributed import Client, LocalCluster  # noqa: PLC0415

    spec = sweep_spec(args)
    clusters, clients, startup = {}, {}, {}
    try:
        for w in WORKERS:
            t0 = time.perf_counter()
            clusters[w] = LocalCluster(
                n_workers=w,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            clients[w] = Client(clusters[w])
            clients[w].run(warm_up)
            startup[w] = time.perf_counter() - t0
        times: dict[int, list[float]] = {w: [] for w in WORKERS}
        failed: dict[int, list[int]] = {w: [] for w in WORKERS}
        for rep in range(args.repeats):
            for w in WORKERS:
                seconds, bad = timed_sweep(spec, clients[w], not args.no_outputs)
                times[w].append(seconds)
                failed[w].append(bad)
                print(f"run {rep + 1}: {w} worker(s) {seconds:.1f} s, {bad} failed", flush=True)
    finally:
        for w in clients:
            clients[w].close()
            clusters[w].close()
    one, two = WORKERS
    median = {w: statistics.median(times[w]) for w in WORKERS}
    best = {w: min(times[w]) for w in WORKERS}
    ratio = median[one] / median[two]
    out = {
        **metadata(cpu_description()),
        "cores": available_cores(),
        "variants": 8,
        "sizes": {
            "paths": args.paths,
            "scenarios": args.scenarios,
            "eval_paths": args.eval_paths,
            "time_limit_s": args.time_limit,
            "mip_gap": args.gap,
            "threads_per_variant": 1,
            "validation": False,
            "outputs": not args.no_outputs,
        },
        "grid": GRID,
        "repeats": args.repeats,
        "order": "interleaved " + ", ".join(str(w) for w in WORKERS) + " per repeat",
        "cluster_startup_seconds": {str(w): startup[w] for w in WORKERS},
        "times_seconds": {str(w): times[w] for w in WORKERS},
        "median_seconds": {str(w): median[w] for w in WORKERS},
        "min_seconds": {str(w): best[w] for w in WORKERS},
        "seconds_per_variant_1_worker": median[one] / 8,
        "failed_variants": {str(w): failed[w] for w in WORKERS},
        "speedup_median": ratio,
        "speedup_min": best[one] / best[two],
        "goal_speedup": GOAL_SPEEDUP,
        "meets_goal": ratio >= GOAL_SPEEDUP,
    }
    print(f"speed-up on 2 workers: {ratio:.2f}x (median; goal {GOAL_SPEEDUP}x)")
    print("wrote", write_result("sweep", platform.node() or "host", out))


if __name__ == "__main__":
    main()
