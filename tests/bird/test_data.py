"""Loading BIRD splits: the real dev and train files, and clear errors on broken ones."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bird.data import BirdDataError, load_split


def _databases_on_disk(split_dir: Path) -> set[str]:
    """db_ids whose <db>/<db>.sqlite is in the split's databases folder, by listing it."""
    folder = split_dir / f"{split_dir.name}_databases"
    return {p.name for p in folder.iterdir() if (p / f"{p.name}.sqlite").is_file()}


def test_dev_split_matches_its_files(dev_dir: Path) -> None:
    """Every count is taken from dev.json and the databases folder, never the subset's
    (BIRD_ROOT may be the full release): the loader keeps each question, its difficulty
    and its database, and every dev database is there."""
    split = load_split(dev_dir)
    raw = json.loads((dev_dir / "dev.json").read_text(encoding="utf-8"))
    assert split.name == "dev"
    assert len(split.examples) == len(raw) > 0
    assert Counter(e.difficulty for e in split.examples) == Counter(r["difficulty"] for r in raw)
    assert {e.difficulty for e in split.examples} <= {"simple", "moderate", "challenging"}
    assert Counter(e.db_id for e in split.examples) == Counter(r["db_id"] for r in raw)
    assert [e.question_id for e in split.examples] == [r["question_id"] for r in raw]
    assert {r["db_id"] for r in raw} <= _databases_on_disk(dev_dir)
    assert split.missing_databases() == {}
    assert len(split.executable_examples()) == len(raw)
    assert split.has_difficulty


def test_dev_order_is_the_official_position(dev_dir: Path) -> None:
    """Official prediction files pair by position: examples must keep dev.json's order."""
    split = load_split(dev_dir)
    gold_lines = (dev_dir / "dev_gold.sql").read_text(encoding="utf-8").splitlines()
    assert len(gold_lines) == len(split.examples)
    for example, line in zip(split.examples, gold_lines, strict=True):
        sql, db_id = line.rsplit("\t", 1)
        assert (example.sql.strip(), example.db_id) == (sql.strip(), db_id)


def test_train_split_reports_missing_databases(train_dir: Path) -> None:
    """Counts from train.json and a listing of train_databases/: the subset has one train
    database of 69, the full release all of them."""
    split = load_split(train_dir)
    raw = json.loads((train_dir / "train.json").read_text(encoding="utf-8"))
    on_disk = _databases_on_disk(train_dir)
    assert len(split.examples) == len(raw) > 0
    assert split.has_difficulty == any(r.get("difficulty") for r in raw)
    executable = split.executable_examples()
    assert {e.db_id for e in executable} == {r["db_id"] for r in raw} & on_disk
    assert len(executable) == sum(1 for r in raw if r["db_id"] in on_disk)
    assert split.missing_databases() == Counter(
        r["db_id"] for r in raw if r["db_id"] not in on_disk
    )
    assert "beer_factory" in on_disk and "beer_factory" not in split.missing_databases()


def test_example_lookup(dev_dir: Path) -> None:
    split = load_split(dev_dir)
    first = split.examples[0]
    assert split.example(first.question_id) is first
    with pytest.raises(KeyError, match="question_id 99999999"):
        split.example(99999999)


def _write_split(folder: Path, payload: str) -> Path:
    folder.mkdir()
    (folder / "dev.json").write_text(payload, encoding="utf-8")
    (folder / "dev_databases").mkdir()
    return folder


def test_broken_json_names_file_and_line(tmp_path: Path) -> None:
    folder = _write_split(tmp_path / "dev", '[\n{"question_id": 1,\n oops}\n]')
    with pytest.raises(BirdDataError, match=r"dev\.json:3"):
        load_split(folder)


def test_record_without_sql_names_the_record(tmp_path: Path) -> None:
    records = [
        {"question_id": 1, "db_id": "a", "question": "q", "SQL": "SELECT 1"},
        {"question_id": 2, "db_id": "a", "question": "q"},
    ]
    folder = _write_split(tmp_path / "dev", json.dumps(records))
    with pytest.raises(BirdDataError, match=r"record 1 .*SQL"):
        load_split(folder)


def test_duplicate_question_ids_are_kept_by_position_and_noted(tmp_path: Path) -> None:
    """mini-dev's release holds two question_ids twice: refusing it made mini-dev unusable."""
    record = {"question_id": 7, "db_id": "a", "question": "q", "SQL": "SELECT 1"}
    other = {**record, "question": "another", "SQL": "SELECT 2"}
    folder = _write_split(tmp_path / "dev", json.dumps([record, other]))
    split = load_split(folder)
    assert [(e.question_id, e.position, e.sql) for e in split.examples] == [
        (7, 0, "SELECT 1"),
        (7, 1, "SELECT 2"),
    ]
    assert split.duplicate_question_ids() == {7: [0, 1]}
    assert any("question_id 7 appears at records 0 and 1" in note for note in split.notes)


def test_mini_dev_release_layout(mini_dev_dir: Path) -> None:
    split = load_split(mini_dev_dir)
    assert split.name == "mini_dev_sqlite" and split.benchmark == "bird"
    assert len(split.examples) == 40 and split.missing_databases() == {}
    assert split.databases_dir == mini_dev_dir / "dev_databases"
    assert split.tables_path == mini_dev_dir / "dev_tables.json"
    assert split.duplicate_question_ids() == {137: [3, 17], 138: [4, 30]}
    assert any(
        "MySQL and PostgreSQL versions of mini-dev are not executed" in n for n in split.notes
    )
    # The questions file itself names the split, too.
    assert len(load_split(mini_dev_dir / "mini_dev_sqlite.json").examples) == 40


def test_mini_dev_mysql_and_postgresql_are_refused_clearly(
    mini_dev_dir: Path, tmp_path: Path
) -> None:
    for dialect in ("mysql", "postgresql"):
        with pytest.raises(BirdDataError, match=f"the {dialect} version of mini-dev is not"):
            load_split(mini_dev_dir / f"mini_dev_{dialect}.json")
    only_mysql = tmp_path / "MINIDEV"
    only_mysql.mkdir()
    (only_mysql / "dev_databases").mkdir()
    (only_mysql / "mini_dev_mysql.json").write_text("[]")
    with pytest.raises(BirdDataError, match="MySQL and PostgreSQL versions of mini-dev are not"):
        load_split(only_mysql)


def test_spider_release_layout(spider_dir: Path) -> None:
    split = load_split(spider_dir)
    assert split.name == "dev" and split.benchmark == "spider"
    assert [e.question_id for e in split.examples] == list(range(7))  # its position
    assert split.examples[0].sql == "SELECT name, age FROM singer"
    assert split.database_path("concert") == spider_dir / "database/concert/concert.sqlite"
    assert split.tables_path == spider_dir / "tables.json" and split.missing_databases() == {}
    assert load_split(spider_dir / "train_spider.json").name == "train_spider"


def test_folder_with_several_splits_asks_for_the_file(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text("[]")
        (tmp_path / f"{name}_databases").mkdir()
    with pytest.raises(BirdDataError, match=r"several splits found \(a\.json, b\.json\)"):
        load_split(tmp_path)
    assert load_split(tmp_path / "b.json").name == "b"


def test_folder_without_a_split(tmp_path: Path) -> None:
    with pytest.raises(BirdDataError, match="no BIRD split found"):
        load_split(tmp_path)
    with pytest.raises(BirdDataError, match="not a directory"):
        load_split(tmp_path / "absent")


def test_select_by_database_limit_and_executability(train_dir: Path) -> None:
    split = load_split(train_dir)
    beer = split.select(["BEER_FACTORY"])
    assert beer and {e.db_id for e in beer} == {"beer_factory"}
    assert [e.question_id for e in beer] == [
        e.question_id for e in split.examples if e.db_id == "beer_factory"
    ]
    assert split.select(["beer_factory"], limit=3) == beer[:3]
    executable = split.select(executable=True)
    assert executable == split.executable_examples()
    # with another database, present or not: only the executable questions of the two
    other = next(db_id for db_id in split.db_ids() if db_id != "beer_factory")
    present = {"beer_factory"} | ({other} & _databases_on_disk(train_dir))
    assert split.select(["beer_factory", other], executable=True) == [
        e for e in split.examples if e.db_id in present
    ]
    assert split.select(["beer_factory", other]) == [
        e for e in split.examples if e.db_id in {"beer_factory", other}
    ]


@pytest.mark.parametrize("limit", [0, -3])
def test_select_refuses_a_limit_under_one(train_dir: Path, limit: int) -> None:
    with pytest.raises(BirdDataError, match=f"limit must be at least 1, not {limit}"):
        load_split(train_dir).select(limit=limit)


def test_select_names_unknown_databases_and_lists_the_known(dev_dir: Path) -> None:
    raw = json.loads((dev_dir / "dev.json").read_text(encoding="utf-8"))
    with pytest.raises(BirdDataError) as caught:
        load_split(dev_dir).select(["superheroes"])
    assert "'superheroes'" in str(caught.value)
    assert f"known: {', '.join(sorted({r['db_id'] for r in raw}))}" in str(caught.value)
