"""The gold audit: planted failures and order-dependent queries are found, with reasons."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bird.audit import (
    BARE_COLUMN,
    TIE_AT_LIMIT,
    UNORDERED_LIMIT,
    audit_split,
    reordered_copy,
    storage_free_ddl,
)
from bird.cli import app
from bird.data import load_split

QUERIES = {
    0: ("SELECT COUNT(*) FROM item", None),
    1: ("SELECT nope FROM item", "gold_fails"),
    2: (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000000) "
        "SELECT COUNT(*) FROM n",
        "gold_timeout",
    ),
    3: ("SELECT name FROM item LIMIT 1", "nondeterministic"),  # no ORDER BY
    4: ("SELECT name FROM item ORDER BY price LIMIT 1", "nondeterministic"),  # ties at the cut
    5: ("SELECT name FROM item ORDER BY price DESC, name LIMIT 1", None),  # unique order
    6: ("SELECT SUM(weight) FROM item", None),  # float sums differ only in their last bits
    7: ("SELECT name, price FROM item WHERE price = 1", None),  # several rows, any order: a set
}


@pytest.fixture
def toy_split(tmp_path: Path) -> Path:
    split = tmp_path / "train"
    folder = split / "train_databases" / "toy"
    folder.mkdir(parents=True)
    connection = sqlite3.connect(folder / "toy.sqlite")
    # no INTEGER PRIMARY KEY: the rowid order is the insertion order, which a copy reverses
    connection.execute("CREATE TABLE item (name TEXT, price INTEGER, weight REAL)")
    rows = [(f"item{i}", 1 if i % 3 else 2, 0.1 * (i + 1) + 1e-9 * i) for i in range(40)]
    connection.executemany("INSERT INTO item VALUES (?, ?, ?)", rows)
    connection.commit()
    connection.close()
    questions = [
        {"question_id": qid, "db_id": "toy", "question": f"q{qid}", "evidence": "", "SQL": sql}
        for qid, (sql, _) in QUERIES.items()
    ]
    questions.append(
        {"question_id": 8, "db_id": "gone", "question": "q8", "evidence": "", "SQL": "SELECT 1"}
    )
    (split / "train.json").write_text(json.dumps(questions))
    return split


def test_each_planted_problem_is_found_with_its_reason(toy_split: Path, tmp_path: Path) -> None:
    report = audit_split(load_split(toy_split), timeout=1.0, workers=2, cache_dir=tmp_path / "c")
    found = {f.question_id: f for f in report.findings}
    expected = {qid: reason for qid, (_, reason) in QUERIES.items() if reason}
    assert {qid: f.reason for qid, f in found.items() if qid != 8} == expected
    assert found[8].reason == "no_database"
    assert found[3].detail == "LIMIT without ORDER BY"
    assert found[4].detail == "ties at the ORDER BY ... LIMIT cut"
    assert "nope" in found[1].detail
    assert report.counts == {
        "no_database": 1, "gold_fails": 1, "gold_timeout": 1, "nondeterministic": 2,
    }  # fmt: skip
    assert report.quarantined() == {1, 2, 3, 4}


STORAGES = {
    "integer primary key": "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, score INTEGER)",
    "plain rowid": "CREATE TABLE p (id INT, name TEXT, score INTEGER)",
    "without rowid": (
        "CREATE TABLE p (id INTEGER, name TEXT, score INTEGER, PRIMARY KEY (id)) WITHOUT ROWID"
    ),
    "quoted key, strict": (
        'CREATE TABLE p ("id" INTEGER PRIMARY KEY, name TEXT, score INTEGER) STRICT'
    ),
}
# Two rows tie at the top score: a tie at a LIMIT cut, a bare column beside MAX() and an
# unordered LIMIT each pick one of them by storage order, on the table, a view and a join.
PLANTED = {
    "tie": "SELECT name FROM p ORDER BY score DESC LIMIT 1",
    "bare": "SELECT name, MAX(score) FROM p",
    "unordered": "SELECT name FROM p LIMIT 1",
    "covered unordered": "SELECT id FROM p LIMIT 1",  # may scan the key's index instead
    "view tie": "SELECT name FROM v ORDER BY score DESC LIMIT 1",
    "view bare": "SELECT name, MAX(score) FROM v",
    "view unordered": "SELECT name FROM v LIMIT 1",
    "join tie": "SELECT note FROM p JOIN o ON o.pid = p.id ORDER BY p.score DESC LIMIT 1",
    "join bare": "SELECT note, MAX(p.score) FROM p JOIN o ON o.pid = p.id",
    "join unordered": "SELECT note FROM o JOIN p ON o.pid = p.id LIMIT 1",
    "grouped bare": "SELECT score, name FROM p GROUP BY score",
}
DETERMINISTIC = {
    "unique order": "SELECT name FROM p ORDER BY id DESC LIMIT 1",
    "order with tie-break": "SELECT name FROM p ORDER BY score DESC, id LIMIT 1",
    "aggregates only": "SELECT COUNT(*), MAX(score), SUM(score) FROM p",
    "all tied rows": "SELECT name FROM p WHERE score = (SELECT MAX(score) FROM p)",
    "bare column, unique max": "SELECT name, MIN(score) FROM p",
    "grouped by key": "SELECT id, name, COUNT(*) FROM p GROUP BY id",
    "join in key order": "SELECT note FROM o JOIN p ON o.pid = p.id ORDER BY p.id LIMIT 2",
}


@pytest.mark.parametrize("indexed", [False, True], ids=["no index", "index on score"])
@pytest.mark.parametrize("storage", list(STORAGES))
def test_order_dependence_is_found_whatever_the_storage(
    storage: str, indexed: bool, tmp_path: Path
) -> None:
    split = tmp_path / "train"
    folder = split / "train_databases" / "shop"
    folder.mkdir(parents=True)
    connection = sqlite3.connect(folder / "shop.sqlite")
    connection.execute(STORAGES[storage])
    rows = [(1, "a", 10), (2, "b", 10), (3, "c", 5), (4, "d", 1)]
    connection.executemany("INSERT INTO p VALUES (?, ?, ?)", rows)
    connection.execute("CREATE TABLE o (pid INTEGER, note TEXT)")
    connection.executemany("INSERT INTO o VALUES (?, ?)", [(1, "x"), (2, "y"), (3, "z"), (4, "w")])
    connection.execute("CREATE VIEW v AS SELECT name, score FROM p")
    if indexed:
        connection.execute("CREATE INDEX p_score ON p (score)")
    connection.commit()
    connection.close()
    queries = list(PLANTED.items()) + list(DETERMINISTIC.items())
    (split / "train.json").write_text(json.dumps([
        {"question_id": qid, "db_id": "shop", "question": name, "evidence": "", "SQL": sql}
        for qid, (name, sql) in enumerate(queries)
    ]))  # fmt: skip
    report = audit_split(load_split(split), timeout=5.0, workers=1, cache_dir=tmp_path / "c")
    flagged = {queries[f.question_id][0]: f for f in report.findings}
    assert set(flagged) == set(PLANTED)
    assert all(f.reason == "nondeterministic" for f in flagged.values())
    kinds = {name: f.detail for name, f in flagged.items()}
    assert {kinds["tie"], kinds["view tie"], kinds["join tie"]} == {TIE_AT_LIMIT}
    unordered = {"unordered", "covered unordered", "view unordered", "join unordered"}
    assert {kinds[name] for name in unordered} == {UNORDERED_LIMIT}
    assert {kinds["bare"], kinds["view bare"], kinds["join bare"], kinds["grouped bare"]} == {
        BARE_COLUMN
    }


def test_the_reordered_copy_keeps_content_types_and_collations(tmp_path: Path) -> None:
    db = tmp_path / "typed.sqlite"
    connection = sqlite3.connect(db)
    connection.execute(
        'CREATE TABLE "order items" (id INTEGER PRIMARY KEY, label TEXT COLLATE NOCASE, '
        "price DECIMAL(10, 2), day DATETIME, blob BLOB)"
    )
    connection.executemany(
        'INSERT INTO "order items" VALUES (?, ?, ?, ?, ?)',
        [(i, f"Label{i}", i * 1.5, f"2024-01-{i:02d}", bytes([i])) for i in range(1, 30)],
    )
    connection.commit()
    copy = sqlite3.connect(reordered_copy(db, tmp_path / "cache"))
    table = '"order items"'
    stored = "SELECT id, label, price, typeof(price), day, blob FROM " + table
    assert sorted(copy.execute(stored).fetchall()) == sorted(connection.execute(stored).fetchall())
    first_scanned = f"SELECT day FROM {table} LIMIT 1"
    assert connection.execute(first_scanned).fetchone() == ("2024-01-01",)
    assert copy.execute(first_scanned).fetchone() == ("2024-01-29",)  # stored reversed
    nocase = f"SELECT COUNT(*) FROM {table} WHERE label = 'label3'"
    assert copy.execute(nocase).fetchone() == connection.execute(nocase).fetchone() == (1,)
    affinity = f"SELECT COUNT(*) FROM {table} WHERE price = '3'"  # numeric affinity kept
    assert copy.execute(affinity).fetchone() == connection.execute(affinity).fetchone() == (1,)
    declared = [row[2] for row in copy.execute(f"PRAGMA table_info({table})")]
    assert declared == ["INT", "TEXT", "DECIMAL(10, 2)", "DATETIME", "BLOB"]


def test_storage_free_ddl_edits_only_the_key_type_and_without_rowid() -> None:
    assert (
        storage_free_ddl("CREATE TABLE t (`Id` INTEGER PRIMARY KEY, n INTEGER)", "id")
        == "CREATE TABLE t (`Id` INT PRIMARY KEY, n INTEGER)"
    )
    assert (
        storage_free_ddl(
            "CREATE TABLE t (a INTEGER, b TEXT, PRIMARY KEY (a)) STRICT, WITHOUT ROWID", "a"
        )
        == "CREATE TABLE t (a INT, b TEXT, PRIMARY KEY (a)) STRICT"
    )
    unchanged = "CREATE TABLE t (a TEXT PRIMARY KEY, b INTEGER)"
    assert storage_free_ddl(unchanged, None) == unchanged


def test_dev_findings_are_all_order_dependent(dev_dir: Path, tmp_path: Path) -> None:
    """No false positive on BIRD dev: every flagged gold query returns other row sets on two
    copies made here with plain sqlite3 that differ only in the order their rows are stored
    in, or when its scans run backwards; and its text shows a reason."""
    split = load_split(dev_dir)
    report = audit_split(split, workers=2, cache_dir=tmp_path / "copies")
    assert report.counts["gold_fails"] == report.counts["gold_timeout"] == 0
    assert report.counts["nondeterministic"] > 0
    copies: dict[tuple[str, bool], sqlite3.Connection] = {}
    for finding in report.findings:
        example = split.example(finding.question_id)
        assert finding.detail in (TIE_AT_LIMIT, UNORDERED_LIMIT, BARE_COLUMN), finding
        path = split.database_path(example.db_id)
        for reverse in (False, True):
            if (example.db_id, reverse) not in copies:
                copies[example.db_id, reverse] = _copy(path, tmp_path, reverse=reverse)
        forward, reversed_ = (copies[example.db_id, reverse] for reverse in (False, True))
        original = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        backwards = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        backwards.execute("PRAGMA reverse_unordered_selects=1")
        pairs = [(forward, reversed_), (original, backwards)]
        assert any(
            set(a.execute(example.sql).fetchall()) != set(b.execute(example.sql).fetchall())
            for a, b in pairs
        ), finding


def _copy(db: Path, tmp_path: Path, *, reverse: bool) -> sqlite3.Connection:
    """Tables without keys or constraints (same column affinities), rows inserted in rowid
    order or in reverse, so that two copies differ only in their storage order."""
    target = tmp_path / f"{'reversed' if reverse else 'forward'}-{db.name}"
    copy = sqlite3.connect(target)
    copy.execute("ATTACH DATABASE ? AS source", (f"file:{db}?mode=ro",))
    names = copy.execute(
        "SELECT name FROM source.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    order = "DESC" if reverse else "ASC"
    for (name,) in names:
        copy.execute(f'CREATE TABLE main."{name}" AS SELECT * FROM source."{name}" WHERE 0')
        copy.execute(
            f'INSERT INTO main."{name}" SELECT * FROM source."{name}" ORDER BY rowid {order}'
        )
    copy.commit()
    copy.execute("DETACH DATABASE source")
    copy.execute("PRAGMA automatic_index=0")  # an automatic index sorts ties by value
    return copy


def test_bird_audit_command_prints_and_writes(toy_split: Path, tmp_path: Path) -> None:
    output = tmp_path / "audit.json"
    result = CliRunner().invoke(
        app, ["audit", "--data", str(toy_split), "--timeout", "1", "--output", str(output)],
        terminal_width=200,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "gold_timeout 1" in result.output and "nondeterministic 2" in result.output
    assert json.loads(output.read_text())["counts"]["gold_fails"] == 1
    bad = CliRunner().invoke(app, ["audit", "--data", str(toy_split), "--db", "toyy"])
    assert bad.exit_code == 2 and "unknown database id(s) 'toyy'" in bad.output
