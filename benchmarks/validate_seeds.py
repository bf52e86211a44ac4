"""Issue 11's seed check: ``optimize demo --seed S`` for S = 1..5 at default settings; the five
chosen plans judged on the same fresh paths must differ by less than the optimality-gap bound
each run reports. Writes ``benchmarks/results/seeds-<device>.json``.

    python benchmarks/validate_seeds.py [--scenario demo] [--seeds 5] [--paths 50000]
"""

from __future__ import annotations

import argparse
import time

from _common import metadata, write_result

from hashpivot.kernels.backend import cpu_description
from hashpivot.kernels.evaluate import evaluate_plans
from hashpivot.optimizer.pipeline import optimize
from hashpivot.scenarios import load_scenario

#: Seed of the common judging paths (apart from every run's own streams).
JUDGE_SEED = 424242


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenario", default="demo")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--paths", type=int, default=50_000, help="common judging paths")
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    plans, runs = {}, []
    for s in range(1, args.seeds + 1):
        t = time.perf_counter()
        res = optimize(sc, seed=s, backend="numpy")
        v = res.summary()["validation"]
        plans[f"seed{s}"] = res.plan
        runs.append(
            {
                "seed": s,
                "seconds": time.perf_counter() - t,
                "gap_upper95_usd": v["gap_ci"]["upper95_usd"],
                "gap_upper95_rel": v["gap_ci"]["upper95_rel"],
                "breach_upper95": v["covenant_bound"]["upper95"],
                "guarantee_holds": v["covenant_bound"]["holds"],
            }
        )
        print(runs[-1], flush=True)
    ev = evaluate_plans(sc, plans, args.paths, JUDGE_SEED, backend="numpy")
    objs = {k: st.objective_usd for k, st in ev.stats.items()}
    spread = max(objs.values()) - min(objs.values())
    smallest = min(r["gap_upper95_usd"] for r in runs)
    out = {
        **metadata(cpu_description()),
        "scenario": args.scenario,
        "judge_paths": args.paths,
        "judge_seed": JUDGE_SEED,
        "runs": runs,
        "objectives_on_common_paths_usd": objs,
        "spread_usd": spread,
        "smallest_gap_upper95_usd": smallest,
        "spread_below_every_gap_bound": spread < smallest,
    }
    path = write_result(f"seeds-{args.scenario}", cpu_description(), out)
    print(f"spread ${spread / 1e6:.1f}M, smallest gap bound ${smallest / 1e6:.1f}M -> {path}")


if __name__ == "__main__":
    main()
