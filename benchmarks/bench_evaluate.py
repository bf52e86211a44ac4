"""Throughput of out-of-sample plan evaluation: path-site-steps/s per backend.

Synthetic fleets of 10 and 50 sites over 60 quarters; the plan is the ``convert_all`` baseline
(every site converting, leases, debt, recourse active). Paths are simulated and the plan is
evaluated with recourse; the best of ``--repeats`` runs after a warm-up. On the CPU the runs are
interleaved with a reference whose coefficient paths come from naive NumPy
(``naive_reference.py``) and whose cash flows are the same ``simulate_plan``; each row has
``naive_reference_ratio`` (median reference time / median project time; the top-level field is
the one at 50 sites). Writes ``benchmarks/results/evaluate-<device>.json``.

    python benchmarks/bench_evaluate.py [--paths-cpu N] [--paths-gpu N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import metadata, write_result
from naive_reference import naive_path_coefficients, side_by_side

from hashpivot.kernels.backend import cuda_device_count, get_backend
from hashpivot.kernels.evaluate import CHUNK_ELEMENTS, evaluate_plans, simulate_plan
from hashpivot.kernels.reduce import reduce_scenarios
from hashpivot.optimizer.baselines import convert_all
from hashpivot.scenarios import synthetic

SITES = (10, 50)


def naive_evaluate(sc, plan, paths: int, seed: int) -> float:
    """Mean equity of ``plan`` on naive-NumPy coefficient paths, chunked as the CPU path."""
    n_t = sc.horizon.n_periods
    width = n_t * (len(sc.sites) + len(sc.market.power_regions) + 4 + 2 * len(sc.lease_offers))
    chunk = max(256, CHUNK_ELEMENTS // max(width, 1))
    rng = np.random.default_rng(seed)
    total = 0.0
    for done in range(0, paths, chunk):
        co = naive_path_coefficients(sc, min(chunk, paths - done), rng)
        total += float(simulate_plan(sc, plan, co).equity_usd.sum())
    return total / paths


def run(backend_name: str, paths: int, repeats: int) -> dict:
    be = get_backend(backend_name, notify=False)
    rows = []
    for n_sites in SITES:
        sc = synthetic(n_sites, seed=1, years=15.0)
        red = reduce_scenarios(sc, 2000, 4, seed=1, backend="numpy", pilot_paths=2000)
        plan = convert_all(sc, red)
        naive: dict[str, float] = {}
        if be.is_gpu:
            evaluate_plans(sc, {"plan": plan}, min(paths, 2048), 1, backend=be)  # warm-up
            import cupy

            times = []
            for _ in range(repeats):
                cupy.cuda.Device().synchronize()
                t0 = time.perf_counter()
                evaluate_plans(sc, {"plan": plan}, paths, 1, backend=be)
                cupy.cuda.Device().synchronize()
                times.append(time.perf_counter() - t0)
            best = min(times)
            naive = {"project_median_seconds": statistics.median(times)}
        else:
            naive = side_by_side(
                lambda sc=sc, plan=plan: evaluate_plans(sc, {"plan": plan}, paths, 1, backend=be),
                lambda sc=sc, plan=plan: naive_evaluate(sc, plan, paths, 1),
                repeats,
            )
            best = naive["project_best_seconds"]
        steps = paths * sc.horizon.n_periods
        rows.append(
            {
                "sites": n_sites,
                "periods": sc.horizon.n_periods,
                "paths": paths,
                "seconds": best,
                "path_steps_per_s": steps / best,
                "path_site_steps_per_s": steps * n_sites / best,
                **naive,
            }
        )
        ratio = (
            f", {naive['naive_reference_ratio']:.2f}× naive NumPy"
            if "naive_reference_ratio" in naive
            else ""
        )
        print(
            f"{be.name:5s} {n_sites:3d} sites: {rows[-1]['path_site_steps_per_s']:.3g} path-site-steps/s "
            f"({best:.2f} s for {paths:,} paths{ratio})"
        )
    out = {
        **metadata(be.device),
        "backend": be.name,
        "plan": "convert_all",
        "recourse": True,
        "results": rows,
    }
    if not be.is_gpu:
        out["naive_reference_ratio"] = rows[-1]["naive_reference_ratio"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--paths-cpu", type=int, default=16_384)
    ap.add_argument("--paths-gpu", type=int, default=1 << 21)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--backends",
        nargs="+",
        choices=("numpy", "cupy"),
        help="backends to run (default: numpy, and cupy where a CUDA device answers)",
    )
    args = ap.parse_args()
    backends = args.backends or ["numpy"] + (["cupy"] if cuda_device_count() > 0 else [])
    for name in backends:
        paths = args.paths_gpu if name == "cupy" else args.paths_cpu
        out = run(name, paths, args.repeats)
        print("wrote", write_result("evaluate", out["device"], out))


if __name__ == "__main__":
    main()
