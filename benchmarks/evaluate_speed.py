"""Time `bird evaluate` against the real official BIRD script on a sweep, side by side.

A model sweep scores many prediction files on one split. The official way is to run the
official script (bird-bench/mini_dev `evaluation/evaluation_ex.py`) once per file: for every
pair it opens a new SQLite connection, runs the predicted and the gold query under a
thread-based timeout, and spreads pairs over a `multiprocessing` pool. Ours is one
`bird evaluate` command for all files: each gold query runs once, identical predicted
queries run once, one worker pool serves everything.

Rows of the table, each measured in every repeat, interleaved (best of the repeats shown):

- official: the real script, once per file, `--num_cpus W` (not shipped here: copy
  mini_dev's `evaluation/` folder somewhere and pass `--official`; its Python needs
  func_timeout, psycopg2 and pymysql, see `--official-python`); when the folder also holds
  `evaluation_f1.py`, it is timed too, since EX and soft-F1 (what ours reports in one run)
  take the user two scripts;
- ours, cold: `bird evaluate --predictions f1 ... fN --workers W --no-disk-cache`;
- ours, warm: the same with a gold cache on disk filled by an earlier run;
- ours, in-process: `evaluate_many` called here (no Python start-up), with the time of
  each phase, which says where the time above the floor goes; also with 1 worker, so what
  the workers add is measured in the same run;
- floor: every distinct query (gold and predicted) run once with plain sqlite3 in one
  process, one connection per database: the least any evaluator must spend.

Every prediction file is checked question by question: the official functions (imported
from the script, run on the same pool size) and ours must give the same EX; the script's
printed total EX must equal ours. The prediction files are gold plus seeded perturbations
(LIMIT added, DISTINCT toggled, a literal changed, a syntax error, rows reordered, a COUNT
wrapper); each query carries a comment naming its file, so no two files share query text
(different models rarely write identical queries; shared text would let ours skip runs
the official script repeats). Timings are noisy on a shared machine: read the ratios, and
the load printed with them.

    python benchmarks/evaluate_speed.py --data ../shared/bird/dev --files 10 --workers 2 \\
        --official /tmp/mini_dev/evaluation --official-python /tmp/venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from bird.console import table_console
from bird.data import BirdSplit, load_split
from bird.evaluation import EvaluationOptions, evaluate_many
from bird.gold_cache import GoldCache
from bird.predictions import OFFICIAL_SEPARATOR, load_paired_predictions

PERTURBED_SHARE = 0.3
OURS = [sys.executable, "-c", "from bird.cli import app; app()"]


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
    hold the same SQL text.
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


# --- the official script -----------------------------------------------------------------


def official_inputs(split: BirdSplit, folder: Path) -> tuple[Path, Path]:
    """The gold file and the difficulty file the scripts read: evaluation_ex.py reads it as
    JSON Lines (load_jsonl), evaluation_f1.py as one JSON list; `<name>.json` holds both."""
    gold = folder / "gold.sql"
    gold.write_text("".join(f"{e.sql}\t{e.db_id}\n" for e in split.examples), encoding="utf-8")
    difficulty = folder / "difficulty.jsonl"
    levels = [{"difficulty": example.difficulty or "simple"} for example in split.examples]
    difficulty.write_text("".join(json.dumps(level) + "\n" for level in levels), encoding="utf-8")
    difficulty.with_suffix(".json").write_text(json.dumps(levels), encoding="utf-8")
    return gold, difficulty


def official_command(
    args: argparse.Namespace,
    prediction: Path,
    gold: Path,
    difficulty: Path,
    log: Path,
    script: str = "evaluation_ex.py",
) -> list[str]:
    if script == "evaluation_f1.py":
        difficulty = difficulty.with_suffix(".json")
    return [
        str(args.official_python),
        str(args.official / script),
        "--predicted_sql_path", str(prediction),
        "--ground_truth_path", str(gold),
        "--db_root_path", f"{args.split.databases_dir}/",
        "--num_cpus", str(args.workers),
        "--meta_time_out", str(args.timeout),
        "--diff_json_path", str(difficulty),
        "--output_log_path", str(log),
    ]  # fmt: skip


# Runs the script's own functions and writes the per-question results it keeps internally.
OFFICIAL_PER_QUESTION = """
import json, sys
sys.path.insert(0, sys.argv[1])
import evaluation_ex as official
from evaluation_utils import package_sqls, sort_results
prediction, gold, db_root, cpus, timeout, out = sys.argv[2:8]
official.exec_result = []
predicted, _ = package_sqls(prediction, db_root, mode="pred")
gold_sql, db_paths = package_sqls(gold, db_root, mode="gt")
official.run_sqls_parallel(list(zip(predicted, gold_sql)), db_places=db_paths,
                           num_cpus=int(cpus), meta_time_out=float(timeout))
json.dump([r["res"] for r in sort_results(official.exec_result)], open(out, "w"))
"""


def official_per_question(args: argparse.Namespace, prediction: Path, gold: Path) -> list[int]:
    out = prediction.with_suffix(".official.json")
    subprocess.run(
        [
            str(args.official_python), "-c", OFFICIAL_PER_QUESTION, str(args.official),
            str(prediction), str(gold), f"{args.split.databases_dir}/", str(args.workers),
            str(args.timeout), str(out),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return json.loads(out.read_text())


def _timed(run: Callable[[], object]) -> tuple[float, object]:
    """(wall seconds, what `run` returned). Wall time only: the CPU time of worker processes
    started through a forkserver is not reported to this process."""
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


# --- the floor ---------------------------------------------------------------------------


def distinct_queries(split: BirdSplit, paths: list[Path]) -> list[tuple[Path, str]]:
    queries = {(split.database_path(e.db_id), e.sql): None for e in split.examples}
    for path in paths:
        for paired in load_paired_predictions(split, path).questions:
            queries[(split.database_path(paired.example.db_id), paired.sql or "")] = None
    return list(queries)


def raw_floor(queries: list[tuple[Path, str]]) -> None:
    """Plain sqlite3, one connection per database, every row fetched, errors ignored."""
    connections: dict[Path, sqlite3.Connection] = {}
    for db_path, sql in queries:
        connection = connections.get(db_path)
        if connection is None:
            connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            connections[db_path] = connection
        with contextlib.suppress(sqlite3.Error, ValueError):
            connection.execute(sql).fetchall()
    for connection in connections.values():
        connection.close()


# --- measurement -------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/bird/dev"))
    parser.add_argument("--files", type=int, default=10, help="prediction files in the sweep")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is shown")
    parser.add_argument(
        "--official", type=Path, required=True, help="folder with mini_dev's evaluation_ex.py"
    )
    parser.add_argument("--official-python", type=Path, default=Path(sys.executable))
    args = parser.parse_args()
    if not (args.official / "evaluation_ex.py").is_file():
        parser.error(f"--official {args.official}: no evaluation_ex.py there")
    args.split = split = load_split(args.data)
    console = table_console()
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="evaluate_speed_") as folder_name:
        folder = Path(folder_name)
        paths = build_prediction_files(split, args.files, folder)
        gold, difficulty = official_inputs(split, folder)
        queries = distinct_queries(split, paths)
        ours_command = [
            *OURS, "evaluate", "--data", str(args.data), "--workers", str(args.workers),
            "--timeout", str(args.timeout), *(f"--predictions={path}" for path in paths),
        ]  # fmt: skip
        warm_cache = folder / "gold_cache"
        subprocess.run([*ours_command, "--cache-dir", str(warm_cache), "--output",
                        str(folder / "prime")], check=True, capture_output=True)  # fmt: skip

        def official_sweep() -> list[str]:
            return [
                subprocess.run(
                    official_command(args, path, gold, difficulty, folder / "official.log"),
                    check=True, capture_output=True, text=True,
                ).stdout
                for path in paths
            ]  # fmt: skip

        def official_f1_sweep() -> list[str]:
            """The second script a user runs for the soft-F1 that `bird evaluate` reports."""
            log = folder / "official_f1.log"
            return [
                subprocess.run(
                    official_command(args, path, gold, difficulty, log, "evaluation_f1.py"),
                    check=True, capture_output=True, text=True,
                ).stdout
                for path in paths
            ]  # fmt: skip

        def ours_cli(*extra: str) -> Callable[[], object]:
            def run() -> object:
                return subprocess.run(
                    [*ours_command, *extra, "--output", str(folder / "ours")],
                    check=True, capture_output=True,
                )  # fmt: skip

            return run

        def ours_in_process(workers: int) -> Callable[[], object]:
            def run() -> object:
                options = EvaluationOptions(timeout=args.timeout, workers=workers)
                return evaluate_many(split, paths, options=options, gold_cache=GoldCache())

            return run

        measured: dict[str, list[float]] = {}
        outputs: dict[str, object] = {}
        sides: dict[str, Callable[[], object]] = {
            "official script, once per file": official_sweep,
            "ours: bird evaluate, cold": ours_cli("--no-disk-cache"),
            "ours: bird evaluate, warm gold cache": ours_cli("--cache-dir", str(warm_cache)),
            "ours: evaluate_many in-process, cold": ours_in_process(args.workers),
            "floor: distinct queries, plain sqlite3": lambda: raw_floor(queries),
        }
        if args.workers > 1:  # what the workers add, side by side
            sides["ours: evaluate_many in-process, cold, 1 worker"] = ours_in_process(1)
        with_f1 = (args.official / "evaluation_f1.py").is_file()
        if with_f1:
            sides["official soft-F1 script, once per file"] = official_f1_sweep
        for _ in range(args.repeats):
            for name, run in sides.items():
                wall, value = _timed(run)
                measured.setdefault(name, []).append(wall)
                outputs[name] = value

        official_stdout = outputs["official script, once per file"]
        reports = outputs["ours: evaluate_many in-process, cold"]
        official_ex = [official_per_question(args, path, gold) for path in paths]
    load_after = os.getloadavg()

    ours_ex = [[question.ex for question in report.questions] for report in reports]
    mismatches = sum(
        a != b
        for official_file, ours_file in zip(official_ex, ours_ex, strict=True)
        for a, b in zip(official_file, ours_file, strict=True)
    )
    printed = [float(re.findall(r"^EX\s.*?([\d.]+)\s*$", out, re.M)[-1]) for out in official_stdout]
    ours_totals = [report.summary.metrics["ex"]["total"] for report in reports]
    total_mismatches = sum(abs(a - b) > 0.005 for a, b in zip(printed, ours_totals, strict=True))

    best = {name: min(runs) for name, runs in measured.items()}
    if with_f1:  # EX and soft-F1 are what `bird evaluate` reports: the official scripts' sum
        f1_wall = best.pop("official soft-F1 script, once per file")
        best = {
            "official EX + soft-F1 scripts (what ours reports)": best[
                "official script, once per file"
            ]
            + f1_wall,
            **best,
        }
    official_wall = best["official script, once per file"]
    floor_wall = best["floor: distinct queries, plain sqlite3"]
    table = Table(
        title=f"EX of a {args.files}-file sweep on {split.name} ({len(split.examples)} "
        f"questions), {args.workers} worker(s), best of {args.repeats}"
    )
    both = best.get("official EX + soft-F1 scripts (what ours reports)")
    columns = ["", "wall s", "official EX / this", "this / floor"]
    if both is not None:
        columns.insert(3, "official EX+F1 / this")
    for column in columns:
        table.add_column(column, justify="right" if column else "left")
    for name, wall in best.items():
        ratios = [f"{official_wall / wall:.2f}x", f"{wall / floor_wall:.2f}x"]
        if both is not None:
            ratios.insert(1, f"{both / wall:.2f}x")
        table.add_row(name, f"{wall:.2f}", *ratios)
    console.print(table)
    for name, runs in measured.items():
        console.print(f"  {name}: " + ", ".join(f"{wall:.2f}" for wall in runs) + " s")
    timings = reports[0].summary.timings
    in_process = measured["ours: evaluate_many in-process, cold"][-1]
    console.print(
        "where ours goes (in-process, last run): "
        + ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in timings.items())
        + f"; pool stop and the rest {in_process - sum(timings.values()):.2f} s. Python "
        f"start-up, imports and writing reports: CLI cold minus in-process (best runs) = "
        f"{best['ours: bird evaluate, cold'] - best['ours: evaluate_many in-process, cold']:.2f} s"
    )
    console.print(
        f"queries executed: official {2 * len(split.examples) * args.files} per sweep; ours "
        f"{len({(e.db_id, e.sql) for e in split.examples})} gold + "
        f"{len(queries) - len({(e.db_id, e.sql) for e in split.examples})} distinct predicted"
    )
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    shared = autogroup.is_file() and autogroup.read_text().strip() == "1"
    console.print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
        + (
            "; the kernel shares CPU time between sessions (autogroup), so all processes "
            "started here, workers included, share one session's part of a busy machine"
            if shared
            else ""
        )
    )
    console.print(
        f"per-question EX mismatches with the official functions: {mismatches} of "
        f"{len(split.examples) * args.files}; files whose printed total EX differs: "
        f"{total_mismatches} of {args.files}"
    )
    if mismatches or total_mismatches:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
