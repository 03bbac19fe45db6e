"""A read-only, resource-limited SQLite connection for untrusted SQL.

Layers, each enough on its own to keep the database file unchanged:

1. the file is opened through a URI with ``mode=ro`` (SQLite never asks for write access,
   so it also opens in a read-only folder and never creates a -journal/-wal/-shm file);
2. ``PRAGMA query_only=1``;
3. an authorizer that allows only reading: SELECT, reading columns, calling functions and
   recursive CTEs. It refuses writes, schema changes, TEMP objects, ATTACH/DETACH (which
   also stops ``VACUUM INTO``), PRAGMA, transactions, savepoints, ANALYZE and REINDEX;
   extension loading is disabled as well.

Resources: a wall-clock deadline checked by a progress handler *inside* SQLite (every
``PROGRESS_INTERVAL`` virtual-machine instructions), optionally a limit on those instructions
(the same handler counts them: unlike a wall clock, the count does not depend on the machine
or its load, only on the query, the data and the SQLite version), a process-wide cap on
SQLite's own heap (``PRAGMA hard_heap_limit``) and per-connection limits on value length, SQL
length and expression depth.

Known limit of in-process execution: the deadline is checked between VM instructions, so a
single call of a string function over two huge operands (``instr``, ``replace``, ``trim``,
``LIKE`` on values near ``MAX_VALUE_BYTES``) can run past it. ``bird.executor.execute_many``
with ``workers > 1`` adds a watchdog that kills such a worker process.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SQLITE_HEAP_LIMIT = 512 * 1024 * 1024
"""Bytes SQLite may allocate in one process, all connections together. Page cache and sorter
memory for BIRD queries stay far below this; large sorts spill to temp files."""

MAX_VALUE_BYTES = 16 * 1024 * 1024
"""Longest string, blob or row SQLite may build (SQLITE_LIMIT_LENGTH); BIRD values are KBs."""

MAX_SQL_BYTES = 1024 * 1024
"""Longest SQL text accepted (SQLITE_LIMIT_SQL_LENGTH); BIRD gold SQL is a few KB at most."""

MAX_EXPR_DEPTH = 1000
"""Deepest expression tree (SQLITE_LIMIT_EXPR_DEPTH); guards the parser's C stack."""

MAX_VDBE_OPS = 1_000_000
"""Most VM instructions in one compiled statement (SQLITE_LIMIT_VDBE_OP)."""

PROGRESS_INTERVAL = 1000
"""VM instructions between deadline checks: well under a millisecond, negligible overhead.
Also the unit in which VM steps are counted (`QueryGuard.steps`)."""

_CONNECTION_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: MAX_SQL_BYTES,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: MAX_EXPR_DEPTH,
    sqlite3.SQLITE_LIMIT_VDBE_OP: MAX_VDBE_OPS,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}

_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)

# load_extension is also disabled on the connection; fts3_tokenizer(name, pointer) can
# register native code from a pointer value, so it is refused outright.
_REFUSED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})

_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ")
    for name in (
        "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER "
        "CREATE_TEMP_VIEW CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE "
        "DROP_TEMP_INDEX DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER "
        "DROP_VIEW INSERT PRAGMA READ SELECT TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE "
        "REINDEX ANALYZE CREATE_VTABLE DROP_VTABLE FUNCTION SAVEPOINT RECURSIVE"
    ).split()
}

# Eponymous virtual tables ask the authorizer for a schema write the first time a
# connection uses them; connecting these harmless ones before the authorizer is installed
# lets queries use them.
_WARM_UP_SQL = (
    "SELECT count(*) FROM sqlite_master",
    "SELECT 1 FROM json_each('[]'), json_tree('[]')",
)


class DatabaseUnavailable(Exception):
    """The database file is missing, unreadable or not an SQLite database."""


@dataclass
class QueryGuard:
    """Per-connection callbacks and what they observed during the current statement."""

    deadline: float = math.inf
    max_blocks: float = math.inf
    blocks: int = 0
    timed_out: bool = False
    steps_exceeded: bool = False
    interrupted: bool = False
    started: bool = False
    refusal: str | None = None

    def arm(self, deadline: float, max_steps: int | None = None) -> None:
        """Reset the observations and set the deadline (time.monotonic()) and the VM step
        limit (None: none) for a statement."""
        self.deadline = deadline
        self.max_blocks = math.inf if max_steps is None else max_steps // PROGRESS_INTERVAL
        self.blocks = 0
        self.timed_out = False
        self.steps_exceeded = False
        self.interrupted = False
        self.started = False
        self.refusal = None

    @property
    def steps(self) -> int:
        """VM instructions the statement ran, counted in whole `PROGRESS_INTERVAL` blocks:
        the same number on every machine for the same query, data and SQLite version."""
        return self.blocks * PROGRESS_INTERVAL

    def disarm(self) -> None:
        self.deadline = math.inf

    def authorize(
        self,
        action: int,
        first: str | None,
        second: str | None,
        database: str | None,
        trigger_or_view: str | None,
    ) -> int:
        """sqlite3 authorizer: allow reading only, remember the first refusal for the error."""
        if action in _ALLOWED_ACTIONS and not (
            action == sqlite3.SQLITE_FUNCTION and (second or "").lower() in _REFUSED_FUNCTIONS
        ):
            return sqlite3.SQLITE_OK
        if self.refusal is None:
            details = ", ".join(repr(arg) for arg in (first, second) if arg)
            name = _ACTION_NAMES.get(action, f"action {action}")
            self.refusal = f"{name} {details}".strip()
        return sqlite3.SQLITE_DENY

    def check_deadline(self) -> int:
        """sqlite3 progress handler: a non-zero return interrupts the running statement.

        While SQLite runs, Python delivers Ctrl-C's KeyboardInterrupt in this callback, where
        sqlite3 would swallow it and report the query as failed: it is noted instead, so the
        caller raises it again once the statement has stopped."""
        try:
            self.blocks += 1
            if self.blocks > self.max_blocks:
                self.steps_exceeded = True
                return 1
            if time.monotonic() > self.deadline:
                self.timed_out = True
                return 1
            return 0
        except KeyboardInterrupt:
            self.interrupted = True
            return 1

    def mark_started(self, _statement: str) -> None:
        """sqlite3 trace callback: fires when a statement begins running, i.e. it compiled."""
        self.started = True


@dataclass
class ReadOnlyDatabase:
    """One sandboxed connection to one database file, reusable for many statements.

    Reuse is safe: the authorizer refuses every statement that could change connection or
    database state (PRAGMA, ATTACH, TEMP objects, transactions), so one query cannot affect
    the next.
    """

    path: Path
    connection: sqlite3.Connection
    guard: QueryGuard

    def close(self) -> None:
        self.connection.close()


def read_only_uri(path: Path) -> str:
    """`file:` URI opening `path` read-only; as_uri() percent-encodes '?', '#' and '%'."""
    return f"{path.resolve().as_uri()}?mode=ro"


def open_read_only(path: Path | str, *, reverse_unordered: bool = False) -> ReadOnlyDatabase:
    """Open `path` in the sandbox. Raises DatabaseUnavailable with a message naming the file.

    `reverse_unordered` sets `PRAGMA reverse_unordered_selects` (scans run backwards), for
    the gold audit's search for results that depend on the order rows are read in."""
    path = Path(path)
    if not path.exists():
        raise DatabaseUnavailable(f"database file not found: {path}")
    if not path.is_file():
        raise DatabaseUnavailable(f"database path is not a file: {path}")
    if path.stat().st_size == 0:  # SQLite would take it for a database with no tables
        raise DatabaseUnavailable(f"database file is empty (0 bytes): {path}")
    try:
        connection = sqlite3.connect(read_only_uri(path), uri=True, isolation_level=None)
    except sqlite3.Error as error:
        raise DatabaseUnavailable(f"cannot open database {path}: {error}") from error
    try:
        _configure(connection)
        if reverse_unordered:  # before the authorizer, which refuses every PRAGMA
            connection.execute("PRAGMA reverse_unordered_selects=1")
    except sqlite3.Error as error:
        connection.close()
        raise DatabaseUnavailable(f"cannot read database {path}: {error}") from error
    guard = QueryGuard()
    connection.set_authorizer(guard.authorize)
    connection.set_progress_handler(guard.check_deadline, PROGRESS_INTERVAL)
    connection.set_trace_callback(guard.mark_started)
    return ReadOnlyDatabase(path=path, connection=connection, guard=guard)


def _configure(connection: sqlite3.Connection) -> None:
    """Limits and read-only settings; PRAGMAs must run before the authorizer refuses them."""
    if hasattr(connection, "enable_load_extension"):
        connection.enable_load_extension(False)
    connection.execute(f"PRAGMA hard_heap_limit={SQLITE_HEAP_LIMIT}")
    connection.execute("PRAGMA query_only=1")
    for category, value in _CONNECTION_LIMITS.items():
        connection.setlimit(category, value)
    # Reads the schema now, so a file that is not a database fails here, and so schema
    # loading never runs (and fires the trace callback) while a user statement compiles.
    for sql in _WARM_UP_SQL:
        connection.execute(sql).fetchall()
