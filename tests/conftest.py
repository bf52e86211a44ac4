"""Shared fixtures; tests marked ``gpu`` skip cleanly where no CUDA device answers."""

from __future__ import annotations

import pytest


def _gpu_available() -> bool:
    try:
        from hashpivot.kernels.backend import cuda_device_count
    except ImportError:  # pragma: no cover - kernels not built yet
        return False
    return cuda_device_count() > 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("gpu" in item.keywords for item in items) and not _gpu_available():
        skip = pytest.mark.skip(reason="no CUDA device answers")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
