"""Limits counted in SQLite VM steps: the same count on every run and in every process, so
the same predictions score the same on any machine; which questions hit a limit; the gold
ceiling under the limits used. Real dev data and real worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bird.cli import app
from bird.data import BirdSplit
from bird.evaluation import EvaluationOptions, evaluate
from bird.executor import ExecutionPool, ExecutionRequest, execute_many, execute_sql
from bird.gold_cache import GoldCache
from bird.sandbox import PROGRESS_INTERVAL

# A correlated subquery over every hero: a few million VM steps on superhero.
HEAVY = (
    "SELECT superhero_name FROM superhero AS s WHERE EXISTS (SELECT 1 FROM hero_power AS h "
    "WHERE h.hero_id = s.id AND h.power_id > 100)"
)
RUNAWAY = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r"


def test_steps_are_the_same_in_every_process_and_a_limit_stops_there(superhero_db: Path) -> None:
    here = [execute_sql(superhero_db, HEAVY, timeout=60) for _ in range(2)]
    request = ExecutionRequest(db_path=superhero_db, sql=HEAVY)
    with ExecutionPool(2) as pool:
        in_workers = pool.execute_many([request] * 4, timeout=60)
    counts = {result.steps for result in [*here, *in_workers]}
    assert len(counts) == 1 and all(result.ok for result in [*here, *in_workers])
    (steps,) = counts
    assert steps and steps > 10 * PROGRESS_INTERVAL

    just_enough = execute_many([request], max_steps=steps, timeout=60)[0]
    assert just_enough.ok and just_enough.rows == here[0].rows
    stopped = execute_many([request] * 2, max_steps=steps // 2, timeout=60, workers=2)
    assert {(r.error_kind, r.steps, r.timed_out) for r in stopped} == {
        ("step_limit", steps // 2 // PROGRESS_INTERVAL * PROGRESS_INTERVAL + PROGRESS_INTERVAL,
         False)
    }  # fmt: skip
    assert "SQLite VM steps" in (stopped[0].error or "")
    with pytest.raises(ValueError, match="max_steps"):
        execute_sql(superhero_db, "SELECT 1", max_steps=10)


@pytest.fixture(scope="module")
def gold_file(dev_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = json.loads((dev_dir / "dev.json").read_text())
    path = tmp_path_factory.mktemp("limits") / "gold.jsonl"
    path.write_text("".join(
        json.dumps({"question_id": r["question_id"], "sql": r["SQL"]}) + "\n" for r in records
    ))  # fmt: skip
    return path


def test_gold_ceiling_and_limit_hits_under_a_step_limit(
    dev: BirdSplit, gold_file: Path, tmp_path: Path
) -> None:
    cache = GoldCache()
    free = evaluate(dev, gold_file, options=EvaluationOptions(), gold_cache=cache)
    steps = sorted({q.gold_steps or 0 for q in free.questions})
    limit = steps[-3]  # the gold queries of the two largest counts go over it
    over = sorted(q.question_id for q in free.questions if (q.gold_steps or 0) > limit)
    assert over

    # A light question answered by a runaway query: the prediction hits the limit.
    light = next(q for q in free.questions if (q.gold_steps or 0) < limit)
    runaway = json.dumps({"question_id": light.question_id, "sql": RUNAWAY})
    lines = [
        runaway if json.loads(line)["question_id"] == light.question_id else line
        for line in gold_file.read_text().splitlines()
    ]
    predictions = tmp_path / "runaway.jsonl"
    predictions.write_text("\n".join(lines) + "\n")
    runs = [
        evaluate(dev, predictions, options=EvaluationOptions(max_steps=limit, workers=workers))
        for workers in (1, 2)
    ]
    for report in runs:
        summary = report.summary
        assert summary.gold_limit_hits == {"step_limit": over}
        assert summary.limit_hits == {"step_limit": [light.question_id]}
        expected = (len(dev.examples) - len(over)) / len(dev.examples) * 100
        assert summary.gold_ceiling["total"] == pytest.approx(expected)
        assert summary.metrics["ex"]["total"] == pytest.approx(expected - 100 / len(dev.examples))
    # the same scores whatever the process layout
    assert [
        q.model_dump(exclude={"predicted_elapsed", "gold_elapsed"}) for q in runs[0].questions
    ] == [q.model_dump(exclude={"predicted_elapsed", "gold_elapsed"}) for q in runs[1].questions]

    result = CliRunner().invoke(app, [
        "evaluate", "--data", str(dev.root), "--predictions", str(predictions), "--no-disk-cache",
        "--max-steps", str(limit), "--output", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"1 predictions hit step_limit: question_id {light.question_id}" in result.stdout
    ceiling = f"gold ceiling {expected:.2f}% under these limits (timeout 30 s, {limit:,} VM steps)"
    assert ceiling in result.stdout.replace("\n", "")
    assert f"{len(over)} gold queries hit step_limit" in result.stdout.replace("\n", "")
