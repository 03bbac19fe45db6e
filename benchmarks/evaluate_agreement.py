"""Check `bird evaluate` against the real official scripts, question by question.

For every prediction file, the official functions score each question (mini_dev's
`evaluation_ex.py` and `evaluation_f1.py`, and optionally DAMO-ConvAI's original
`evaluation.py`; imported from the scripts, not copied) and so does `evaluate_many`; the
table counts the questions on which they agree. The scripts are not shipped here: pass the
folders holding them (`--official`, `--damo`) and a Python that has their imports
(func_timeout, psycopg2, pymysql).

Files scored: the synthetic sweep of `evaluate_speed.py` (gold plus seeded perturbations),
files of harder perturbations for soft-F1 (columns reversed, rows doubled, emptied,
reordered), and any real model prediction file given with `--real` (an official file keyed
by the split's question_ids, e.g. a BIRD-dev `predict_dev.json`; it is scored on the
questions it answers, as a split of their own, so the official scripts' file-order pairing
applies).

With `--spider DIR --test-suite DIR` (a Spider-layout split, and a folder holding the
test-suite evaluation's `exec_eval.py` with its `parse.py`), files of perturbed Spider gold
queries are scored by `exec_eval.eval_exec_match` and by `evaluate_many`, with and without
keep_distinct, and compared the same way.

Differences kept on purpose (README, "Differences from the official scripts") are counted
apart, not as disagreements: an empty prediction scores 0 here, while the official scripts
run "" and score 1 when the gold result is empty. The DAMO-ConvAI script as stored today
sorts the values inside each row before comparing (so a prediction with its columns in
another order is right there and wrong in mini_dev's script and here); those questions are
counted apart as well.

    python benchmarks/evaluate_agreement.py --data ../shared/bird/dev \\
        --official /tmp/mini_dev/evaluation --damo /tmp/damo \\
        --official-python /tmp/venv/bin/python \\
        --real /tmp/predict_dev.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import sqlglot
from evaluate_speed import build_prediction_files
from rich.table import Table

from bird.console import table_console
from bird.data import BirdSplit, load_split
from bird.evaluation import EvaluationOptions, QuestionResult, evaluate_many
from bird.executor import ExecutionResult, execute_sql
from bird.gold_cache import GoldCache
from bird.predictions import OFFICIAL_SEPARATOR

# Runs one official script's own functions on a file; prints each question's score.
MINI_DEV = """
import json, sys
sys.path.insert(0, sys.argv[1])
import importlib
script = importlib.import_module(sys.argv[2])
from evaluation_utils import package_sqls, sort_results
prediction, gold, db_root, out = sys.argv[3:7]
script.exec_result = []
predicted, _ = package_sqls(prediction, db_root, mode="pred")
gold_sql, db_paths = package_sqls(gold, db_root, mode="gt")
script.run_sqls_parallel(list(zip(predicted, gold_sql)), db_places=db_paths, num_cpus=2)
json.dump([r["res"] for r in sort_results(script.exec_result)], open(out, "w"))
"""
# DAMO-ConvAI's evaluation.py reads <dir>/predict_dev.json and <dir>/dev_gold.sql, and runs
# each prediction on the database its value names.
DAMO = """
import json, sys
sys.path.insert(0, sys.argv[1])
import evaluation as script
folder, db_root, out = sys.argv[2:5]
script.exec_result = []
predicted, db_paths = script.package_sqls(folder + "/", db_root, mode="gpt", data_mode="dev")
gold_sql, _ = script.package_sqls(folder + "/", db_root, mode="gt", data_mode="dev")
script.run_sqls_parallel(list(zip(predicted, gold_sql)), db_places=db_paths, num_cpus=2)
json.dump([r["res"] for r in script.sort_results(script.exec_result)], open(out, "w"))
"""


# Runs the test-suite evaluation's eval_exec_match on each line of each file, as its
# evaluation.py calls it; prints the scores.
TEST_SUITE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from exec_eval import eval_exec_match
jobs = json.load(open(sys.argv[2]))
scores = []
for databases, gold, lines, keep in jobs:
    scores.append([
        eval_exec_match(db=database, p_str=line.strip().split("\\t")[0].replace(" value ", " 1 "),
                        g_str=g, plug_value=False, keep_distinct=keep,
                        progress_bar_for_each_datapoint=False)
        for g, line, database in zip(gold, lines, databases)
    ])
json.dump(scores, open(sys.argv[3], "w"))
"""


def _reverse_columns(sql: str) -> str:
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        select = tree if isinstance(tree, sqlglot.exp.Select) else tree.find(sqlglot.exp.Select)
        select.set("expressions", list(reversed(select.expressions)))
        return tree.sql(dialect="sqlite")
    except (sqlglot.errors.SqlglotError, AttributeError):
        return sql


SPIDER_PERTURBATIONS: list[Callable[[str], str]] = [
    lambda sql: sql,
    _reverse_columns,
    lambda sql: (
        f"{sql} ORDER BY 1 DESC" if "ORDER" not in sql.upper() else sql.replace("DESC", "ASC")
    ),
    lambda sql: (
        sql.replace("SELECT", "SELECT DISTINCT", 1)
        if "DISTINCT" not in sql.upper()
        else sql.replace("DISTINCT ", "")
    ),
    lambda sql: f"SELECT * FROM ({sql}) LIMIT 1",
    lambda sql: f"SELECT * FROM ({sql}) UNION ALL SELECT * FROM ({sql})",
    lambda sql: f"SELECT COUNT(*) FROM ({sql})",
    lambda sql: sql.replace("SELECT", "SELEC", 1),
    lambda sql: sql.replace(">=", "> =").replace("=", "= value ", 1),
]

HARD_PERTURBATIONS: list[Callable[[str], str]] = [
    _reverse_columns,
    lambda sql: f"SELECT * FROM ({sql}) UNION ALL SELECT * FROM ({sql})",
    lambda sql: f"SELECT * FROM ({sql}) WHERE 0",
    lambda sql: f"SELECT * FROM ({sql}) ORDER BY 1 DESC",
    lambda sql: f"SELECT * FROM ({sql}) LIMIT 2",
    lambda sql: "",
]


def hard_files(split: BirdSplit, count: int, folder: Path) -> list[Path]:
    """Half the questions of each file perturbed with the harder perturbations."""
    paths = []
    for index in range(count):
        chooser = random.Random(1000 + index)
        predictions = {}
        for position, example in enumerate(split.examples):
            sql = example.sql.strip().rstrip(";")
            if chooser.random() < 0.5:
                sql = chooser.choice(HARD_PERTURBATIONS)(sql)
            predictions[str(position)] = f"{sql}{OFFICIAL_SEPARATOR}{example.db_id}"
        path = folder / f"hard_{index:02d}.json"
        path.write_text(json.dumps(predictions, indent=4), encoding="utf-8")
        paths.append(path)
    return paths


def spider_agreement(args: argparse.Namespace, folder: Path, files: int = 60) -> list[int]:
    """[predictions, agreeing] over files of perturbed Spider gold queries."""
    split = load_split(args.spider)
    chooser = random.Random(7)
    paths = []
    for index in range(files):
        lines = [chooser.choice(SPIDER_PERTURBATIONS)(e.sql) for e in split.examples]
        path = folder / f"spider_{index:02d}.txt"
        path.write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
        paths.append(path)
    gold = [e.sql for e in split.examples]
    databases = [str(split.database_path(e.db_id)) for e in split.examples]
    jobs, ours = [], []
    for keep in (False, True):
        options = EvaluationOptions(keep_distinct=keep, workers=2)
        reports = evaluate_many(split, paths, options=options, gold_cache=GoldCache())
        for path, report in zip(paths, reports, strict=True):
            jobs.append((databases, gold, path.read_text().splitlines(), keep))
            ours.append([question.ex for question in report.questions])
    (folder / "jobs.json").write_text(json.dumps(jobs))
    command = [str(args.official_python), "-c", TEST_SUITE, str(args.test_suite),
               str(folder / "jobs.json"), str(folder / "scores.json")]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    official = json.loads((folder / "scores.json").read_text())
    pairs = [(a, b) for mine, theirs in zip(ours, official, strict=True)
             for a, b in zip(mine, theirs, strict=True)]  # fmt: skip
    return [len(pairs), sum(a == b for a, b in pairs)]


def subset_split(split: BirdSplit, real: Path, folder: Path) -> tuple[BirdSplit, Path]:
    """The questions a real file answers, as a split of their own, and the file keyed by
    position in it (its entries in the order of the split)."""
    answers = json.loads(real.read_text(encoding="utf-8"))
    chosen = [e for e in split.examples if str(e.question_id) in answers]
    root = folder / f"{real.stem}_split"
    root.mkdir()
    records = json.loads((split.root / f"{split.name}.json").read_text(encoding="utf-8"))
    wanted = {e.question_id for e in chosen}
    kept = [record for record in records if record["question_id"] in wanted]
    (root / "dev.json").write_text(json.dumps(kept), encoding="utf-8")
    (root / "dev_databases").symlink_to(split.databases_dir.resolve())
    keyed = {
        str(position): answers[str(example.question_id)] for position, example in enumerate(chosen)
    }
    path = folder / f"{real.stem}_by_position.json"
    path.write_text(json.dumps(keyed, indent=4), encoding="utf-8")
    return load_split(root), path


def official_scores(
    args: argparse.Namespace, split: BirdSplit, path: Path, script: str, folder: Path
) -> list[float]:
    gold = folder / f"{path.stem}_gold.sql"
    gold.write_text("".join(f"{e.sql}\t{e.db_id}\n" for e in split.examples), encoding="utf-8")
    out = folder / f"{path.stem}_{script}.json"
    command = [str(args.official_python), "-c", MINI_DEV, str(args.official), script,
               str(path), str(gold), f"{split.databases_dir}/", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return json.loads(out.read_text())


def damo_scores(args: argparse.Namespace, split: BirdSplit, path: Path, folder: Path) -> list[int]:
    work = folder / f"{path.stem}_damo"
    work.mkdir()
    shutil.copy(path, work / "predict_dev.json")
    (work / "dev_gold.sql").write_text(
        "".join(f"{e.sql}\t{e.db_id}\n" for e in split.examples), encoding="utf-8"
    )
    out = work / "scores.json"
    command = [str(args.official_python), "-c", DAMO, str(args.damo), str(work),
               f"{split.databases_dir}/", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/bird/dev"))
    parser.add_argument("--official", type=Path, required=True, help="mini_dev's evaluation/")
    parser.add_argument("--damo", type=Path, help="folder with DAMO-ConvAI's evaluation.py")
    parser.add_argument("--official-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--files", type=int, default=10, help="synthetic sweep files")
    parser.add_argument("--hard-files", type=int, default=4)
    parser.add_argument("--real", type=Path, action="append", default=[])
    parser.add_argument("--spider", type=Path, help="a Spider-layout split")
    parser.add_argument("--test-suite", type=Path, help="folder with exec_eval.py, parse.py")
    args = parser.parse_args()
    if (args.spider is None) != (args.test_suite is None):
        parser.error("--spider and --test-suite go together")
    split = load_split(args.data)
    console = table_console()
    table = Table(title="Question-by-question agreement with the official scripts")
    columns = ["file", "questions", "EX agree", "soft-F1 agree", "kept rule", "other",
               "DAMO EX agree", "DAMO: values sorted"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "file" else "right")
    totals = [0] * (len(columns) - 1)
    with tempfile.TemporaryDirectory(prefix="evaluate_agreement_") as folder_name:
        folder = Path(folder_name)
        jobs = [(split, p) for p in build_prediction_files(split, args.files, folder)]
        jobs += [(split, p) for p in hard_files(split, args.hard_files, folder)]
        jobs += [subset_split(split, real, folder) for real in args.real]
        for job_split, path in jobs:
            row = compare_file(args, job_split, path, folder)
            totals = [a + b for a, b in zip(totals, row, strict=True)]
            table.add_row(path.name, *map(str, row))
        spider = spider_agreement(args, folder) if args.spider is not None else None
    table.add_row("all", *map(str, totals))
    console.print(table)
    if spider is not None:
        console.print(
            f"Spider ({args.spider}): EX agrees with the test-suite eval_exec_match on "
            f"{spider[1]} of {spider[0]} predictions (keep_distinct off and on)"
        )
    console.print(
        "kept rule: questions where the two differ only by a difference kept on purpose (an "
        'empty prediction scores 0 here; the official scripts run "" and score it 1 when '
        "the gold result is empty). other: any other disagreement, EX or soft-F1. DAMO: "
        "values sorted: questions the stored DAMO script scores 1 and mini_dev's script and "
        "ours 0, each checked to become equal when the values of every row are sorted."
    )
    if totals[4] or (spider is not None and spider[0] != spider[1]):
        raise SystemExit(1)


def _values_sorted_equal(split: BirdSplit, question: QuestionResult) -> bool:
    """DAMO's stored rule: rows compared after sorting the values inside each row."""
    db_path = split.database_path(question.db_id)
    gold_sql = next(e.sql for e in split.examples if e.position == question.position)
    predicted = execute_sql(db_path, question.predicted_sql or "")
    gold = execute_sql(db_path, gold_sql)

    def rows(result: ExecutionResult) -> set[tuple[object, ...]]:
        return {tuple(sorted(row, key=str)) for row in result.rows}

    return predicted.ok and gold.ok and rows(predicted) == rows(gold)


def compare_file(args: argparse.Namespace, split: BirdSplit, path: Path, folder: Path) -> list[int]:
    """[questions, EX agree, F1 agree, kept-rule differences, other, DAMO agree, DAMO
    values-sorted differences] for one file."""
    (report,) = evaluate_many(
        split, [path], options=EvaluationOptions(workers=2), gold_cache=GoldCache()
    )
    ours = report.questions
    ex = official_scores(args, split, path, "evaluation_ex", folder)
    f1 = official_scores(args, split, path, "evaluation_f1", folder)
    ex_agree = f1_agree = kept = other = 0
    for question, official_ex, official_f1 in zip(ours, ex, f1, strict=True):
        same_ex = question.ex == official_ex
        same_f1 = math.isclose(question.soft_f1 or 0.0, official_f1, abs_tol=1e-12)
        ex_agree += same_ex
        f1_agree += same_f1
        if not (same_ex and same_f1):
            empty = question.error == "syntax" and not (question.predicted_sql or "").strip()
            kept += empty
            other += not empty
    damo_agree = values_sorted = 0
    if args.damo is not None:
        for question, official in zip(ours, damo_scores(args, split, path, folder), strict=True):
            if question.ex == official:
                damo_agree += 1
            elif official == 1 and _values_sorted_equal(split, question):
                values_sorted += 1
            elif not (question.error == "syntax" and not (question.predicted_sql or "").strip()):
                other += 1
    return [len(ours), ex_agree, f1_agree, kept, other, damo_agree, values_sorted]


if __name__ == "__main__":
    main()
