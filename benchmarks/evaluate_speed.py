"""Time `bird.evaluation.evaluate_many` against an official-style evaluator on a sweep.

A model sweep scores many prediction files on the same split. The official BIRD script
(mini_dev `evaluation/evaluation_ex.py`) is run once per file; for every pair it opens a
new SQLite connection, executes the predicted and the gold query, guards the pair with a
thread-based timeout (`func_timeout`), and spreads pairs over a `multiprocessing` pool.
The baseline below does exactly that (a thread join stands in for `func_timeout`).

Ours scores all files in one call: each gold query runs once (gold cache), identical
predicted queries run once, and execution goes through the sandboxed executor.

Both sides get the same prediction files (gold plus deterministic perturbations: LIMIT
added, DISTINCT toggled, a literal changed, a syntax error, rows reordered, a COUNT
wrapper) and the same worker count; the script checks that both give the same EX for
every question of every file. No runaway queries: a thread-based timeout cannot stop one
and the baseline would hang, which is the official script's behaviour too.

    python benchmarks/evaluate_speed.py --data ../shared/bird/dev --files 10 --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bird.data import BirdSplit, load_split
from bird.evaluation import EvaluationOptions, evaluate_many
from bird.gold_cache import GoldCache
from bird.predictions import OFFICIAL_SEPARATOR

PERTURBED_SHARE = 0.3


def _add_limit(sql: str) -> str:
    return sql if re.search(r"\bLIMIT\b", sql, re.IGNORECASE) else f"{sql} LIMIT 1"


def _toggle_distinct(sql: str) -> str:
    if re.match(r"\s*SELECT\s+DISTINCT\b", sql, re.IGNORECASE):
        return re.sub(r"^\s*SELECT\s+DISTINCT\b", "SELECT", sql, count=1, flags=re.IGNORECASE)
    return re.sub(r"^\s*SELECT\b", "SELECT DISTINCT", sql, count=1, flags=re.IGNORECASE)


def _change_literal(sql: str) -> str:
    changed, count = re.subn(r"'([^']*)'", r"'\1_x'", sql, count=1)
    return changed if count else re.sub(r"\b(\d+)\b", r"\g<1>1", sql, count=1)


def _break_syntax(sql: str) -> str:
    return re.sub(r"\bSELECT\b", "SELEC", sql, count=1, flags=re.IGNORECASE)


def _reorder_rows(sql: str) -> str:
    return f"SELECT * FROM ({sql}) ORDER BY 1 DESC"


def _count_rows(sql: str) -> str:
    return f"SELECT COUNT(*) FROM ({sql})"


PERTURBATIONS: list[Callable[[str], str]] = [
    _add_limit,
    _toggle_distinct,
    _change_literal,
    _break_syntax,
    _reorder_rows,
    _count_rows,
]


def build_prediction_files(
    split: BirdSplit, count: int, folder: Path, *, shared_sql: bool = False
) -> list[Path]:
    """File 0 is gold; file k perturbs a seeded 30% of questions. Official form.

    Unless `shared_sql`, every query ends in a comment naming its file, so no two files
    hold the same SQL text: different models rarely write identical queries, and
    identical text would let our evaluator skip executions the baseline repeats.
    """
    paths = []
    for index in range(count):
        chooser = random.Random(index)
        predictions = {}
        for position, example in enumerate(split.examples):
            sql = example.sql.strip().rstrip(";")
            if index > 0 and chooser.random() < PERTURBED_SHARE:
                sql = chooser.choice(PERTURBATIONS)(sql)
            if not shared_sql:
                sql = f"{sql} /* model {index} */"
            predictions[str(position)] = f"{sql}{OFFICIAL_SEPARATOR}{example.db_id}"
        path = folder / f"predict_{index:02d}.json"
        path.write_text(json.dumps(predictions, indent=4), encoding="utf-8")
        paths.append(path)
    return paths


# --- official-style baseline -------------------------------------------------------


def _execute_pair(predicted_sql: str, gold_sql: str, db_path: str) -> int:
    # as evaluation_utils.execute_sql: one new connection, both queries, set equality
    # (opened read-only so nothing is ever written beside the data)
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        cursor = connection.cursor()
        cursor.execute(predicted_sql)
        predicted = cursor.fetchall()
        cursor.execute(gold_sql)
        gold = cursor.fetchall()
    finally:
        connection.close()
    return int(set(predicted) == set(gold))


def _baseline_pair(args: tuple[int, str, str, str, float]) -> tuple[int, int]:
    """One pair under a thread-based timeout, as func_timeout does; errors score 0."""
    index, predicted_sql, gold_sql, db_path, timeout = args
    outcome: list[int] = []

    def run() -> None:
        try:
            outcome.append(_execute_pair(predicted_sql, gold_sql, db_path))
        except Exception:
            outcome.append(0)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    return index, outcome[0] if outcome else 0


def baseline_evaluate(
    split: BirdSplit, prediction_path: Path, workers: int, timeout: float
) -> list[int]:
    """EX per question in split order, the official way: pool per file, pair per task."""
    predictions = json.loads(prediction_path.read_text(encoding="utf-8"))
    tasks = []
    for position, example in enumerate(split.examples):
        predicted_sql = predictions[str(position)].split(OFFICIAL_SEPARATOR)[0]
        db_path = str(split.database_path(example.db_id))
        tasks.append((position, predicted_sql, example.sql, db_path, timeout))
    results: list[tuple[int, int]] = []
    with multiprocessing.Pool(processes=workers) as pool:
        for task in tasks:
            pool.apply_async(_baseline_pair, (task,), callback=results.append)
        pool.close()
        pool.join()
    return [score for _, score in sorted(results)]


# --- measurement ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/bird/dev"))
    parser.add_argument("--files", type=int, default=10, help="prediction files in the sweep")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is shown")
    parser.add_argument(
        "--shared-sql",
        action="store_true",
        help="let files share query text (unperturbed questions identical across files)",
    )
    args = parser.parse_args()

    split = load_split(args.data)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="evaluate_speed_") as folder:
        paths = build_prediction_files(split, args.files, Path(folder), shared_sql=args.shared_sql)
        paths_text = [
            [
                value.split(OFFICIAL_SEPARATOR)[0]
                for value in json.loads(path.read_text(encoding="utf-8")).values()
            ]
            for path in paths
        ]
        baseline_times, ours_times = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            baseline_ex = [
                baseline_evaluate(split, path, args.workers, args.timeout) for path in paths
            ]
            baseline_times.append(time.perf_counter() - start)

            start = time.perf_counter()
            reports = evaluate_many(
                split,
                paths,
                options=EvaluationOptions(timeout=args.timeout, workers=args.workers),
                gold_cache=GoldCache(),  # memory only: every repeat starts cold
            )
            ours_times.append(time.perf_counter() - start)

        ours_ex = [[question.ex for question in report.questions] for report in reports]
        mismatches = sum(
            a != b
            for file_baseline, file_ours in zip(baseline_ex, ours_ex, strict=True)
            for a, b in zip(file_baseline, file_ours, strict=True)
        )

    questions = len(split.examples)
    distinct_predicted = len(
        {
            (example.db_id, sql)
            for path in paths_text
            for example, sql in zip(split.examples, path, strict=True)
        }
    )
    table = Table(title=f"EX evaluation of a {args.files}-file sweep on {split.name}")
    for column in ("files", "questions", "workers", "baseline s", "ours s", "ratio"):
        table.add_column(column, justify="right")
    best_baseline, best_ours = min(baseline_times), min(ours_times)
    table.add_row(
        str(args.files),
        str(questions * args.files),
        str(args.workers),
        f"{best_baseline:.2f}",
        f"{best_ours:.2f}",
        f"{best_baseline / best_ours:.1f}x",
    )
    console.print(table)
    console.print(
        f"runs: baseline {', '.join(f'{t:.2f}' for t in baseline_times)} s; "
        f"ours {', '.join(f'{t:.2f}' for t in ours_times)} s (best of {args.repeats} shown)"
    )
    console.print(
        "EX per file, baseline vs ours: "
        + ", ".join(
            f"{sum(b) / questions * 100:.1f}/{sum(o) / questions * 100:.1f}"
            for b, o in zip(baseline_ex, ours_ex, strict=True)
        )
    )
    console.print(
        f"queries executed: baseline {2 * questions * args.files} per run; ours "
        f"{len({(e.db_id, e.sql) for e in split.examples})} gold + {distinct_predicted} "
        f"distinct predicted"
    )
    console.print(f"per-question EX mismatches: {mismatches}")
    if mismatches:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
