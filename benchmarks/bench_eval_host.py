"""Host side of an evaluation: the statistics of 1e7 paths' outcomes, without the kernels.

On a GPU the evaluation kernel's outputs are added to the statistics on the host while the next
chunk runs (``kernels/evaluate.py``); this times that host work alone, on synthetic outcomes of
one plan in chunks of 2^20 paths as the GPU path delivers them (breach masks, equity, default
periods, DSCR), so it can be tracked on a machine without a GPU. Writes
``benchmarks/results/eval-host-<device>.json``.

    python benchmarks/bench_eval_host.py [--paths N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import metadata, write_result

from hashpivot.kernels.backend import cpu_description
from hashpivot.kernels.cuda import outcomes_from_kernel
from hashpivot.kernels.evaluate import EvalPartial
from hashpivot.scenarios import synthetic

CHUNK = 1 << 20


def run_once(sc, paths: int, outs: tuple[np.ndarray, ...], equity: np.ndarray) -> float:
    mask, default, dscr, zeros = outs
    t_n = sc.horizon.n_periods
    part = EvalPartial.empty(sc, ["plan"], paths)
    t0 = time.perf_counter()
    for first in range(0, paths, CHUNK):
        n = min(CHUNK, paths - first)
        eq = equity[first : first + n]
        o = outcomes_from_kernel(
            mask[:n], eq, default[:n], dscr[:n], zeros[:n], zeros[:n],
            np.zeros(t_n), np.zeros(t_n), np.zeros((0, t_n)),
        )  # fmt: skip
        part.accumulators["plan"].add(o, t_n)
        part.objectives.add(eq[:, None], first)
    part.objectives.result()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--paths", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sc = synthetic(10, seed=1, years=15.0)
    rng = np.random.default_rng(0)
    n_t = sc.horizon.n_periods
    mask = ((rng.random(CHUNK) < 0.05) * 9).astype(np.int32)  # DSCR breach, first facility
    default = np.where(rng.random(CHUNK) < 0.01, 7, n_t).astype(np.int32)
    outs = (mask, default, 1.0 + rng.random(CHUNK), np.zeros(CHUNK))
    equity = rng.normal(5e8, 1e8, args.paths)  # every path its own W, as the kernel gives
    times = [run_once(sc, args.paths, outs, equity) for _ in range(args.repeats)]
    out = {
        **metadata(cpu_description()),
        "paths": args.paths,
        "chunk_paths": CHUNK,
        "plans": 1,
        "best_seconds": min(times),
        "median_seconds": statistics.median(times),
    }
    print(f"host statistics of {args.paths:,} paths: {min(times):.2f} s (best of {args.repeats})")
    print("wrote", write_result("eval-host", out["device"], out))


if __name__ == "__main__":
    main()
