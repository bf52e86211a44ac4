"""Market passes of ``optimize``: how many paths each Philox key steps through the market model.

    python benchmarks/profile_pipeline.py [texas_hybrid] [--paths 4000] [--scenarios 8]
                                          [--eval-paths 2000] [--seed S] [--out FILE]

A counter around :func:`~hashpivot.kernels.market.iter_periods` (every module of the package
that imported it) records, per call, the key, the number of paths and the periods stepped. The
optimisation paths (key of the seed) should be stepped once each — ``simulate_passes`` = 1.0,
no pilot or medoid re-simulation — and the evaluation paths (evaluation key) once for all plans.
Runs on NumPy (the GPU's fused kernels do not go through ``iter_periods``). Prints the counts
and writes them, with the stage timings (load-dependent), to JSON (default
``benchmarks/results/pipeline-profile-<host>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from hashpivot.kernels import market, philox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, metadata, slug  # noqa: E402


@dataclass
class PathCounter:
    """Counts the paths stepped through :func:`~hashpivot.kernels.market.iter_periods` per
    Philox key while active (a context manager; patches the name in every loaded
    ``hashpivot`` module that imported it, and restores it on exit)."""

    paths: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    path_periods: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    calls: int = 0
    _patched: list[Any] = field(default_factory=list)

    def __enter__(self) -> PathCounter:
        original = market.iter_periods

        def counted(mp: Any, key: tuple[int, int], paths: Any, **kw: Any) -> Iterator[Any]:
            k = (int(key[0]), int(key[1]))
            self.calls += 1
            self.paths[k] += int(paths.shape[0])
            for f in original(mp, key, paths, **kw):
                self.path_periods[k] += int(paths.shape[0])
                yield f

        for mod in list(sys.modules.values()):
            name = getattr(mod, "__name__", "") or ""
            if name.startswith("hashpivot") and getattr(mod, "iter_periods", None) is original:
                self._patched.append(mod)
                mod.iter_periods = counted
        self._original = original
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for mod in self._patched:
            mod.iter_periods = self._original
        self._patched.clear()

    def for_seed(self, seed: int, tag: int = philox.TAG_SIMULATE) -> int:
        """Paths stepped under the key of ``seed`` and ``tag``."""
        return self.paths.get(philox.seed_key(seed, tag), 0)


def profile(
    scenario: str, paths: int, n_scenarios: int, eval_paths: int, seed: int
) -> dict[str, Any]:
    """Run ``optimize`` on NumPy under a :class:`PathCounter`; the counts and timings.

    The run is the pipeline without its validation (one replication, no calibration, no gap
    batches): those draw their own independent path sets by design."""
    from hashpivot.optimizer.pipeline import optimize  # noqa: PLC0415

    with PathCounter() as counter:
        res = optimize(
            scenario,
            paths=paths,
            n_scenarios=n_scenarios,
            eval_paths=eval_paths,
            seed=seed,
            backend="numpy",
            time_limit_s=60.0,
            replications=1,  # the validation's own path sets are counted apart (other_*)
            calibration_rounds=0,
            validate=False,
        )
    sim_paths = counter.for_seed(seed)
    eval_stepped = counter.for_seed(seed, philox.TAG_EVALUATE)
    known = {philox.seed_key(seed), philox.seed_key(seed, philox.TAG_EVALUATE)}
    other = sum(n for k, n in counter.paths.items() if k not in known)
    return {
        "scenario": scenario,
        "paths": paths,
        "n_scenarios": res.n_scenarios,
        "eval_paths": eval_paths,
        "seed": seed,
        "iter_periods_calls": counter.calls,
        "simulate_paths_stepped": sim_paths,
        "simulate_passes": sim_paths / paths,
        "evaluate_paths_stepped": eval_stepped,
        "evaluate_passes": eval_stepped / eval_paths,
        "other_paths_stepped": other,
        "timings_seconds_load_dependent": res.timings,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scenario", nargs="?", default="texas_hybrid")
    ap.add_argument("--paths", type=int, default=4000)
    ap.add_argument("--scenarios", type=int, default=8)
    ap.add_argument("--eval-paths", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    row = profile(args.scenario, args.paths, args.scenarios, args.eval_paths, args.seed)
    from hashpivot.kernels.backend import cpu_description  # noqa: PLC0415

    device = cpu_description()
    data = {**metadata(device), "backend": "numpy", "results": [row]}
    for k in ("simulate_paths_stepped", "simulate_passes", "evaluate_paths_stepped"):
        print(f"{k}: {row[k]}")
    print(f"evaluate_passes: {row['evaluate_passes']}, other: {row['other_paths_stepped']}")
    out = args.out or RESULTS / f"pipeline-profile-{slug(device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
