"""Schema introspection through sqlite-utils on the shapes BIRD's databases have and the
ones a plain PRAGMA reader gets wrong: names that need quotes, views, hidden columns,
SQLite's own tables, and foreign keys that name no columns. Needs no ../shared/bird."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from bird.schema import (
    ForeignKey,
    introspect,
    primary_key,
    read_database_schema,
    render_schema,
    table_columns,
    user_tables,
)

ODD_SCHEMA = """
CREATE TABLE "Free Meal" ("School ID" INTEGER PRIMARY KEY, "Count (K-12)" REAL,
    "a""quote" TEXT, untyped);
CREATE TABLE parent (id INTEGER, code TEXT, name TEXT, PRIMARY KEY (code, id));
CREATE TABLE nopk (x INTEGER, y TEXT);
CREATE TABLE "order" (id INTEGER PRIMARY KEY AUTOINCREMENT, "group" TEXT,
    pc TEXT, pi INTEGER, p_id INTEGER REFERENCES parent, n INTEGER REFERENCES nopk,
    m INTEGER REFERENCES missing, s INTEGER REFERENCES "FREE MEAL", e INTEGER REFERENCES nopk(x),
    FOREIGN KEY (pc, pi) REFERENCES Parent,
    FOREIGN KEY (pi, pc) REFERENCES parent (id, code));
CREATE TABLE keyed (a TEXT PRIMARY KEY, b INTEGER) WITHOUT ROWID;
CREATE TABLE computed (a INTEGER, twice INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL, c TEXT);
CREATE VIEW named AS SELECT * FROM nopk;
INSERT INTO "Free Meal" VALUES (1, 2.5, 'it''s', x'00'), (2, NULL, 'b', 3);
INSERT INTO parent VALUES (1, 'a', 'n1');
INSERT INTO "order" ("group", pc, pi) VALUES ('g', 'a', 1);
INSERT INTO computed (a, c) VALUES (1, 'one');
ANALYZE;
"""


@pytest.fixture()
def odd_db(tmp_path: Path) -> Path:
    path = tmp_path / "odd.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript(ODD_SCHEMA)
    connection.close()
    return path


def test_tables_columns_and_keys_in_database_order(odd_db: Path) -> None:
    schema = read_database_schema(odd_db, sample_values=0)
    tables = {table.name: table for table in schema.tables}
    # views and SQLite's own tables (sqlite_sequence, sqlite_stat1) are not the schema
    assert list(tables) == ["Free Meal", "parent", "nopk", "order", "keyed", "computed"]
    assert [(c.name, c.type) for c in tables["Free Meal"].columns] == [
        ("School ID", "INTEGER"),
        ("Count (K-12)", "REAL"),
        ('a"quote', "TEXT"),
        ("untyped", ""),
    ]
    assert table_columns(odd_db)["computed"] == ["a", "c"]  # a generated column is hidden
    assert tables["parent"].primary_key == ["code", "id"]  # key order, not column order
    assert tables["Free Meal"].primary_key == ["School ID"]
    assert tables["keyed"].primary_key == ["a"]
    assert tables["nopk"].primary_key == []  # not sqlite-utils' "rowid"


def test_foreign_keys_resolve_implicit_references_as_sqlite_does(odd_db: Path) -> None:
    (order,) = [
        t for t in read_database_schema(odd_db, sample_values=0).tables if t.name == "order"
    ]
    assert order.foreign_keys == [
        # PRAGMA foreign_key_list's order: the last declared first; compound keys whole
        ForeignKey(columns=["pi", "pc"], ref_table="parent", ref_columns=["id", "code"]),
        # `REFERENCES Parent`: the primary key, with the table named in another case
        ForeignKey(columns=["pc", "pi"], ref_table="Parent", ref_columns=["code", "id"]),
        ForeignKey(columns=["e"], ref_table="nopk", ref_columns=["x"]),
        ForeignKey(columns=["s"], ref_table="FREE MEAL", ref_columns=["School ID"]),
        # no key to resolve to: a missing table, a table without a primary key, a key of
        # another width; the columns are left blank, not guessed
        ForeignKey(columns=["m"], ref_table="missing", ref_columns=[""]),
        ForeignKey(columns=["n"], ref_table="nopk", ref_columns=[""]),
        ForeignKey(columns=["p_id"], ref_table="parent", ref_columns=[""]),
    ]


def test_rendering_quotes_odd_names_and_runs(odd_db: Path) -> None:
    text = render_schema(read_database_schema(odd_db))
    assert 'CREATE TABLE "Free Meal" (' in text and 'CREATE TABLE "order" (' in text
    assert '"a""quote" TEXT' in text and "'it''s'" in text
    scratch = sqlite3.connect(":memory:")
    scratch.executescript(text)
    assert {row[0] for row in scratch.execute("SELECT name FROM sqlite_master")} >= {
        "Free Meal",
        "order",
    }


def test_introspection_only_reads(odd_db: Path) -> None:
    """sqlite-utils over a guarded connection: every statement it runs is a read, it sets
    no pragma, and the file is unchanged."""
    before = hashlib.sha256(odd_db.read_bytes()).hexdigest()
    connection = sqlite3.connect(f"file:{odd_db}?mode=ro", uri=True)
    actions: list[tuple[int, str | None]] = []
    checked = 0
    reads = {sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION}
    read_pragmas = {"table_info", "foreign_key_list"}

    def guard(action: int, arg1: str | None, *_: object) -> int:
        nonlocal checked
        checked += 1
        allowed = action in reads or (action == sqlite3.SQLITE_PRAGMA and arg1 in read_pragmas)
        if not allowed:
            actions.append((action, arg1))
        return sqlite3.SQLITE_OK if allowed else sqlite3.SQLITE_DENY

    connection.set_authorizer(guard)
    database = introspect(connection)
    names = user_tables(database)
    keys = {name: primary_key(database.table(name)) for name in names}
    foreign = [key for name in names for key in database.table(name).foreign_keys]
    connection.set_authorizer(None)
    assert checked > 0 and actions == []
    assert keys["parent"] == ["code", "id"] and len(foreign) == 7
    assert connection.execute("PRAGMA recursive_triggers").fetchone() == (0,)
    connection.close()
    read_database_schema(odd_db)
    assert hashlib.sha256(odd_db.read_bytes()).hexdigest() == before
