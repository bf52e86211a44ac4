"""Backend dispatch: NumPy fallback, clear errors, environment override."""

from __future__ import annotations

import numpy as np
import pytest

from hashpivot.kernels import backend
from hashpivot.kernels.backend import BackendError, get_backend


def test_numpy_backend() -> None:
    be = get_backend("numpy")
    assert be.name == "numpy" and be.xp is np and not be.is_gpu and be.device


def test_unknown_backend_is_error() -> None:
    with pytest.raises(BackendError, match="must be one of"):
        get_backend("tpu")


def test_unknown_backend_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HASHPIVOT_BACKEND", "bogus")
    with pytest.raises(BackendError) as info:
        get_backend(None)
    assert str(info.value) == "HASHPIVOT_BACKEND: must be one of auto, numpy, cupy (got 'bogus')"
    with pytest.raises(BackendError, match=r"^backend: must be one of .* \(got 'tpu'\)$"):
        get_backend("tpu")  # a flag's value names the flag's field


def test_cupy_without_device_is_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "cuda_device_count", lambda: 0)
    with pytest.raises(BackendError, match="needs a CUDA device"):
        get_backend("cupy")


def test_auto_falls_back_with_one_notice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(backend, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(backend, "_notified", False)
    assert get_backend("auto").name == "numpy"
    assert get_backend("auto").name == "numpy"
    assert capsys.readouterr().err.count("no CUDA device") == 1


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.BACKEND_ENV, "numpy")
    assert get_backend().name == "numpy"
    monkeypatch.setenv(backend.BACKEND_ENV, "bogus")
    with pytest.raises(BackendError):
        get_backend()


def test_device_count_without_cupy_is_zero() -> None:
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert backend.cuda_device_count() == 0


def test_namespace_and_to_numpy() -> None:
    a = np.arange(3)
    assert backend.get_namespace(a) is np
    np.testing.assert_array_equal(backend.to_numpy(a), a)


def test_gpu_paths_stay_here_with_local_workers() -> None:
    """On a GPU, local worker processes would share one device: the Monte Carlo work items
    stay in this process; a cluster's executor (GPU workers by resource) is kept, and on the
    CPU every executor is kept."""
    from hashpivot.kernels.backend import Backend, path_executor
    from hashpivot.optimizer.executor import DaskExecutor, ProcessExecutor, SerialExecutor

    gpu, cpu = Backend("cupy", np, "a GPU"), Backend("numpy", np, "a CPU")
    pool, serial = ProcessExecutor(2), SerialExecutor()
    cluster = DaskExecutor.__new__(DaskExecutor)  # no client needed to read its kind
    assert path_executor(gpu, pool) is None and path_executor(gpu, serial) is None
    assert path_executor(gpu, cluster) is cluster and path_executor(gpu, None) is None
    assert path_executor(cpu, pool) is pool and path_executor(cpu, cluster) is cluster
