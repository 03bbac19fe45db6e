"""The one way this project runs SQL: sandboxed, time-limited, size-capped SQLite execution.

Every statement runs through `bird.sandbox` (read-only file, an authorizer that allows only
reading, limits inside SQLite), so SQL written by a model can never change a database file.
Failures come back as data (`ExecutionResult.error_kind`), never as exceptions, because
failing SQL is an expected outcome when scoring models.
"""

from __future__ import annotations

import math
import re
import sqlite3
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from bird.sandbox import PROGRESS_INTERVAL, DatabaseUnavailable, ReadOnlyDatabase, open_read_only
from bird.worker_pool import WorkerPool

ErrorKind = Literal[
    "syntax",
    "denied",
    "timeout",
    "step_limit",
    "too_large",
    "memory",
    "runtime",
    "missing_database",
]
TextDecoding = Literal["strict", "ignore"]
"""How TEXT values that are not valid UTF-8 are read: "strict" fails the query (Python's
sqlite3 default, what the BIRD scripts get), "ignore" drops the bad bytes (Spider's
test-suite evaluation reads text that way)."""

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_ROWS = 1_000_000
"""The official BIRD evaluation fetches every row; gold results in dev reach thousands."""
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Approximate Python memory of the fetched rows (objects included), not SQLite's."""

FETCH_BATCH_ROWS = 1000
WATCHDOG_GRACE = 0.5
"""Seconds past the time limit after which execute_many kills a worker that did not answer
(stuck inside a single SQLite call, where the in-SQLite deadline check cannot reach)."""
CACHED_CONNECTIONS = 16
"""Open databases kept per process by execute_many (BIRD dev has 11, train 69)."""

# Starts of SQLite's (and Python's) messages for statements over a size or depth limit.
_TOO_LARGE_PREFIXES = (
    "string or blob too big",
    "expression tree is too large",
    "parser stack overflow",
    "too many ",  # terms in a compound SELECT, columns, FROM terms, SQL variables
    "query string is too large",
    "at most ",  # ... 64 tables in a join
)
# A schema write that SQLite itself rejects while compiling, before asking the authorizer.
_SCHEMA_WRITE_MESSAGE = re.compile(r"^table \S+ may not be modified$")
_REFUSED = "the read-only sandbox only runs queries that read:"


class ExecutionResult(BaseModel):
    """What running one statement produced; `error_kind` is None on success."""

    columns: list[str] = []
    rows: list[tuple[Any, ...]] = []
    error_kind: ErrorKind | None = None
    error: str | None = None
    timed_out: bool = False
    truncated: bool = False
    elapsed: float = 0.0
    steps: int | None = None
    """SQLite VM instructions run, in whole blocks of `bird.sandbox.PROGRESS_INTERVAL`:
    unlike `elapsed`, the same on every machine (for one SQLite version)."""

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    def to_jsonable(self) -> dict[str, Any]:
        """A JSON-ready dict. bytes become {"$bytes_hex": "<hex>"}; non-finite floats
        {"$float": "inf" | "-inf" | "nan"}; rows become lists."""
        rows = [[_jsonable_value(value) for value in row] for row in self.rows]
        return {
            "columns": self.columns,
            "rows": rows,
            **self.model_dump(exclude={"columns", "rows"}),
        }


class ExecutionRequest(BaseModel):
    db_path: Path
    sql: str


def _jsonable_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes_hex": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": str(value)}
    return value


def _result(started: float, **fields: Any) -> ExecutionResult:
    # model_construct: rows come straight from sqlite3 (already the right types), and
    # validating a million tuples would cost more than running most queries.
    return ExecutionResult.model_construct(elapsed=time.monotonic() - started, **fields)


def _validate_limits(
    timeout: float, max_rows: int, max_bytes: int, max_steps: int | None = None
) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if max_rows < 1 or max_bytes < 1:
        raise ValueError(f"max_rows and max_bytes must be at least 1, got {max_rows}, {max_bytes}")
    if max_steps is not None and max_steps < PROGRESS_INTERVAL:
        raise ValueError(f"max_steps must be at least {PROGRESS_INTERVAL}, got {max_steps}")


def _lenient_text(value: bytes) -> str:
    return value.decode("utf-8", errors="ignore")


_TEXT_FACTORIES: dict[TextDecoding, Any] = {"strict": str, "ignore": _lenient_text}


def execute_sql(
    db_path: Path | str,
    sql: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_steps: int | None = None,
    text: TextDecoding = "strict",
) -> ExecutionResult:
    """Run one read-only statement on a fresh sandboxed connection and close it.

    The first call in a process also caps SQLite's heap process-wide (see bird.sandbox).
    """
    _validate_limits(timeout, max_rows, max_bytes, max_steps)
    started = time.monotonic()
    try:
        database = open_read_only(db_path)
    except DatabaseUnavailable as error:
        return _result(started, error_kind="missing_database", error=str(error))
    try:
        return run_statement(
            database,
            sql,
            timeout,
            max_rows,
            max_bytes,
            started=started,
            max_steps=max_steps,
            text=text,
        )
    finally:
        database.close()


def run_statement(
    database: ReadOnlyDatabase,
    sql: str,
    timeout: float,
    max_rows: int,
    max_bytes: int,
    *,
    started: float | None = None,
    max_steps: int | None = None,
    text: TextDecoding = "strict",
) -> ExecutionResult:
    """Run `sql` on an open sandboxed database; the deadline counts from `started`, the VM
    steps (`max_steps`, None for no limit) from the statement's start."""
    started = time.monotonic() if started is None else started
    guard = database.guard
    deadline = started + timeout
    guard.arm(deadline, max_steps)
    database.connection.text_factory = _TEXT_FACTORIES[text]
    cursor = database.connection.cursor()
    try:
        cursor.execute(sql)
        if cursor.description is None:
            return _no_result_set(started, guard.started)
        columns = [column[0] for column in cursor.description]
        rows: list[tuple[Any, ...]] = []
        size = 0
        while batch := cursor.fetchmany(FETCH_BATCH_ROWS):
            batch_size = _batch_size(batch)
            if len(rows) + len(batch) > max_rows or size + batch_size > max_bytes:
                sizes = list(map(_approximate_size, batch))
                rows += batch[: _rows_that_fit(sizes, max_rows - len(rows), max_bytes - size)]
                limit = f"{max_rows} rows" if len(rows) == max_rows else f"{max_bytes} bytes"
                return _result(
                    started,
                    columns=columns,
                    rows=rows,
                    error_kind="too_large",
                    error=f"result exceeds the cap of {limit}; rows were truncated",
                    truncated=True,
                    steps=guard.steps,
                )
            rows += batch
            size += batch_size
            if time.monotonic() > deadline:
                return _timeout_result(started, timeout, guard.steps)
        return _result(started, columns=columns, rows=rows, steps=guard.steps)
    except Exception as error:  # every failure is reported as data, classified below
        code = getattr(error, "sqlite_errorcode", None)
        stopped_by_limit = guard.timed_out or guard.steps_exceeded
        if guard.interrupted or (code == sqlite3.SQLITE_INTERRUPT and not stopped_by_limit):
            # Ctrl-C while SQLite ran (see QueryGuard.check_deadline): the user stopped the
            # command; this is not the query's failure
            raise KeyboardInterrupt from None
        if guard.steps_exceeded:
            message = f"query stopped after {guard.steps:,} SQLite VM steps (limit {max_steps:,})"
            return _result(started, error_kind="step_limit", error=message, steps=guard.steps)
        if guard.timed_out:
            return _timeout_result(started, timeout, guard.steps)
        kind, message = _classify(error, guard.refusal, guard.started)
        return _result(started, error_kind=kind, error=message, steps=guard.steps)
    finally:
        guard.disarm()
        cursor.close()


def _no_result_set(started: float, compiled: bool) -> ExecutionResult:
    """Only comments (nothing compiled), or a statement that is not a query (e.g. REINDEX)."""
    if not compiled:
        return _result(started, error_kind="syntax", error="empty SQL: nothing to execute")
    message = f"{_REFUSED} this statement returns no rows (only queries are run)"
    return _result(started, error_kind="denied", error=message)


def _timeout_result(started: float, timeout: float, steps: int) -> ExecutionResult:
    message = f"query interrupted after the time limit of {timeout:g} s"
    return _result(started, error_kind="timeout", error=message, timed_out=True, steps=steps)


def _rows_that_fit(sizes: list[int], row_room: int, byte_room: int) -> int:
    """How many leading rows of a batch fit in the remaining row and byte allowance."""
    kept = 0
    for size in sizes[:row_room]:
        if size > byte_room:
            break
        byte_room -= size
        kept += 1
    return kept


def _approximate_size(row: tuple[Any, ...]) -> int:
    """Bytes of Python memory a fetched row holds (tuple plus its values)."""
    return sys.getsizeof(row) + sum(map(sys.getsizeof, row))


def _batch_size(batch: list[tuple[Any, ...]]) -> int:
    """The sum of `_approximate_size` over a batch, without a Python call per row."""
    return sum(map(sys.getsizeof, batch)) + sum(map(sys.getsizeof, chain.from_iterable(batch)))


def _classify(error: Exception, refusal: str | None, started: bool) -> tuple[ErrorKind, str]:
    """Map a failure to an error kind and a message that says what went wrong."""
    message = str(error) or type(error).__name__
    lowered = message.lower()
    code = getattr(error, "sqlite_errorcode", None)
    if refusal is not None:
        return "denied", f"{_REFUSED} refused {refusal} ({message})"
    if isinstance(error, MemoryError) or code == sqlite3.SQLITE_NOMEM:
        return "memory", f"SQLite ran out of its memory allowance: {message}"
    if code == sqlite3.SQLITE_TOOBIG or lowered.startswith(_TOO_LARGE_PREFIXES):
        return "too_large", message
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_AUTH) or _SCHEMA_WRITE_MESSAGE.match(
        lowered
    ):
        return "denied", f"{_REFUSED} {message}"
    if isinstance(error, sqlite3.ProgrammingError) and "one statement at a time" in lowered:
        return "syntax", "only one SQL statement may be executed; found more after the first"
    if not started or isinstance(error, (sqlite3.ProgrammingError, ValueError)):
        # Failed while compiling: bad syntax, or names that do not exist in this schema.
        return "syntax", message
    return "runtime", message


class DatabaseCache:
    """Open sandboxed databases by path, least recently used closed first."""

    def __init__(self, capacity: int = CACHED_CONNECTIONS) -> None:
        self.capacity = capacity
        self._open: OrderedDict[tuple[Path, bool], ReadOnlyDatabase] = OrderedDict()
        # Resolving a path costs a system call per component: done once per spelling.
        self._resolved: dict[str, Path] = {}

    def get(self, path: Path | str, *, reverse_unordered: bool = False) -> ReadOnlyDatabase:
        given = str(path)
        resolved = self._resolved.get(given)
        if resolved is None:
            resolved = self._resolved[given] = Path(path).resolve()
        key = (resolved, reverse_unordered)
        database = self._open.get(key)
        if database is None:
            database = open_read_only(path, reverse_unordered=reverse_unordered)
            self._open[key] = database
            if len(self._open) > self.capacity:
                self._open.popitem(last=False)[1].close()
        self._open.move_to_end(key)
        return database

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


class _Settings(NamedTuple):
    """The limits and reading options every statement of one batch runs under."""

    timeout: float
    max_rows: int
    max_bytes: int
    max_steps: int | None
    text: TextDecoding
    reverse_unordered: bool = False


_WORKER_DATABASES = DatabaseCache()
"""Per-process cache used by execute_many's worker processes."""


def _execute_cached(
    db_path: Path | str, sql: str, settings: _Settings, cache: DatabaseCache
) -> ExecutionResult:
    started = time.monotonic()
    try:
        database = cache.get(db_path, reverse_unordered=settings.reverse_unordered)
    except DatabaseUnavailable as error:
        return _result(started, error_kind="missing_database", error=str(error))
    return run_statement(
        database,
        sql,
        settings.timeout,
        settings.max_rows,
        settings.max_bytes,
        started=started,
        max_steps=settings.max_steps,
        text=settings.text,
    )


def _execute_in_worker(job: tuple[str, str, _Settings]) -> ExecutionResult:
    """Worker-process side of ExecutionPool. Jobs are plain tuples: pickling a pydantic
    request costs more than running a small query."""
    db_path, sql, settings = job
    return _execute_cached(db_path, sql, settings, _WORKER_DATABASES)


def _lost_result(_index: int, reason: str, timed_out: bool, elapsed: float) -> ExecutionResult:
    kind: ErrorKind = "timeout" if timed_out else "runtime"
    return ExecutionResult.model_construct(
        error_kind=kind, error=reason, timed_out=timed_out, elapsed=elapsed
    )


class ExecutionPool:
    """Worker processes that run statements, kept across `execute_many` calls.

    Callers that run several batches (gold queries, then predictions; validating one
    rationale's steps at a time) keep one pool open instead of starting workers per batch:

        with ExecutionPool(workers=4) as pool:
            for batch in batches:
                results = pool.execute_many(batch, timeout=10)

    Each worker keeps one connection per database path (see execute_many) and a watchdog
    kills a worker still busy `WATCHDOG_GRACE` s past the time limit.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: WorkerPool[tuple[str, str, _Settings], ExecutionResult]
        self._pool = WorkerPool(_execute_in_worker, workers=workers)
        self._local_databases = DatabaseCache()

    def _run_locally(self, job: tuple[str, str, _Settings]) -> ExecutionResult:
        db_path, sql, settings = job
        return _execute_cached(db_path, sql, settings, self._local_databases)

    def start(self) -> None:
        """Start the workers now (they start on first use otherwise), without waiting."""
        self._pool.start()

    def execute_many(
        self,
        requests: Sequence[ExecutionRequest],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_result: Callable[[int, ExecutionResult], None] | None = None,
        max_steps: int | None = None,
        text: TextDecoding = "strict",
        trusted: bool = False,
        costs: Sequence[float] | None = None,
        reverse_unordered: bool = False,
    ) -> list[ExecutionResult]:
        """As the module-level execute_many, in this pool's worker processes.

        `trusted` statements (gold queries from the dataset, never model output) also run
        in this process while the workers are still starting, instead of waiting for them.
        `costs`: expected time of each request (e.g. its gold query's), so that the workers
        get equal shares of work; send the requests slowest first.
        `reverse_unordered`: scans run backwards (PRAGMA reverse_unordered_selects).
        """
        _validate_limits(timeout, max_rows, max_bytes, max_steps)
        settings = _Settings(timeout, max_rows, max_bytes, max_steps, text, reverse_unordered)
        jobs = [(str(request.db_path), request.sql, settings) for request in requests]
        return self._pool.map(
            jobs,
            time_limit=timeout + WATCHDOG_GRACE,
            lost=_lost_result,
            on_result=on_result,
            local=self._run_locally if trusted else None,
            weights=costs,
        )

    def close(self) -> None:
        self._pool.close()
        self._local_databases.close()

    def __enter__(self) -> ExecutionPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def execute_many(
    requests: Sequence[ExecutionRequest],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = 1,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_result: Callable[[int, ExecutionResult], None] | None = None,
    max_steps: int | None = None,
    text: TextDecoding = "strict",
) -> list[ExecutionResult]:
    """Run many statements; results in request order, `on_result(index, result)` as each ends.

    Each process keeps one open connection per database path and reuses it (unlike the
    official evaluation, which connects once per query). workers=1 runs here, in this
    process; workers>1 uses worker processes with a watchdog (see bird.worker_pool), so a
    stuck or crashed worker costs only its own request (error_kind "timeout" / "runtime").
    `max_steps` stops a statement after that many SQLite VM steps (error_kind "step_limit"),
    a limit that, unlike `timeout`, does not depend on the machine.
    Scripts using workers>1 need an `if __name__ == "__main__":` guard (forkserver).
    """
    _validate_limits(timeout, max_rows, max_bytes, max_steps)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        settings = _Settings(timeout, max_rows, max_bytes, max_steps, text)
        cache = DatabaseCache()
        try:
            results = []
            for index, request in enumerate(requests):
                result = _execute_cached(request.db_path, request.sql, settings, cache)
                results.append(result)
                if on_result is not None:
                    on_result(index, result)
            return results
        finally:
            cache.close()
    with ExecutionPool(workers) as pool:
        return pool.execute_many(
            requests,
            timeout=timeout,
            max_rows=max_rows,
            max_bytes=max_bytes,
            on_result=on_result,
            max_steps=max_steps,
            text=text,
        )
