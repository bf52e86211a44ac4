"""Throughput of out-of-sample plan evaluation: path-site-steps/s per backend.

Synthetic fleets of 10 and 50 sites over 60 quarters; the plan is the ``convert_all`` baseline
(every site converting, leases, debt, recourse active). Paths are simulated and the plan is
evaluated with recourse; the best of ``--repeats`` runs after a warm-up. Writes
``benchmarks/results/evaluate-<device>.json``.

    python benchmarks/bench_evaluate.py [--paths-cpu N] [--paths-gpu N] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

from _common import metadata, write_result

from hashpivot.kernels.backend import cuda_device_count, get_backend
from hashpivot.kernels.evaluate import evaluate_plans
from hashpivot.kernels.reduce import reduce_scenarios
from hashpivot.optimizer.baselines import convert_all
from hashpivot.scenarios import synthetic

SITES = (10, 50)


def run(backend_name: str, paths: int, repeats: int) -> dict:
    be = get_backend(backend_name, notify=False)
    rows = []
    for n_sites in SITES:
        sc = synthetic(n_sites, seed=1, years=15.0)
        red = reduce_scenarios(sc, 2000, 4, seed=1, backend="numpy", pilot_paths=2000)
        plan = convert_all(sc, red)
        evaluate_plans(sc, {"plan": plan}, min(paths, 2048), 1, backend=be)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            if be.is_gpu:
                import cupy

                cupy.cuda.Device().synchronize()
            t0 = time.perf_counter()
            evaluate_plans(sc, {"plan": plan}, paths, 1, backend=be)
            if be.is_gpu:
                cupy.cuda.Device().synchronize()
            best = min(best, time.perf_counter() - t0)
        steps = paths * sc.horizon.n_periods
        rows.append(
            {
                "sites": n_sites,
                "periods": sc.horizon.n_periods,
                "paths": paths,
                "seconds": best,
                "path_steps_per_s": steps / best,
                "path_site_steps_per_s": steps * n_sites / best,
            }
        )
        print(
            f"{be.name:5s} {n_sites:3d} sites: {rows[-1]['path_site_steps_per_s']:.3g} path-site-steps/s "
            f"({best:.2f} s for {paths:,} paths)"
        )
    return {
        **metadata(be.device),
        "backend": be.name,
        "plan": "convert_all",
        "recourse": True,
        "results": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--paths-cpu", type=int, default=16_384)
    ap.add_argument("--paths-gpu", type=int, default=1 << 21)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = run("numpy", args.paths_cpu, args.repeats)
    print("wrote", write_result("evaluate", out["device"], out))
    if cuda_device_count() > 0:
        out = run("cupy", args.paths_gpu, args.repeats)
        print("wrote", write_result("evaluate", out["device"], out))


if __name__ == "__main__":
    main()
