"""The BIRD tests hold for a layout larger than the shipped subset, not only for its counts.

Users point BIRD_ROOT at the full release (11 dev databases, 1534 questions; 69 train
databases). A layout merged from BIRD_ROOT's own splits (`build_merged_layout`, in
tests/conftest.py) has more databases and questions than BIRD_ROOT; the whole suite runs
on one with `pytest --bird-layout=merged`, and here, in every run, the layout is checked
and a representative part of the BIRD tests runs on it in this process.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from bird.data import load_split

REPO = Path(__file__).resolve().parents[2]
# Loading, descriptions, evaluation against plain sqlite3 (counts, agreement with the
# official rule, the gold cache, the CLI's table) and `bird evaluate` on odd files.
CHECKS = (
    "tests/bird/test_data.py",
    "tests/bird/test_descriptions.py",
    "tests/bird/test_evaluation.py",
    "tests/bird/test_evaluate_cli.py::test_null_predictions_score_as_wrong_and_the_file_is_scored",
)


def _tables(db_path: Path) -> set[str]:
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        }
    finally:
        connection.close()


def test_the_merged_layout_is_larger_and_well_formed(bird_root: Path, merged_bird_root: Path):
    for name in ("dev", "train"):
        source, merged = load_split(bird_root / name), load_split(merged_bird_root / name)
        raw = json.loads((merged_bird_root / name / f"{name}.json").read_text(encoding="utf-8"))
        assert len(merged.examples) == len(raw) > len(source.examples), name
        assert len(merged.executable_examples()) > len(source.executable_examples()), name
        present = {db_id for db_id in merged.db_ids() if merged.has_database(db_id)}
        assert len(present) > len({d for d in source.db_ids() if source.has_database(d)}), name
        # unique question_ids; every question of the source split is there unchanged
        assert not merged.duplicate_question_ids(), name
        by_id = {e.question_id: e for e in merged.examples}
        for example in source.examples:
            assert by_id[example.question_id].model_dump(exclude={"position"}) == (
                example.model_dump(exclude={"position"})
            ), (name, example.question_id)
        # the databases are the source's files, linked, and each answers its questions' SQL
        for db_id in present:
            assert merged.database_path(db_id).is_symlink(), (name, db_id)
            first = next(e for e in merged.examples if e.db_id == db_id)
            assert _tables(merged.database_path(db_id)), (name, db_id)
            connection = sqlite3.connect(f"file:{merged.database_path(db_id)}?mode=ro", uri=True)
            connection.execute(first.sql).fetchall()  # raises if the schema were another's
            connection.close()

    dev, train = load_split(merged_bird_root / "dev"), load_split(merged_bird_root / "train")
    assert not set(dev.db_ids()) & set(train.db_ids())  # as in the release
    assert dev.missing_databases() == {} and dev.has_difficulty
    assert None not in Counter(e.difficulty for e in dev.examples)
    gold = (merged_bird_root / "dev" / "dev_gold.sql").read_text(encoding="utf-8").splitlines()
    assert gold == [f"{e.sql}\t{e.db_id}" for e in dev.examples]
    tables = json.loads((merged_bird_root / "dev" / "dev_tables.json").read_text())
    assert {entry["db_id"] for entry in tables} == set(dev.db_ids())
    for entry in tables:
        assert set(entry["table_names_original"]) == _tables(dev.database_path(entry["db_id"]))


def test_bird_checks_pass_on_the_merged_layout(
    merged_bird_root: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIRD_ROOT", str(merged_bird_root))
    monkeypatch.setenv("BIRD_REQUIRED", "1")  # missing data fails, never skips
    paths = [str(REPO / check) for check in CHECKS]
    result = pytester.runpytest_inprocess(*paths, "-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 0, result.stdout.str()[-3000:]
    assert set(outcomes) <= {"passed", "warnings"}, result.stdout.str()[-5000:]
    assert result.ret == 0
