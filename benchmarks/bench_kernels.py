"""Throughput of the market-path kernels: path-steps/s and path-site-steps/s.

Synthetic fleets of 10 and 50 sites over 60 quarters, each available backend, after a warm-up
run; the best of ``--repeats`` timed runs (CUDA events on a GPU). On the CPU the runs are
interleaved with a naive NumPy reference doing the same work (``naive_reference.py``) and each
row has ``naive_reference_ratio`` (median reference time / median project time; the top-level
field is the one at 50 sites). Writes ``benchmarks/results/kernels-<device>.json``.

    python benchmarks/bench_kernels.py [--paths-cpu N] [--paths-gpu N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import metadata, write_result
from naive_reference import naive_simulate, side_by_side

from hashpivot.kernels.backend import cuda_device_count, get_backend
from hashpivot.kernels.simulate import simulate
from hashpivot.scenarios import synthetic

SITES = (10, 50)
YEARS = 15.0  # 60 quarters


def _time(fn, backend) -> float:
    if backend.is_gpu:
        import cupy

        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return cupy.cuda.get_elapsed_time(start, stop) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(backend_name: str, paths: int, repeats: int) -> dict:
    be = get_backend(backend_name, notify=False)
    rows = []
    for n_sites in SITES:
        sc = synthetic(n_sites, seed=1, years=YEARS)
        periods = sc.horizon.n_periods

        def job(sc=sc, n=paths):
            return simulate(sc, n, seed=1, backend=be, feature_paths=0)

        naive: dict[str, float] = {}
        if be.is_gpu:
            simulate(sc, min(paths, 4096), seed=1, backend=be, feature_paths=0)  # warm-up
            times = [_time(job, be) for _ in range(repeats)]
            best = min(times)
            naive = {"project_median_seconds": statistics.median(times)}
        else:
            naive = side_by_side(job, lambda sc=sc, n=paths: naive_simulate(sc, n, 1), repeats)
            best = naive["project_best_seconds"]
        rows.append(
            {
                "sites": n_sites,
                "periods": periods,
                "paths": paths,
                "seconds": best,
                "path_steps_per_s": paths * periods / best,
                "path_site_steps_per_s": paths * periods * n_sites / best,
                **naive,
            }
        )
        ratio = (
            f", {naive['naive_reference_ratio']:.2f}× naive NumPy"
            if "naive_reference_ratio" in naive
            else ""
        )
        print(
            f"{be.name:5s} {n_sites:3d} sites: {rows[-1]['path_site_steps_per_s']:.3g} "
            f"path-site-steps/s ({best:.2f} s for {paths:,} paths{ratio})"
        )
    out = {**metadata(be.device), "backend": be.name, "features": False, "results": rows}
    if not be.is_gpu:
        out["naive_reference_ratio"] = rows[-1]["naive_reference_ratio"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--paths-cpu", type=int, default=32_768)
    ap.add_argument("--paths-gpu", type=int, default=1 << 22)
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
        print("wrote", write_result("kernels", out["device"], out))


if __name__ == "__main__":
    main()
