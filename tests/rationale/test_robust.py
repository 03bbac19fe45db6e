"""Robust equivalence on perturbed copies of the real superhero database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bird.compare import ex_match
from bird.executor import execute_sql
from rationale.chain.format import Rationale, RationaleStep
from rationale.validation.checks import validate_rationale
from rationale.validation.robust import RobustConfig, perturbed_copy, robust_equal

SAURON_PUBLISHER = (
    "SELECT T2.publisher_name FROM superhero AS T1 INNER JOIN publisher AS T2 "
    "ON T1.publisher_id = T2.id WHERE T1.superhero_name = 'Sauron'"
)


@pytest.fixture()
def config(tmp_path: Path) -> RobustConfig:
    return RobustConfig(cache_dir=tmp_path / "copies")


def count(db: Path, table: str) -> int:
    result = execute_sql(db, f"SELECT COUNT(*) FROM {table}")
    assert result.ok
    return result.rows[0][0]


def test_subset_copy_keeps_part_of_every_table_and_leaves_the_original(
    superhero_db: Path, config: RobustConfig
) -> None:
    before = superhero_db.stat().st_mtime_ns
    copy = perturbed_copy(superhero_db, "subset", 1, config)
    assert copy.parent == config.cache_dir
    heroes, kept = count(superhero_db, "superhero"), count(copy, "superhero")
    assert 0.35 * heroes < kept < 0.65 * heroes
    assert superhero_db.stat().st_mtime_ns == before


def test_copies_are_deterministic_and_seed_dependent(
    superhero_db: Path, config: RobustConfig, tmp_path: Path
) -> None:
    first = perturbed_copy(superhero_db, "subset", 1, config)
    rebuilt = perturbed_copy(
        superhero_db, "subset", 1, config.model_copy(update={"cache_dir": tmp_path / "other"})
    )
    other_seed = perturbed_copy(superhero_db, "subset", 2, config)
    ids = "SELECT id FROM superhero"
    assert execute_sql(first, ids).rows == execute_sql(rebuilt, ids).rows
    assert execute_sql(first, ids).rows != execute_sql(other_seed, ids).rows


def test_shuffle_copy_adds_rows_built_from_existing_values(
    superhero_db: Path, config: RobustConfig
) -> None:
    copy = perturbed_copy(superhero_db, "shuffle", 1, config)
    assert count(copy, "superhero") > count(superhero_db, "superhero")
    # every publisher_id of a synthetic hero is one that a real hero has
    real_ids = set(execute_sql(superhero_db, "SELECT publisher_id FROM superhero").rows)
    assert set(execute_sql(copy, "SELECT publisher_id FROM superhero").rows) <= real_ids


def test_a_cached_copy_is_reused(superhero_db: Path, config: RobustConfig) -> None:
    copy = perturbed_copy(superhero_db, "subset", 3, config)
    with sqlite3.connect(copy) as connection:  # our own cache file, not a BIRD database
        connection.execute("CREATE TABLE marker (x)")
    assert perturbed_copy(superhero_db, "subset", 3, config) == copy
    assert execute_sql(copy, "SELECT COUNT(*) FROM marker").ok


def test_gold_is_robustly_equal_to_itself(superhero_db: Path, config: RobustConfig) -> None:
    verdict = robust_equal(superhero_db, SAURON_PUBLISHER, SAURON_PUBLISHER, config=config)
    assert verdict.equal
    assert verdict.copies == len(config.perturbations) * len(config.seeds)


def test_a_coincidentally_equal_candidate_is_rejected(
    superhero_db: Path, config: RobustConfig
) -> None:
    # Looks the publisher up by the id Sauron happens to have: EX-equal on the real db.
    publisher_id = execute_sql(
        superhero_db, "SELECT publisher_id FROM superhero WHERE superhero_name = 'Sauron'"
    ).rows[0][0]
    hard_coded = f"SELECT publisher_name FROM publisher WHERE id = {publisher_id}"
    assert ex_match(
        execute_sql(superhero_db, hard_coded).rows, execute_sql(superhero_db, SAURON_PUBLISHER).rows
    )
    verdict = robust_equal(superhero_db, hard_coded, SAURON_PUBLISHER, config=config)
    assert not verdict.equal
    assert "differs" in verdict.detail


def test_validator_reports_robust_equal(superhero_db: Path, config: RobustConfig) -> None:
    sauron = RationaleStep(
        name="step1",
        title="Sauron",
        explanation="",
        sql="SELECT publisher_id FROM superhero WHERE superhero_name = 'Sauron'",
    )
    faithful = Rationale(
        steps=[sauron],
        final_sql="SELECT T2.publisher_name FROM step1 AS T1 "
        "INNER JOIN publisher AS T2 ON T1.publisher_id = T2.id",
    )
    report = validate_rationale(
        faithful, db_path=superhero_db, gold_sql=SAURON_PUBLISHER, robust=config
    )
    assert report.valid and report.outcome("robust_equal").passed

    lucky_step = RationaleStep(name="step1", title="", explanation="", sql="SELECT 12 AS id")
    lucky = Rationale(
        steps=[lucky_step],
        final_sql="SELECT publisher_name FROM publisher WHERE id IN (SELECT id FROM step1)",
    )
    lucky_report = validate_rationale(
        lucky, db_path=superhero_db, gold_sql=SAURON_PUBLISHER, robust=config
    )
    if not lucky_report.outcome("ex_equal").passed:
        pytest.fail(f"Sauron's publisher id changed: {lucky_report.outcome('ex_equal').detail}")
    assert lucky_report.failed_checks() == ["robust_equal"]


def test_permute_copy_keeps_each_column_but_recombines_rows(
    superhero_db: Path, config: RobustConfig
) -> None:
    copy = perturbed_copy(superhero_db, "permute", 1, config)
    for column in ("superhero_name", "height_cm", "publisher_id"):
        query = f"SELECT {column} FROM superhero"
        assert sorted(map(repr, execute_sql(copy, query).rows)) == sorted(
            map(repr, execute_sql(superhero_db, query).rows)
        )
    pairs = "SELECT superhero_name, height_cm FROM superhero"
    assert set(execute_sql(copy, pairs).rows) != set(execute_sql(superhero_db, pairs).rows)


def test_permute_rejects_a_dropped_condition_that_no_real_row_violates(
    superhero_db: Path, config: RobustConfig
) -> None:
    height = execute_sql(
        superhero_db, "SELECT height_cm FROM superhero WHERE superhero_name = 'Sauron'"
    ).rows[0][0]
    gold = f"{SAURON_PUBLISHER} AND T1.height_cm = {height}"
    assert ex_match(
        execute_sql(superhero_db, SAURON_PUBLISHER).rows, execute_sql(superhero_db, gold).rows
    )
    permute_only = config.model_copy(update={"perturbations": ("permute",)})
    verdict = robust_equal(superhero_db, SAURON_PUBLISHER, gold, config=permute_only)
    assert not verdict.equal
    assert "permute" in verdict.detail


def test_copies_without_a_cache_folder_are_removed(superhero_db: Path) -> None:
    import tempfile

    from rationale.validation.robust import robust_equal_many

    def leftovers() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("sql-rationale-robust*"))

    before = leftovers()
    gold = "SELECT COUNT(*) FROM superhero"
    [verdict] = robust_equal_many([(superhero_db, gold, gold)])
    assert verdict.equal and verdict.copies > 0
    assert leftovers() == before


def test_copies_of_odd_tables(tmp_path: Path, config: RobustConfig) -> None:
    """Names that need quotes and a rowid alias of another name are perturbed; a WITHOUT
    ROWID table is left as it is; the source file is not touched."""
    source = tmp_path / "odd.sqlite"
    with sqlite3.connect(source) as connection:
        connection.executescript(
            'CREATE TABLE "Free Meal" ("School ID" INTEGER PRIMARY KEY, "a""b" TEXT, n REAL);'
            "CREATE TABLE keyed (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;"
        )
        connection.executemany(
            'INSERT INTO "Free Meal" ("a""b", n) VALUES (?, ?)',
            [(f"name {i % 7}", i / 4) for i in range(40)],
        )
        connection.executemany("INSERT INTO keyed VALUES (?, ?)", [("x", 1), ("y", 2)])
    before = source.read_bytes()
    rows = 'SELECT "School ID", "a""b", n FROM "Free Meal"'
    original = execute_sql(source, rows).rows
    keyed = execute_sql(source, "SELECT * FROM keyed").rows

    subset = execute_sql(perturbed_copy(source, "subset", 1, config), rows).rows
    assert 0 < len(subset) < len(original) and set(subset) <= set(original)

    shuffled_copy = perturbed_copy(source, "shuffle", 1, config)
    shuffled = execute_sql(shuffled_copy, rows).rows
    added = shuffled[len(original) :]
    assert shuffled[: len(original)] == original and added
    assert [row[0] for row in added] == list(range(41, 41 + len(added)))  # numbered by SQLite
    names, numbers = {row[1] for row in original}, {row[2] for row in original}
    assert all(row[1] in names and row[2] in numbers for row in added)  # existing values

    permuted = execute_sql(perturbed_copy(source, "permute", 1, config), rows).rows
    for column in range(3):
        assert sorted(row[column] for row in permuted) == sorted(row[column] for row in original)
    assert permuted != original

    for copy in config.cache_dir.glob("*.sqlite"):
        assert execute_sql(copy, "SELECT * FROM keyed").rows == keyed
    assert source.read_bytes() == before
