"""Hostile and runaway SQL against the sandboxed executor, on copies of a real BIRD database.

For every statement: the database file's bytes do not change, the call returns an error (or a
timeout) within the time limit plus one second, and memory stays bounded. Statements run in
a child process (so a crash or a memory blow-up cannot take pytest down, and the child's peak
RSS is measurable per statement) and, all of them again, through `execute_many` with worker
processes. The real ../shared database is only read: statements that name its path (ATTACH,
VACUUM INTO) must not change it either.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bird.executor import ExecutionRequest, execute_many

TIME_LIMIT = 2.0
SLACK = 1.0
# SQLite's heap is capped at 512 MiB (bird.sandbox.SQLITE_HEAP_LIMIT), fetched rows at
# 256 MiB (DEFAULT_MAX_BYTES, counted as Python object sizes), and the interpreter with
# pydantic needs ~50 MiB: a child that honours both caps stays under 1 GiB.
PEAK_RSS_LIMIT_KIB = 1024 * 1024

DENIED = {"denied"}
STOPPED = {"timeout", "too_large", "memory"}

# (id, SQL, accepted error kinds, runs in-process too). {scratch}: a temp folder for files
# that must never be created; {real}: the real shared database path.
# Statements marked False burn CPU inside ONE SQLite function call, where the in-SQLite
# deadline check cannot reach (see bird.sandbox); only the worker watchdog stops them.
CASES: list[tuple[str, str, set[str], bool]] = [
    ("drop_table", "DROP TABLE superhero", DENIED, True),
    ("drop_view_if_exists", "DROP VIEW IF EXISTS no_such_view", DENIED, True),
    ("delete", "DELETE FROM superhero", DENIED, True),
    ("insert", "INSERT INTO colour (id, colour) VALUES (9999, 'Evil')", DENIED, True),
    ("insert_select", "INSERT INTO colour SELECT id + 1000, colour FROM colour", DENIED, True),
    ("update", "UPDATE superhero SET superhero_name = 'pwned'", DENIED, True),
    ("replace", "REPLACE INTO colour (id, colour) VALUES (1, 'Evil')", DENIED, True),
    (
        "upsert",
        "INSERT INTO colour VALUES (1, 'x') ON CONFLICT(id) DO UPDATE SET colour = 'Evil'",
        DENIED,
        True,
    ),
    ("cte_delete", "WITH doomed AS (SELECT id FROM colour) DELETE FROM colour", DENIED, True),
    ("create_table", "CREATE TABLE evil (x)", DENIED, True),
    ("create_table_as", "CREATE TABLE evil AS SELECT * FROM superhero", DENIED, True),
    ("create_index", "CREATE INDEX evil_idx ON superhero (superhero_name)", DENIED, True),
    ("create_temp_table", "CREATE TEMP TABLE evil (x)", DENIED, True),
    ("create_temp_view", "CREATE TEMP VIEW evil AS SELECT 1", DENIED, True),
    ("create_view", "CREATE VIEW evil AS SELECT 1", DENIED, True),
    (
        "create_trigger",
        "CREATE TRIGGER evil AFTER INSERT ON colour BEGIN DELETE FROM superhero; END",
        DENIED,
        True,
    ),
    ("alter_rename", "ALTER TABLE colour RENAME TO colours", DENIED, True),
    ("alter_add_column", "ALTER TABLE colour ADD COLUMN evil TEXT", DENIED, True),
    ("attach_new_file", "ATTACH DATABASE '{scratch}/attached.sqlite' AS evil", DENIED, True),
    ("attach_real_database", "ATTACH DATABASE '{real}' AS shared", DENIED, True),
    ("attach_memory", "ATTACH DATABASE ':memory:' AS evil", DENIED, True),
    ("detach_main", "DETACH DATABASE main", DENIED, True),
    ("pragma_writable_schema", "PRAGMA writable_schema = 1", DENIED, True),
    ("pragma_journal_wal", "PRAGMA journal_mode = wal", DENIED, True),
    ("pragma_user_version", "PRAGMA user_version = 5", DENIED, True),
    ("pragma_query_only_off", "PRAGMA query_only = 0", DENIED, True),
    ("pragma_locking_exclusive", "PRAGMA locking_mode = EXCLUSIVE", DENIED, True),
    (
        "pragma_table_function",
        "SELECT * FROM pragma_journal_mode('wal')",
        {"denied", "syntax"},
        True,
    ),
    (
        "load_extension",
        "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libc.so.6')",
        DENIED,
        True,
    ),
    ("fts3_tokenizer", "SELECT fts3_tokenizer('simple')", DENIED, True),
    ("vacuum", "VACUUM", DENIED, True),
    ("vacuum_into_new_file", "VACUUM INTO '{scratch}/vacuumed.sqlite'", DENIED, True),
    ("vacuum_into_real_database", "VACUUM INTO '{real}'", DENIED, True),
    ("begin", "BEGIN IMMEDIATE", DENIED, True),
    ("commit", "COMMIT", DENIED, True),
    ("rollback", "ROLLBACK", DENIED, True),
    ("savepoint", "SAVEPOINT evil", DENIED, True),
    ("release", "RELEASE evil", DENIED, True),
    ("select_then_drop", "SELECT 1; DROP TABLE superhero", {"syntax"}, True),
    (
        "select_then_schema_write",
        "SELECT 1; PRAGMA writable_schema = 1; UPDATE sqlite_master SET sql = ''",
        {"syntax"},
        True,
    ),
    (
        "update_sqlite_master",
        "UPDATE sqlite_master SET sql = '' WHERE name = 'colour'",
        DENIED,
        True,
    ),
    ("delete_sqlite_master", "DELETE FROM sqlite_master", DENIED, True),
    ("create_fts5", "CREATE VIRTUAL TABLE evil USING fts5(body)", DENIED, True),
    ("create_temp_rtree", "CREATE VIRTUAL TABLE temp.evil USING rtree(id, lo, hi)", DENIED, True),
    ("dbstat", "SELECT * FROM dbstat", DENIED, True),
    ("analyze", "ANALYZE", DENIED, True),
    ("reindex", "REINDEX", DENIED, True),
    (
        "recursive_cte_forever",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        {"timeout"},
        True,
    ),
    (
        "recursive_cte_rows",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",
        STOPPED,
        True,
    ),
    ("cartesian_rows", "SELECT * FROM superhero a, superhero b, superhero c", STOPPED, True),
    (
        "cartesian_count",
        "SELECT count(*) FROM superhero a, superhero b, superhero c, hero_power d",
        {"timeout"},
        True,
    ),
    (
        "huge_cte_order_by",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
        "SELECT n FROM r ORDER BY n DESC LIMIT 1",
        STOPPED,
        True,
    ),
    (
        "window_over_cartesian",
        "SELECT max(rn) FROM (SELECT row_number() OVER (ORDER BY random()) AS rn "
        "FROM superhero a, superhero b, superhero c)",
        STOPPED,
        True,
    ),
    (
        "like_over_cartesian",
        "SELECT count(*) FROM superhero a, superhero b, superhero c "
        "WHERE a.full_name || b.full_name || c.full_name LIKE '%a%e%i%o%u%a%e%i%o%u%z'",
        {"timeout"},
        True,
    ),
    ("zeroblob", "SELECT zeroblob(1000000000)", {"too_large"}, True),
    ("randomblob", "SELECT randomblob(2000000000)", {"too_large"}, True),
    (
        "printf_width",
        "SELECT printf('%.*c', 10000000, 'x') || printf('%.*c', 10000000, 'y')",
        {"too_large"},
        True,
    ),
    (
        "string_doubling",
        "WITH RECURSIVE r(s, n) AS (SELECT 'x', 0 UNION ALL SELECT s || s, n + 1 FROM r "
        "WHERE n < 40) SELECT length(s) FROM r",
        {"too_large"},
        True,
    ),
    (
        "replace_doubling",
        "SELECT replace(replace(replace(replace(hex(zeroblob(100000)), '0', '0000'), "
        "'0', '0000'), '0', '0000'), '0', '0000')",
        {"too_large"},
        True,
    ),
    (
        "group_concat_cartesian",
        "SELECT length(group_concat(a.full_name || b.full_name || c.full_name)) "
        "FROM superhero a, superhero b, superhero c",
        STOPPED,
        True,
    ),
    ("deep_parentheses", "SELECT " + "(" * 5000 + "1" + ")" * 5000, {"too_large"}, True),
    ("deep_unary_operators", "SELECT " + "~ " * 100_000 + "1", {"too_large"}, True),
    (
        "deep_subqueries",
        "SELECT * FROM (" * 2000 + "SELECT 1" + ")" * 2000,
        {"too_large"},
        True,
    ),
    ("sql_too_long", "SELECT " + "1 + " * 1_000_000 + "1", {"too_large"}, True),
    ("printf_int_max", "SELECT printf('%.*c', 2147483647, 'x')", STOPPED, False),
    (
        "instr_quadratic",
        "SELECT instr(printf('%.*c', 8000000, 'a'), printf('%.*c', 4000000, 'a') || 'b')",
        STOPPED,
        False,
    ),
    (
        "replace_quadratic",
        "SELECT length(replace(printf('%.*c', 8000000, 'a'), printf('%.*c', 4000000, 'a') "
        "|| 'b', ''))",
        STOPPED,
        False,
    ),
]
CASE_IDS = [case[0] for case in CASES]
IN_PROCESS_IDS = [case[0] for case in CASES if case[3]]

# Runs in a fresh interpreter: executes each statement, then reports its outcome, the wall
# time around the call, the process's peak RSS during it (VmHWM, reset before each
# statement via /proc/self/clear_refs), and the database file's sha256 afterwards.
CHILD_SCRIPT = r"""
import hashlib, json, re, sys, time
from bird.executor import execute_sql

job = json.load(sys.stdin)

def peak_rss_kib():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass  # the peak then covers all statements so far: still an upper bound

for case_id, sql in job["cases"]:
    reset_peak()
    started = time.monotonic()
    result = execute_sql(job["db"], sql, timeout=job["timeout"])
    wall = time.monotonic() - started
    with open(job["db"], "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    record = {"id": case_id, "error_kind": result.error_kind, "error": result.error,
              "elapsed": result.elapsed, "wall": wall, "peak_rss_kib": peak_rss_kib(),
              "sha256": digest}
    print(json.dumps(record), flush=True)
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _render(sql: str, scratch: Path, real: Path) -> str:
    return sql.replace("{scratch}", str(scratch)).replace("{real}", str(real))


def _folder_listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.fixture(scope="module")
def hostile_runs(superhero_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every case in a child process and through worker processes, once per module."""
    real_before = _sha256(superhero_db)
    real_listing = _folder_listing(superhero_db.parent)
    base = tmp_path_factory.mktemp("hostile")
    scratch = base / "scratch"
    scratch.mkdir()
    copies = {}
    for name in ("in_process", "workers"):
        folder = base / name
        folder.mkdir()
        copies[name] = folder / superhero_db.name
        shutil.copyfile(superhero_db, copies[name])
    copy_sha = _sha256(copies["in_process"])

    job = {
        "db": str(copies["in_process"]),
        "timeout": TIME_LIMIT,
        "cases": [
            [case_id, _render(sql, scratch, superhero_db)]
            for case_id, sql, _, in_process in CASES
            if in_process
        ],
    }
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=300,
    )
    in_process_wall = time.monotonic() - started
    in_process = {}
    for line in child.stdout.splitlines():
        record = json.loads(line)
        in_process[record["id"]] = record

    requests = [
        ExecutionRequest(db_path=copies["workers"], sql=_render(sql, scratch, superhero_db))
        for _, sql, _, _ in CASES
    ]
    started = time.monotonic()
    pooled = execute_many(requests, timeout=TIME_LIMIT, workers=2)
    workers_wall = time.monotonic() - started

    return {
        "child": child,
        "in_process": in_process,
        "in_process_wall": in_process_wall,
        "workers": dict(zip(CASE_IDS, pooled, strict=True)),
        "workers_wall": workers_wall,
        "copy_sha": copy_sha,
        "copies": copies,
        "scratch": scratch,
        "real_before": real_before,
        "real_after": _sha256(superhero_db),
        "real_listing_before": real_listing,
        "real_listing_after": _folder_listing(superhero_db.parent),
    }


def _case(case_id: str) -> tuple[str, str, set[str], bool]:
    return next(case for case in CASES if case[0] == case_id)


def test_there_are_enough_hostile_statements() -> None:
    assert len(CASES) >= 30
    assert len(set(CASE_IDS)) == len(CASE_IDS)


def test_child_process_ran_every_statement(hostile_runs: dict[str, Any]) -> None:
    child = hostile_runs["child"]
    assert child.returncode == 0, child.stderr[-2000:]
    assert sorted(hostile_runs["in_process"]) == sorted(IN_PROCESS_IDS)


@pytest.mark.parametrize("case_id", IN_PROCESS_IDS)
def test_in_process_statement_is_contained(hostile_runs: dict[str, Any], case_id: str) -> None:
    record = hostile_runs["in_process"].get(case_id)
    assert record is not None, f"child died before {case_id}: {hostile_runs['child'].stderr}"
    _, _, accepted, _ = _case(case_id)
    assert record["error_kind"] in accepted, record
    assert record["elapsed"] <= TIME_LIMIT + SLACK, record
    assert record["wall"] <= TIME_LIMIT + SLACK, record
    assert record["peak_rss_kib"] < PEAK_RSS_LIMIT_KIB, record
    assert record["sha256"] == hostile_runs["copy_sha"], f"{case_id} changed the database"


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_worker_statement_is_contained(hostile_runs: dict[str, Any], case_id: str) -> None:
    result = hostile_runs["workers"][case_id]
    _, _, accepted, _ = _case(case_id)
    assert result.error_kind in accepted, result.error
    assert result.elapsed <= TIME_LIMIT + SLACK, result
    assert result.timed_out == (result.error_kind == "timeout")


def test_database_copies_are_unchanged_and_alone(hostile_runs: dict[str, Any]) -> None:
    for copy in hostile_runs["copies"].values():
        assert _sha256(copy) == hostile_runs["copy_sha"]
        # No -journal, -wal or -shm file, no attached or vacuumed database beside it.
        assert _folder_listing(copy.parent) == [copy.name]
    assert _folder_listing(hostile_runs["scratch"]) == []


def test_real_shared_database_is_unchanged(hostile_runs: dict[str, Any]) -> None:
    assert hostile_runs["real_after"] == hostile_runs["real_before"]
    assert hostile_runs["real_listing_after"] == hostile_runs["real_listing_before"]


def test_worker_runs_finish_promptly(hostile_runs: dict[str, Any]) -> None:
    """Two workers share the slow statements: the whole batch takes about half their sum."""
    slow = sum(1 for result in hostile_runs["workers"].values() if result.error_kind == "timeout")
    assert hostile_runs["workers_wall"] <= slow * (TIME_LIMIT + SLACK) / 2 + 10


# Lowers SQLite's process-wide heap cap to 8 MB before the executor opens anything (the
# executor's own PRAGMA can only lower it further), so a 12 MB blob really fails to allocate.
LOW_HEAP_SCRIPT = r"""
import json, sqlite3, sys
sqlite3.connect(":memory:").execute("PRAGMA hard_heap_limit=8000000")
from bird.executor import execute_sql
for sql in ("SELECT length(randomblob(12000000))", "SELECT count(*) FROM superhero"):
    result = execute_sql(sys.argv[1], sql)
    print(json.dumps([result.error_kind, result.rows]))
"""


def test_sqlite_running_out_of_heap_is_a_memory_error(superhero_db: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", LOW_HEAP_SCRIPT, str(superhero_db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    blob, count = (json.loads(line) for line in completed.stdout.splitlines())
    assert blob == ["memory", []]
    assert count[0] is None and count[1][0][0] > 0
