"""Description CSVs: every encoding and whitespace quirk of the release reads cleanly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bird.data import load_split
from bird.descriptions import read_description_file, read_descriptions

HEADER = "original_column_name,column_name,column_description,data_format,value_description"


def test_every_dev_description_names_a_real_column(dev_dir: Path) -> None:
    """Each database that has description files (the release's all do; a database may have
    none, as the shipped train one) describes exactly the columns of its tables."""
    split = load_split(dev_dir)
    described = [db_id for db_id in split.db_ids() if split.description_dir(db_id).is_dir()]
    assert described  # the dev databases of the release come with their descriptions
    for db_id in described:
        descriptions = read_descriptions(split.description_dir(db_id))
        connection = sqlite3.connect(f"file:{split.database_path(db_id)}?mode=ro", uri=True)
        columns = {
            (table.lower(), row[1].lower())
            for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            for row in connection.execute(f'PRAGMA table_info("{table}")')
        }
        connection.close()
        assert set(descriptions) == columns, db_id


def test_windows_1252_file_of_the_release_decodes(dev_dir: Path) -> None:
    path = dev_dir / "dev_databases" / "student_club" / "database_description" / "budget.csv"
    raw = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the reason this test exists
    status = {d.column: d for d in read_description_file(path)}["event_status"]
    assert "\u2022 Closed" in status.value_description  # 0x95 in cp1252 is a bullet


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("cp1252", b""), ("latin-1", b"")],
)
def test_encodings_and_stray_whitespace(tmp_path: Path, encoding: str, prefix: bytes) -> None:
    text = (
        " Original_Column_Name , column_name,column_description ,data_format,value_description\r\n"
        '  Caf\u00e9Id ,caf\u00e9 id,"  the   id\r\n of a caf\u00e9 ",integer,\r\n'
        ",,,,\r\n"
    )
    path = tmp_path / " Shops .csv"
    path.write_bytes(prefix + text.encode(encoding))
    (description,) = read_description_file(path)
    assert description.table == "Shops"
    assert description.column == "Caf\u00e9Id"
    assert description.description == "the id of a caf\u00e9"
    assert description.data_format == "integer"
    assert read_descriptions(tmp_path)[("shops", "caf\u00e9id")] == description


def test_not_a_description_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.csv:1: header lacks 'original_column_name'"):
        read_description_file(path)


def test_missing_folder_is_empty(tmp_path: Path) -> None:
    assert read_descriptions(tmp_path / "absent") == {}
