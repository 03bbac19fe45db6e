"""The sandboxed executor on real BIRD databases, checked against plain sqlite3."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bird.cli import app
from bird.executor import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    DatabaseCache,
    ExecutionPool,
    ExecutionRequest,
    ExecutionResult,
    execute_many,
    execute_sql,
)
from bird.worker_pool import WorkerPool, map_in_processes

REPO_ROOT = Path(__file__).resolve().parents[2]


def _plain_rows(db_path: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """What an unsandboxed sqlite3 connection returns (opened read-only: shared data)."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        cursor = connection.execute(sql)
        return [column[0] for column in cursor.description], cursor.fetchall()
    finally:
        connection.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dev_gold(dev_dir: Path) -> list[tuple[Path, str]]:
    examples = json.loads((dev_dir / "dev.json").read_text())
    databases = dev_dir / "dev_databases"
    return [
        (databases / example["db_id"] / f"{example['db_id']}.sqlite", example["SQL"])
        for example in examples
        if (databases / example["db_id"] / f"{example['db_id']}.sqlite").exists()
    ]


@pytest.fixture
def superhero_copy(superhero_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "db" / "superhero.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(superhero_db, copy)
    return copy


def test_defaults_fit_every_dev_gold_result_and_stay_bounded() -> None:
    assert DEFAULT_MAX_ROWS >= 1_000_000
    assert 64 * 1024 * 1024 <= DEFAULT_MAX_BYTES <= 1024 * 1024 * 1024


def test_every_dev_gold_query_matches_plain_sqlite(superhero_db: Path, dev_dir: Path) -> None:
    gold = _dev_gold(dev_dir)
    assert len(gold) > 100
    results = execute_many([ExecutionRequest(db_path=db, sql=sql) for db, sql in gold])
    for (db, sql), result in zip(gold, results, strict=True):
        try:
            expected = _plain_rows(db, sql)
        except sqlite3.Error:
            assert not result.ok, sql
            continue
        assert result.ok, (sql, result.error)
        assert (result.columns, result.rows) == (list(expected[0]), expected[1]), sql


def test_superhero_query_matches_plain_sqlite_in_one_call(superhero_db: Path) -> None:
    sql = (
        "SELECT T1.superhero_name, T2.colour, T1.height_cm FROM superhero AS T1 "
        "INNER JOIN colour AS T2 ON T1.eye_colour_id = T2.id ORDER BY T1.id LIMIT 50"
    )
    result = execute_sql(superhero_db, sql)
    expected_columns, expected_rows = _plain_rows(superhero_db, sql)
    assert result.ok
    assert result.columns == expected_columns == ["superhero_name", "colour", "height_cm"]
    assert result.rows == expected_rows
    assert not result.truncated and not result.timed_out
    assert 0 < result.elapsed < 30


def test_column_names_and_value_types(superhero_db: Path) -> None:
    result = execute_sql(
        superhero_db,
        "SELECT id AS hero_id, superhero_name, NULL AS empty, x'00ff10' AS raw, "
        "1.5 AS ratio, CAST(weight_kg AS REAL) / 2 AS half FROM superhero ORDER BY id LIMIT 1",
    )
    assert result.ok, result.error
    assert result.columns == ["hero_id", "superhero_name", "empty", "raw", "ratio", "half"]
    (row,) = result.rows
    assert isinstance(row, tuple)
    hero_id, name, empty, raw, ratio, half = row
    assert (hero_id, empty, raw, ratio) == (1, None, b"\x00\xff\x10", 1.5)
    assert isinstance(name, str) and name
    assert isinstance(half, float)


def test_result_json_encodes_bytes_and_non_finite_floats(superhero_db: Path) -> None:
    result = execute_sql(superhero_db, "SELECT x'00ff', 1e999, -1e999, 'text', 3, NULL")
    data = json.loads(json.dumps(result.to_jsonable()), parse_constant=pytest.fail)
    assert data["rows"] == [
        [{"$bytes_hex": "00ff"}, {"$float": "inf"}, {"$float": "-inf"}, "text", 3, None]
    ]
    assert data["error_kind"] is None and data["columns"][3] == "'text'"


@pytest.mark.parametrize(
    ("sql", "kind", "message_part"),
    [
        ("SELEC id FROM superhero", "syntax", "syntax error"),
        ("SELECT id FROM superhero WHERE", "syntax", "incomplete input"),
        ("SELECT * FROM no_such_table", "syntax", "no such table: no_such_table"),
        ("SELECT no_such_column FROM superhero", "syntax", "no such column"),
        ("SELECT 1; SELECT 2", "syntax", "only one SQL statement"),
        ("", "syntax", "empty SQL"),
        ("-- just a comment", "syntax", "empty SQL"),
        ("SELECT abs(-9223372036854775807 - 1) FROM superhero", "runtime", "integer overflow"),
        ("DELETE FROM superhero", "denied", "DELETE 'superhero'"),
        ("PRAGMA user_version", "denied", "PRAGMA 'user_version'"),
        ("SELECT zeroblob(100000000)", "too_large", "too big"),
    ],
)
def test_error_kinds(superhero_db: Path, sql: str, kind: str, message_part: str) -> None:
    result = execute_sql(superhero_db, sql)
    assert result.error_kind == kind
    assert not result.ok
    assert message_part in (result.error or "")
    assert result.rows == []


def test_missing_database_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gone.sqlite"
    result = execute_sql(missing, "SELECT 1")
    assert result.error_kind == "missing_database"
    assert str(missing) in (result.error or "")
    assert not missing.exists() and not missing.parent.exists()


def test_folder_and_non_database_file_are_unavailable(tmp_path: Path) -> None:
    assert execute_sql(tmp_path, "SELECT 1").error_kind == "missing_database"
    garbage = tmp_path / "notes.sqlite"
    garbage.write_bytes(b"this is not an SQLite database, just text " * 200)
    result = execute_sql(garbage, "SELECT 1")
    assert result.error_kind == "missing_database"
    assert "not a database" in (result.error or "")


def test_row_cap_truncates(superhero_db: Path) -> None:
    _, all_rows = _plain_rows(superhero_db, "SELECT id FROM superhero ORDER BY id")
    capped = execute_sql(superhero_db, "SELECT id FROM superhero ORDER BY id", max_rows=5)
    assert capped.error_kind == "too_large" and capped.truncated
    assert capped.rows == all_rows[:5]
    exact = execute_sql(superhero_db, "SELECT id FROM superhero", max_rows=len(all_rows))
    assert exact.ok and not exact.truncated and len(exact.rows) == len(all_rows)


def test_byte_cap_truncates(superhero_db: Path) -> None:
    result = execute_sql(superhero_db, "SELECT * FROM superhero", max_bytes=10_000)
    assert result.error_kind == "too_large" and result.truncated
    assert 0 < len(result.rows) < 750
    assert "bytes" in (result.error or "")


def test_runaway_query_is_interrupted_near_the_limit(superhero_db: Path) -> None:
    started = time.monotonic()
    result = execute_sql(
        superhero_db,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        timeout=0.5,
    )
    wall = time.monotonic() - started
    assert result.error_kind == "timeout" and result.timed_out
    assert 0.5 <= result.elapsed <= wall < 1.5


def test_recursive_cte_and_functions_are_allowed(superhero_db: Path) -> None:
    result = execute_sql(
        superhero_db,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
        "SELECT group_concat(n), upper('a'), (SELECT count(*) FROM json_each('[1,2]')) FROM r",
    )
    assert result.ok, result.error
    assert result.rows == [("1,2,3,4,5", "A", 2)]


@pytest.fixture
def read_only_folder_copy(superhero_db: Path, tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "frozen"
    folder.mkdir()
    copy = folder / "superhero.sqlite"
    shutil.copyfile(superhero_db, copy)
    copy.chmod(0o444)
    folder.chmod(0o555)
    yield copy
    folder.chmod(0o755)


def test_opens_in_read_only_folder_without_side_files(read_only_folder_copy: Path) -> None:
    folder = read_only_folder_copy.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555
    before = _sha256(read_only_folder_copy)
    result = execute_sql(read_only_folder_copy, "SELECT count(*) FROM superhero")
    many = execute_many(
        [ExecutionRequest(db_path=read_only_folder_copy, sql="SELECT count(*) FROM colour")] * 3
    )
    assert result.ok and result.rows[0][0] > 0
    assert all(item.ok for item in many)
    # Tests run as root, which ignores permission bits: what proves read-only opening is
    # that no -journal / -wal / -shm file ever appears and the bytes stay the same.
    assert os.listdir(folder) == ["superhero.sqlite"]
    assert _sha256(read_only_folder_copy) == before


# Imports the executor as root (the interpreter lives under /root), then drops to the
# unprivileged "nobody" user, for whom the folder and file really are read-only.
UNPRIVILEGED_SCRIPT = r"""
import json, os, sys
from bird.executor import execute_sql
os.setgid(65534)
os.setuid(65534)
folder = os.path.dirname(sys.argv[1])
result = execute_sql(sys.argv[1], "SELECT count(*) FROM superhero")
print(json.dumps({"writable": os.access(folder, os.W_OK) or os.access(sys.argv[1], os.W_OK),
                  "error": result.error, "rows": result.rows}))
"""


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root to switch users; as a normal user the chmod test above is the proof",
)
def test_opens_for_an_unprivileged_user_in_a_read_only_folder(superhero_db: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="bird-read-only-"))
    try:
        base.chmod(0o755)  # traversable by "nobody"; pytest's tmp_path is root-only
        folder = base / "db"
        folder.mkdir()
        copy = folder / "superhero.sqlite"
        shutil.copyfile(superhero_db, copy)
        copy.chmod(0o444)
        folder.chmod(0o555)
        completed = subprocess.run(
            [sys.executable, "-c", UNPRIVILEGED_SCRIPT, str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        outcome = json.loads(completed.stdout)
        assert outcome["writable"] is False
        assert outcome["error"] is None
        assert outcome["rows"] == [
            list(_plain_rows(superhero_db, "SELECT count(*) FROM superhero")[1][0])
        ]
        assert os.listdir(folder) == ["superhero.sqlite"]
    finally:
        for path in (base / "db", base):
            if path.exists():
                path.chmod(0o755)
        shutil.rmtree(base)


def test_path_with_uri_special_characters(superhero_db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "odd name #1 ?x=%20"
    folder.mkdir()
    copy = folder / "super hero.sqlite"
    shutil.copyfile(superhero_db, copy)
    result = execute_sql(copy, "SELECT count(*) FROM superhero")
    assert result.ok, result.error
    assert result.rows == _plain_rows(superhero_db, "SELECT count(*) FROM superhero")[1]
    assert sorted(os.listdir(folder)) == ["super hero.sqlite"]


def test_multiple_statements_run_nothing(superhero_copy: Path) -> None:
    before = _sha256(superhero_copy)
    result = execute_sql(superhero_copy, "SELECT 1; DROP TABLE superhero")
    assert result.error_kind == "syntax"
    assert _sha256(superhero_copy) == before
    assert execute_sql(superhero_copy, "SELECT count(*) FROM superhero").ok


def test_reused_connection_is_not_affected_by_earlier_failures(superhero_copy: Path) -> None:
    count_sql = "SELECT count(*) FROM superhero"
    hostile = [
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        "SELECT * FROM superhero",  # truncated by max_rows: leaves a half-read statement
        "PRAGMA query_only = 0",
        "BEGIN",
        "CREATE TEMP TABLE t (x)",
        "SELECT * FROM no_such_table",
    ]
    requests = []
    for sql in hostile:
        requests += [ExecutionRequest(db_path=superhero_copy, sql=sql)]
        requests += [ExecutionRequest(db_path=superhero_copy, sql=count_sql)]
    results = execute_many(requests, timeout=0.5, max_rows=10)
    expected = _plain_rows(superhero_copy, count_sql)[1]
    kinds = [result.error_kind for result in results[0::2]]
    assert kinds == ["timeout", "too_large", "denied", "denied", "denied", "syntax"]
    assert all(result.ok and result.rows == expected for result in results[1::2])
    assert os.listdir(superhero_copy.parent) == ["superhero.sqlite"]


def test_parallel_results_equal_sequential_in_request_order(
    superhero_db: Path, dev_dir: Path, tmp_path: Path
) -> None:
    gold = _dev_gold(dev_dir)[::7]
    requests = [ExecutionRequest(db_path=db, sql=sql) for db, sql in gold]
    requests += [
        ExecutionRequest(db_path=superhero_db, sql="SELECT * FROM no_such_table"),
        ExecutionRequest(db_path=tmp_path / "missing.sqlite", sql="SELECT 1"),
        ExecutionRequest(db_path=superhero_db, sql="DROP TABLE superhero"),
    ]
    seen: list[int] = []
    parallel = execute_many(requests, workers=2, on_result=lambda index, _: seen.append(index))
    sequential = execute_many(requests, workers=1)

    def essentials(result: ExecutionResult) -> tuple[Any, ...]:
        return (result.columns, result.rows, result.error_kind, result.error)

    assert [essentials(r) for r in parallel] == [essentials(r) for r in sequential]
    assert sorted(seen) == list(range(len(requests)))
    assert [r.error_kind for r in parallel[-3:]] == ["syntax", "missing_database", "denied"]


def test_execution_pool_serves_several_batches_and_replaces_a_stuck_worker(
    superhero_db: Path,
) -> None:
    count = ExecutionRequest(db_path=superhero_db, sql="SELECT count(*) FROM superhero")
    # One call of instr() over two huge strings: minutes of CPU inside a single SQLite
    # instruction, where the in-SQLite deadline cannot interrupt; the watchdog kills it.
    stuck = ExecutionRequest(
        db_path=superhero_db,
        sql="SELECT instr(printf('%.*c', 8000000, 'a'), printf('%.*c', 4000000, 'a') || 'b')",
    )
    expected = _plain_rows(superhero_db, count.sql)[1]
    with ExecutionPool(workers=1) as pool:
        first = pool.execute_many([count])
        started = time.monotonic()
        second = pool.execute_many([stuck, count], timeout=0.5)
        second_wall = time.monotonic() - started
        third = pool.execute_many([count, count])
    assert first[0].rows == expected
    assert second[0].error_kind == "timeout" and second[0].timed_out
    assert "killed" in (second[0].error or "")
    assert second[1].rows == expected
    assert second_wall < 10
    assert [result.rows for result in third] == [expected, expected]


def test_on_result_reports_each_result_in_process(superhero_db: Path) -> None:
    requests = [
        ExecutionRequest(db_path=superhero_db, sql=f"SELECT {number}") for number in range(4)
    ]
    reported: dict[int, ExecutionResult] = {}
    results = execute_many(requests, on_result=reported.__setitem__)
    assert [reported[index] for index in range(4)] == results
    assert [result.rows for result in results] == [[(number,)] for number in range(4)]


def test_database_cache_reuses_and_evicts(superhero_db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    shutil.copyfile(superhero_db, other)
    cache = DatabaseCache(capacity=1)
    first = cache.get(superhero_db)
    assert cache.get(Path(str(superhero_db))) is first
    cache.get(other)  # evicts and closes the superhero connection
    with pytest.raises(sqlite3.ProgrammingError):
        first.connection.execute("SELECT 1")
    assert cache.get(superhero_db) is not first
    cache.close()


def test_invalid_limits_are_programming_errors(superhero_db: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        execute_sql(superhero_db, "SELECT 1", timeout=0)
    with pytest.raises(ValueError, match="max_rows"):
        execute_many([], max_rows=0)
    with pytest.raises(ValueError, match="workers"):
        execute_many([], workers=0)


# The worker pool with real crashes: the task is the builtin `eval` (picklable, importable
# in any child), so a payload can make its own worker exit, hang, or raise for real.
def _lost(index: int, reason: str, timed_out: bool, elapsed: float) -> str:
    return f"lost:{'timeout' if timed_out else 'error'}:{reason}"


def test_worker_pool_survives_crashing_and_stuck_workers() -> None:
    payloads = [
        "1 + 1",
        "__import__('os')._exit(3)",
        "2 * 21",
        "__import__('time').sleep(60)",
        "1 / 0",
        "__import__('os').kill(__import__('os').getpid(), 9)",
        "'last'",
    ]
    started = time.monotonic()
    results = map_in_processes(eval, payloads, workers=2, time_limit=1.0, lost=_lost)
    assert time.monotonic() - started < 20
    assert results[0] == 2 and results[2] == 42 and results[6] == "last"
    assert results[1].startswith("lost:error:") and "code 3" in results[1]
    assert results[3].startswith("lost:timeout:")
    assert results[4].startswith("lost:error:") and "ZeroDivisionError" in results[4]
    assert results[5].startswith("lost:error:") and "signal 9" in results[5]


def test_worker_pool_answers_in_batches_and_keeps_its_workers() -> None:
    """Workers made evaluation slower: one pipe round trip per payload (each waiting for
    the scheduler on a busy machine) and a new pool per phase. Now payloads travel in
    batches and one pool serves many maps."""
    payloads = [f"{i} * 2" for i in range(400)]
    with WorkerPool(eval, workers=2) as pool:
        first = pool.map(payloads, time_limit=10.0, lost=_lost)
        second = pool.map(payloads, time_limit=10.0, lost=_lost)
        assert first == second == [i * 2 for i in range(400)]
        assert pool.started == 2
        assert pool.messages < len(payloads) // 4  # both maps together: batched answers


def test_weighted_batches_spread_the_heavy_payloads_over_the_workers() -> None:
    """Sorted slowest first, the slow payloads all fit in one batch by count: weights keep
    them from landing on one worker while the other runs the quick rest."""
    heavy = "__import__('time').sleep(0.3) or __import__('os').getpid()"
    payloads = [heavy] * 4 + ["__import__('os').getpid()"] * 400
    weights = [1.0] * 4 + [0.001] * 400
    pids = map_in_processes(eval, payloads, workers=2, time_limit=10.0, lost=_lost)
    assert len(set(pids[:4])) == 1  # by count alone: one batch, one worker
    with WorkerPool(eval, workers=2) as pool:
        pids = pool.map(payloads, time_limit=10.0, lost=_lost, weights=weights)
    assert len(set(pids[:4])) == 2


def test_a_stuck_payload_costs_only_itself_not_its_batch() -> None:
    payloads = [f"{i}" for i in range(60)]
    payloads[5] = "__import__('time').sleep(60)"
    payloads[40] = "__import__('os')._exit(7)"
    started = time.monotonic()
    results = map_in_processes(eval, payloads, workers=2, time_limit=1.0, lost=_lost)
    assert time.monotonic() - started < 20
    assert results[5].startswith("lost:timeout:") and "code 7" in results[40]
    assert [r for i, r in enumerate(results) if i not in (5, 40)] == [
        i for i in range(60) if i not in (5, 40)
    ]


def test_worker_pool_reports_results_as_they_arrive() -> None:
    arrivals: list[tuple[int, Any]] = []
    results = map_in_processes(
        eval,
        ["__import__('time').sleep(0.5) or 'slow'", "'fast'"],
        workers=2,
        time_limit=10.0,
        lost=_lost,
        on_result=lambda index, value: arrivals.append((index, value)),
    )
    assert results == ["slow", "fast"]
    assert arrivals == [(1, "fast"), (0, "slow")]


def test_cli_exec_prints_json(superhero_db: Path) -> None:
    sql = "SELECT id, superhero_name, x'00ff' AS raw FROM superhero ORDER BY id LIMIT 2"
    outcome = CliRunner().invoke(app, ["exec", "--db", str(superhero_db), "--sql", sql])
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.stdout)
    plain_sql = "SELECT id, superhero_name FROM superhero ORDER BY id LIMIT 2"
    expected_rows = _plain_rows(superhero_db, plain_sql)[1]
    assert data["columns"] == ["id", "superhero_name", "raw"]
    assert data["rows"] == [[*row, {"$bytes_hex": "00ff"}] for row in expected_rows]
    assert data["error_kind"] is None and data["truncated"] is False


def test_cli_exec_failure_exit_codes(superhero_db: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    failed = runner.invoke(app, ["exec", "--db", str(superhero_db), "--sql", "DROP TABLE colour"])
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["error_kind"] == "denied"
    capped_args = ["--sql", "SELECT id FROM superhero", "--max-rows", "3"]
    capped = runner.invoke(app, ["exec", "--db", str(superhero_db), *capped_args])
    assert capped.exit_code == 1
    assert len(json.loads(capped.stdout)["rows"]) == 3
    missing = tmp_path / "absent.sqlite"
    unusable = runner.invoke(app, ["exec", "--db", str(missing), "--sql", "SELECT 1"])
    assert unusable.exit_code == 2
    assert str(missing) in unusable.output
    no_sql = runner.invoke(app, ["exec", "--db", str(superhero_db)])
    assert no_sql.exit_code == 2


def test_bird_exec_console_script(superhero_db: Path) -> None:
    bird = Path(sys.executable).with_name("bird")
    if not bird.exists():
        pytest.skip(f"console script not installed at {bird} (pip install -e .)")
    completed = subprocess.run(
        [str(bird), "exec", "--db", str(superhero_db), "--sql", "-", "--timeout", "5"],
        input="SELECT count(*) AS heroes FROM superhero",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    data = json.loads(completed.stdout)
    assert data["columns"] == ["heroes"]
    assert data["rows"] == [list(_plain_rows(superhero_db, "SELECT count(*) FROM superhero")[1][0])]
