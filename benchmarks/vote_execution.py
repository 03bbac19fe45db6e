"""Self-consistency's execution cost: N candidates per question, parallel vs one by one.

`rationale predict --samples 7` gives every dev question 8 candidate SQL queries (the greedy
one and 7 samples) that must all run before they vote. This measures that step alone, on
real dev databases, with candidate sets shaped like a student's: the gold query, several
exact repeats of it (samples of a trained model often agree word for word) and seeded
perturbations (LIMIT added, DISTINCT toggled, a literal changed, a syntax error, rows
reordered, a COUNT wrapper; the ones benchmarks/evaluate_speed.py uses).

Rows, each over the same candidates, interleaved over the repeats (best shown):

- one by one, fresh connection: `execute_sql` per candidate, as a loop over candidates
  written without this project would do it (connect read-only, run, close);
- one by one, one connection per database: every candidate in turn in one process
  (`execute_many(workers=1)`), the same sandbox and limits;
- predict: what `rationale predict` does per batch: identical queries of a question run
  once, the distinct ones spread over an `ExecutionPool` of `--workers` processes.

Every row must give every candidate the same outcome (result signature or error kind); the
script stops if one differs. Timings on a shared machine are noisy: read the ratios.

    python benchmarks/vote_execution.py --data ../shared/bird/dev --questions 200 --workers 2
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_speed import PERTURBATIONS

from bird.console import table_console
from bird.data import BirdSplit, load_split
from bird.executor import (
    ExecutionPool,
    ExecutionRequest,
    ExecutionResult,
    execute_many,
    execute_sql,
)
from rationale.stages.predict import result_signature

REPEAT_SHARE = 0.5  # of the samples: an exact repeat of the greedy answer


def candidate_sets(split: BirdSplit, questions: int, per_question: int, seed: int) -> list:
    """[(db_path, [sql, ...])] for a seeded sample of questions."""
    chooser = random.Random(seed)
    examples = chooser.sample(list(split.examples), min(questions, len(split.examples)))
    sets = []
    for example in examples:
        gold = example.sql.strip().rstrip(";")
        candidates = [gold]
        for _ in range(per_question - 1):
            repeat = chooser.random() < REPEAT_SHARE
            candidates.append(gold if repeat else chooser.choice(PERTURBATIONS)(gold))
        sets.append((split.database_path(example.db_id), candidates))
    return sets


def outcome(result: ExecutionResult) -> str:
    return result_signature(result) if result.ok else f"error:{result.error_kind}"


def fresh_connections(sets: list, timeout: float) -> list[str]:
    return [outcome(execute_sql(db, sql, timeout=timeout)) for db, sqls in sets for sql in sqls]


def one_connection(sets: list, timeout: float) -> list[str]:
    requests = [ExecutionRequest(db_path=db, sql=sql) for db, sqls in sets for sql in sqls]
    return [outcome(result) for result in execute_many(requests, timeout=timeout, workers=1)]


def predict_way(pool: ExecutionPool, sets: list, timeout: float) -> list[str]:
    distinct: dict[tuple[Path, str], int] = {}
    for db, sqls in sets:
        for sql in sqls:
            distinct.setdefault((db, sql), len(distinct))
    ordered = sorted(distinct, key=distinct.__getitem__)
    results = pool.execute_many(
        [ExecutionRequest(db_path=db, sql=sql) for db, sql in ordered], timeout=timeout
    )
    by_query = dict(zip(ordered, results, strict=True))
    return [outcome(by_query[(db, sql)]) for db, sqls in sets for sql in sqls]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/bird/dev", help="Split folder (or demo:dev).")
    parser.add_argument("--questions", type=int, default=200, help="Questions sampled.")
    parser.add_argument("--candidates", type=int, default=8, help="Candidates per question.")
    parser.add_argument("--workers", type=int, default=2, help="Processes of the predict row.")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per query.")
    parser.add_argument("--repeats", type=int, default=3, help="Rounds, interleaved.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    split = load_split(args.data)
    sets = candidate_sets(split, args.questions, args.candidates, args.seed)
    total = sum(len(sqls) for _, sqls in sets)
    distinct = len({(db, sql) for db, sqls in sets for sql in sqls})
    with ExecutionPool(args.workers) as pool:
        pool.start()
        rows: dict[str, Callable[[], list[str]]] = {
            "one by one, fresh connection": lambda: fresh_connections(sets, args.timeout),
            "one by one, one connection per db": lambda: one_connection(sets, args.timeout),
            f"predict: distinct queries, {args.workers} workers": lambda: predict_way(
                pool, sets, args.timeout
            ),
        }
        best: dict[str, float] = {}
        reference: list[str] | None = None
        for _ in range(args.repeats):
            for name, run in rows.items():
                started = time.perf_counter()
                outcomes = run()
                elapsed = time.perf_counter() - started
                best[name] = min(best.get(name, elapsed), elapsed)
                if reference is None:
                    reference = outcomes
                elif outcomes != reference:
                    sys.exit(f"{name}: outcomes differ from the first row's")

    baseline = best["one by one, fresh connection"]
    table = Table(
        title=f"{len(sets)} questions x {args.candidates} candidates = {total} queries "
        f"({distinct} distinct) on {split.name}; best of {args.repeats}; "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    for column in ("way", "seconds", "ms per question", "speed-up vs one by one"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for name, seconds in best.items():
        table.add_row(
            name,
            f"{seconds:.2f}",
            f"{1000 * seconds / len(sets):.1f}",
            f"{baseline / seconds:.2f}x",
        )
    table_console().print(table)
    print(f"every way gave every candidate the same outcome ({total} compared)")


if __name__ == "__main__":
    main()
