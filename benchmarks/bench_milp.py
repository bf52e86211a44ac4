"""MILP build and solve on synthetic fleets: sites × 60 quarters × K scenarios.

For each case: Pyomo build seconds, transfer to HiGHS seconds, solve seconds, gap, rows,
columns, nonzeros. Writes ``benchmarks/results/milp-<host>.json``.

    python benchmarks/bench_milp.py [--sites 10 50 100] [--scenarios 32 64 128]
                                    [--time-limit 300] [--gap 0.01] [--paths 20000]
"""

from __future__ import annotations

import argparse
import platform
import time

from _common import metadata, write_result

from hashpivot.kernels.backend import cpu_description
from hashpivot.kernels.reduce import reduce_scenarios
from hashpivot.optimizer.model import model_data
from hashpivot.optimizer.solve import NoSolutionError, solve
from hashpivot.scenarios import synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--scenarios", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--gap", type=float, default=0.01)
    ap.add_argument("--paths", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for n_sites in args.sites:
        sc = synthetic(n_sites, seed=1, years=15.0)
        for k in args.scenarios:
            t0 = time.perf_counter()
            red = reduce_scenarios(sc, args.paths, k, seed=1, backend="numpy")
            reduce_s = time.perf_counter() - t0
            d = model_data(sc, red)
            row = {
                "sites": n_sites,
                "periods": sc.horizon.n_periods,
                "scenarios": red.n_scenarios,
                "paths": args.paths,
                "reduce_seconds": reduce_s,
            }
            try:
                res = solve(d, time_limit_s=args.time_limit, mip_gap=args.gap, threads=args.threads)
                total = res.build_seconds + res.transfer_seconds + res.solve_seconds
                row.update(
                    {
                        "status": str(res.status),
                        "gap": res.gap,
                        "objective_usd": res.objective_usd,
                        "bound_usd": res.bound_usd,
                        "build_seconds": res.build_seconds,
                        "transfer_seconds": res.transfer_seconds,
                        "solve_seconds": res.solve_seconds,
                        "build_transfer_share": (res.build_seconds + res.transfer_seconds) / total,
                        "rows": res.rows,
                        "columns": res.columns,
                        "nonzeros": res.nonzeros,
                        "phases": res.phases,
                        "nodes": res.nodes,
                        "lp_iterations": res.lp_iterations,
                        "time_limited": res.time_limited,
                        "runs": res.runs,
                    }
                )
            except NoSolutionError as exc:
                row.update({"status": str(exc.status), "reasons": exc.reasons})
            rows.append(row)
            print(
                {
                    k2: (round(v, 4) if isinstance(v, float) else v)
                    for k2, v in row.items()
                    if k2 != "runs"
                },
                flush=True,
            )
    out = {
        **metadata(cpu_description()),
        "time_limit_s": args.time_limit,
        "mip_gap": args.gap,
        "threads": args.threads,
        "results": rows,
    }
    print("wrote", write_result("milp", platform.node() or "host", out))


if __name__ == "__main__":
    main()
