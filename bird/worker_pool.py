"""Run a function over many payloads in worker processes, surviving stuck and dying workers.

`concurrent.futures.ProcessPoolExecutor` cannot kill one stuck task, and one worker that dies
breaks the whole pool and every pending future. Here each worker runs one payload at a time;
a worker that dies, or runs past its time limit (stuck inside C code that no in-process
deadline can stop), is killed and replaced, and only its own payload is reported lost.
Workers are long-lived, so per-process state (such as open database connections) is reused
across payloads.

Throughput: scoring sends thousands of queries that take a millisecond or less. Sent one at
a time, each would cost a round trip through the parent, and on a busy machine every round
trip waits for the scheduler, which made two workers slower than one. So payloads travel in
batches: a worker answers a batch in one message, and the parent sends the next batch while
the current one runs, so a worker never waits for the parent. Batches shrink towards the end
of a map, so no worker sits on queued work while another is idle. The watchdog still times
each payload: a worker writes which payload it runs, and since when, to a small block of
shared memory the parent reads. Workers fork from a forkserver that has already imported the
task's module, so starting one costs a fork, not a Python start-up and an import.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar, cast

Payload = TypeVar("Payload")
Result = TypeVar("Result")

MAX_BATCH = 32
"""Most payloads in one message to a worker."""

BATCHES_PER_WORKER = 4
"""A batch holds at most this fraction (1/n) of a worker's share of the pending payloads."""

FLUSH_SECONDS = 0.05
"""A worker sends the answers it has after this long, even mid-batch (progress stays live)."""

MAX_FAILED_STARTS = 3
"""Workers that may die before becoming ready (e.g. an import error) before we give up."""

_STOP_WAIT_SECONDS = 5.0
_IDLE = -1.0  # progress slot value: the worker is between payloads


class WorkerStartError(RuntimeError):
    """Worker processes keep dying before they can take work."""


def _worker_loop(task: Callable[[Any], Any], channel: Connection, progress: Any) -> None:
    """Child process: take batches of (index, payload) until None, answer each batch.

    `progress[0]` is the index of the payload running (-1 between payloads), `progress[1]`
    when it started (time.monotonic, one clock for every process on the machine).

    Ctrl-C reaches the whole process group; only the parent acts on it (it stops the
    workers), so a worker ignores SIGINT instead of dying with a traceback mid-answer, and
    a parent that went away ends the loop quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        channel.send([("ready", None, None)])
        while (batch := channel.recv()) is not None:
            answers: list[tuple[str, int, Any]] = []
            flushed = time.monotonic()
            for index, payload in batch:
                progress[1] = time.monotonic()
                progress[0] = index
                try:
                    answers.append(("done", index, task(payload)))
                except Exception as error:  # reported to the parent as this payload's failure
                    answers.append(("failed", index, f"{type(error).__name__}: {error}"))
                progress[0] = _IDLE
                if time.monotonic() - flushed > FLUSH_SECONDS:
                    channel.send(answers)
                    answers, flushed = [], time.monotonic()
            channel.send(answers)
    except (BrokenPipeError, EOFError, OSError):  # the parent is gone
        return


class _Worker:
    """One child process, its pipe, its progress slot, and the payloads sent to it and not
    yet answered (in the order sent, which is the order it runs them)."""

    def __init__(self, context: Any, task: Callable[[Any], Any]) -> None:
        self.channel, child_end = context.Pipe()
        self.progress = context.RawArray("d", [_IDLE, 0.0])
        self.process = context.Process(
            target=_worker_loop, args=(task, child_end, self.progress), daemon=True
        )
        self.process.start()
        child_end.close()
        self.ready = False
        self.outstanding: deque[int] = deque()

    def dispatch(self, batch: list[tuple[int, Any]]) -> None:
        self.outstanding.extend(index for index, _ in batch)
        # A worker that died just now cannot take it; its death reports the payload lost.
        with contextlib.suppress(OSError):
            self.channel.send(batch)

    def answered(self, index: int) -> None:
        if self.outstanding and self.outstanding[0] == index:
            self.outstanding.popleft()
        else:  # not expected: answers follow the order of dispatch
            self.outstanding.remove(index)

    def running(self) -> tuple[int, float] | None:
        """(index, started) of the payload running now, if it is one of ours."""
        started, index = self.progress[1], int(self.progress[0])
        if index < 0 or index not in self.outstanding:
            return None
        return index, started

    def overdue(self, time_limit: float) -> bool:
        running = self.running()
        return running is not None and time.monotonic() - running[1] > time_limit

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
        workers: int,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.pending: deque[int] = deque(range(len(payloads)))
        self.payloads = payloads
        self.results: list[Result | None] = [None] * len(payloads)
        self.done = [False] * len(payloads)
        self.remaining = len(payloads)
        self.lost = lost
        self.on_result = on_result
        self.workers = workers
        self.weights = list(weights) if weights is not None else [1.0] * len(payloads)
        self.pending_weight = sum(self.weights)

    def record(self, index: int, result: Result) -> None:
        if self.done[index]:
            return  # answered before; a re-run after a killed worker does not count twice
        self.done[index] = True
        self.results[index] = result
        self.remaining -= 1
        if self.on_result is not None:
            self.on_result(index, result)

    def record_lost(self, worker: _Worker, reason: str, timed_out: bool) -> None:
        """The worker is gone: the payload it was running is lost, the rest go back in line
        (those it finished but had not sent yet run again)."""
        running = worker.running()
        if running is not None:
            index, started = running
            worker.outstanding.remove(index)
            self.record(index, self.lost(index, reason, timed_out, time.monotonic() - started))
        self.pending.extendleft(reversed(worker.outstanding))
        self.pending_weight += sum(self.weights[index] for index in worker.outstanding)
        worker.outstanding.clear()

    def feed(self, worker: _Worker) -> None:
        """Keep about two batches with the worker: the one running and the next one. A
        batch holds at most a fraction of a worker's share of what is pending, by count and
        by weight, so a few heavy payloads are spread over the workers, not sent together."""
        share = self.workers * BATCHES_PER_WORKER
        size = max(1, min(MAX_BATCH, len(self.pending) // share))
        weight_share = self.pending_weight / share
        queued = sum(self.weights[index] for index in worker.outstanding)
        while (
            self.pending
            and len(worker.outstanding) < 2 * size
            and (queued < 2 * weight_share or not worker.outstanding)
        ):
            batch, weight = [], 0.0
            while self.pending and len(batch) < size and (not batch or weight < weight_share):
                index = self.pending.popleft()
                batch.append((index, self.payloads[index]))
                weight += self.weights[index]
            self.pending_weight -= weight
            queued += weight
            worker.dispatch(batch)


class WorkerPool(Generic[Payload, Result]):
    """Up to `workers` long-lived processes running `task`; `map` may be called many times.

    `task` must be picklable (a module-level function or a functools.partial of one).
    Workers start by forkserver, which imports the main script once: a script using this
    must guard its entry point with `if __name__ == "__main__":`.
    """

    def __init__(self, task: Callable[[Payload], Result], *, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.task = task
        self.workers = workers
        # forkserver: children fork from a clean single-threaded server, not from this
        # process, which may hold threads (progress bars, torch) whose locks fork would copy.
        # The server imports the task's module once (this takes effect only before the server
        # first starts), so each child starts without importing it again.
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["__main__", task.__module__])
        self._pool: list[_Worker] = []
        self._starter: threading.Thread | None = None
        self._spawned: list[_Worker] = []
        self._failed_starts = 0
        self.started = 0
        """Worker processes started so far (replacements included)."""
        self.messages = 0
        """Messages received from workers so far: far fewer than payloads, since answers
        travel in batches."""

    def _start_worker(self) -> None:
        self._pool.append(_Worker(self._context, self.task))
        self.started += 1

    def start(self) -> None:
        """Start every worker in the background and return at once: a caller with other
        work to do first (reading files, trusted payloads run `local`ly) overlaps the
        workers' start-up with it. The first start of a forkserver imports the task's
        module there, which takes a while; `map` waits for it only when it must."""
        if self._starter is None and len(self._pool) < self.workers:
            spawned: list[_Worker] = []

            def spawn() -> None:
                while len(self._pool) + len(spawned) < self.workers:
                    spawned.append(_Worker(self._context, self.task))

            self._spawned = spawned
            self._starter = threading.Thread(target=spawn, name="worker-start", daemon=True)
            self._starter.start()

    def _join_starter(self) -> None:
        """Take over the workers the background start made."""
        if self._starter is not None:
            self._starter.join()
            self._pool.extend(self._spawned)
            self.started += len(self._spawned)
            self._starter, self._spawned = None, []

    def map(
        self,
        payloads: Sequence[Payload],
        *,
        time_limit: float,
        lost: Callable[[int, str, bool, float], Result],
        on_result: Callable[[int, Result], None] | None = None,
        local: Callable[[Payload], Result] | None = None,
        weights: Sequence[float] | None = None,
    ) -> list[Result]:
        """`[task(p) for p in payloads]`, computed in the workers, in payload order.

        A payload whose worker dies, raises, or runs longer than `time_limit` seconds gets
        `lost(index, reason, timed_out, elapsed)` as its result instead; the worker is
        replaced. `on_result(index, result)` is called here as each result arrives.

        `local`: while no worker is ready yet (they take a moment to start), this process
        runs payloads itself with it instead of waiting. No watchdog covers those, so pass
        it only for payloads that cannot get stuck (trusted ones).

        `weights`: expected cost of each payload (any unit), so that batches balance work,
        not counts; payloads go out in the order given (put the heaviest first).
        """
        run: _Run[Payload, Result] = _Run(payloads, lost, on_result, self.workers, weights)
        try:
            while local is not None and run.pending and self._starter is not None:
                if not self._starter.is_alive():
                    break
                index = run.pending.popleft()  # workers still starting: run it here
                run.pending_weight -= run.weights[index]
                run.record(index, local(payloads[index]))
            self._join_starter()
            while run.remaining:
                while len(self._pool) < min(self.workers, run.remaining):
                    self._start_worker()
                for worker in self._pool:
                    if worker.ready:  # idle since an earlier map, or just started
                        run.feed(worker)
                if local is not None and run.pending and not any(w.ready for w in self._pool):
                    index = run.pending.popleft()
                    run.pending_weight -= run.weights[index]
                    run.record(index, local(payloads[index]))
                    self._step(run, time_limit, block=False)
                    continue
                self._step(run, time_limit)
        except BaseException:  # Ctrl-C or a failing callback: do not wait for busy workers
            self.close(wait=False)
            raise
        return cast(list[Result], run.results)

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers: let idle ones exit (wait=True) or kill them at once."""
        self._join_starter()
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

    def _step(self, run: _Run[Any, Any], time_limit: float, *, block: bool = True) -> None:
        """Wait for one round of events: answers, deaths, or a time limit passing (or only
        look, when not `block`)."""
        pool = self._pool
        now = time.monotonic()
        deadlines = [
            running[1] + time_limit if (running := w.running()) is not None else now + time_limit
            for w in pool
            if w.outstanding
        ]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        if not block:
            timeout = 0.0
        waitables: list[Any] = [worker.channel for worker in pool]
        waitables += [worker.process.sentinel for worker in pool]
        ready = set(wait(waitables, timeout))
        for worker in list(pool):
            died = worker.process.sentinel in ready
            if worker.channel in ready:
                try:
                    answers = worker.channel.recv()
                    self.messages += 1
                except (EOFError, OSError):  # the child closed its end: it is exiting
                    worker.process.join(_STOP_WAIT_SECONDS)
                    died = True
                else:
                    self._handle_answers(run, worker, answers)
                    continue  # a death signalled in the same round is seen next round
            if died:
                self._check_start_failure(worker)
                worker.kill()
                run.record_lost(worker, _death_reason(worker.process.exitcode), timed_out=False)
                pool.remove(worker)
            elif worker.overdue(time_limit):
                worker.kill()
                reason = f"killed: still running {time_limit:.1f} s after it started"
                run.record_lost(worker, reason, timed_out=True)
                pool.remove(worker)

    def _handle_answers(
        self, run: _Run[Any, Any], worker: _Worker, answers: list[tuple[str, Any, Any]]
    ) -> None:
        for kind, index, value in answers:
            if kind == "ready":
                worker.ready = True
                self._failed_starts = 0
                continue
            worker.answered(index)
            if kind == "done":
                run.record(index, value)
            else:
                run.record(index, run.lost(index, f"the task raised {value}", False, 0.0))
        run.feed(worker)

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


def _death_reason(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        return f"worker process was killed by signal {-exit_code} while running this payload"
    return f"worker process exited with code {exit_code} while running this payload"
