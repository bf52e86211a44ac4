"""One executor for the repeated work of a run: replications, gap batches, calibration rounds,
wait-and-see solves and sweep variants.

Every task is a picklable function of its own arguments (seeds included), so results do not
depend on which worker runs it or in what order; :meth:`Executor.map` returns them in the order
of the inputs; :meth:`Executor.submit` starts them and returns handles, so this process can
work on while they run (their results are the same). Three kinds:

- :class:`SerialExecutor` — in this process (one worker, or tasks too small to ship);
- :class:`ProcessExecutor` — a local process pool (``spawn``: no fork of a process that holds
  HiGHS or BLAS threads), the default;
- :class:`DaskExecutor` — any ``dask.distributed`` client: a ``LocalCluster``, a cluster by
  scheduler address, dask-jobqueue on SLURM/PBS, or dask-cuda's ``LocalCUDACluster``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from importlib import import_module
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Pending(Protocol[R]):
    """A submitted task: :meth:`result` waits for it (or runs it, on a serial executor)."""

    def result(self) -> R: ...


class Executor(Protocol):
    """Runs a function over inputs and returns the results in input order."""

    name: str
    workers: int
    local: bool  # workers on this machine (then GPU work stays in this process)

    def map(self, fn: Callable[[T], R], items: Iterable[T], **resources: float) -> list[R]:
        """``[fn(x) for x in items]``, possibly in parallel; ``resources`` tag Dask tasks."""
        ...

    def submit(self, fn: Callable[[T], R], items: Iterable[T]) -> list[Pending[R]]:
        """Start ``fn(x)`` for every input, in input order, and return at once."""
        ...


class Deferred:
    """``fn(x)`` run in this process when its result is first asked for."""

    def __init__(self, fn: Callable[[T], R], x: T) -> None:
        self._call: tuple[Callable[[Any], Any], Any] | None = (fn, x)
        self._value: Any = None

    def result(self) -> Any:
        if self._call is not None:
            fn, x = self._call
            self._value, self._call = fn(x), None
        return self._value


def available_cores() -> int:
    """CPU cores this process may use (affinity and cgroup aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class SerialExecutor:
    """Runs every task here, one after the other."""

    name = "serial"
    workers = 1
    local = True  # runs in this process (kernels.backend.path_executor)

    def map(self, fn: Callable[[T], R], items: Iterable[T], **resources: float) -> list[R]:
        return [fn(x) for x in items]

    def submit(self, fn: Callable[[T], R], items: Iterable[T]) -> list[Pending[R]]:
        return [Deferred(fn, x) for x in items]


class ProcessExecutor:
    """A local pool of ``workers`` processes, started with ``spawn`` on the first map that has
    more than one task and kept for the next maps (workers import the project once); call
    :meth:`close` (or use it as a context manager) to end it."""

    name = "processes"
    local = True  # workers on this machine share its GPU (kernels.backend.path_executor)

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or available_cores()
        self._pool: ProcessPoolExecutor | None = None
        self._feeder: _Feeder | None = None

    def map(self, fn: Callable[[T], R], items: Iterable[T], **resources: float) -> list[R]:
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        return list(self._pool.map(fn, items))

    def submit(self, fn: Callable[[T], R], items: Iterable[T]) -> list[Pending[R]]:
        items = list(items)
        if self.workers <= 1 or (len(items) <= 1 and self._pool is None):
            return [Deferred(fn, x) for x in items]  # not worth starting a pool for
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        if self._feeder is None:
            self._feeder = _Feeder(self._pool, self.workers)
        return self._feeder.add(fn, items)

    def warm(self, fn: Callable[[], object]) -> None:
        """Start the workers now, each running ``fn`` (its unpickling imports ``fn``'s module),
        without waiting: the spawn and the imports overlap the caller's own work."""
        if self.workers <= 1:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        for _ in range(self.workers):
            self._pool.submit(fn)

    def close(self) -> None:
        """End the worker processes (a later map starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._feeder is not None:
            self._feeder.stop()  # what it has not handed over fails: the pool is shut down
            self._feeder = None

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Feeder:
    """Hands tasks to ``pool`` in the order they were submitted, at most ``slots`` at a time
    (a pool queues more than its workers can run, and a queued task can no longer be
    cancelled): a task not yet handed over can be taken back with ``cancel()`` on its future
    (:func:`gather`). One feeder per pool, so that tasks submitted in several calls still
    wait in one line, in order; a thread of its own feeds the pool and runs no task."""

    def __init__(self, pool: ProcessPoolExecutor, slots: int) -> None:
        self._free = threading.Semaphore(slots)
        self._pool = pool
        self._line: queue.SimpleQueue[tuple[Future, Callable[[Any], Any], Any] | None] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._feed, name="hashpivot-feeder", daemon=True).start()

    def add(self, fn: Callable[[Any], Any], items: list) -> list[Future]:
        """Queue ``fn(x)`` for each of ``items``; their futures, in order."""
        futures: list[Future] = [Future() for _ in items]
        for outer, x in zip(futures, items, strict=True):
            self._line.put((outer, fn, x))
        return futures

    def stop(self) -> None:
        """End the feeding thread once the tasks already queued are handed over or failed."""
        self._line.put(None)

    def _feed(self) -> None:
        while (entry := self._line.get()) is not None:
            outer, fn, x = entry
            self._free.acquire()
            if not outer.set_running_or_notify_cancel():  # taken back: run elsewhere
                self._free.release()
                continue
            try:
                inner = self._pool.submit(fn, x)
            except BaseException as e:  # the pool was shut down: fail what is left
                outer.set_exception(e)
                self._free.release()
                continue
            inner.add_done_callback(lambda f, outer=outer: self._done(f, outer))

    def _done(self, inner: Future, outer: Future) -> None:
        if inner.cancelled():
            outer.set_exception(RuntimeError("the worker pool was shut down"))
        elif inner.exception() is not None:
            outer.set_exception(inner.exception())
        else:
            outer.set_result(inner.result())
        self._free.release()


class DaskExecutor:
    """Tasks on a ``dask.distributed`` client; ``resources`` (e.g. ``GPU=1``) route them."""

    name = "dask"
    local = False  # a cluster: GPU tasks go to workers with the GPU resource

    def __init__(self, client: Any) -> None:
        self.client = client
        info = client.scheduler_info()
        self.workers = max(1, len(info.get("workers", {})))

    def map(self, fn: Callable[[T], R], items: Iterable[T], **resources: float) -> list[R]:
        items = list(items)
        futures = self.client.map(fn, items, pure=False, resources=resources or None)
        return self.client.gather(futures)

    def submit(self, fn: Callable[[T], R], items: Iterable[T]) -> list[Pending[R]]:
        return self.client.map(fn, list(items), pure=False)


def get_executor(workers: int | None = None, client: Any = None) -> Executor:
    """The executor for ``workers`` local processes, or for a Dask ``client`` when given."""
    if client is not None:
        return DaskExecutor(client)
    if workers == 1:
        return SerialExecutor()
    return ProcessExecutor(workers)


def solver_pool(workers: int | None = None, preload: str | None = None) -> Executor:
    """A local executor for repeated solves (:func:`get_executor`), its workers started at once
    importing module ``preload`` (by name: this process need not import it), where it has more
    than one worker."""
    pool = get_executor(workers or available_cores())
    warm = getattr(pool, "warm", None)
    if preload and warm is not None:
        warm(partial(import_module, preload))
    return pool


def run_all(executor: Executor, fn: Callable[..., R], args: Sequence[tuple]) -> list[R]:
    """``[fn(*a) for a in args]`` on ``executor``, results in order."""
    return executor.map(_Star(fn), list(args))


def submit_all(executor: Executor, fn: Callable[..., R], args: Sequence[tuple]) -> list[Pending[R]]:
    """Start ``fn(*a)`` for every ``a`` on ``executor``; handles in order (an executor with
    ``map`` only runs them all now)."""
    if not hasattr(executor, "submit"):
        return [_Done(r) for r in run_all(executor, fn, args)]
    return executor.submit(_Star(fn), list(args))


def gather(jobs: Sequence[Pending[R]], fn: Callable[..., R], args: Sequence[tuple]) -> list[R]:
    """The results of ``jobs`` (:func:`submit_all` of ``fn`` over ``args``), in order, this
    process working too: every job still queued in a local pool (not yet started by a worker)
    is taken back, in order, and run here; then the others are waited for. A result is
    ``fn(*a)`` whoever computes it, so the results are the same; the gain is the pool's tail,
    where one long task would otherwise run while the other workers wait."""
    out: list[Any] = [None] * len(jobs)
    left = []
    for i, job in enumerate(jobs):
        if isinstance(job, Future) and job.cancel():
            out[i] = fn(*args[i])
        else:
            left.append(i)
    for i in left:
        out[i] = jobs[i].result()
    return out


class _Done:
    """A result already at hand."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class _Star:
    """Picklable ``lambda a: fn(*a)``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, a: tuple) -> Any:
        return self.fn(*a)
