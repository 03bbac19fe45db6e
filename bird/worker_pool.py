"""Run a function over many payloads in worker processes, surviving stuck and dying workers.

`concurrent.futures.ProcessPoolExecutor` cannot kill one stuck task, and one worker that dies
breaks the whole pool and every pending future. Here each worker runs one payload at a time;
a worker that dies, or runs past its time limit (stuck inside C code that no in-process
deadline can stop), is killed and replaced, and only its own payload is reported lost.
Workers are long-lived, so per-process state (such as open database connections) is reused
across payloads.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar, cast

Payload = TypeVar("Payload")
Result = TypeVar("Result")

MAX_FAILED_STARTS = 3
"""Workers that may die before becoming ready (e.g. an import error) before we give up."""

_STOP_WAIT_SECONDS = 5.0


class WorkerStartError(RuntimeError):
    """Worker processes keep dying before they can take work."""


def _worker_loop(task: Callable[[Any], Any], channel: Connection) -> None:
    """Child process: take (index, payload) messages until None, answer each in turn.

    Ctrl-C reaches the whole process group; only the parent acts on it (it stops the
    workers), so a worker ignores SIGINT instead of dying with a traceback mid-answer, and
    a parent that went away ends the loop quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        channel.send(("ready", None, None))
    except (BrokenPipeError, EOFError, OSError):
        return
    while True:
        try:
            message = channel.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        index, payload = message
        try:
            outcome = ("done", index, task(payload))
        except Exception as error:  # reported to the parent as this payload's failure
            outcome = ("failed", index, f"{type(error).__name__}: {error}")
        try:
            channel.send(outcome)
        except (BrokenPipeError, EOFError, OSError):
            return


class _Worker:
    """One child process, its pipe, and the payload it is running (if any)."""

    def __init__(self, context: Any, task: Callable[[Any], Any]) -> None:
        self.channel, child_end = context.Pipe()
        self.process = context.Process(target=_worker_loop, args=(task, child_end), daemon=True)
        self.process.start()
        child_end.close()
        self.ready = False
        self.job: tuple[int, float] | None = None  # (payload index, monotonic dispatch time)

    def dispatch(self, index: int, payload: Any) -> None:
        self.job = (index, time.monotonic())
        # A worker that died just now cannot take it; its death reports the payload lost.
        with contextlib.suppress(OSError):
            self.channel.send((index, payload))

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.channel.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # the worker may already be gone
            self.channel.send(None)
        self.process.join(_STOP_WAIT_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.channel.close()


class _Run(Generic[Payload, Result]):
    """State of one WorkerPool.map call."""

    def __init__(
        self,
        payloads: Sequence[Payload],
        lost: Callable[[int, str, bool, float], Result],
        on_result: Callable[[int, Result], None] | None,
    ) -> None:
        self.pending: deque[int] = deque(range(len(payloads)))
        self.payloads = payloads
        self.results: list[Result | None] = [None] * len(payloads)
        self.remaining = len(payloads)
        self.lost = lost
        self.on_result = on_result

    def record(self, index: int, result: Result) -> None:
        self.results[index] = result
        self.remaining -= 1
        if self.on_result is not None:
            self.on_result(index, result)

    def record_lost(self, worker: _Worker, reason: str, timed_out: bool) -> None:
        if worker.job is None:
            return
        index, dispatched = worker.job
        worker.job = None
        self.record(index, self.lost(index, reason, timed_out, time.monotonic() - dispatched))

    def feed(self, worker: _Worker) -> None:
        if self.pending:
            index = self.pending.popleft()
            worker.dispatch(index, self.payloads[index])


class WorkerPool(Generic[Payload, Result]):
    """Up to `workers` long-lived processes running `task`; `map` may be called many times.

    Starting a worker costs ~0.2 s, so callers with many small batches keep one pool.
    `task` must be picklable (a module-level function or a functools.partial of one).
    Workers start by forkserver, which imports the main script in each worker: a script
    using this must guard its entry point with `if __name__ == "__main__":`.
    """

    def __init__(self, task: Callable[[Payload], Result], *, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.task = task
        self.workers = workers
        # forkserver: children fork from a clean single-threaded server, not from this
        # process, which may hold threads (progress bars, torch) whose locks fork would copy.
        self._context = multiprocessing.get_context("forkserver")
        self._pool: list[_Worker] = []
        self._failed_starts = 0

    def map(
        self,
        payloads: Sequence[Payload],
        *,
        time_limit: float,
        lost: Callable[[int, str, bool, float], Result],
        on_result: Callable[[int, Result], None] | None = None,
    ) -> list[Result]:
        """`[task(p) for p in payloads]`, computed in the workers, in payload order.

        A payload whose worker dies, raises, or runs longer than `time_limit` seconds gets
        `lost(index, reason, timed_out, elapsed)` as its result instead; the worker is
        replaced. `on_result(index, result)` is called here as each result arrives.
        """
        run: _Run[Payload, Result] = _Run(payloads, lost, on_result)
        try:
            while run.remaining:
                while len(self._pool) < min(self.workers, run.remaining):
                    self._pool.append(_Worker(self._context, self.task))
                for worker in self._pool:
                    if worker.ready and worker.job is None:  # idle since an earlier map
                        run.feed(worker)
                self._step(run, time_limit)
        except BaseException:  # Ctrl-C or a failing callback: do not wait for busy workers
            self.close(wait=False)
            raise
        return cast(list[Result], run.results)

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers: let idle ones exit (wait=True) or kill them at once."""
        for worker in self._pool:
            if wait:
                worker.stop()
            else:
                worker.kill()
        self._pool.clear()

    def __enter__(self) -> WorkerPool[Payload, Result]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _step(self, run: _Run[Any, Any], time_limit: float) -> None:
        """Wait for one round of events: messages, deaths, or a time limit passing."""
        pool = self._pool
        deadlines = [job[1] + time_limit for worker in pool if (job := worker.job) is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        waitables: list[Any] = [worker.channel for worker in pool]
        waitables += [worker.process.sentinel for worker in pool]
        ready = set(wait(waitables, timeout))
        for worker in list(pool):
            died = worker.process.sentinel in ready
            if worker.channel in ready:
                try:
                    kind, index, value = worker.channel.recv()
                except (EOFError, OSError):  # the child closed its end: it is exiting
                    worker.process.join(_STOP_WAIT_SECONDS)
                    died = True
                else:
                    _handle_message(run, worker, kind, index, value)
                    if kind == "ready":
                        self._failed_starts = 0
                    continue  # a death signalled in the same round is seen next round
            if died:
                self._check_start_failure(worker)
                worker.kill()
                run.record_lost(worker, _death_reason(worker.process.exitcode), timed_out=False)
                pool.remove(worker)
            elif worker.job is not None and time.monotonic() - worker.job[1] > time_limit:
                worker.kill()
                reason = f"killed: still running {time_limit:.1f} s after it started"
                run.record_lost(worker, reason, timed_out=True)
                pool.remove(worker)

    def _check_start_failure(self, worker: _Worker) -> None:
        if worker.ready:
            return
        self._failed_starts += 1
        if self._failed_starts > MAX_FAILED_STARTS:
            raise WorkerStartError(
                f"worker processes exited {self._failed_starts} times before taking work "
                f"(last exit code {worker.process.exitcode})"
            )


def map_in_processes(
    task: Callable[[Payload], Result],
    payloads: Sequence[Payload],
    *,
    workers: int,
    time_limit: float,
    lost: Callable[[int, str, bool, float], Result],
    on_result: Callable[[int, Result], None] | None = None,
) -> list[Result]:
    """One `WorkerPool.map` call on a pool started for it and stopped afterwards."""
    with WorkerPool(task, workers=workers) as pool:
        return pool.map(payloads, time_limit=time_limit, lost=lost, on_result=on_result)


def _handle_message(
    run: _Run[Any, Any], worker: _Worker, kind: str, index: Any, value: Any
) -> None:
    if kind == "ready":
        worker.ready = True
    elif kind == "done":
        worker.job = None
        run.record(index, value)
    else:
        run.record_lost(worker, f"the task raised {value}", timed_out=False)
    run.feed(worker)


def _death_reason(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        return f"worker process was killed by signal {-exit_code} while running this payload"
    return f"worker process exited with code {exit_code} while running this payload"
