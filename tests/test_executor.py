"""The executor: same results, in input order, serially, in a process pool and on Dask."""

from __future__ import annotations

import os

import pytest

from hashpivot.optimizer.executor import (
    DaskExecutor,
    ProcessExecutor,
    SerialExecutor,
    get_executor,
    run_all,
)

ARGS = [(b, 3, 1_000_003) for b in range(2, 12)]
EXPECTED = [pow(*a) for a in ARGS]


def test_serial_and_processes_agree_in_order():
    assert run_all(SerialExecutor(), pow, ARGS) == EXPECTED
    assert run_all(ProcessExecutor(2), pow, ARGS) == EXPECTED
    assert isinstance(get_executor(1), SerialExecutor)
    assert isinstance(get_executor(2), ProcessExecutor)


def test_dask_local_cluster_agrees_in_order():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ex = get_executor(client=client)
        assert isinstance(ex, DaskExecutor) and ex.workers == 2
        assert run_all(ex, pow, ARGS) == EXPECTED


def test_warm_starts_every_worker_without_waiting() -> None:
    """warm() spawns the pool's workers at once; a later map uses the same processes."""
    with ProcessExecutor(2) as pool:
        pool.warm(_noop)
        assert pool._pool is not None and len(pool._pool._processes) == 2
        pids = set(pool.map(_pid, range(8)))
        assert pids <= set(pool._pool._processes) and len(pool._pool._processes) == 2
    one = ProcessExecutor(1)
    one.warm(_noop)  # a one-worker executor runs everything here: nothing to start
    assert one._pool is None


def _noop() -> None:
    return None


def _pid(_: int) -> int:
    return os.getpid()
