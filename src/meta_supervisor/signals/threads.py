"""A small thread pool for array work that NumPy and polars do without the GIL.

The statistics are single passes over arrays; on a machine with more than one core, two
independent passes (rows of one block, the broken cut's medians beside the frames, the
confidence sums beside the agent sums) can run at once. Every use splits work whose parts
share no state, so a result is the same bits whichever thread computes which part, and in
whatever order they finish.

Work given to the pool never waits for the pool itself (it never calls :func:`run_all` or
:func:`beside`): only a caller's thread does. Were pool threads to wait for queued work, a few
cycles at once in one process (the service's requests) could leave every worker waiting.

The pool is process-wide (no file, no clock). A worker starts with NumPy's default floating
point error state (NumPy >= 2 keeps it per context), not its caller's: the work given to it sets
its own (``np.errstate`` where it divides).
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["MIN_SIZE", "beside", "cores", "finished", "over_rows", "parts", "run_all", "start"]

T = TypeVar("T")
U = TypeVar("U")

#: Threads at most (the work split here has two to four independent parts).
MAX_THREADS = 4
#: Work over fewer rows (or values) than this stays in one thread: a hand-over costs more
#: than it saves (a cycle's few thousand new records).
MIN_SIZE = 1 << 17
#: The pool, by the pid that made it: a forked child holds the object but not its threads
#: (work given to it would wait forever), so a child makes its own.
_POOL: dict[int, ThreadPoolExecutor] = {}
#: Held while the pool is looked up or made (two first calls at once make one pool).
_LOCK = threading.Lock()


def cores() -> int:
    """The cores this process may run on (its affinity), at most :data:`MAX_THREADS`."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(usable or 1, MAX_THREADS))


def parts(size: int) -> int:
    """How many threads work over ``size`` rows or values is split across: :func:`cores`,
    or 1 below :data:`MIN_SIZE`."""
    return cores() if size >= MIN_SIZE else 1


def _pool() -> ThreadPoolExecutor:
    with _LOCK:
        pool = _POOL.get(os.getpid())
        if pool is None:
            _POOL.clear()
            pool = _POOL[os.getpid()] = ThreadPoolExecutor(MAX_THREADS, "meta-supervisor")
        return pool


def start(work: Callable[[], T]) -> Future[T]:
    """``work()`` started on the pool; its ``result()`` returns or raises what it did."""
    return _pool().submit(work)


def run_all(works: Sequence[Callable[[], T]], size: int) -> list[T]:
    """Every ``work()``'s result, in order: the first in the caller's thread and the others
    on the pool when work over ``size`` rows is worth splitting (:func:`parts`), else one
    after another here. Every work started is finished before this returns or raises (no
    write lands after it), and the first error is the one raised."""
    if len(works) < 2 or parts(size) < 2:
        return [work() for work in works]
    return _split(works)


def over_rows(rows: int, size: int, work: Callable[[int, int], object]) -> None:
    """``work(a, b)`` over consecutive row ranges ``[a, b)`` covering ``range(rows)``: one
    range per thread (:func:`parts` of ``size``, the values the rows hold), at most one per
    row, as :func:`run_all`. For NumPy work on a block's rows (a sort, a partition) that lets
    go of the GIL and writes its rows alone."""
    pieces = max(1, min(parts(size), rows))
    cuts = [rows * i // pieces for i in range(pieces + 1)]
    run_all([functools.partial(work, a, b) for a, b in itertools.pairwise(cuts)], size)


def beside(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """``(first(), second())``: ``second`` on the pool while ``first`` runs in the caller's
    thread when there is more than one core, else one after the other here. For two works
    of different kinds that share no state, one of them NumPy work that lets go of the GIL;
    ``second`` must not wait for the pool (see the module docstring). As :func:`run_all`:
    both are finished before this returns or raises, the first error raised."""
    works: list[Callable[[], Any]] = [first, second]
    done = _split(works) if cores() > 1 else [work() for work in works]
    return done[0], done[1]


def finished(job: Future[T]) -> T:
    """``job.result()``, once the work has finished: an interrupt while waiting (Ctrl-C's
    ``KeyboardInterrupt``, raised in the waiting thread while the work runs on) is raised
    when the work is done, so no work a call started outlives it (writing, or reading a file
    the caller then removes). The work's own error, if any, is noted on the interrupt."""
    interrupted: BaseException | None = None
    while True:
        try:
            value = job.result()
        except BaseException as err:
            if not job.done():  # the wait was interrupted, not the work: wait again
                interrupted = interrupted or err
                continue
            if interrupted is None:
                raise
            interrupted.add_note(f"the work failed too: {type(err).__name__}: {err}")
            raise interrupted from None
        if interrupted is not None:
            raise interrupted
        return value


def _split(works: Sequence[Callable[[], T]]) -> list[T]:
    """The first work here, the others on the pool; all finished before this returns or
    raises the first error (with a note naming each other error)."""
    jobs = [start(work) for work in works[1:]]
    error: BaseException | None = None
    results: list[T] = []
    try:
        results.append(works[0]())
    except BaseException as err:
        error = err
    for job in jobs:
        try:
            results.append(finished(job))
        except BaseException as err:
            if error is None:
                error = err
            else:  # raised is the first; the others are said on it, not lost
                error.add_note(f"another work failed too: {type(err).__name__}: {err}")
    if error is not None:
        raise error
    return results
