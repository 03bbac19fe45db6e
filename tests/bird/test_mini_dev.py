"""The mini-dev release scored as users get it: mini_dev_sqlite.json beside dev_databases/,
question_ids 137 and 138 held twice (tests/bird/conftest.py builds it from real dev data)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bird.cli import app
from bird.data import load_split
from bird.evaluation import EvaluationOptions, evaluate
from bird.predictions import OFFICIAL_SEPARATOR


def official_file(path: Path, records: list[dict], wrong: dict[int, str] | None = None) -> Path:
    wrong = wrong or {}
    path.write_text(json.dumps({
        str(i): f"{wrong.get(i, r['SQL'])}{OFFICIAL_SEPARATOR}{r['db_id']}"
        for i, r in enumerate(records)
    }))  # fmt: skip
    return path


def test_the_release_folder_is_scored_by_position(mini_dev_dir: Path, tmp_path: Path) -> None:
    records = json.loads((mini_dev_dir / "mini_dev_sqlite.json").read_text())
    # question_id 137 is held by positions 3 and 17: only the second one is answered wrong
    path = official_file(tmp_path / "predict_mini_dev.json", records, {17: "SELECT 1"})
    result = CliRunner().invoke(
        app, ["evaluate", "--data", str(mini_dev_dir), "--predictions", str(path),
              "--no-disk-cache"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "MySQL and PostgreSQL versions of mini-dev are not executed here" in result.stderr
    assert "question_id 137 appears at records 3 and 17" in result.stderr
    per_question = tmp_path / "predict_mini_dev_eval" / "per_question.jsonl"
    lines = [json.loads(line) for line in per_question.read_text().splitlines()]
    held_twice = [(q["position"], q["ex"]) for q in lines if q["question_id"] == 137]
    assert held_twice == [(3, 1), (17, 0)]
    assert sum(q["ex"] for q in lines) == len(records) - 1


def test_gold_scores_100_and_the_split_is_as_released(mini_dev_dir: Path, tmp_path: Path) -> None:
    split = load_split(mini_dev_dir)
    records = json.loads((mini_dev_dir / "mini_dev_sqlite.json").read_text())
    gold_lines = (mini_dev_dir / "mini_dev_sqlite_gold.sql").read_text().splitlines()
    assert [f"{e.sql}\t{e.db_id}" for e in split.examples] == gold_lines
    report = evaluate(split, official_file(tmp_path / "gold.json", records),
                      options=EvaluationOptions(timeout=10))  # fmt: skip
    assert report.summary.metrics["ex"]["total"] == 100.0
    assert report.summary.gold_ceiling["total"] == 100.0
    assert any("not executed here" in warning for warning in report.summary.warnings)
