"""Evaluate prediction files on a BIRD split: EX, soft-F1 and (optionally) R-VES.

Scoring follows the official BIRD mini-dev scripts (see `bird.compare`): a prediction
scores EX 1 iff the set of its rows equals the set of the gold rows, and 0 on any error or
timeout. What differs is only how the work is done: gold results come from a `GoldCache`
(each gold query runs once however many prediction files are scored), identical
predicted queries in one batch run once, and all execution goes through
`bird.executor.execute_many` (sandboxed, read-only, time-limited, a process pool).

A gold query that fails is a data problem, not the model's: the question scores 0 with
error "gold_failed" and the summary lists it so it can be fixed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table

from bird.compare import (
    OFFICIAL_VES_ITERATIONS,
    ex_match,
    rves_score,
    soft_f1,
    ves_reward,
    ves_time_ratio,
)
from bird.console import PhaseProgress
from bird.data import DIFFICULTIES, BirdSplit, Difficulty
from bird.executor import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    ExecutionRequest,
    ExecutionResult,
    execute_many,
)
from bird.gold_cache import ExecutionLimits, GoldCache, GoldCacheStats
from bird.predictions import PairedQuestion, Pairing, pair_predictions, read_prediction_file

TOTAL = "total"
SUMMARY_FILE = "summary.json"
PER_QUESTION_FILE = "per_question.jsonl"
METRIC_LABELS = {"ex": "EX", "soft_f1": "Soft-F1", "rves": "R-VES"}

# Errors that are not the executor's: the pairing's, the data's.
GOLD_FAILED = "gold_failed"
MISSING_DATABASE = "missing_database"


class EvaluationOptions(BaseModel):
    """How to execute and what to score."""

    model_config = ConfigDict(frozen=True)

    timeout: float = Field(30.0, gt=0, description="seconds per query execution")
    workers: int = Field(1, ge=1, description="executor processes")
    allow_missing: bool = False
    ves: bool = False
    ves_iterations: int = Field(OFFICIAL_VES_ITERATIONS, ge=1)
    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES

    @property
    def limits(self) -> ExecutionLimits:
        return ExecutionLimits(
            timeout=self.timeout, max_rows=self.max_rows, max_bytes=self.max_bytes
        )


class QuestionResult(BaseModel):
    """One line of per_question.jsonl."""

    question_id: int
    db_id: str
    difficulty: Difficulty | None
    ex: int
    soft_f1: float
    rves_reward: float | None = None
    error: str | None = None
    error_message: str | None = None
    timed_out: bool = False
    predicted_sql: str | None = None
    predicted_elapsed: float | None = None
    gold_elapsed: float | None = None


class EvaluationSummary(BaseModel):
    """summary.json: metrics in percent (0-100) by difficulty level, and counts."""

    split: str
    data_dir: str
    predictions: str
    prediction_format: str
    metrics: dict[str, dict[str, float]]
    counts: dict[str, int]
    errors: dict[str, int]
    gold_failed_question_ids: list[int]
    ignored_extra_predictions: list[str]
    options: EvaluationOptions
    gold_cache: GoldCacheStats


class EvaluationReport(BaseModel):
    summary: EvaluationSummary
    questions: list[QuestionResult]


def _phase(
    progress: PhaseProgress, description: str, total: int
) -> Callable[[int, ExecutionResult], None]:
    """An executor `on_result` callback that advances one progress phase and counts errors."""
    done = errors = 0

    def advance(_: int, result: ExecutionResult) -> None:
        nonlocal done, errors
        done += 1
        errors += 0 if result.ok else 1
        progress(description, done, total, f"errors: {errors}")

    return advance


def levels_of(split: BirdSplit) -> list[str]:
    """Difficulty levels reported for a split: those present plus total, or total only."""
    if not split.has_difficulty:
        return [TOTAL]
    present = {example.difficulty for example in split.examples}
    return [level for level in DIFFICULTIES if level in present] + [TOTAL]


def _score(
    paired: PairedQuestion,
    database_present: bool,
    gold: ExecutionResult | None,
    predicted: ExecutionResult | None,
) -> QuestionResult:
    example = paired.example
    base = {
        "question_id": example.question_id,
        "db_id": example.db_id,
        "difficulty": example.difficulty,
        "predicted_sql": paired.sql,
        "gold_elapsed": gold.elapsed if gold is not None else None,
        "predicted_elapsed": predicted.elapsed if predicted is not None else None,
    }
    wrong = {"ex": 0, "soft_f1": 0.0}
    if paired.problem == "missing_prediction":
        return QuestionResult(**base, **wrong, error=paired.problem)
    if paired.problem == "db_mismatch":
        message = f"predicted db_id {paired.predicted_db_id!r}, question is on {example.db_id!r}"
        return QuestionResult(**base, **wrong, error=paired.problem, error_message=message)
    if not database_present:
        return QuestionResult(**base, **wrong, error=MISSING_DATABASE)
    if gold is None or not gold.ok:
        message = gold.error if gold is not None else None
        return QuestionResult(**base, **wrong, error=GOLD_FAILED, error_message=message)
    if predicted is None or not predicted.ok:
        return QuestionResult(
            **base,
            **wrong,
            error=predicted.error_kind if predicted is not None else "not_executed",
            error_message=predicted.error if predicted is not None else None,
            timed_out=predicted.timed_out if predicted is not None else False,
        )
    return QuestionResult(
        **base,
        ex=int(ex_match(predicted.rows, gold.rows)),
        soft_f1=soft_f1(predicted.rows, gold.rows),
    )


def _ves_rewards(
    split: BirdSplit,
    scored: list[tuple[PairedQuestion, QuestionResult]],
    options: EvaluationOptions,
    progress: PhaseProgress,
) -> list[float]:
    """R-VES reward per question: timed repeated runs for EX-correct pairs, else 0.

    As evaluation_ves.py: each correct pair runs predicted then gold `ves_iterations`
    times; any failure during timing scores 0.
    """
    correct = [(paired, result) for paired, result in scored if result.ex == 1]
    requests: list[ExecutionRequest] = []
    for paired, _ in correct:
        db_path = split.database_path(paired.example.db_id)
        for _ in range(options.ves_iterations):
            requests.append(ExecutionRequest(db_path=db_path, sql=paired.sql or ""))
            requests.append(ExecutionRequest(db_path=db_path, sql=paired.example.sql))
    timings = execute_many(
        requests,
        timeout=options.timeout,
        workers=options.workers,
        max_rows=options.max_rows,
        max_bytes=options.max_bytes,
        on_result=_phase(progress, "R-VES timing", len(requests)),
    )
    reward_by_question: dict[int, float] = {}
    runs = 2 * options.ves_iterations
    for position, (paired, _) in enumerate(correct):
        chunk = timings[position * runs : (position + 1) * runs]
        if not all(run.ok for run in chunk):
            reward_by_question[paired.example.question_id] = 0.0
            continue
        ratio = ves_time_ratio(
            [run.elapsed for run in chunk[0::2]], [run.elapsed for run in chunk[1::2]]
        )
        reward_by_question[paired.example.question_id] = ves_reward(ratio)
    return [reward_by_question.get(result.question_id, 0.0) for _, result in scored]


def summarize(
    split: BirdSplit,
    questions: Sequence[QuestionResult],
    *,
    predictions: Path,
    prediction_format: str,
    pairing: Pairing,
    options: EvaluationOptions,
    gold_cache: GoldCacheStats,
) -> EvaluationSummary:
    """Per-level metrics in percent and counts, as the official `compute_*_by_diff`."""
    levels = levels_of(split)
    members = {
        level: [q for q in questions if level == TOTAL or q.difficulty == level] for level in levels
    }
    metric_values: dict[str, Callable[[list[QuestionResult]], float]] = {
        "ex": lambda group: sum(q.ex for q in group) / len(group) * 100,
        "soft_f1": lambda group: sum(q.soft_f1 for q in group) / len(group) * 100,
    }
    if options.ves:
        metric_values["rves"] = lambda group: rves_score([q.rves_reward or 0.0 for q in group])
    metrics = {
        name: {level: (compute(members[level]) if members[level] else 0.0) for level in levels}
        for name, compute in metric_values.items()
    }
    return EvaluationSummary(
        split=split.name,
        data_dir=str(split.root),
        predictions=str(predictions),
        prediction_format=prediction_format,
        metrics=metrics,
        counts={level: len(members[level]) for level in levels},
        errors=dict(Counter(q.error for q in questions if q.error is not None)),
        gold_failed_question_ids=[q.question_id for q in questions if q.error == GOLD_FAILED],
        ignored_extra_predictions=pairing.ignored_extra,
        options=options,
        gold_cache=gold_cache,
    )


def evaluate_many(
    split: BirdSplit,
    prediction_paths: Sequence[Path | str],
    *,
    options: EvaluationOptions | None = None,
    gold_cache: GoldCache | None = None,
    show_progress: bool = False,
) -> list[EvaluationReport]:
    """Score several prediction files on one split, executing each gold query once.

    Every file is read and paired before anything runs, so a bad file fails fast.
    Identical (database, predicted SQL) pairs across the files run once.
    """
    options = options or EvaluationOptions()
    gold_cache = gold_cache if gold_cache is not None else GoldCache()
    files = [read_prediction_file(path) for path in prediction_paths]
    pairings = [
        pair_predictions(split, file, allow_missing=options.allow_missing) for file in files
    ]
    present = {db_id: split.has_database(db_id) for db_id in split.db_ids()}
    gold_examples = [example for example in split.examples if present[example.db_id]]
    with PhaseProgress(enabled=show_progress) as progress:
        gold_results = gold_cache.results(
            [
                ExecutionRequest(db_path=split.database_path(example.db_id), sql=example.sql)
                for example in gold_examples
            ],
            limits=options.limits,
            workers=options.workers,
            on_result=_phase(progress, "gold queries", len(gold_examples)),
        )
        gold_by_question = {
            example.question_id: result
            for example, result in zip(gold_examples, gold_results, strict=True)
        }

        distinct_requests: dict[tuple[str, str], int] = {}
        for pairing in pairings:
            for paired in pairing.questions:
                gold = gold_by_question.get(paired.example.question_id)
                if paired.problem is None and gold is not None and gold.ok:
                    request_key = (paired.example.db_id, paired.sql or "")
                    distinct_requests.setdefault(request_key, len(distinct_requests))
        ordered_requests = sorted(distinct_requests, key=distinct_requests.__getitem__)
        predicted_results = execute_many(
            [
                ExecutionRequest(db_path=split.database_path(db_id), sql=sql)
                for db_id, sql in ordered_requests
            ],
            timeout=options.timeout,
            workers=options.workers,
            max_rows=options.max_rows,
            max_bytes=options.max_bytes,
            on_result=_phase(progress, "predicted queries", len(ordered_requests)),
        )

        reports = []
        for file, pairing in zip(files, pairings, strict=True):
            scored: list[tuple[PairedQuestion, QuestionResult]] = []
            for paired in pairing.questions:
                example = paired.example
                position = distinct_requests.get((example.db_id, paired.sql or ""))
                predicted = (
                    predicted_results[position]
                    if position is not None and paired.problem is None
                    else None
                )
                gold = gold_by_question.get(example.question_id)
                result = _score(paired, present[example.db_id], gold, predicted)
                scored.append((paired, result))
            if options.ves:
                rewards = _ves_rewards(split, scored, options, progress)
                for (_, result), reward in zip(scored, rewards, strict=True):
                    result.rves_reward = reward
            questions = [result for _, result in scored]
            summary = summarize(
                split,
                questions,
                predictions=file.path,
                prediction_format=file.format,
                pairing=pairing,
                options=options,
                gold_cache=gold_cache.stats(),
            )
            reports.append(EvaluationReport(summary=summary, questions=questions))
    return reports


def evaluate(
    split: BirdSplit,
    prediction_path: Path | str,
    *,
    options: EvaluationOptions | None = None,
    gold_cache: GoldCache | None = None,
    show_progress: bool = False,
) -> EvaluationReport:
    """Score one prediction file on `split` (see `evaluate_many`)."""
    return evaluate_many(
        split,
        [prediction_path],
        options=options,
        gold_cache=gold_cache,
        show_progress=show_progress,
    )[0]


def write_report(report: EvaluationReport, output_dir: Path | str) -> tuple[Path, Path]:
    """Write summary.json and per_question.jsonl (split order) into `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary_path = output_dir / SUMMARY_FILE
    summary_path.write_text(report.summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    per_question_path = output_dir / PER_QUESTION_FILE
    with per_question_path.open("w", encoding="utf-8") as handle:
        for question in report.questions:
            handle.write(question.model_dump_json() + "\n")
    return summary_path, per_question_path


def read_per_question(path: Path | str) -> list[QuestionResult]:
    """Read a per_question.jsonl written by `write_report`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [QuestionResult.model_validate(json.loads(line)) for line in lines if line.strip()]


def summary_table(summary: EvaluationSummary) -> Table:
    """Counts and metrics by difficulty level, as the official `print_data` lays them out."""
    levels = list(summary.counts)
    table = Table(title=f"{summary.split}: {summary.predictions}")
    table.add_column("")
    for level in levels:
        table.add_column(level, justify="right")
    table.add_row("count", *(str(summary.counts[level]) for level in levels))
    for name, by_level in summary.metrics.items():
        label = METRIC_LABELS.get(name, name)
        table.add_row(label, *(f"{by_level[level]:.2f}" for level in levels))
    return table
