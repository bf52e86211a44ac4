"""hashpivot's optimizer: the MILP, the pipeline, the command line and reports.

Python API::

    from hashpivot.optimizer import optimize, evaluate
    res = optimize("demo")                # OptimizeResult: plan, solver, statistics, frames
    res.plan_frame(); res.summary()
    evaluate("demo", policy="greedy")     # EvaluateResult

Names load lazily, so that ``hashpivot validate`` starts without importing Pyomo.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "EvaluateResult": ".pipeline",
    "OptimizeResult": ".pipeline",
    "PlanError": ".pipeline",
    "evaluate": ".pipeline",
    "optimize": ".pipeline",
    "NoSolutionError": ".solve",
    "SolveResult": ".solve",
    "Termination": ".solve",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
