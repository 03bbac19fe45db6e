"""End-to-end evaluation on the real BIRD dev split, checked against plain sqlite3.

The expected EX of every question is recomputed here with sqlite3 and the official rule
(set of predicted rows == set of gold rows, any error or timeout scores 0), not with
bird.compare. The full dev set is evaluated once per module (gold and altered
predictions in one `evaluate_many` call) to keep the file fast on two cores.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from typer.testing import CliRunner

from bird.cli import app
from bird.compare import rves_score
from bird.data import BirdSplit, load_split
from bird.evaluation import (
    PER_QUESTION_FILE,
    SUMMARY_FILE,
    EvaluationOptions,
    EvaluationReport,
    evaluate,
    evaluate_many,
    read_per_question,
    write_report,
)
from bird.executor import ExecutionResult
from bird.gold_cache import GoldCache, decode_result, encode_result
from bird.predictions import OFFICIAL_SEPARATOR

# Dev queries finish in well under 0.1 s; the runaway query must hit this limit.
TIMEOUT = 2.0
RUNAWAY_SQL = (
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r"
)
LEVELS = ("simple", "moderate", "challenging")


# --- independent reference: plain sqlite3, official set equality ------------------------


def sqlite_rows(db_path: Path, sql: str, timeout: float = TIMEOUT) -> list[tuple]:
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    deadline = time.monotonic() + timeout
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


_ROW_SETS: dict[tuple[Path, str], frozenset[tuple] | None] = {}


def row_set(db_path: Path, sql: str) -> frozenset[tuple] | None:
    """The set of rows `sql` returns, None on any error or timeout; each (database, query)
    runs once per module, as several tests score the same gold queries."""
    key = (db_path, sql)
    if key not in _ROW_SETS:
        try:
            _ROW_SETS[key] = frozenset(sqlite_rows(db_path, sql))
        except sqlite3.Error:
            _ROW_SETS[key] = None
    return _ROW_SETS[key]


def official_ex(db_path: Path, predicted_sql: str, gold_sql: str) -> int:
    predicted, gold = row_set(db_path, predicted_sql), row_set(db_path, gold_sql)
    return int(predicted is not None and gold is not None and predicted == gold)


# --- prediction files -----------------------------------------------------------------


def dev_records(dev_dir: Path) -> list[dict]:
    return json.loads((dev_dir / "dev.json").read_text(encoding="utf-8"))


def db_path_of(dev_dir: Path, db_id: str) -> Path:
    return dev_dir / "dev_databases" / db_id / f"{db_id}.sqlite"


def alterations(dev_dir: Path) -> dict[int, tuple[str, str]]:
    """question_id -> (kind, altered SQL): one question per kind, chosen from the data."""
    records = dev_records(dev_dir)
    chosen: dict[int, tuple[str, str]] = {}

    def pick(kind: str, alter) -> None:
        for record in records:
            if record["question_id"] in chosen:
                continue
            altered = alter(record)
            if altered is not None:
                chosen[record["question_id"]] = (kind, altered)
                return
        raise AssertionError(f"no dev question suits alteration {kind!r}")

    def swapped(record: dict) -> str | None:
        tree = sqlglot.parse_one(record["SQL"], read="sqlite")
        if not isinstance(tree, exp.Select) or len(tree.expressions) < 2:
            return None
        first, second, *rest = tree.expressions
        tree.set("expressions", [second.copy(), first.copy(), *rest])
        return tree.sql(dialect="sqlite")

    def distinct_dropped(record: dict) -> str | None:
        sql = record["SQL"]
        if not re.match(r"\s*SELECT\s+DISTINCT\b", sql, re.IGNORECASE):
            return None
        return re.sub(r"^\s*SELECT\s+DISTINCT\b", "SELECT", sql, count=1, flags=re.IGNORECASE)

    def distinct_added(record: dict) -> str | None:
        sql = record["SQL"]
        if "DISTINCT" in sql.upper():
            return None
        rows = sqlite_rows(db_path_of(dev_dir, record["db_id"]), sql)
        if len(rows) == len(set(rows)):
            return None  # only interesting where the gold result has duplicate rows
        return re.sub(r"^\s*SELECT\b", "SELECT DISTINCT", sql, count=1, flags=re.IGNORECASE)

    def reordered(record: dict) -> str | None:
        sql = record["SQL"]
        if "LIMIT" in sql.upper():
            return None
        if len(sqlite_rows(db_path_of(dev_dir, record["db_id"]), sql)) < 3:
            return None
        return f"SELECT * FROM ({sql}) ORDER BY 1 DESC"

    def wrong_literal(record: dict) -> str | None:
        changed, count = re.subn(r"'([^']+)'", r"'\1 (altered)'", record["SQL"], count=1)
        return changed if count else None

    pick("columns_swapped", swapped)
    pick("distinct_dropped", distinct_dropped)
    pick("distinct_added", distinct_added)
    pick("rows_reordered", reordered)
    pick("wrong_literal", wrong_literal)
    pick("syntax_error", lambda r: re.sub(r"^\s*SELECT\b", "SELEC", r["SQL"], count=1))
    pick("runaway", lambda r: RUNAWAY_SQL)
    return chosen


def distinct_gold_queries(dev_dir: Path) -> set[tuple[str, str]]:
    """(database content, SQL) of the gold queries: the gold cache keys on the database's
    content, so one database file under two db_ids runs a query once."""
    records = dev_records(dev_dir)
    digests = {
        db_id: hashlib.sha256(db_path_of(dev_dir, db_id).read_bytes()).hexdigest()
        for db_id in {r["db_id"] for r in records}
    }
    return {(digests[r["db_id"]], r["SQL"]) for r in records}


def write_official(path: Path, records: list[dict]) -> Path:
    predictions = {
        str(i): f"{r['SQL']}{OFFICIAL_SEPARATOR}{r['db_id']}" for i, r in enumerate(records)
    }
    path.write_text(json.dumps(predictions, indent=4), encoding="utf-8")
    return path


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def altered(dev_dir: Path) -> dict[int, tuple[str, str]]:
    return alterations(dev_dir)


@pytest.fixture(scope="module")
def prediction_files(
    dev_dir: Path, altered: dict[int, tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("predictions")
    records = dev_records(dev_dir)
    gold_path = write_official(folder / "predict_dev_gold.json", records)
    altered_path = folder / "altered.jsonl"
    with altered_path.open("w", encoding="utf-8") as handle:
        for record in reversed(records):  # file order must not matter
            sql = altered.get(record["question_id"], ("gold", record["SQL"]))[1]
            handle.write(json.dumps({"question_id": record["question_id"], "sql": sql}) + "\n")
    return gold_path, altered_path


@pytest.fixture(scope="module")
def shared_cache() -> GoldCache:
    return GoldCache()


@pytest.fixture(scope="module")
def sweep(
    dev: BirdSplit, prediction_files: tuple[Path, Path], shared_cache: GoldCache
) -> tuple[EvaluationReport, EvaluationReport]:
    gold_report, altered_report = evaluate_many(
        dev,
        prediction_files,
        options=EvaluationOptions(timeout=TIMEOUT, workers=2),
        gold_cache=shared_cache,
    )
    return gold_report, altered_report


@pytest.fixture(scope="module")
def expected_altered_ex(dev_dir: Path, altered: dict[int, tuple[str, str]]) -> dict[int, int]:
    expected = {}
    for record in dev_records(dev_dir):
        sql = altered.get(record["question_id"], ("gold", record["SQL"]))[1]
        db_path = db_path_of(dev_dir, record["db_id"])
        expected[record["question_id"]] = official_ex(db_path, sql, record["SQL"])
    return expected


# --- dev: scores ----------------------------------------------------------------------


def test_gold_predictions_score_100(sweep: tuple[EvaluationReport, EvaluationReport]) -> None:
    gold_report, _ = sweep
    assert gold_report.summary.metrics["ex"] == dict.fromkeys([*LEVELS, "total"], 100.0)
    assert gold_report.summary.metrics["soft_f1"] == dict.fromkeys([*LEVELS, "total"], 100.0)
    assert all(q.error is None for q in gold_report.questions)


def test_difficulty_counts_match_dev_json(
    sweep: tuple[EvaluationReport, EvaluationReport], dev_dir: Path
) -> None:
    by_level = Counter(record["difficulty"] for record in dev_records(dev_dir))
    counts = sweep[0].summary.counts
    assert counts == {**{level: by_level[level] for level in LEVELS}, "total": by_level.total()}
    # the total is also the number of lines of dev_gold.sql, one per question
    gold_lines = (dev_dir / "dev_gold.sql").read_text(encoding="utf-8").splitlines()
    assert counts["total"] == len(gold_lines)


def test_altered_predictions_score_the_official_rule(
    sweep: tuple[EvaluationReport, EvaluationReport],
    expected_altered_ex: dict[int, int],
    altered: dict[int, tuple[str, str]],
) -> None:
    _, report = sweep
    ours = {q.question_id: q.ex for q in report.questions}
    assert ours == expected_altered_ex
    kinds = {kind: qid for qid, (kind, _) in altered.items()}
    # set semantics: dropping or adding DISTINCT and reordering rows change nothing
    for kind in ("distinct_dropped", "distinct_added", "rows_reordered"):
        assert ours[kinds[kind]] == 1, kind
    for kind in ("columns_swapped", "syntax_error", "runaway"):
        assert ours[kinds[kind]] == 0, kind
    total = sum(expected_altered_ex.values()) / len(expected_altered_ex) * 100
    assert report.summary.metrics["ex"]["total"] == pytest.approx(total)


def test_errors_and_timeouts_are_reported(
    sweep: tuple[EvaluationReport, EvaluationReport], altered: dict[int, tuple[str, str]]
) -> None:
    _, report = sweep
    by_id = {q.question_id: q for q in report.questions}
    kinds = {kind: qid for qid, (kind, _) in altered.items()}
    runaway = by_id[kinds["runaway"]]
    assert (runaway.ex, runaway.timed_out, runaway.error) == (0, True, "timeout")
    syntax = by_id[kinds["syntax_error"]]
    assert (syntax.ex, syntax.timed_out, syntax.error) == (0, False, "syntax")
    assert report.summary.errors == {"timeout": 1, "syntax": 1}


def test_outputs_agree_with_each_other_and_with_sqlite(
    sweep: tuple[EvaluationReport, EvaluationReport],
    expected_altered_ex: dict[int, int],
    dev_dir: Path,
    tmp_path: Path,
) -> None:
    _, report = sweep
    summary_path, per_question_path = write_report(report, tmp_path / "out")
    assert (summary_path.name, per_question_path.name) == (SUMMARY_FILE, PER_QUESTION_FILE)
    summary = json.loads(summary_path.read_text())
    lines = [json.loads(line) for line in per_question_path.read_text().splitlines()]
    records = dev_records(dev_dir)
    # one line per question, in dev.json order, carrying the dev.json fields
    assert [(q["question_id"], q["db_id"], q["difficulty"]) for q in lines] == [
        (r["question_id"], r["db_id"], r["difficulty"]) for r in records
    ]
    assert {"question_id", "db_id", "difficulty", "ex", "error", "timed_out"} <= set(lines[0])
    assert {q["question_id"]: q["ex"] for q in lines} == expected_altered_ex
    for level in (*LEVELS, "total"):
        members = [q for q in lines if level == "total" or q["difficulty"] == level]
        assert summary["counts"][level] == len(members)
        expected = sum(expected_altered_ex[q["question_id"]] for q in members) / len(members)
        assert summary["metrics"]["ex"][level] == pytest.approx(expected * 100)
        soft = sum(q["soft_f1"] for q in members) / len(members) * 100
        assert summary["metrics"]["soft_f1"][level] == pytest.approx(soft)
    assert read_per_question(per_question_path) == report.questions


def test_each_gold_query_runs_once_across_files(
    sweep: tuple[EvaluationReport, EvaluationReport], shared_cache: GoldCache, dev_dir: Path
) -> None:
    records = dev_records(dev_dir)
    distinct_gold = distinct_gold_queries(dev_dir)
    stats = sweep[1].summary.gold_cache
    # two files of the whole split: the split's gold results are looked up once for both,
    # and each distinct gold query is executed once (a repeated one is a hit)
    assert stats.executions == stats.misses == len(distinct_gold)
    assert stats.hits == len(records) - len(distinct_gold)


def test_allow_missing_counts_missing_and_mismatched_as_wrong(
    dev: BirdSplit, dev_dir: Path, shared_cache: GoldCache, tmp_path: Path
) -> None:
    records = dev_records(dev_dir)
    predictions = {
        str(i): f"{r['SQL']}{OFFICIAL_SEPARATOR}{r['db_id']}" for i, r in enumerate(records)
    }
    del predictions["3"]
    other = next(r["db_id"] for r in records if r["db_id"] != records[10]["db_id"])
    predictions["10"] = f"{records[10]['SQL']}{OFFICIAL_SEPARATOR}{other}"
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(predictions))
    executed_before = shared_cache.executions
    report = evaluate(
        dev,
        path,
        options=EvaluationOptions(timeout=TIMEOUT, allow_missing=True),
        gold_cache=shared_cache,
    )
    assert shared_cache.executions == executed_before  # all gold results came from the cache
    wrong = {q.question_id: q.error for q in report.questions if q.ex == 0}
    assert wrong == {
        records[3]["question_id"]: "missing_prediction",
        records[10]["question_id"]: "db_mismatch",
    }
    # The official rule, independently: each prediction runs on the database its entry
    # names (as the official script does, gold included); a missing one scores 0.
    expected = []
    for position, record in enumerate(records):
        entry = predictions.get(str(position))
        if entry is None:
            expected.append(0)
            continue
        sql, db_id = entry.rsplit(OFFICIAL_SEPARATOR, 1)
        expected.append(official_ex(db_path_of(dev_dir, db_id), sql, record["SQL"]))
    assert expected[3] == expected[10] == 0
    assert report.summary.metrics["ex"]["total"] == pytest.approx(
        sum(expected) / len(records) * 100
    )


# --- CLI ------------------------------------------------------------------------------


def test_cli_twice_with_one_cache_dir_runs_gold_once(
    dev_dir: Path, prediction_files: tuple[Path, Path], tmp_path: Path
) -> None:
    gold_path, _ = prediction_files
    by_level = Counter(record["difficulty"] for record in dev_records(dev_dir))
    counts_row = r"count\s.*" + r"\s.*".join(
        str(n) for n in [*(by_level[level] for level in LEVELS), by_level.total()]
    )
    runner = CliRunner()
    summaries = []
    for run in ("first", "second"):
        result = runner.invoke(
            app,
            [
                "evaluate",
                "--data",
                str(dev_dir),
                "--predictions",
                str(gold_path),
                "--timeout",
                str(TIMEOUT),
                "--output",
                str(tmp_path / run),
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
        )
        assert result.exit_code == 0, result.output
        assert re.search(counts_row, result.output), result.output
        assert re.search(r"EX\s.*100\.00\s.*100\.00\s.*100\.00\s.*100\.00", result.output)
        summaries.append(json.loads((tmp_path / run / SUMMARY_FILE).read_text()))
    distinct_gold = len(distinct_gold_queries(dev_dir))
    assert summaries[0]["gold_cache"]["executions"] == distinct_gold
    assert summaries[1]["gold_cache"]["executions"] == 0
    assert summaries[1]["gold_cache"]["disk_hits"] == distinct_gold
    assert summaries[1]["metrics"] == summaries[0]["metrics"]


def test_cli_reports_a_bad_prediction_file(dev_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question_id": 1, "sql": "SELECT 1"}\n{"question_id": 1, "sql": "x"}\n')
    result = CliRunner().invoke(
        app, ["evaluate", "--data", str(dev_dir), "--predictions", str(path), "--no-disk-cache"]
    )
    assert result.exit_code == 2
    assert f"{path}: question_id 1 appears on lines 1 and 2" in result.output


# --- a small real split of our own: no difficulty, failing gold, absent db, R-VES ------


@pytest.fixture
def mini_split(tmp_path: Path) -> Path:
    root = tmp_path / "mini"
    db_dir = root / "mini_databases" / "shop"
    db_dir.mkdir(parents=True)
    connection = sqlite3.connect(db_dir / "shop.sqlite")
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    connection.executemany(
        "INSERT INTO item VALUES (?, ?, ?)", [(i, f"item {i}", i * 1.5) for i in range(1, 200)]
    )
    connection.commit()
    connection.close()
    questions = [
        {"question_id": 1, "db_id": "shop", "question": "q", "SQL": "SELECT name FROM item"},
        {"question_id": 2, "db_id": "shop", "question": "q", "SQL": "SELECT MAX(price) FROM item"},
        {"question_id": 3, "db_id": "shop", "question": "q", "SQL": "SELECT nope FROM item"},
        {"question_id": 4, "db_id": "absent", "question": "q", "SQL": "SELECT 1"},
    ]
    (root / "mini.json").write_text(json.dumps(questions))
    return root


def write_jsonl(path: Path, sql_by_id: dict[int, str]) -> Path:
    lines = [json.dumps({"question_id": qid, "sql": sql}) for qid, sql in sql_by_id.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_split_without_difficulty_reports_total_only(mini_split: Path, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "p.jsonl",
        {1: "SELECT name FROM item ORDER BY id DESC", 2: "SELECT 1", 3: "SELECT 1", 4: "SELECT 1"},
    )
    report = evaluate(load_split(mini_split), path, options=EvaluationOptions(timeout=TIMEOUT))
    assert report.summary.counts == {"total": 4}
    assert list(report.summary.metrics["ex"]) == ["total"]
    by_id = {q.question_id: q for q in report.questions}
    assert [by_id[i].ex for i in (1, 2, 3, 4)] == [1, 0, 0, 0]
    assert by_id[3].error == "gold_failed"
    assert "nope" in (by_id[3].error_message or "")
    assert by_id[4].error == "missing_database"
    assert report.summary.gold_failed_question_ids == [3]
    assert report.summary.metrics["ex"]["total"] == pytest.approx(25.0)


def test_rves_rewards_correct_pairs_only(mini_split: Path, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "p.jsonl",
        {1: "SELECT name FROM item", 2: "SELECT 2", 3: "SELECT 1", 4: "SELECT 1"},
    )
    options = EvaluationOptions(timeout=TIMEOUT, ves=True, ves_iterations=3)
    report = evaluate(load_split(mini_split), path, options=options)
    rewards = {q.question_id: q.rves_reward for q in report.questions}
    assert rewards[1] in {0.25, 0.5, 0.75, 1.0, 1.25}
    assert rewards[2] == rewards[3] == rewards[4] == 0.0
    expected = rves_score([rewards[i] or 0.0 for i in (1, 2, 3, 4)])
    assert report.summary.metrics["rves"]["total"] == pytest.approx(expected)


# --- gold cache -----------------------------------------------------------------------


def test_cached_results_round_trip_exactly() -> None:
    row = (1, 1.0, 0.1, -0.0, 1e308, float("inf"), b"\x00\xff", None, "x", 2**63 - 1)
    result = ExecutionResult(
        columns=[f"c{i}" for i in range(len(row))],
        rows=[row],
        error_kind=None,
        error=None,
        timed_out=False,
        truncated=False,
        elapsed=0.25,
    )
    decoded = decode_result(encode_result(result))
    assert decoded == result
    assert [type(value) for value in decoded.rows[0]] == [type(value) for value in row]
    assert str(decoded.rows[0][3]) == "-0.0"


def test_disk_layer_serves_a_second_cache(mini_split: Path, tmp_path: Path) -> None:
    split = load_split(mini_split)
    path = write_jsonl(tmp_path / "p.jsonl", {1: "SELECT 1", 2: "SELECT 1", 3: "x", 4: "x"})
    options = EvaluationOptions(timeout=TIMEOUT, allow_missing=True)
    first_cache = GoldCache(tmp_path / "cache")
    first = evaluate(split, path, options=options, gold_cache=first_cache)
    second_cache = GoldCache(tmp_path / "cache")
    second = evaluate(split, path, options=options, gold_cache=second_cache)
    # questions 1 and 2 have working gold queries (stored); 3 fails (never stored); 4 has
    # no database (never asked)
    assert first_cache.executions == 3
    assert (second_cache.disk_hits, second_cache.executions) == (2, 1)
    assert [q.ex for q in second.questions] == [q.ex for q in first.questions]


def test_cache_key_follows_content_not_path(mini_split: Path, tmp_path: Path) -> None:
    from bird.gold_cache import ExecutionLimits

    original = mini_split / "mini_databases" / "shop" / "shop.sqlite"
    copy = tmp_path / "copy.sqlite"
    shutil.copyfile(original, copy)
    limits = ExecutionLimits(timeout=TIMEOUT)
    sql = "SELECT name FROM item"
    assert GoldCache.key(original, sql, limits) == GoldCache.key(copy, sql, limits)
    connection = sqlite3.connect(copy)
    connection.execute("DELETE FROM item WHERE id > 100")
    connection.commit()
    connection.close()
    assert GoldCache.key(original, sql, limits) != GoldCache.key(copy, sql, limits)
    assert GoldCache.key(original, sql, limits) != GoldCache.key(
        original, sql, ExecutionLimits(timeout=TIMEOUT + 1)
    )
