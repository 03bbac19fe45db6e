"""Schema reading and rendering on the real BIRD databases."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bird.data import load_split
from bird.schema import load_schema, read_tables_json_schema, render_schema


def _catalog(db_path: Path) -> dict[str, list[str]]:
    """table -> column names, read independently with plain sqlite3."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    tables = [
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    catalog = {t: [r[1] for r in connection.execute(f'PRAGMA table_info("{t}")')] for t in tables}
    connection.close()
    return catalog


@pytest.mark.parametrize("db_id", ["superhero", "student_club"])
def test_rendered_schema_recreates_the_database_tables(dev_dir: Path, db_id: str) -> None:
    """The rendering is valid SQL: run in an empty database it yields the same catalog."""
    split = load_split(dev_dir)
    text = render_schema(load_schema(split, db_id))
    scratch = sqlite3.connect(":memory:")
    scratch.executescript(text)
    rebuilt = {
        t: [r[1] for r in scratch.execute(f'PRAGMA table_info("{t}")')]
        for (t,) in scratch.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert rebuilt == _catalog(split.database_path(db_id))


def test_keys_match_the_database(dev_dir: Path) -> None:
    split = load_split(dev_dir)
    db_path = split.database_path("student_club")
    scratch = sqlite3.connect(":memory:")
    scratch.executescript(render_schema(load_schema(split, "student_club")))
    original = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    for table in _catalog(db_path):
        for pragma in ("foreign_key_list", "table_info"):
            got = scratch.execute(f'PRAGMA {pragma}("{table}")').fetchall()
            want = original.execute(f'PRAGMA {pragma}("{table}")').fetchall()
            # foreign_key_list: (id, seq, table, from, to); table_info: (cid, name, type, ..., pk)
            keep = (lambda r: r[1:5]) if pragma == "foreign_key_list" else (lambda r: (r[1], r[5]))
            assert sorted(map(keep, got)) == sorted(map(keep, want)), (table, pragma)


def test_comments_carry_descriptions_and_real_samples(dev_dir: Path, superhero_db: Path) -> None:
    split = load_split(dev_dir)
    text = render_schema(load_schema(split, "superhero"))
    line = next(line for line in text.splitlines() if line.strip().startswith("superhero_name"))
    assert "the name of the superhero" in line
    samples = re.findall(r"'([^']*)'", line.split("examples:")[1])
    assert len(samples) == 3
    connection = sqlite3.connect(f"file:{superhero_db}?mode=ro", uri=True)
    for sample in samples:
        hits = connection.execute(
            "SELECT COUNT(*) FROM superhero WHERE superhero_name = ?", (sample,)
        ).fetchone()[0]
        assert hits > 0, sample


def test_rendering_is_deterministic_across_processes(dev_dir: Path) -> None:
    code = (
        "import sys; from bird.data import load_split; from bird.schema import load_schema, "
        "render_schema; print(render_schema(load_schema(load_split(sys.argv[1]), 'student_club')))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, str(dev_dir)], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(outputs) == 1 and "CREATE TABLE" in outputs.pop()


def test_size_budget_drops_detail_then_tables(dev_dir: Path) -> None:
    schema = load_schema(load_split(dev_dir), "student_club")
    full = render_schema(schema)
    sizes = []
    for budget in (len(full), len(full) - 1, len(full) // 2, len(full) // 4, 600, 200):
        text = render_schema(schema, max_chars=budget)
        assert len(text) <= budget
        sizes.append(len(text))
    assert sizes == sorted(sizes, reverse=True)
    tiny = render_schema(schema, max_chars=600)
    omitted = int(re.search(r"-- (\d+) more tables omitted", tiny).group(1))
    assert tiny.count("CREATE TABLE") + omitted == len(schema.tables)
    assert all(" -- " not in line for line in tiny.splitlines())  # column comments dropped first


def test_tables_json_fallback_agrees_with_the_database(dev_dir: Path) -> None:
    split = load_split(dev_dir)
    from_file = read_tables_json_schema(split.tables_path, "superhero")
    from_db = load_schema(split, "superhero", sample_values=0)
    assert {t.name.lower(): [c.name.lower() for c in t.columns] for t in from_file.tables} == {
        t.name.lower(): [c.name.lower() for c in t.columns] for t in from_db.tables
    }
    primary = {t.name: t.primary_key for t in from_db.tables}
    assert {t.name: t.primary_key for t in from_file.tables} == primary


def test_train_database_without_tables_json(train_dir: Path) -> None:
    split = load_split(train_dir)
    assert not split.tables_path.exists()
    text = render_schema(load_schema(split, "beer_factory"))
    assert 'CREATE TABLE "transaction" (' in text  # a reserved word, quoted


def test_cli_schema_and_unknown_database(dev_dir: Path) -> None:
    bird = Path(sys.executable).parent / "bird"
    ok = subprocess.run(
        [bird, "schema", "--data", dev_dir, "--db", "superhero", "--max-chars", "3000"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and ok.stdout.count("CREATE TABLE") >= 1
    assert len(ok.stdout.rstrip("\n")) <= 3000
    bad = subprocess.run(
        [bird, "schema", "--data", dev_dir, "--db", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "'nope' is not a database" in bad.stderr


def test_compact_style_keeps_every_table_and_key_in_fewer_characters(dev_dir: Path) -> None:
    schema = load_schema(load_split(dev_dir), "student_club", sample_values=0)
    sql_style = render_schema(schema, max_chars=None)
    compact = render_schema(schema, style="compact")
    lines = compact.splitlines()
    assert len(lines) == len(schema.tables)  # one line per table
    for table, line in zip(schema.tables, lines, strict=True):
        assert line.startswith(f"{table.name}(") or line.startswith(f'"{table.name}"(')
        for column in table.columns:
            assert column.name in line
        for key in table.foreign_keys:  # keys inline, as the SQL style declares them
            assert f"REFERENCES {key.ref_table}({key.ref_columns[0]})" in line.replace('"', "")
    assert len(compact) < 0.6 * len(sql_style)
    # a budget drops trailing tables, as the SQL style does once its comments are gone
    cut = render_schema(schema, max_chars=len(compact) // 2, style="compact")
    omitted = int(re.search(r"-- (\d+) more tables omitted", cut).group(1))
    assert len(cut.splitlines()) - 2 + omitted == len(schema.tables)  # note: blank + line
