"""Shared helpers of the benchmark scripts: metadata and result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def commit() -> str:
    """Current git commit (with ``-dirty`` when the tree has changes), or ``unknown``.

    ``HASHPIVOT_COMMIT`` overrides it: a copy of the tree without ``.git`` (a lent GPU
    machine) is told which commit it runs.
    """
    if given := os.environ.get("HASHPIVOT_COMMIT"):
        return given
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def metadata(device: str) -> dict[str, Any]:
    return {
        "device": device,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "host": platform.node(),
        "python": platform.python_version(),
    }


def write_result(prefix: str, device: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{prefix}-{slug(device)}.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
