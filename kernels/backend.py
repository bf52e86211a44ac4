"""The one place that chooses the array backend: CuPy on a CUDA device, else NumPy.

``auto`` asks the CUDA runtime for a device count (``import cupy`` succeeding proves nothing:
the wheel installs on machines without a driver); ``HASHPIVOT_BACKEND`` overrides the choice.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

#: Environment variable that overrides the backend choice.
BACKEND_ENV = "HASHPIVOT_BACKEND"
BACKENDS = ("auto", "numpy", "cupy")

_notified = False


class BackendError(RuntimeError):
    """The backend asked for cannot be used here."""


@dataclass(frozen=True)
class Backend:
    """An array backend: its name, its array module and a description of the device."""

    name: str
    xp: ModuleType
    device: str

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"


def cuda_device_count() -> int:
    """Number of CUDA devices the runtime reports; 0 without CuPy, driver or device."""
    try:
        import cupy  # noqa: PLC0415

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # any import, driver or runtime failure means no usable device
        return 0


def cpu_description() -> str:
    """A short description of this machine's CPU."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model or 'CPU'} ({os.cpu_count()} cores)"


def _gpu_description() -> str:
    import cupy  # noqa: PLC0415

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def get_backend(name: str | None = None, *, notify: bool = True) -> Backend:
    """Resolve a backend name (``auto``, ``numpy``, ``cupy``; ``None`` reads the environment).

    Raises
    ------
    BackendError
        For an unknown name, or ``cupy`` where no CUDA device answers.
    """
    global _notified
    where = "backend" if name else BACKEND_ENV  # name the setting the user has to fix
    chosen = (name or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if chosen not in BACKENDS:
        raise BackendError(f"{where}: must be one of {', '.join(BACKENDS)} (got {chosen!r})")
    if chosen in ("auto", "cupy"):
        if cuda_device_count() > 0:
            import cupy  # noqa: PLC0415

            return Backend("cupy", cupy, _gpu_description())
        if chosen == "cupy":
            raise BackendError(
                "backend: 'cupy' needs a CUDA device and none answers "
                "(install the gpu extra on a GPU machine, or use --backend numpy)"
            )
        if notify and not _notified:
            print("hashpivot: no CUDA device answers; using NumPy on the CPU", file=sys.stderr)
            _notified = True
    return Backend("numpy", np, cpu_description())


def get_namespace(*arrays: Any) -> ModuleType:
    """Array module of ``arrays`` (CuPy for device arrays, else NumPy)."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy  # noqa: PLC0415

            return cupy
    return np


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def path_executor(backend: Backend, executor: Any) -> Any:
    """The executor that Monte Carlo work items of ``backend`` may use, or ``None`` (here).

    On a GPU, an executor whose workers are local processes (``local = True``: the pools of
    :mod:`hashpivot.optimizer.executor`) would open one CUDA context per process on the same
    device and contend for it, so the paths stay in this process, in large chunks. A cluster's
    executor is kept: its tasks carry the resource ``GPU=1`` and go to GPU workers.
    """
    if backend.is_gpu and getattr(executor, "local", False):
        return None
    return executor
