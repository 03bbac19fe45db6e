"""Score one question from executed results: BIRD's rule or Spider's, and what went wrong.

Pure functions over `ExecutionResult`s, so the order and place of execution (worker
processes, a cache) cannot change a score. BIRD (`bird.compare`): EX 1 iff the set of
predicted rows equals the set of gold rows, soft-F1 as mini-dev's script. Spider
(`bird.spider`): EX 1 iff the results are equal as Spider defines it on every database of
the test suite; Spider has no soft-F1.

Anything that stops a comparison scores 0 and says why in `error`: the pairing's problem, a
missing database, a gold query that failed (a data problem, not the model's: "gold_failed",
with the gold's own error kind), or the prediction's execution error kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from bird.compare import ex_match, soft_f1
from bird.data import Difficulty
from bird.executor import ExecutionResult
from bird.predictions import PairedQuestion
from bird.spider import denotation_equal

GOLD_FAILED = "gold_failed"
MISSING_DATABASE = "missing_database"
NOT_EXECUTED = "not_executed"


class QuestionResult(BaseModel):
    """One line of per_question.jsonl.

    `position` is the question's index in the split's json (what tells apart a question_id
    the split holds twice); `steps` and `gold_steps` are SQLite VM steps (see
    `bird.executor.ExecutionResult.steps`); `soft_f1` is None for Spider.
    """

    question_id: int
    db_id: str
    difficulty: Difficulty | None
    ex: int
    soft_f1: float | None
    rves_reward: float | None = None
    error: str | None = None
    error_message: str | None = None
    timed_out: bool = False
    predicted_sql: str | None = None
    predicted_elapsed: float | None = None
    gold_elapsed: float | None = None
    position: int | None = None
    steps: int | None = None
    gold_steps: int | None = None
    gold_error: str | None = None


def _question(**fields: Any) -> QuestionResult:
    """A QuestionResult from fields built here (already of the right types): a sweep scores
    thousands, and validating each again would cost more than comparing its rows."""
    return QuestionResult.model_construct(**fields)


def _total(results: Sequence[ExecutionResult], field: str) -> float | None:
    values = [getattr(result, field) for result in results]
    return None if any(value is None for value in values) else sum(values)


def score_question(
    paired: PairedQuestion,
    *,
    spider: bool,
    ordered: bool = False,
    database_present: bool,
    gold: Sequence[ExecutionResult],
    predicted: Sequence[ExecutionResult] | None,
) -> QuestionResult:
    """Score `paired` from its gold results and its predicted results, one per database
    (BIRD: one; Spider: one per database of the test suite). `predicted` is None when the
    prediction was not run (a pairing problem, or a gold failure that settles the score).
    `ordered`: Spider compares rows in order (the gold query sorts; `bird.spider`)."""
    example = paired.example
    predicted = predicted or []
    gold_elapsed = _total(gold, "elapsed") if gold else None
    base = {
        "question_id": example.question_id,
        "db_id": example.db_id,
        "difficulty": example.difficulty,
        "predicted_sql": paired.sql,
        "position": example.position if example.position is not None else paired.index,
        "gold_elapsed": gold_elapsed,
        "gold_steps": _total(gold, "steps") if gold else None,
        "predicted_elapsed": _total(predicted, "elapsed") if predicted else None,
        "steps": _total(predicted, "steps") if predicted else None,
    }
    wrong = {"ex": 0, "soft_f1": None if spider else 0.0}
    if paired.problem == "missing_prediction":
        return _question(**base, **wrong, error=paired.problem)
    if paired.problem == "db_mismatch":
        message = f"predicted db_id {paired.predicted_db_id!r}, question is on {example.db_id!r}"
        return _question(**base, **wrong, error=paired.problem, error_message=message)
    if paired.problem == "null_prediction":
        message = f"{paired.location}: the value is not an SQL string"
        return _question(**base, **wrong, error=paired.problem, error_message=message)
    if not database_present:
        return _question(**base, **wrong, error=MISSING_DATABASE)
    failed_gold = next((result for result in gold if not result.ok), None)
    if not gold or failed_gold is not None:
        return _question(
            **base,
            **wrong,
            error=GOLD_FAILED,
            error_message=failed_gold.error if failed_gold is not None else None,
            gold_error=failed_gold.error_kind if failed_gold is not None else None,
        )
    failed = next((result for result in predicted if not result.ok), None)
    if len(predicted) != len(gold) or failed is not None:
        return _question(
            **base,
            **wrong,
            error=failed.error_kind if failed is not None else NOT_EXECUTED,
            error_message=failed.error if failed is not None else None,
            timed_out=failed.timed_out if failed is not None else False,
        )
    if spider:
        equal = all(
            denotation_equal(g.rows, p.rows, ordered=ordered)
            for g, p in zip(gold, predicted, strict=True)
        )
        return _question(**base, ex=int(equal), soft_f1=None)
    (gold_result,), (predicted_result,) = gold, predicted
    return _question(
        **base,
        ex=int(ex_match(predicted_result.rows, gold_result.rows)),
        soft_f1=soft_f1(predicted_result.rows, gold_result.rows),
    )
