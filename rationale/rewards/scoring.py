"""Rewards for a model's answers, each computed by executing them against the gold query.

Four components, each in [0, 1]:

    format       the answer parses as its kind expects: a rationale chain (CoT), an SQL
                 block or statement (no-CoT)
    execution    1 iff the answer's SQL (the assembled chain for CoT, as prediction takes
                 it) returns the gold result under the official rule (set of rows)
    steps        CoT: the share of the answer's steps that execute, return rows where gold
                 does, and feed the final query (the validator's step checks, per step)
    step_match   CoT: the share of the gold query's own intermediate results (the steps of
                 its symbolic decomposition that return rows) that some step of the answer
                 reproduces: its rows, on some of its columns in some order, are the gold
                 step's rows, compared as EX compares results (sets of rows); a step that
                 keeps an extra column still carries the gold step's result

`execution` alone gives every wrong answer the same 0, so a group of samples that are all
wrong teaches GRPO nothing; `steps` and `step_match` tell apart the wrong answers that got
part of the way, with credit verified by execution, not by a learned reward model.

Answers are untrusted: every query runs read-only in worker processes with a time limit
and a VM step limit (a query past either scores as failing, never stalls the batch); a
batch's identical (database, SQL) pairs run once. Gold results and gold chains are computed
once per question and kept for the scorer's life (gold results also in the gold cache).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlglot
from pydantic import BaseModel, Field
from sqlglot.errors import SqlglotError

from bird.executor import ExecutionPool, ExecutionRequest, ExecutionResult
from bird.gold_cache import ExecutionLimits, GoldCache, default_gold_cache_dir
from bird.schema import table_columns
from rationale.chain.format import ParseFailure, Rationale, extract_final_sql, parse_rationale
from rationale.decomposer.builder import DecompositionError, decompose_sql
from rationale.validation.checks import referenced_names

RewardKind = Literal["cot", "nocot"]
COMPONENTS: tuple[str, ...] = ("format", "execution", "steps", "step_match")
# Weights of the total; see README "Rewards" for the measurement behind them.
DEFAULT_WEIGHTS: dict[str, float] = {
    "format": 0.1,
    "execution": 1.0,
    "steps": 0.2,
    "step_match": 0.5,
}


class RewardLimits(BaseModel):
    """What one query of an answer may cost before it counts as failing."""

    timeout: float = Field(default=10.0, gt=0)
    max_steps: int | None = Field(default=50_000_000, gt=0)  # SQLite VM steps
    max_rows: int = Field(default=10_000, gt=0)  # a bigger result matches nothing


class RewardQuestion(BaseModel):
    """What scoring one answer needs to know about its question."""

    question_id: int
    db_id: str
    db_path: Path
    gold_sql: str


class RewardBreakdown(BaseModel):
    question_id: int
    format: float = 0.0
    execution: float = 0.0
    steps: float = 0.0
    step_match: float = 0.0
    note: str = ""  # why a component is low: the parse error, the failing step

    def total(self, weights: dict[str, float]) -> float:
        return sum(weight * getattr(self, name) for name, weight in weights.items())


RowSet = frozenset[tuple[object, ...]]


def _rows(result: ExecutionResult) -> RowSet | None:
    """The result as EX compares it, or None when it failed or was cut at the row cap."""
    if not result.ok or result.truncated:
        return None
    return frozenset(map(tuple, result.rows))


@dataclass
class _Gold:
    rows: RowSet | None
    chain: list[RowSet]  # the gold decomposition's steps that return rows


@dataclass
class _Answer:
    """One answer's queries (indices into the batch's requests)."""

    formatted: bool  # as its kind expects
    final: int | None
    steps: list[tuple[str, int]]  # (step name, request)
    used: set[str]  # steps that feed the final query
    rationale: Rationale | None
    note: str


# Column assignments tried per pair of results before giving up on a match.
MAX_ASSIGNMENTS = 64


def carries(mine: RowSet, gold: RowSet) -> bool:
    """Whether `mine`, on some of its columns in some order, has exactly the rows of `gold`."""
    if mine == gold:
        return True
    if not mine or not gold:
        return False
    width, gold_width = len(next(iter(mine))), len(next(iter(gold)))
    if gold_width > width:
        return False
    my_values = [{row[c] for row in mine} for c in range(width)]
    candidates = [
        [c for c in range(width) if my_values[c] == {row[j] for row in gold}]
        for j in range(gold_width)
    ]
    tried = 0
    for columns in itertools.product(*candidates):
        if len(set(columns)) < gold_width:
            continue
        tried += 1
        if frozenset(tuple(row[c] for c in columns) for row in mine) == gold:
            return True
        if tried >= MAX_ASSIGNMENTS:
            break
    return False


def feeding_steps(rationale: Rationale) -> set[str]:
    """Names of the steps the final query reads, directly or through later steps (empty
    when a query does not parse: nothing can be said to feed it)."""
    reads: dict[str, set[str]] = {}
    try:
        queries = [(s.name, s.sql) for s in rationale.steps] + [("final", rationale.final_sql)]
        for name, sql in queries:
            reads[name] = referenced_names(sqlglot.parse_one(sql, read="sqlite"))
    except (SqlglotError, ValueError):
        return set()
    used: set[str] = set()
    frontier = ["final"]
    while frontier:
        label = frontier.pop()
        for step in rationale.steps:
            if step.name.lower() in reads[label] and step.name not in used:
                used.add(step.name)
                frontier.append(step.name)
    return used


class RewardScorer:
    """Scores batches of answers; keeps a worker pool and every gold result it computed."""

    def __init__(
        self,
        limits: RewardLimits | None = None,
        *,
        workers: int = 2,
        gold_cache: GoldCache | None = None,
    ) -> None:
        self.limits = limits or RewardLimits()
        self.pool = ExecutionPool(workers=workers)
        self.gold_cache = gold_cache or GoldCache(default_gold_cache_dir())
        self._gold: dict[tuple[Path, str], _Gold] = {}
        self.queries_run = 0

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, requests: list[ExecutionRequest]) -> list[ExecutionResult]:
        self.queries_run += len(requests)
        return self.pool.execute_many(
            requests,
            timeout=self.limits.timeout,
            max_rows=self.limits.max_rows,
            max_steps=self.limits.max_steps,
        )

    def _golds(self, questions: Sequence[RewardQuestion]) -> None:
        """Gold results and gold chains of the questions not seen before."""
        new = list(dict.fromkeys((q.db_path, q.gold_sql) for q in questions))
        new = [key for key in new if key not in self._gold]
        if not new:
            return
        results = self.gold_cache.results(
            [ExecutionRequest(db_path=db, sql=sql) for db, sql in new],
            limits=ExecutionLimits(timeout=self.limits.timeout, max_rows=self.limits.max_rows),
            pool=self.pool,
        )
        chains: list[list[str]] = []
        schemas: dict[Path, dict[str, list[str]]] = {}
        for db, sql in new:
            if db not in schemas:
                schemas[db] = table_columns(db)
            try:
                rationale = decompose_sql(sql, schemas[db]).rationale
            except DecompositionError:
                chains.append([])
                continue
            chains.append([rationale.step_query(step.name) for step in rationale.steps])
        requests = [
            ExecutionRequest(db_path=db, sql=query)
            for (db, _), queries in zip(new, chains, strict=True)
            for query in queries
        ]
        step_results = iter(self._run(requests))  # gold SQL, but its steps are ours: sandboxed
        for (db, sql), result, queries in zip(new, results, chains, strict=True):
            chain = [_rows(next(step_results)) for _ in queries]
            self._gold[(db, sql)] = _Gold(
                rows=_rows(result),
                chain=[rows for rows in chain if rows],  # nonempty only
            )

    def score(
        self, completions: Sequence[str], questions: Sequence[RewardQuestion], kind: RewardKind
    ) -> list[RewardBreakdown]:
        """One breakdown per answer, in order; `questions[i]` is what answer i answers."""
        if len(completions) != len(questions):
            raise ValueError(f"{len(completions)} answers for {len(questions)} questions")
        self._golds(questions)
        keys: dict[tuple[Path, str], int] = {}

        def request(db: Path, sql: str) -> int:
            return keys.setdefault((db, sql), len(keys))

        answers = [
            self._plan(text, question, kind, request)
            for text, question in zip(completions, questions, strict=True)
        ]
        results = self._run([ExecutionRequest(db_path=db, sql=sql) for db, sql in keys])
        return [
            self._breakdown(answer, question, results)
            for answer, question in zip(answers, questions, strict=True)
        ]

    @staticmethod
    def _plan(
        text: str, question: RewardQuestion, kind: RewardKind, request: Callable[[Path, str], int]
    ) -> _Answer:
        final_sql = extract_final_sql(text)
        final = request(question.db_path, final_sql) if final_sql else None
        if kind == "nocot" or final_sql is None:
            note = "" if final_sql else "no SQL in the answer"
            return _Answer(final_sql is not None, final, [], set(), None, note)
        parsed = parse_rationale(text)
        if isinstance(parsed, ParseFailure):
            note = f"not a rationale: {parsed.reason}: {parsed.message}"
            return _Answer(False, final, [], set(), None, note)
        steps = [
            (s.name, request(question.db_path, parsed.step_query(s.name))) for s in parsed.steps
        ]
        return _Answer(True, final, steps, feeding_steps(parsed), parsed, "")

    def _breakdown(
        self, answer: _Answer, question: RewardQuestion, results: list[ExecutionResult]
    ) -> RewardBreakdown:
        gold = self._gold[(question.db_path, question.gold_sql)]
        found = RewardBreakdown(question_id=question.question_id, note=answer.note)
        found.format = float(answer.formatted)
        if answer.final is None:
            return found
        final_rows = _rows(results[answer.final])
        found.execution = float(final_rows is not None and final_rows == gold.rows)
        if answer.rationale is None:
            return found
        problems = []
        good = 0
        step_rows: list[RowSet] = []
        for name, index in answer.steps:
            result = results[index]
            rows = _rows(result)
            if rows is not None:
                step_rows.append(rows)
            if not result.ok and not result.truncated:
                problems.append(f"{name}: {result.error_kind}")
            elif not result.rows and gold.rows:
                problems.append(f"{name}: no rows")
            elif name not in answer.used:
                problems.append(f"{name}: does not feed the final query")
            else:
                good += 1
        found.steps = good / len(answer.steps)
        if gold.chain:
            matched = sum(any(carries(mine, rows) for mine in step_rows) for rows in gold.chain)
            found.step_match = matched / len(gold.chain)
        found.note = "; ".join(problems)
        return found
