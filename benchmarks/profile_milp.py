"""Where the MILP's effort goes: per run of :func:`solve`, nodes, LP iterations, status,
objective and bound (solver work, independent of machine load), wall seconds (load-dependent).

    python benchmarks/profile_milp.py demo texas_hybrid [--scenarios K] [--paths N]
                                      [--synthetic 50] [--repeat 1] [--log-dir DIR] [--out F]

Shipped scenarios use their ``defaults`` (paths, scenarios, seed, gap, time limit) unless
overridden; ``--synthetic S`` adds the S-site synthetic fleet (seed 1, 15 years) at
``--scenarios`` (default 64) and 1% gap. With ``--log-dir``, HiGHS writes one log per solve
there (root bound and the bound's progress are in it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hashpivot.kernels.reduce import reduce_scenarios
from hashpivot.optimizer import solve as solve_mod
from hashpivot.optimizer.model import model_data
from hashpivot.scenarios import load_scenario, synthetic


def _cases(args: argparse.Namespace):
    for name in args.names:
        sc = load_scenario(name)
        d = sc.defaults
        yield name, sc, args.paths or d.paths, args.scenarios or d.scenarios, d.seed, None
    for n in args.synthetic:
        sc = synthetic(n, seed=1, years=15.0)
        yield f"synthetic{n}", sc, args.paths or 20_000, args.scenarios or 64, 1, 0.01


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("names", nargs="*", default=["demo"])
    ap.add_argument("--synthetic", type=int, nargs="*", default=[])
    ap.add_argument("--scenarios", type=int, default=None)
    ap.add_argument("--paths", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=solve_mod.DEFAULT_THREADS)
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--log-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    original_init = solve_mod._Session.__init__
    for name, sc, paths, k, seed, gap in _cases(args):
        red = reduce_scenarios(sc, paths, k, seed, backend="numpy")
        d = model_data(sc, red)
        for rep in range(args.repeat):
            if args.log_dir is not None:
                args.log_dir.mkdir(parents=True, exist_ok=True)
                log = str(args.log_dir / f"{name}-{rep}.log")

                def init(self, *a, _log=log, **kw):
                    original_init(self, *a, **kw)
                    self.h.setOptionValue("output_flag", True)
                    self.h.setOptionValue("log_to_console", False)
                    self.h.setOptionValue("log_file", _log)

                solve_mod._Session.__init__ = init
            t0 = time.perf_counter()
            res = solve_mod.solve(
                d, time_limit_s=args.time_limit, mip_gap=gap, threads=args.threads
            )
            wall = time.perf_counter() - t0
            solve_mod._Session.__init__ = original_init
            row = {
                "case": name,
                "repeat": rep,
                "scenarios": red.n_scenarios,
                "status": str(res.status),
                "gap": res.gap,
                "objective_usd": res.objective_usd,
                "bound_usd": res.bound_usd,
                "nodes": sum(int(r["nodes"]) for r in res.runs),
                "lp_iterations": sum(int(r["lp_iterations"]) for r in res.runs),
                "wall_seconds_loaded": wall,
                "blocks": res.plan.blocks.sum(axis=1).tolist(),
                "draws_usd": res.plan.draws_usd.sum(axis=1).tolist(),
                "runs": res.runs,
            }
            rows.append(row)
            print(json.dumps({k2: v for k2, v in row.items() if k2 != "runs"}), flush=True)
            for r in res.runs:
                print(
                    "   ",
                    {
                        k2: (round(v, 2) if isinstance(v, float) else v)
                        for k2, v in r.items()
                        if k2 not in ("transfer_seconds",)
                    },
                    flush=True,
                )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
