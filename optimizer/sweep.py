"""Sweeps: every variant of a sweep file through the whole pipeline, as Dask tasks.

``sweep(spec, client=None)`` runs each variant's ``optimize`` (Monte Carlo, MILP, evaluation)
as one task on a ``dask.distributed`` client — a ``LocalCluster`` of one single-threaded
process per core by default, or any cluster by scheduler address — and returns a tidy table,
one row per variant. A failed variant is a row with its error; the others go on. With an
output directory, each variant writes the usual ``optimize`` outputs into ``DIR/<variant>/``
(atomically), and the table goes to ``DIR/sweep.csv`` (and ``sweep.parquet`` when pyarrow is
installed) with ``DIR/sweep_report.html``; ``resume`` skips variants whose outputs are there.

Rows are built from each variant's ``summary.json`` and ``plan.json`` content alone, so a
resumed sweep and a fresh one give the same table.
"""

from __future__ import annotations

import json
import os
import stat
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hashpivot.kernels.stats import clopper_pearson_upper
from hashpivot.scenarios.sweep_spec import ExpandedSweep, VariantSpec, load_sweep

from .executor import SerialExecutor
from .outputs import OutputError, prepare_output, replace_file

#: Two-sided normal quantile of the objective's 95% interval.
Z95 = 1.959963984540054
#: Status of a variant row.
OK, FAILED = "ok", "failed"

SweepProgress = Callable[[int, int, int, int], None]  # done, running, failed, total
#: Marker of a sweep's output directory, written first; lists the table files written.
SWEEP_MARKER = ".hashpivot-sweep.json"
SWEEP_FORMAT = "hashpivot-sweep/1"
#: Files of the whole sweep (beside one directory per variant).
TABLE_FILES = ("sweep.csv", "sweep.parquet", "sweep_report.html")


@dataclass(frozen=True)
class VariantTask:
    """What a worker needs to run one variant (picklable)."""

    spec: VariantSpec
    options: dict[str, Any]
    out_dir: str | None
    overwrite: bool = False


def variant_row(
    name: str, overrides: dict[str, Any], summary: dict[str, Any], plan: dict[str, Any], sc: Any
) -> dict[str, Any]:
    """The table row of a finished variant, from its summary and plan (JSON content)."""
    oos = summary["plan"]["out_of_sample"]
    m = int(summary["eval_paths"])
    se = float(oos.get("objective_stderr_usd", oos["stderr_usd"]))  # CVaR term included
    breaches = round(float(oos["p_breach"]) * m)
    blocks = np.asarray(plan["blocks"], dtype=float)
    block_mw = np.array([s.conversion.block_mw for s in sc.sites])
    signed = [n for n, y in zip(plan["lease_offers"], plan["lease_signed"], strict=True) if y]
    row: dict[str, Any] = {"variant": name, "status": OK, "error": ""}
    row.update({f"override:{k}": v for k, v in overrides.items()})
    row.update(
        {
            "objective_usd": float(oos["objective_usd"]),
            "objective_stderr_usd": se,
            "objective_low95_usd": float(oos["objective_usd"]) - Z95 * se,
            "objective_high95_usd": float(oos["objective_usd"]) + Z95 * se,
            "mean_equity_usd": float(oos["mean_equity_usd"]),
            "cvar_usd": float(oos["cvar_usd"]),
            "p_breach": float(oos["p_breach"]),
            "p_breach_upper95": clopper_pearson_upper(breaches, m),
            "p_default": float(oos["p_default"]),
            "converted_mw": float((blocks.sum(axis=1) * block_mw).sum()),
            "leases_signed": ";".join(signed),
            "n_leases_signed": len(signed),
            "debt_drawn_usd": float(np.asarray(plan["draws_usd"], dtype=float).sum())
            if plan.get("draws_usd")
            else 0.0,
            "btc_sold": float(np.asarray(plan["btc_sold"], dtype=float).sum()),
            "solver_status": summary["solver"]["status"],
            "solver_gap": float(summary["solver"]["gap"]),
            "seed": int(summary["seed"]),
            "paths": int(summary["paths"]),
            "scenarios": int(summary["scenarios"]),
            "eval_paths": m,
        }
    )
    val = summary.get("validation") or {}
    cov, gap = val.get("covenant_bound") or {}, val.get("gap_ci") or {}
    if cov:  # the guarantee's own bound: breaches of a covenant or minimum cash
        row["p_breach_any"] = float(cov["p_breach"])
        row["p_breach_any_upper95"] = float(cov["upper95"])
        row["guarantee_holds"] = bool(cov["holds"])
    if "upper95_usd" in gap:
        row["gap_upper95_usd"] = float(gap["upper95_usd"])
        row["gap_upper95_rel"] = float(gap["upper95_rel"])
    for stage, sec in summary.get("timings_seconds", {}).items():
        row[f"seconds:{stage}"] = float(sec)
    return row


def guarantee_bound(row: dict[str, Any]) -> tuple[float, bool | None]:
    """The 95% bound a finished variant's covenant guarantee is judged on (breach of a covenant
    or minimum cash) and whether it holds; the covenant-only bound and ``None`` for a row
    without the guarantee's columns."""
    holds = row.get("guarantee_holds")
    bound = row.get("p_breach_any_upper95")
    if holds is not None and holds == holds and bound is not None and bound == bound:  # not NaN
        return float(bound), bool(holds)
    return float(row["p_breach_upper95"]), None


def failed_row(name: str, overrides: dict[str, Any], error: str) -> dict[str, Any]:
    """The table row of a variant that did not finish."""
    row: dict[str, Any] = {"variant": name, "status": FAILED, "error": error}
    row.update({f"override:{k}": v for k, v in overrides.items()})
    return row


def _error_text(exc: BaseException) -> str:
    lines = getattr(exc, "lines", None) or getattr(exc, "reasons", None)
    if lines:
        return " | ".join(str(x) for x in lines)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def run_variant(task: VariantTask) -> dict[str, Any]:
    """Run one variant's pipeline (in a worker); never raises for a failed variant."""
    from hashpivot.optimizer.pipeline import optimize  # noqa: PLC0415
    from hashpivot.optimizer.report import write_optimize_outputs  # noqa: PLC0415

    spec = task.spec
    t0 = time.perf_counter()
    try:
        res = optimize(spec.scenario, executor=SerialExecutor(), **task.options)
        summary = res.summary()
        if task.out_dir is not None:
            write_optimize_outputs(res, Path(task.out_dir) / spec.name, overwrite=task.overwrite)
            summary = res.summary()
        row = variant_row(spec.name, spec.overrides, summary, res.plan.to_json(), spec.scenario)
    except Exception as exc:  # noqa: BLE001 - a failed variant is a row, not a crash
        row = failed_row(spec.name, spec.overrides, _error_text(exc))
        row["traceback"] = traceback.format_exc(limit=8)
    row["seconds:total"] = time.perf_counter() - t0
    return row


def pipeline_options(ex: ExpandedSweep) -> dict[str, Any]:
    """Keyword arguments of :func:`~hashpivot.optimizer.pipeline.optimize` for every variant."""
    o = ex.sweep.options
    return {
        "paths": o.paths,
        "n_scenarios": o.scenarios,
        "eval_paths": o.eval_paths,
        "seed": o.seed,
        "time_limit_s": o.time_limit_s,
        "mip_gap": o.mip_gap,
        "threads": o.threads,
        "replications": o.replications,
        "batches": o.batches,
        "calibration_rounds": o.calibration_rounds,
        "validate": o.run_validation,
        "backend": "numpy",
    }


def finished_row(ex: ExpandedSweep, spec: VariantSpec, out: Path) -> dict[str, Any] | None:
    """The row of a variant already written under ``out`` (for ``resume``), else None."""
    import json  # noqa: PLC0415

    folder = out / spec.name
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
        return variant_row(spec.name, spec.overrides, summary, plan, spec.scenario)
    except (OSError, ValueError, KeyError):
        return None


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / SWEEP_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == SWEEP_FORMAT else None


def prepare_sweep_output(path: str | Path, name: str, *, resume: bool, overwrite: bool) -> Path:
    """Pre-flight check of a sweep's output directory, before any work.

    A new or empty directory is fine; a previous output of the same sweep (its marker) needs
    ``resume`` (finish it: only missing variants run) or ``overwrite`` (run every variant
    again; each variant directory is replaced as ``optimize --overwrite`` would); anything
    else — a file, a symlink, a foreign or another sweep's directory — is refused with an
    :class:`~hashpivot.optimizer.outputs.OutputError`. Files the sweep did not write are never
    touched.
    """
    shown = repr(str(path))[1:-1]
    target = Path(path).absolute()
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return prepare_output(target)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return prepare_output(target)  # refuses with its own words
    if not any(target.iterdir()):
        return prepare_output(target)
    marker = _read_marker(target)
    if marker is None or marker.get("sweep") != name:
        what = f"sweep '{marker.get('sweep')}'" if marker else "files hashpivot did not write"
        raise OutputError(
            f"output directory {shown}: holds {what}; nothing was changed — choose another --out"
        )
    if not (resume or overwrite):
        raise OutputError(
            f"output directory {shown}: holds a previous run of sweep '{name}'; pass --resume "
            "to finish it or --overwrite to run every variant again"
        )
    listed = set(marker.get("files", []))
    for f in TABLE_FILES:
        if (target / f).exists() and f not in listed:
            raise OutputError(
                f"output directory {shown}: {f} was not written by hashpivot; nothing was changed"
            )
    return target


def check_variant_outputs(out: Path, todo: list[VariantSpec], *, overwrite: bool) -> None:
    """Before any work: each variant to run can write its directory under ``out`` (an existing
    one must be a previous hashpivot output, unchanged, and ``overwrite`` given), so that no
    variant's work is thrown away at the end over a file the user put there. Raises an
    :class:`~hashpivot.optimizer.outputs.OutputError`, one line per refused variant."""
    problems = []
    for v in todo:
        folder = out / v.name
        if not os.path.lexists(folder):
            continue  # created whole when the variant is written
        try:
            prepare_output(folder, overwrite=overwrite)
        except OutputError as exc:
            problems.append(f"variant '{v.name}': {exc}")
    if problems:
        raise OutputError("\n".join(problems))


def _write_marker(folder: Path, name: str, files: list[str]) -> None:
    data = {
        "format": SWEEP_FORMAT,
        "sweep": name,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    replace_file(folder / SWEEP_MARKER, (json.dumps(data, indent=2) + "\n").encode())


def write_sweep_outputs(frame: pd.DataFrame, folder: Path, ex: ExpandedSweep) -> list[str]:
    """``sweep.csv`` (``sweep.parquet`` with pyarrow) and ``sweep_report.html`` into ``folder``."""
    from .sweep_report import sweep_report_html, sweep_table_bytes  # noqa: PLC0415

    written = []
    for fname, data in sweep_table_bytes(frame).items():
        replace_file(folder / fname, data)
        written.append(fname)
    page = sweep_report_html(frame, ex.sweep.name, ex.sweep.description)
    replace_file(folder / "sweep_report.html", page.encode("utf-8"))
    written.append("sweep_report.html")
    _write_marker(folder, ex.sweep.name, written)
    return written


def _local_client(workers: int | None):
    from distributed import Client, LocalCluster  # noqa: PLC0415

    from .executor import available_cores  # noqa: PLC0415

    n = workers or available_cores()
    cluster = LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster), cluster


def sweep(
    spec: ExpandedSweep | str | Path | dict[str, Any],
    client: Any = None,
    *,
    workers: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    backend: str = "numpy",
    progress: SweepProgress | None = None,
) -> pd.DataFrame:
    """Run every variant of a sweep; one row per variant, in the sweep's order.

    Parameters
    ----------
    spec
        A sweep file path, its content as a mapping, or an :class:`ExpandedSweep`.
    client
        A ``dask.distributed.Client``; by default a ``LocalCluster`` of ``workers`` processes
        (one thread each; default: the cores available) is started and closed here.
    out
        Output directory: ``<variant>/`` per variant, ``sweep.csv``, ``sweep_report.html``
        (checked before any work: :func:`prepare_sweep_output`).
    resume
        Skip variants whose outputs are already in ``out``.
    overwrite
        Run every variant again over a previous run of this sweep in ``out``.
    backend
        Array backend of the variants' Monte Carlo stages (``cupy`` tags tasks with the Dask
        resource ``GPU``: run GPU workers with ``--resources GPU=1``).
    """
    ex = spec if isinstance(spec, ExpandedSweep) else load_sweep(spec)
    options = pipeline_options(ex) | {"backend": backend}
    out_path = None
    if out is not None:
        out_path = prepare_sweep_output(out, ex.sweep.name, resume=resume, overwrite=overwrite)
    rows: dict[str, dict[str, Any]] = {}
    todo: list[VariantSpec] = []
    for v in ex.variants:
        row = finished_row(ex, v, out_path) if (resume and out_path is not None) else None
        if row is not None:
            row["resumed"] = True
            rows[v.name] = row
        else:
            todo.append(v)
    if out_path is not None:
        check_variant_outputs(out_path, todo, overwrite=overwrite)
        out_path.mkdir(mode=0o777, parents=True, exist_ok=True)
        marker = _read_marker(out_path)
        _write_marker(out_path, ex.sweep.name, marker.get("files", []) if marker else [])
    total, failed = len(ex.variants), 0
    if progress:
        progress(len(rows), 0, 0, total)
    if todo:
        from distributed import as_completed  # noqa: PLC0415

        own = None
        if client is None:
            client, own = _local_client(workers)
        try:
            resources = {"GPU": 1} if backend == "cupy" else None
            futures = {
                client.submit(
                    run_variant,
                    VariantTask(v, options, str(out_path) if out_path else None, overwrite),
                    key=f"hashpivot-variant-{ex.sweep.name}-{v.name}-{time.time_ns()}",
                    resources=resources,
                    pure=False,
                ): v
                for v in todo
            }
            running = len(futures)
            for fut in as_completed(futures):
                v = futures[fut]
                try:
                    row = fut.result()
                except Exception as exc:  # noqa: BLE001 - a lost worker fails one variant
                    row = failed_row(v.name, v.overrides, _error_text(exc))
                rows[v.name] = row
                running -= 1
                failed += row["status"] == FAILED
                if progress:
                    progress(len(rows), running, failed, total)
        finally:
            if own is not None:
                client.close()
                own.close()
    frame = pd.DataFrame([rows[v.name] for v in ex.variants])
    frame["resumed"] = [bool(rows[v.name].get("resumed", False)) for v in ex.variants]
    if out_path is not None:
        write_sweep_outputs(frame, out_path, ex)
    return frame


def tornado(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per swept field: the lowest and highest mean of ``value`` over that field's values.

    For a grid, the mean over the other fields at each value of this one (a main effect); the
    swing is high − low. Rows sorted by swing, largest first.
    """
    ok = frame[frame["status"] == OK]
    rows = []
    for col in [c for c in frame.columns if c.startswith("override:")]:
        means = ok.groupby(ok[col].astype(str))[value].mean()
        if len(means) < 2:
            continue
        rows.append(
            {
                "field": col.removeprefix("override:"),
                "low": float(means.min()),
                "high": float(means.max()),
                "at_low": str(means.idxmin()),
                "at_high": str(means.idxmax()),
            }
        )
    t = pd.DataFrame(rows, columns=["field", "low", "high", "at_low", "at_high"])
    t["swing"] = t["high"] - t["low"]
    return t.sort_values("swing", ascending=False, ignore_index=True)
