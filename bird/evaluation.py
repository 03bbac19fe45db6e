"""Evaluate prediction files on a split: EX, soft-F1 and (optionally) R-VES, or Spider's EX.

Scoring follows the official scripts (`bird.scoring`, `bird.compare`, `bird.spider`): for
BIRD a prediction scores EX 1 iff the set of its rows equals the set of the gold rows, and 0
on any error or limit hit. What differs from them is how the work is done, so that a sweep
of many files costs little more than running each distinct query once:

- gold results come from a `GoldCache` (each gold query runs once however many files are
  scored, and not at all when the disk cache holds it);
- identical (database, predicted SQL) pairs across all files run once, and a prediction
  identical to its gold query reuses the gold result;
- with several workers, one pool serves every phase; it starts while the files are read,
  and the predicted queries are sent longest first (by their gold query's time), so the
  slow ones do not end up last on one worker.

Limits: the official scripts stop a query after 30 s of wall-clock time, so a score depends
on the machine and its load. `EvaluationOptions.max_steps` adds a limit counted in SQLite
virtual-machine steps, which is the same on every machine (for one SQLite version); the
summary lists the questions that hit any limit and the gold ceiling: the EX a perfect
prediction file would get under the limits used.

A gold query that fails is a data problem, not the model's: the question scores 0 with
error "gold_failed" and the summary lists it so it can be fixed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table

from bird.compare import OFFICIAL_VES_ITERATIONS, rves_score, ves_reward, ves_time_ratio
from bird.console import PhaseProgress
from bird.data import DIFFICULTIES, BirdSplit
from bird.executor import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    ExecutionPool,
    ExecutionRequest,
    ExecutionResult,
    execute_many,
)
from bird.gold_cache import ExecutionLimits, GoldCache, GoldCacheStats
from bird.layouts import Benchmark
from bird.predictions import (
    PairBy,
    PairedQuestion,
    Pairing,
    PredictionFile,
    pair_predictions,
    read_prediction_file,
)
from bird.sandbox import PROGRESS_INTERVAL
from bird.scoring import GOLD_FAILED, MISSING_DATABASE, QuestionResult, score_question
from bird.spider import order_matters, prepared, test_suite

__all__ = [
    "GOLD_FAILED",
    "MISSING_DATABASE",
    "PER_QUESTION_FILE",
    "SUMMARY_FILE",
    "EvaluationOptions",
    "EvaluationReport",
    "EvaluationSummary",
    "QuestionResult",
    "evaluate",
    "evaluate_many",
    "read_per_question",
    "summary_table",
    "write_report",
]

TOTAL = "total"
SUMMARY_FILE = "summary.json"
PER_QUESTION_FILE = "per_question.jsonl"
METRIC_LABELS = {"ex": "EX", "soft_f1": "Soft-F1", "rves": "R-VES"}
LIMIT_ERRORS = ("timeout", "step_limit", "too_large")
"""Error kinds that mean a limit stopped the query, not that the SQL was wrong."""


class EvaluationOptions(BaseModel):
    """How to execute, pair and score."""

    model_config = ConfigDict(frozen=True)

    timeout: float = Field(30.0, gt=0, description="seconds per query execution")
    workers: int = Field(1, ge=1, description="executor processes")
    allow_missing: bool = False
    ves: bool = False
    ves_iterations: int = Field(OFFICIAL_VES_ITERATIONS, ge=1)
    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_steps: int | None = Field(
        None, ge=PROGRESS_INTERVAL, description="SQLite VM steps per query (None: no limit)"
    )
    pair_by: PairBy = "auto"
    keep_distinct: bool = Field(False, description="Spider: keep DISTINCT (official flag)")

    @property
    def limits(self) -> ExecutionLimits:
        return self.limits_for("bird")

    def limits_for(self, benchmark: Benchmark) -> ExecutionLimits:
        """Spider's evaluation reads text that is not UTF-8 by dropping the bad bytes."""
        return ExecutionLimits(
            timeout=self.timeout,
            max_rows=self.max_rows,
            max_bytes=self.max_bytes,
            max_steps=self.max_steps,
            text="ignore" if benchmark == "spider" else "strict",
        )

    def limits_text(self) -> str:
        steps = f"{self.max_steps:,} VM steps" if self.max_steps else "no step limit"
        return f"timeout {self.timeout:g} s, {steps}"


class EvaluationSummary(BaseModel):
    """summary.json: metrics in percent (0-100) by difficulty level, and counts.

    `gold_ceiling`: EX in percent that the gold queries themselves get under the limits
    used (100 unless a gold query failed or hit a limit). `limit_hits` / `gold_limit_hits`:
    question_ids whose prediction / gold query hit a limit, by error kind. `timings`:
    seconds per phase of the whole `evaluate_many` call (shared by its files).
    """

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
    benchmark: Benchmark = "bird"
    paired_by: str = "position"
    warnings: list[str] = []
    gold_ceiling: dict[str, float] = {}
    limit_hits: dict[str, list[int]] = {}
    gold_limit_hits: dict[str, list[int]] = {}
    sqlite_version: str = sqlite3.sqlite_version
    test_suite_databases: dict[str, int] = {}
    timings: dict[str, float] = {}


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


@contextmanager
def _execution_pool(workers: int) -> Iterator[ExecutionPool | None]:
    """Worker processes for every phase, started at once (None: run in this process)."""
    if workers == 1:
        yield None
        return
    with ExecutionPool(workers) as pool:
        pool.start()
        yield pool


def _execute(
    requests: Sequence[ExecutionRequest],
    limits: ExecutionLimits,
    pool: ExecutionPool | None,
    on_result: Callable[[int, ExecutionResult], None],
    costs: Sequence[float] | None = None,
) -> list[ExecutionResult]:
    options = limits.executor_options()
    if pool is not None:
        return pool.execute_many(requests, on_result=on_result, costs=costs, **options)
    return execute_many(requests, on_result=on_result, **options)


class _Plan:
    """What runs where: each question's databases (one, or Spider's test suite) and the SQL
    as executed there."""

    def __init__(self, split: BirdSplit, options: EvaluationOptions) -> None:
        self.split = split
        self.spider = split.benchmark == "spider"
        self.keep_distinct = options.keep_distinct
        self.present = {db_id: split.has_database(db_id) for db_id in split.db_ids()}
        self.databases = {
            db_id: (
                test_suite(split.database_path(db_id))
                if self.spider
                else [split.database_path(db_id)]
            )
            for db_id, present in self.present.items()
            if present
        }

    def sql(self, sql: str, *, predicted: bool) -> str:
        if not self.spider:
            return sql
        return prepared(sql, keep_distinct=self.keep_distinct, predicted=predicted)

    def gold_requests(self) -> tuple[list[ExecutionRequest], list[list[int]]]:
        """Gold requests, and for each question of the split the indices of its own."""
        requests: list[ExecutionRequest] = []
        of_question: list[list[int]] = []
        for example in self.split.examples:
            mine = []
            for db_path in self.databases.get(example.db_id, []):
                mine.append(len(requests))
                sql = self.sql(example.sql, predicted=False)
                requests.append(ExecutionRequest(db_path=db_path, sql=sql))
            of_question.append(mine)
        return requests, of_question

    def ordered(self, index: int) -> bool:
        example = self.split.examples[index]
        return self.spider and order_matters(self.sql(example.sql, predicted=False))


def _predicted_keys(
    plan: _Plan, paired: PairedQuestion, gold: list[ExecutionResult]
) -> list[tuple[str, str]] | None:
    """(database, SQL) runs that score `paired`; None when its score is already settled."""
    example = paired.example
    if paired.problem is not None or not gold or not all(result.ok for result in gold):
        return None
    sql = plan.sql(paired.sql or "", predicted=True)
    return [(str(db_path), sql) for db_path in plan.databases[example.db_id]]


def _run_predictions(
    plan: _Plan,
    pairings: list[Pairing],
    gold_of: Callable[[int], list[ExecutionResult]],
    gold_by_key: dict[tuple[str, str], ExecutionResult],
    limits: ExecutionLimits,
    pool: ExecutionPool | None,
    progress: PhaseProgress,
) -> dict[tuple[str, str], ExecutionResult]:
    """Run each distinct predicted (database, SQL) once; a prediction identical to the gold
    query takes the gold result. With workers, the slowest (by gold time) go first, and the
    gold times weigh the batches, so each worker gets an equal share of the slow ones."""
    cost: dict[tuple[str, str], float] = {}
    for pairing in pairings:
        for paired in pairing.questions:
            gold = gold_of(paired.index)
            for key in _predicted_keys(plan, paired, gold) or []:
                if key not in gold_by_key:
                    estimate = sum(result.elapsed for result in gold)
                    cost[key] = max(cost.get(key, 0.0), estimate)
    keys = sorted(cost, key=cost.__getitem__, reverse=True) if pool is not None else list(cost)
    requests = [ExecutionRequest(db_path=db_path, sql=sql) for db_path, sql in keys]
    # A floor on each estimate: a query that fails at once still costs a little.
    costs = [max(cost[key], 1e-4) for key in keys]
    progress_phase = _phase(progress, "predicted queries", len(requests))
    results = _execute(requests, limits, pool, progress_phase, costs)
    return {**gold_by_key, **dict(zip(keys, results, strict=True))}


def _ves_rewards(
    split: BirdSplit,
    scored: list[tuple[PairedQuestion, QuestionResult]],
    options: EvaluationOptions,
    pool: ExecutionPool | None,
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
    timings = _execute(
        requests, options.limits, pool, _phase(progress, "R-VES timing", len(requests))
    )
    reward_by_question: dict[int, float] = {}
    runs = 2 * options.ves_iterations
    for position, (paired, _) in enumerate(correct):
        chunk = timings[position * runs : (position + 1) * runs]
        if not all(run.ok for run in chunk):
            reward_by_question[paired.index] = 0.0
            continue
        ratio = ves_time_ratio(
            [run.elapsed for run in chunk[0::2]], [run.elapsed for run in chunk[1::2]]
        )
        reward_by_question[paired.index] = ves_reward(ratio)
    return [reward_by_question.get(paired.index, 0.0) for paired, _ in scored]


def _limit_hits(questions: Sequence[QuestionResult], *, gold: bool) -> dict[str, list[int]]:
    hits: dict[str, list[int]] = {}
    for question in questions:
        kind = question.gold_error if gold else question.error
        if kind in LIMIT_ERRORS:
            hits.setdefault(kind, []).append(question.question_id)
    return hits


def summarize(
    split: BirdSplit,
    questions: Sequence[QuestionResult],
    *,
    predictions: Path,
    prediction_format: str,
    pairing: Pairing,
    options: EvaluationOptions,
    gold_cache: GoldCacheStats,
    gold_ok: Sequence[bool] | None = None,
    test_suite_databases: dict[str, int] | None = None,
    timings: dict[str, float] | None = None,
) -> EvaluationSummary:
    """Per-level metrics in percent and counts, as the official `compute_*_by_diff`.

    `gold_ok[i]`: whether question i's gold query ran within the limits (its database
    present), which gives the gold ceiling."""
    levels = levels_of(split)
    members = {
        level: [i for i, q in enumerate(questions) if level == TOTAL or q.difficulty == level]
        for level in levels
    }
    metric_values: dict[str, Callable[[list[QuestionResult]], float]] = {
        "ex": lambda group: sum(q.ex for q in group) / len(group) * 100,
    }
    if split.benchmark == "bird":
        metric_values["soft_f1"] = lambda group: (
            sum(q.soft_f1 or 0.0 for q in group) / len(group) * 100
        )
    if options.ves:
        metric_values["rves"] = lambda group: rves_score([q.rves_reward or 0.0 for q in group])
    metrics = {
        name: {
            level: (compute([questions[i] for i in members[level]]) if members[level] else 0.0)
            for level in levels
        }
        for name, compute in metric_values.items()
    }
    ok = list(gold_ok) if gold_ok is not None else [q.error != GOLD_FAILED for q in questions]
    ceiling = {
        level: (sum(ok[i] for i in members[level]) / len(members[level]) * 100)
        if members[level]
        else 0.0
        for level in levels
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
        benchmark=split.benchmark,
        paired_by=pairing.paired_by,
        warnings=[*split.notes, *pairing.warnings],
        gold_ceiling=ceiling,
        limit_hits=_limit_hits(questions, gold=False),
        gold_limit_hits=_limit_hits(questions, gold=True),
        test_suite_databases=test_suite_databases or {},
        timings=timings or {},
    )


def _score_file(
    plan: _Plan,
    pairing: Pairing,
    gold_of: Callable[[int], list[ExecutionResult]],
    predicted: dict[tuple[str, str], ExecutionResult],
    options: EvaluationOptions,
    pool: ExecutionPool | None,
    progress: PhaseProgress,
) -> list[QuestionResult]:
    scored: list[tuple[PairedQuestion, QuestionResult]] = []
    for paired in pairing.questions:
        gold = gold_of(paired.index)
        keys = _predicted_keys(plan, paired, gold)
        result = score_question(
            paired,
            spider=plan.spider,
            ordered=plan.ordered(paired.index),
            database_present=plan.present[paired.example.db_id],
            gold=gold,
            predicted=[predicted[key] for key in keys] if keys is not None else None,
        )
        scored.append((paired, result))
    if options.ves:
        rewards = _ves_rewards(plan.split, scored, options, pool, progress)
        for (_, result), reward in zip(scored, rewards, strict=True):
            result.rves_reward = reward
    return [result for _, result in scored]


def _read_and_pair(
    split: BirdSplit, paths: Sequence[Path | str], options: EvaluationOptions
) -> tuple[list[PredictionFile], list[Pairing]]:
    files = [read_prediction_file(path) for path in paths]
    pairings = [
        pair_predictions(split, file, allow_missing=options.allow_missing, pair_by=options.pair_by)
        for file in files
    ]
    return files, pairings


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
    if options.ves and split.benchmark == "spider":
        raise ValueError("R-VES is BIRD's metric; Spider is scored by EX only")
    gold_cache = gold_cache if gold_cache is not None else GoldCache()
    limits = options.limits_for(split.benchmark)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = round(timings.get(phase, 0.0) + now - clock, 4)
        clock = now

    with _execution_pool(options.workers) as pool, PhaseProgress(enabled=show_progress) as bar:
        files, pairings = _read_and_pair(split, prediction_paths, options)
        plan = _Plan(split, options)
        lap("read and pair")
        gold_requests, gold_of_question = plan.gold_requests()
        gold_results = gold_cache.results(
            gold_requests,
            limits=limits,
            workers=options.workers,
            pool=pool,
            on_result=_phase(bar, "gold queries", len(gold_requests)),
        )
        lap("gold queries")

        def gold_of(index: int) -> list[ExecutionResult]:
            return [gold_results[i] for i in gold_of_question[index]]

        gold_by_key = {
            (str(request.db_path), request.sql): result
            for request, result in zip(gold_requests, gold_results, strict=True)
        }
        predicted = _run_predictions(plan, pairings, gold_of, gold_by_key, limits, pool, bar)
        lap("predicted queries")

        gold_ok = [
            bool(gold_of(index)) and all(result.ok for result in gold_of(index))
            for index in range(len(split.examples))
        ]
        scored_files = [
            _score_file(plan, pairing, gold_of, predicted, options, pool, bar)
            for pairing in pairings
        ]
        lap("score")
    suites = {db_id: len(paths) for db_id, paths in plan.databases.items()}
    reports = []
    for file, pairing, questions in zip(files, pairings, scored_files, strict=True):
        summary = summarize(
            split,
            questions,
            predictions=file.path,
            prediction_format=file.format,
            pairing=pairing,
            options=options,
            gold_cache=gold_cache.stats(),
            gold_ok=gold_ok,
            test_suite_databases=suites if plan.spider else None,
            timings=timings,
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


def ceiling_line(summary: EvaluationSummary) -> str:
    """The gold ceiling under the limits used, and which gold queries lowered it."""
    total = summary.gold_ceiling.get(TOTAL, 100.0)
    head = f"gold ceiling {total:.2f}% under these limits ({summary.options.limits_text()})"
    hits = summary.gold_limit_hits
    parts = [
        f"{len(ids)} gold queries hit {kind} (question_id {', '.join(map(str, ids[:10]))})"
        for kind, ids in hits.items()
    ]
    other = len(summary.gold_failed_question_ids) - sum(len(ids) for ids in hits.values())
    if other:
        parts.append(f"{other} gold queries failed otherwise")
    if summary.errors.get(MISSING_DATABASE):
        parts.append(f"{summary.errors[MISSING_DATABASE]} questions have no database")
    return f"{head}: " + ("; ".join(parts) if parts else "every gold query ran")
