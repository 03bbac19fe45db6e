"""Results a page shows, computed in the sandbox when the page is built.

Every gold query, every step of every shown rationale (its CTE chain, then `SELECT *` from
the step) and every final query run read-only and time-limited in worker processes; a query
that two questions share runs once. Gold queries go through the gold cache that evaluation
and validation fill, so a page over a validated run mostly reads results already computed.
Predictions are scored as `bird evaluate` scores them, greedy and voted answers together.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bird.console import ProgressCallback, no_progress
from bird.data import BirdSplit, load_split
from bird.evaluation import EvaluationOptions, evaluate_many
from bird.executor import ExecutionPool, ExecutionRequest, ExecutionResult
from bird.gold_cache import ExecutionLimits, GoldCache, default_gold_cache_dir
from rationale.browser.collect import FINAL, Collected
from rationale.browser.model import ResultView, SystemView

# Rows counted per step before the count says "at least": a page shows a few, and counting
# millions of rows of a step that keeps a whole table says nothing more.
COUNT_CAP = 10_000
CELL_CHARS = 120


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        text = f"x'{value.hex()}'"
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def result_view(result: ExecutionResult, rows: int) -> ResultView:
    """The first `rows` rows of a result, its row count, and its error if it failed."""
    more = result.truncated and result.error_kind == "too_large"
    return ResultView(
        columns=list(result.columns),
        rows=[[_cell(value) for value in row] for row in result.rows[:rows]],
        count=len(result.rows),
        more=more,
        error=None if result.ok or more else (result.error or result.error_kind),
    )


def fill_results(
    collected: Collected,
    *,
    rows: int,
    timeout: float,
    workers: int,
    progress: ProgressCallback = no_progress,
) -> int:
    """Fill every question's gold and step results, and each prediction's gold result;
    returns how many distinct queries ran."""
    page = collected.page
    gold_requests: list[ExecutionRequest] = []
    gold_of: list[int] = []
    step_requests: dict[tuple[str, str], int] = {}
    step_slots: list[tuple[int, int, int]] = []  # (question, step, request)
    golds_wanted = [*page.questions, *(p for system in page.systems for p in system.questions)]
    for position, question in enumerate(golds_wanted):
        db_path = collected.databases.get(f"{question.key.split('/')[0]}/{question.db}")
        if db_path is None or not db_path.is_file():
            continue
        if question.gold_sql:
            gold_requests.append(ExecutionRequest(db_path=db_path, sql=question.gold_sql))
            gold_of.append(position)
        if position >= len(page.questions):
            continue  # a prediction: its answers are scored, not shown step by step
        rationale = collected.rationales.get(question.key)
        if rationale is None or question.accepted is None:
            continue
        for index, step in enumerate(question.accepted.steps):
            final = step.name == FINAL
            sql = rationale.assembled_sql() if final else rationale.step_query(step.name)
            request = step_requests.setdefault((str(db_path), sql), len(step_requests))
            step_slots.append((position, index, request))
    total = len(gold_requests) + len(step_requests)
    done = 0

    def advance(_index: int, _result: ExecutionResult) -> None:
        nonlocal done
        done += 1
        progress("results", done, total)

    with ExecutionPool(workers=workers) as pool:
        gold_cache = GoldCache(default_gold_cache_dir())
        golds = gold_cache.results(
            gold_requests, limits=ExecutionLimits(timeout=timeout), pool=pool, on_result=advance
        )
        steps = pool.execute_many(
            [ExecutionRequest(db_path=Path(db), sql=sql) for db, sql in step_requests],
            timeout=timeout,
            max_rows=COUNT_CAP,
            on_result=advance,
        )
    for position, result in zip(gold_of, golds, strict=True):
        golds_wanted[position].gold = result_view(result, rows)
    for position, index, request in step_slots:
        accepted = page.questions[position].accepted
        assert accepted is not None
        accepted.steps[index].result = result_view(steps[request], rows)
    return gold_cache.executions + len(step_requests)


def score_predictions(
    system: SystemView, split_root: str | Path, *, timeout: float, workers: int
) -> None:
    """EX of every greedy and voted answer of `system`, as `bird evaluate` scores them, on
    the questions it answered (a --limit run is not diluted by the rest)."""
    split = load_split(split_root)
    answered = {view.qid for view in system.questions}
    selected: BirdSplit = replace(
        split, examples=[e for e in split.examples if e.question_id in answered]
    )
    with tempfile.TemporaryDirectory(prefix="rationale-view-") as folder:
        paths = []
        for name, attribute in (("voted", "voted_sql"), ("greedy", "greedy_sql")):
            path = Path(folder) / f"{name}.jsonl"
            path.write_text(
                "".join(
                    json.dumps({"question_id": view.qid, "sql": getattr(view, attribute)}) + "\n"
                    for view in system.questions
                ),
                encoding="utf-8",
            )
            paths.append(path)
        voted, greedy = evaluate_many(
            selected,
            paths,
            options=EvaluationOptions(timeout=timeout, workers=workers),
            gold_cache=GoldCache(default_gold_cache_dir()),
        )
    ex_voted = {result.question_id: result.ex for result in voted.questions}
    ex_greedy = {result.question_id: result.ex for result in greedy.questions}
    for view in system.questions:
        view.ex_voted = ex_voted.get(view.qid)
        view.ex_greedy = ex_greedy.get(view.qid)
