"""Release layouts built from real parts: mini-dev from the BIRD dev subset, Spider from
databases made here.

mini-dev's release has its questions in mini_dev_sqlite.json (and _mysql, _postgresql)
beside dev_databases/, and holds question_ids 137 and 138 twice; the fixture reproduces
that with real dev questions and the real dev databases (linked, never copied or written).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

MINI_DEV_QUESTIONS = 40
# Positions (in the fixture's mini_dev_sqlite.json) of questions given the duplicated ids.
MINI_DEV_DUPLICATES = {137: (3, 17), 138: (4, 30)}


@pytest.fixture(scope="session")
def mini_dev_dir(dev_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MINIDEV/ as the mini-dev release unzips, from every 7th dev question."""
    records = json.loads((dev_dir / "dev.json").read_text(encoding="utf-8"))
    chosen = [dict(record) for record in records[::7][:MINI_DEV_QUESTIONS]]
    for question_id, positions in MINI_DEV_DUPLICATES.items():
        for position in positions:
            chosen[position]["question_id"] = question_id
    root = tmp_path_factory.mktemp("minidev") / "MINIDEV"
    root.mkdir()
    (root / "dev_databases").symlink_to((dev_dir / "dev_databases").resolve())
    shutil.copy(dev_dir / "dev_tables.json", root / "dev_tables.json")
    for dialect in ("sqlite", "mysql", "postgresql"):
        (root / f"mini_dev_{dialect}.json").write_text(json.dumps(chosen, indent=4))
        (root / f"mini_dev_{dialect}_gold.sql").write_text(
            "".join(f"{r['SQL']}\t{r['db_id']}\n" for r in chosen)
        )
    return root


# --- Spider ------------------------------------------------------------------------------

SINGERS = [  # id, name, country, age, note (TEXT that is not valid UTF-8 for id 1)
    (1, "Ana", "France", 41, None),
    (2, "Bo", "France", 35, "b"),
    (3, "Cy", "Spain", 22, "c"),
    (4, "Di", "Spain", 29, "d"),
    (5, "Ed", "Peru", 52, "e"),
]
# In the test-suite copy, the French singers are no longer exactly those over 40.
SUITE_SINGERS = [
    (1, "Ana", "France", 41, "a"),
    (2, "Bo", "France", 35, "b"),
    (6, "Fi", "Peru", 44, "f"),
]
PETS = [(1, "dog", 3), (2, "cat", 5), (3, "dog", 1)]

# (question, gold query); predictions in tests/bird/test_spider.py
SPIDER_QUESTIONS = [
    ("concert", "Names and ages of singers.", "SELECT name, age FROM singer"),
    ("concert", "Singers by age, oldest first.", "SELECT name FROM singer ORDER BY age DESC"),
    ("concert", "Countries of singers.", "SELECT DISTINCT country FROM singer"),
    ("concert", "Singers over 40.", "SELECT name FROM singer WHERE age > 40"),
    ("concert", "Singers aged 35 or more.", "SELECT name FROM singer WHERE age >= 35"),
    ("pets", "How many dogs?", "SELECT count(*) FROM pet WHERE kind = 'dog'"),
    ("concert", "Note of singer 1.", "SELECT note FROM singer WHERE id = 1"),
]


def _singer_database(path: Path, singers: list[tuple]) -> None:
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INT, note TEXT)"
    )
    connection.executemany("INSERT INTO singer VALUES (?, ?, ?, ?, ?)", singers)
    # A TEXT value that is not UTF-8: Spider's evaluation reads it by dropping the bad byte.
    connection.execute("UPDATE singer SET note = CAST(x'ff41' AS TEXT) WHERE id = 1")
    connection.commit()
    connection.close()


def build_spider(root: Path, *, test_suite: bool = True) -> Path:
    """spider/ as its release unzips: dev.json, tables.json, dev_gold.sql, database/<db>/."""
    root.mkdir(parents=True)
    concert = root / "database" / "concert"
    pets = root / "database" / "pets"
    concert.mkdir(parents=True)
    pets.mkdir(parents=True)
    _singer_database(concert / "concert.sqlite", SINGERS)
    if test_suite:
        _singer_database(concert / "concert_1.sqlite", SUITE_SINGERS)
    connection = sqlite3.connect(pets / "pets.sqlite")
    connection.execute("CREATE TABLE pet (id INTEGER PRIMARY KEY, kind TEXT, age INT)")
    connection.executemany("INSERT INTO pet VALUES (?, ?, ?)", PETS)
    connection.commit()
    connection.close()
    questions = [
        {"db_id": db_id, "question": question, "query": query, "query_toks": query.split()}
        for db_id, question, query in SPIDER_QUESTIONS
    ]
    (root / "dev.json").write_text(json.dumps(questions, indent=2))
    (root / "dev_gold.sql").write_text("".join(f"{q}\t{db}\n" for db, _, q in SPIDER_QUESTIONS))
    tables = [
        {"db_id": db_id, "table_names_original": [table], "column_names_original": [[-1, "*"]]}
        for db_id, table in (("concert", "singer"), ("pets", "pet"))
    ]
    (root / "tables.json").write_text(json.dumps(tables))
    (root / "train_spider.json").write_text(json.dumps(questions[:2]))
    return root


@pytest.fixture
def spider_dir(tmp_path: Path) -> Path:
    return build_spider(tmp_path / "spider")


@pytest.fixture
def spider_without_test_suite(tmp_path: Path) -> Path:
    return build_spider(tmp_path / "spider_main_only", test_suite=False)
