"""Do the step rewards give GRPO a signal where execution alone gives none? And how fast is
scoring a batch, against scoring each answer alone with its own connection?

    rationale predict --data demo:train --kind cot --model runs/demo-learn/models/student-cot \\
        --samples 4 --temperature 1.0 --limit 60 --out runs/demo-learn/predict-train
    python benchmarks/reward_signal.py --predictions runs/demo-learn/predict-train/predictions.jsonl

Groups (one question's answers, as GRPO samples them):
- sampled: the greedy and sampled answers of a CoT student in a predictions.jsonl (train
  questions: what GRPO trains on);
- part-way: for every demo train question the symbolic decomposer splits into 2+ steps,
  three wrong answers a policy between "nothing" and "right" writes: the right steps with a
  wrong final query, one step with a changed literal, one step that fails. Execution scores
  all three 0.

For each: the share of groups whose rewards have zero variance (GRPO's advantage is 0 for
every answer: the question teaches nothing) with `execution` alone, with `format` added,
with the step rewards added (`steps`, `step_match`, no `format`) and with all four
(default weights), and the share of answer pairs with equal `execution` that the step
rewards order (one above the other).

Throughput: every answer above scored by `RewardScorer` in batches (as GRPO steps bring
them: worker processes started once, a batch's identical queries once, gold results and
chains once per question), the first time and again, against the baseline a reward function
usually is: each answer alone, its own read-only sqlite3 connection, gold and gold chain
executed again for each answer (and no time limit). Both must give the same components.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import statistics
import time
from pathlib import Path

from bird.data import BirdSplit, load_split, split_dir_path
from bird.schema import table_columns
from rationale.chain.format import Rationale, extract_final_sql, parse_rationale, render_rationale
from rationale.decomposer.builder import DecompositionError, decompose_sql
from rationale.rewards.scoring import (
    DEFAULT_WEIGHTS,
    RewardBreakdown,
    RewardQuestion,
    RewardScorer,
    carries,
    feeding_steps,
)

Group = list[tuple[str, RewardQuestion]]


def _question(split: BirdSplit, question_id: int) -> RewardQuestion:
    example = split.example(question_id)
    return RewardQuestion(
        question_id=question_id, db_id=example.db_id,
        db_path=split.database_path(example.db_id), gold_sql=example.sql,
    )  # fmt: skip


def sampled_groups(path: Path, split: BirdSplit) -> list[Group]:
    groups = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        question = _question(split, record["question_id"])
        groups.append([(c["text"], question) for c in record["candidates"]])
    return groups


def _change_literal(sql: str) -> str | None:
    """The SQL with its first number or quoted string changed, or None if it has neither."""
    for index, char in enumerate(sql):
        if char == "'":
            return sql[: index + 1] + "zz" + sql[index + 1 :]
        if char.isdigit() and (
            index == 0 or not (sql[index - 1].isalnum() or sql[index - 1] == "_")
        ):
            return sql[:index] + "9" + sql[index:]
    return None


def part_way_groups(split: BirdSplit) -> list[Group]:
    groups = []
    for example in split.executable_examples():
        db = split.database_path(example.db_id)
        try:
            chain = decompose_sql(example.sql, table_columns(db))
        except DecompositionError:
            continue
        rationale = chain.rationale
        if not chain.structured or len(rationale.steps) < 2:
            continue
        question = _question(split, example.question_id)
        last = rationale.steps[-1].name
        wrong_final = rationale.model_copy(
            update={"final_sql": f"SELECT COUNT(*) + 1000000 FROM {last}"}
        )
        answers = [wrong_final]
        for index, step in enumerate(rationale.steps):
            changed = _change_literal(step.sql)
            if changed is not None:
                steps = list(rationale.steps)
                steps[index] = step.model_copy(update={"sql": changed})
                answers.append(rationale.model_copy(update={"steps": steps}))
                break
        broken = list(rationale.steps)
        broken[-1] = broken[-1].model_copy(
            update={"sql": broken[-1].sql.replace("SELECT", "SELECT no_such_column,", 1)}
        )
        answers.append(rationale.model_copy(update={"steps": broken}))
        groups.append([(render_rationale(answer), question) for answer in answers])
    return groups


def _variance_free(values: list[float]) -> bool:
    return max(values) - min(values) < 1e-9


def signal(groups: list[Group], scored: list[list[RewardBreakdown]]) -> dict[str, float]:
    """Zero-variance groups under three rewards, and tied pairs the step rewards order."""
    step_weights = {k: v for k, v in DEFAULT_WEIGHTS.items() if k != "format"}
    format_weights = {
        "execution": DEFAULT_WEIGHTS["execution"],
        "format": DEFAULT_WEIGHTS["format"],
    }
    execution = [[b.execution for b in group] for group in scored]
    with_format = [[b.total(format_weights) for b in group] for group in scored]
    with_steps = [[b.total(step_weights) for b in group] for group in scored]
    total = [[b.total(DEFAULT_WEIGHTS) for b in group] for group in scored]
    tied_pairs = ordered = 0
    for ex, steps in zip(execution, with_steps, strict=True):
        for i, j in itertools.combinations(range(len(ex)), 2):
            if ex[i] == ex[j]:
                tied_pairs += 1
                ordered += abs(steps[i] - steps[j]) > 1e-9
    return {
        "groups": len(groups),
        "answers": sum(map(len, groups)),
        "right": sum(b.execution == 1.0 for group in scored for b in group),
        "no signal: execution": 100 * statistics.mean(map(_variance_free, execution)),
        "no signal: + format": 100 * statistics.mean(map(_variance_free, with_format)),
        "no signal: + steps, step_match": 100 * statistics.mean(map(_variance_free, with_steps)),
        "no signal: all four": 100 * statistics.mean(map(_variance_free, total)),
        "tied pairs": tied_pairs,
        "tied pairs the step rewards order": 100 * ordered / max(tied_pairs, 1),
    }


# --- the baseline: each answer alone, its own connection --------------------------------


def _rows(connection: sqlite3.Connection, sql: str) -> frozenset | None:
    try:
        return frozenset(map(tuple, connection.execute(sql).fetchall()))
    except sqlite3.Error:
        return None


def score_alone(text: str, question: RewardQuestion) -> RewardBreakdown:
    """The four components as `RewardScorer` defines them, the way a reward function is
    usually written: one connection per answer, everything executed again."""
    connection = sqlite3.connect(f"{question.db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = RewardBreakdown(question_id=question.question_id)
        gold = _rows(connection, question.gold_sql)
        final_sql = extract_final_sql(text)
        if final_sql is None:
            return found
        parsed = parse_rationale(text)
        found.format = float(isinstance(parsed, Rationale))
        final = _rows(connection, final_sql)
        found.execution = float(final is not None and final == gold)
        if not isinstance(parsed, Rationale):
            return found
        chain = decompose_sql(question.gold_sql, table_columns(question.db_path)).rationale
        gold_steps = [_rows(connection, chain.step_query(s.name)) for s in chain.steps]
        gold_steps = [rows for rows in gold_steps if rows]
        used = feeding_steps(parsed)
        good = 0
        mine = []
        for step in parsed.steps:
            rows = _rows(connection, parsed.step_query(step.name))
            if rows is not None:
                mine.append(rows)
            if rows is not None and (rows or not gold) and step.name in used:
                good += 1
        found.steps = good / len(parsed.steps)
        if gold_steps:
            found.step_match = sum(any(carries(m, g) for m in mine) for g in gold_steps) / len(
                gold_steps
            )
        return found
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=Path, help="a CoT student's predictions.jsonl")
    parser.add_argument("--data", default="demo:train", help="the split they answer")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="answers scored per call")
    args = parser.parse_args()
    split = load_split(split_dir_path(args.data))
    sets: dict[str, list[Group]] = {}
    if args.predictions:
        sets[f"sampled ({args.predictions.parent.name})"] = sampled_groups(args.predictions, split)
    sets["part-way (3 wrong answers per question)"] = part_way_groups(split)

    answers = [answer for groups in sets.values() for group in groups for answer in group]
    batches = [answers[i : i + args.batch] for i in range(0, len(answers), args.batch)]
    timings: dict[str, float] = {}
    with RewardScorer(workers=args.workers) as scorer:
        scorer.pool.start()  # during training the pool lives as long as the run
        scorer.score([answers[0][0]], [answers[0][1]], "cot")
        for label in ("first pass (gold results and chains computed)", "again (gold cached)"):
            clock = time.perf_counter()
            batched = [
                breakdown
                for batch in batches
                for breakdown in scorer.score([t for t, _ in batch], [q for _, q in batch], "cot")
            ]
            timings[f"RewardScorer, batches of {args.batch}, {args.workers} workers: {label}"] = (
                time.perf_counter() - clock
            )
    clock = time.perf_counter()
    alone = [score_alone(text, question) for text, question in answers]
    timings["each answer alone, its own connection, gold again each time"] = (
        time.perf_counter() - clock
    )
    components = ("format", "execution", "steps", "step_match")
    differing = sum(
        any(abs(getattr(a, c) - getattr(b, c)) > 1e-9 for c in components)
        for a, b in zip(batched, alone, strict=True)
    )

    position = 0
    header = None
    for name, groups in sets.items():
        scored = []
        for group in groups:
            scored.append(batched[position : position + len(group)])
            position += len(group)
        row = signal(groups, scored)
        if header is None:
            header = list(row)
            print("| set | " + " | ".join(header) + " |")
            print("|---|" + "---:|" * len(header))
        print(
            f"| {name} | "
            + " | ".join(
                f"{v:.1f}%" if "signal" in k or "order" in k else f"{v:,}" for k, v in row.items()
            )
            + " |"
        )
    print(f"\nweights: {DEFAULT_WEIGHTS}\n")
    print("| scoring | answers | seconds | answers/s |\n|---|---:|---:|---:|")
    for label, seconds in timings.items():
        print(f"| {label} | {len(answers):,} | {seconds:.2f} | {len(answers) / seconds:,.0f} |")
    baseline = timings["each answer alone, its own connection, gold again each time"]
    ratios = ", ".join(f"{baseline / t:.2f}x" for t in list(timings.values())[:2])
    print(f"\nspeed-up over the baseline: {ratios}; answers whose components differ: {differing}")


if __name__ == "__main__":
    main()
