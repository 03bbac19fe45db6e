"""The demo dataset: built from its text sources into BIRD's layout, deterministically and
safely, read by the ordinary loader, and its gold queries sound (they run in the sandbox,
return rows, and do not depend on the order rows are stored in). Needs no ../shared/bird."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from bird.data import BirdExample, BirdSplit, load_split
from bird.demo import DATA_DIR, materialize, source_key
from bird.demo.build import DEMO_MARKER, DemoBuildError, build_database, remove_stale_staging
from bird.demo.generate_rows import write_rows
from bird.descriptions import read_descriptions
from bird.executor import execute_sql
from bird.schema import read_database_schema, read_tables_json_schema

SPLITS = ("train", "dev")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize(tmp_path_factory.mktemp("demo-cache"))


@pytest.fixture(scope="module")
def splits(demo_root: Path) -> dict[str, BirdSplit]:
    return {name: load_split(demo_root / name) for name in SPLITS}


def _examples(splits: dict[str, BirdSplit]) -> list[tuple[BirdSplit, BirdExample]]:
    return [(split, example) for split in splits.values() for example in split.examples]


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _expected_files() -> set[str]:
    """What a complete tree holds, derived from the sources (and the marker that tells a
    dataset card this is the demo, not BIRD)."""
    expected = {DEMO_MARKER}
    for split in SPLITS:
        source = DATA_DIR / split
        expected |= {f"{split}/{p.name}" for p in source.iterdir() if p.is_file()}
        expected.add(f"{split}/{split}_tables.json")
        for db in (source / f"{split}_databases").iterdir():
            prefix = f"{split}/{split}_databases/{db.name}"
            expected.add(f"{prefix}/{db.name}.sqlite")
            expected |= {
                f"{prefix}/database_description/{p.name}"
                for p in (db / "database_description").iterdir()
            }
    return expected


# --- the build -------------------------------------------------------------------------


def test_materialize_writes_the_official_layout_once(demo_root: Path) -> None:
    assert demo_root.name == source_key()
    assert set(_digests(demo_root)) == _expected_files()
    stamp = demo_root.stat().st_mtime_ns
    assert materialize(demo_root.parent) == demo_root  # cached: not rebuilt
    assert demo_root.stat().st_mtime_ns == stamp
    assert not list(demo_root.parent.glob(".building-*"))


def test_default_cache_follows_sql_rationale_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQL_RATIONALE_CACHE", str(tmp_path / "cache"))
    root = materialize()
    assert root == tmp_path / "cache" / "demo" / source_key()
    assert (root / "dev" / "dev.json").is_file()


def test_build_is_deterministic(demo_root: Path, tmp_path: Path) -> None:
    again = materialize(tmp_path / "second")
    assert again != demo_root
    assert _digests(again) == _digests(demo_root)


def test_an_edited_source_changes_the_key(tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(DATA_DIR, copy)
    assert source_key(copy) == source_key()
    rows = copy / "dev" / "dev_databases" / "ferry_line" / "rows" / "port.csv"
    rows.write_text(rows.read_text(encoding="utf-8").replace("Gullhaven", "Gullhaven Pier"))
    assert source_key(copy) != source_key()


_RACE = r"""
import os, sys, time
from pathlib import Path
import bird.demo.build as build

target, barrier = Path(sys.argv[1]), Path(sys.argv[2])
rename = os.rename

def rename_when_both_have_built(source, destination):
    # Both builds finish before either is renamed into place: a real race for the name.
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    rename(source, destination)

build.os.rename = rename_when_both_have_built
print(build.materialize(target))
"""


def test_two_processes_building_at_once_leave_one_complete_tree(tmp_path: Path) -> None:
    target, barrier = tmp_path / "race", tmp_path / "barrier"
    barrier.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(target), str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    assert len(list(barrier.iterdir())) == 2  # both built, neither found the tree done
    roots = {stdout.strip() for stdout, _ in outputs}
    assert roots == {str(target / source_key())}
    assert [path.name for path in target.iterdir()] == [source_key()]
    assert set(_digests(target / source_key())) == _expected_files()


_KILLED = r"""
import sys, time
from pathlib import Path
import bird.demo.build as build

target, ready = Path(sys.argv[1]), Path(sys.argv[2])
build_database = build.build_database

def build_then_hang(source, db_path):
    build_database(source, db_path)
    ready.write_text("one database built")
    time.sleep(300)

build.build_database = build_then_hang
build.materialize(target)
"""


def test_a_killed_build_leaves_nothing_half_built(tmp_path: Path) -> None:
    target, ready = tmp_path / "killed", tmp_path / "ready"
    process = subprocess.Popen([sys.executable, "-c", _KILLED, str(target), str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the build never reached its first database"
    finally:
        process.kill()
        process.wait()
    assert not (target / source_key()).exists()
    [staging] = target.glob(".building-*")
    assert list(staging.rglob("*.sqlite"))

    root = materialize(target)  # removes the dead build's staging folder, builds anew
    assert not staging.exists()
    assert set(_digests(root)) == _expected_files()
    assert remove_stale_staging(target) == []


def test_broken_sources_are_refused_with_the_file_named(tmp_path: Path) -> None:
    source = tmp_path / "ferry_line"
    shutil.copytree(DATA_DIR / "dev" / "dev_databases" / "ferry_line", source)
    route = source / "rows" / "route.csv"
    route.write_text(route.read_text(encoding="utf-8").replace("R12,7,3", "R12,7,99"))
    with pytest.raises(DemoBuildError, match=r"route\.csv.*missing port"):
        build_database(source, tmp_path / "broken.sqlite")


def test_shipped_rows_are_what_the_generator_writes(tmp_path: Path) -> None:
    written = write_rows(tmp_path)
    assert written
    for path in written:
        shipped = DATA_DIR / path.relative_to(tmp_path)
        assert shipped.read_bytes() == path.read_bytes(), shipped


# --- the splits ------------------------------------------------------------------------


def test_load_split_reads_both_splits(splits: dict[str, BirdSplit]) -> None:
    train, dev = splits["train"], splits["dev"]
    assert (train.name, dev.name) == ("train", "dev")
    assert len(train.examples) >= 180 and len(dev.examples) >= 60
    assert len(train.db_ids()) >= 3 and len(dev.db_ids()) >= 2
    assert not set(train.db_ids()) & set(dev.db_ids())
    for split in (train, dev):
        assert split.missing_databases() == {}
        assert len(split.executable_examples()) == len(split.examples)
        assert min(Counter(e.db_id for e in split.examples).values()) >= 30
        assert all(example.question.strip() for example in split.examples)
        assert len({e.question for e in split.examples}) == len(split.examples)
    assert not train.has_difficulty


def test_dev_difficulty_mix_is_realistic(splits: dict[str, BirdSplit]) -> None:
    counts = Counter(example.difficulty for example in splits["dev"].examples)
    assert None not in counts
    total = sum(counts.values())
    assert 0.45 <= counts["simple"] / total <= 0.65
    assert 0.25 <= counts["moderate"] / total <= 0.45
    assert 0.05 <= counts["challenging"] / total <= 0.2


def test_dev_gold_sql_lists_dev_in_order(splits: dict[str, BirdSplit]) -> None:
    dev = splits["dev"]
    lines = (dev.root / "dev_gold.sql").read_text(encoding="utf-8").splitlines()
    assert lines == [f"{example.sql}\t{example.db_id}" for example in dev.examples]


def test_tables_json_agrees_with_the_databases(splits: dict[str, BirdSplit]) -> None:
    for split in splits.values():
        entries = json.loads(split.tables_path.read_text(encoding="utf-8"))
        assert [entry["db_id"] for entry in entries] == sorted(split.db_ids())
        for db_id in split.db_ids():
            from_json = read_tables_json_schema(split.tables_path, db_id)
            from_file = read_database_schema(split.database_path(db_id), sample_values=0)
            assert [
                (t.name, [c.name for c in t.columns], t.primary_key, t.foreign_keys)
                for t in from_json.tables
            ] == [
                (t.name, [c.name for c in t.columns], t.primary_key, t.foreign_keys)
                for t in from_file.tables
            ]


def test_every_column_is_described_and_every_description_has_a_column(
    splits: dict[str, BirdSplit],
) -> None:
    for split in splits.values():
        for db_id in split.db_ids():
            schema = read_database_schema(split.database_path(db_id), sample_values=0)
            columns = {(t.name.lower(), c.name.lower()) for t in schema.tables for c in t.columns}
            descriptions = read_descriptions(split.description_dir(db_id))
            assert set(descriptions) == columns, db_id
            assert all(d.description for d in descriptions.values()), db_id
            files = {p.stem for p in split.description_dir(db_id).glob("*.csv")}
            assert files == {t.name for t in schema.tables}, db_id


def _database_figures(db_path: Path) -> dict[str, int]:
    """Rows, rows holding a NULL, foreign keys and columns whose name needs quoting."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    figures = Counter()
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            any_null = " OR ".join(f'"{column}" IS NULL' for column in columns)
            figures["rows"] += connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            figures["rows_with_null"] += connection.execute(
                f'SELECT COUNT(*) FROM "{table}" WHERE {any_null}'
            ).fetchone()[0]
            figures["foreign_keys"] += len(
                connection.execute(f'PRAGMA foreign_key_list("{table}")').fetchall()
            )
            figures["spaced_columns"] += sum(" " in column for column in columns)
    finally:
        connection.close()
    return figures


def test_databases_are_small_realistic_and_a_little_messy(splits: dict[str, BirdSplit]) -> None:
    for split in splits.values():
        figures = {db_id: _database_figures(split.database_path(db_id)) for db_id in split.db_ids()}
        for db_id, counts in figures.items():
            assert 300 <= counts["rows"] <= 10_000, (db_id, counts)
            assert counts["rows_with_null"] > 0 and counts["foreign_keys"] >= 3, (db_id, counts)
        assert any(counts["spaced_columns"] for counts in figures.values()), split.name


# --- the gold queries ------------------------------------------------------------------


def test_every_gold_query_runs_in_the_sandbox_and_returns_rows(
    splits: dict[str, BirdSplit],
) -> None:
    for split, example in _examples(splits):
        result = execute_sql(split.database_path(example.db_id), example.sql, timeout=10)
        assert result.ok, (example.question_id, result.error)
        assert result.rows, (split.name, example.question_id, "no rows")
        assert any(value is not None for row in result.rows for value in row), example.sql


def _reversed_copy(db_path: Path, copy_path: Path) -> None:
    """The same rows inserted in reverse order, into tables whose integer primary key is
    not the rowid (`INT PRIMARY KEY`), so that table scans really meet them reversed."""
    connection = sqlite3.connect(copy_path)
    try:
        connection.execute("ATTACH DATABASE ? AS source", (f"file:{db_path}?mode=ro",))
        for name, sql in connection.execute(
            "SELECT name, sql FROM source.sqlite_master WHERE type = 'table'"
        ).fetchall():
            connection.execute(re.sub(r"\bINTEGER PRIMARY KEY\b", "INT PRIMARY KEY", sql))
            connection.execute(
                f'INSERT INTO main."{name}" SELECT * FROM source."{name}" ORDER BY rowid DESC'
            )
        connection.commit()
    finally:
        connection.close()


def _result_bag(connection: sqlite3.Connection, sql: str) -> Counter[tuple[Any, ...]]:
    # Float sums may differ in the last bits when rows are added in another order.
    return Counter(
        tuple(round(value, 6) if isinstance(value, float) else value for value in row)
        for row in connection.execute(sql)
    )


def test_gold_results_do_not_depend_on_row_order(
    splits: dict[str, BirdSplit], tmp_path: Path
) -> None:
    for split in splits.values():
        for db_id in split.db_ids():
            db_path = split.database_path(db_id)
            copy_path = tmp_path / f"{db_id}.reversed.sqlite"
            _reversed_copy(db_path, copy_path)
            original = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            reversed_ = sqlite3.connect(copy_path)
            reversed_.execute("PRAGMA reverse_unordered_selects = ON")
            try:
                for example in split.select([db_id]):
                    assert _result_bag(original, example.sql) == _result_bag(
                        reversed_, example.sql
                    ), (split.name, example.question_id, example.sql)
            finally:
                original.close()
                reversed_.close()


def _tie_at_cut(connection: sqlite3.Connection, select: exp.Select) -> tuple[Any, ...] | None:
    """The sort key shared by the last row kept and the first row cut, if they tie."""
    kept = int(select.args["limit"].expression.name)
    aliases = {e.alias: e.this for e in select.expressions if isinstance(e, exp.Alias)}
    keys = []
    for ordered in select.args["order"].expressions:
        key = ordered.this
        if isinstance(key, exp.Column) and not key.table and key.name in aliases:
            key = aliases[key.name]
        keys.append(key.copy())
    probe = select.copy().select(
        *[key.as_(f"sort_key_{i}") for i, key in enumerate(keys)], append=True
    )
    probe.set("limit", exp.Limit(expression=exp.Literal.number(kept + 1)))
    rows = connection.execute(probe.sql(dialect="sqlite")).fetchall()
    if len(rows) <= kept or rows[kept - 1][-len(keys) :] != rows[kept][-len(keys) :]:
        return None
    return rows[kept][-len(keys) :]


def test_limits_follow_an_order_without_ties_at_the_cut(splits: dict[str, BirdSplit]) -> None:
    checked = 0
    for split, example in _examples(splits):
        connection = sqlite3.connect(f"file:{split.database_path(example.db_id)}?mode=ro", uri=True)
        try:
            for select in sqlglot.parse_one(example.sql, read="sqlite").find_all(exp.Select):
                if select.args.get("limit") is None:
                    continue
                assert select.args.get("order") is not None, (example.question_id, "LIMIT alone")
                tie = _tie_at_cut(connection, select)
                assert tie is None, (split.name, example.question_id, tie)
                checked += 1
        finally:
            connection.close()
    assert checked >= 30


_DATE_FUNCTION = re.compile(r"\b(strftime|julianday|date)\s*\(|substr\([^)]*date", re.I)


def gold_patterns(sql: str) -> set[str]:
    """The BIRD query patterns a gold query uses, read off its AST."""
    tree = sqlglot.parse_one(sql, read="sqlite")
    selects = list(tree.find_all(exp.Select))
    found = set()
    widest = max(len(select.args.get("joins") or []) + 1 for select in selects)
    if widest >= 2:
        found.add("join")
    if widest >= 3:
        found.add("multi_way_join")
    if any(select.args.get("group") for select in selects):
        found.add("group_by")
    if any(select.args.get("having") for select in selects):
        found.add("having")
    if any(select.find_ancestor(exp.Select) for select in selects):
        found.add("nested_subquery")
    if tree.find(exp.Case, exp.If):
        found.add("case_when")
    if tree.find(exp.Div) and any(
        cast.to.this in (exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE)
        for cast in tree.find_all(exp.Cast)
    ):
        found.add("cast_real_ratio")
    if any(select.args.get("order") and select.args.get("limit") for select in selects):
        found.add("order_by_limit")
    if _DATE_FUNCTION.search(sql):
        found.add("date_function")
    if tree.find(exp.Like):
        found.add("like")
    if tree.find(exp.Distinct):
        found.add("distinct")
    if tree.find(exp.Union, exp.Intersect, exp.Except):
        found.add("set_operation")
    aggregating = [
        select
        for select in selects
        if any(agg.find_ancestor(exp.Select) is select for agg in select.find_all(exp.AggFunc))
    ]
    if len(selects) >= 3 or len(aggregating) >= 2:
        found.add("multi_step")
    return found


MINIMUM_PATTERN_COUNTS = {  # a little under what the questions hold today
    "train": {
        "join": 80,
        "multi_way_join": 20,
        "group_by": 50,
        "having": 8,
        "nested_subquery": 20,
        "case_when": 18,
        "cast_real_ratio": 18,
        "order_by_limit": 35,
        "date_function": 28,
        "like": 20,
        "distinct": 20,
        "set_operation": 10,
        "multi_step": 15,
    },
    "dev": {
        "join": 30,
        "multi_way_join": 10,
        "group_by": 20,
        "having": 3,
        "nested_subquery": 6,
        "case_when": 8,
        "cast_real_ratio": 5,
        "order_by_limit": 12,
        "date_function": 5,
        "like": 4,
        "distinct": 2,
        "set_operation": 4,
        "multi_step": 4,
    },
}


def test_gold_queries_cover_the_bird_patterns(splits: dict[str, BirdSplit]) -> None:
    for name, split in splits.items():
        counts = Counter(pattern for e in split.examples for pattern in gold_patterns(e.sql))
        shortfall = {
            pattern: (counts[pattern], least)
            for pattern, least in MINIMUM_PATTERN_COUNTS[name].items()
            if counts[pattern] < least
        }
        assert not shortfall, (name, shortfall)
        widest = max(
            len(select.args.get("joins") or []) + 1
            for e in split.examples
            for select in sqlglot.parse_one(e.sql, read="sqlite").find_all(exp.Select)
        )
        assert widest == 4, name  # joins of 2 to 4 tables


def test_challenging_dev_questions_are_multi_step(splits: dict[str, BirdSplit]) -> None:
    for example in splits["dev"].examples:
        patterns = gold_patterns(example.sql)
        if example.difficulty == "challenging":
            assert len(patterns) >= 4, (example.question_id, patterns)
        if example.difficulty == "simple":
            assert "set_operation" not in patterns and "multi_step" not in patterns


def test_the_demo_package_imports_nothing_of_rationale() -> None:
    code = (
        "import sys, bird.demo, bird.demo.build, bird.demo.generate_rows; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rationale', 'training')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
