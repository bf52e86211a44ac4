"""The executor: same results, in input order, serially, in a process pool and on Dask."""

from __future__ import annotations

import os
import time

import pytest

from hashpivot.optimizer.executor import (
    DaskExecutor,
    ProcessExecutor,
    SerialExecutor,
    gather,
    get_executor,
    run_all,
    submit_all,
)

ARGS = [(b, 3, 1_000_003) for b in range(2, 12)]
#: Seconds the first tasks hold the workers in the line test (the later ones are taken back
#: meanwhile, in microseconds).
SLEEP_S = 2.0
EXPECTED = [pow(*a) for a in ARGS]


def test_serial_and_processes_agree_in_order():
    assert run_all(SerialExecutor(), pow, ARGS) == EXPECTED
    assert run_all(ProcessExecutor(2), pow, ARGS) == EXPECTED
    assert isinstance(get_executor(1), SerialExecutor)
    assert isinstance(get_executor(2), ProcessExecutor)


def test_submit_returns_at_once_and_results_agree_in_order():
    """submit_all starts the tasks and returns handles; the serial executor runs a task when
    its result is first asked for (once); an executor with map only runs them at once."""
    calls: list[int] = []

    def counted(b: int, e: int, m: int) -> int:
        calls.append(b)
        return pow(b, e, m)

    handles = submit_all(SerialExecutor(), counted, ARGS)
    assert calls == []
    assert handles[3].result() == EXPECTED[3] and handles[3].result() == EXPECTED[3]
    assert calls == [ARGS[3][0]]
    assert [h.result() for h in handles] == EXPECTED and len(calls) == len(ARGS)
    with ProcessExecutor(2) as pool:
        assert [h.result() for h in submit_all(pool, pow, ARGS)] == EXPECTED
    one = ProcessExecutor(1).submit(_pid, [0])  # one worker: here, deferred
    assert one[0].result() == os.getpid()

    class MapOnly:
        name, workers, local = "map-only", 1, True

        def map(self, fn, items, **resources):
            return [fn(x) for x in items]

    assert [h.result() for h in submit_all(MapOnly(), pow, ARGS)] == EXPECTED


def test_tasks_submitted_later_wait_in_one_line_and_can_be_taken_back():
    """Tasks of a second submit wait behind the first's in one line (at most one task per
    worker handed to the pool): while the first call's tasks hold both workers, gather takes
    every task of the second call back and runs it in this process."""
    with ProcessExecutor(2) as pool:
        first = submit_all(pool, _sleep_pid, [(SLEEP_S,), (SLEEP_S,)])
        later_args = [(0.0,)] * 4
        later = submit_all(pool, _sleep_pid, later_args)
        assert gather(later, _sleep_pid, later_args) == [os.getpid()] * 4
        assert os.getpid() not in {h.result() for h in first}
        # the line goes on: a third call is handed to the workers once they are free
        assert os.getpid() not in {h.result() for h in submit_all(pool, _pid, [(0,), (1,)])}


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
        assert [h.result() for h in submit_all(ex, pow, ARGS)] == EXPECTED


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


def _sleep_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
