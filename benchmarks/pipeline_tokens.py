"""Tokens per example at each generating stage, and what BIRD train at full scale costs.

    python benchmarks/pipeline_tokens.py [--data ../shared/bird/train] [--model smollm2-135m]

Measured on the executable questions of a train split (the shipped subset: beer_factory's
104), with the pipeline's own prompt builders and a real tokenizer (the tiny model's; a
70B-class teacher's tokenizer has a larger vocabulary and counts fewer tokens):

    teacher      the free-mode distillation prompt (3 shots from the validated pool)
    rationalizer the annotation prompt (schema, evidence, question, gold SQL)
    student      the CoT student's prompt (no gold SQL)

Completions are the length of validated rationales of the same questions (the symbolic
decomposer's, which the teacher's resemble; the no-CoT completion is the gold SQL).

The projection for BIRD train (9,428 questions) follows `bird-full`: three teacher
iterations, the first greedy, the next two 4 samples for every question still uncovered.
The upper bound assumes nothing is ever covered (9 samples a question); the realistic row
assumes coverage of 60%, 70% and 74% after iterations 1-3 (74%: the paper's teacher-only
coverage). The rationalizer then answers the rest greedily plus 4 samples for half of them;
the students answer BIRD dev (1,534) once greedily and with 8 self-consistency samples.
Generation time is printed for a range of decode throughputs (output tokens/s of the whole
serving fleet), since no GPU measured it here. The prefix cache: prompts are ordered as
distillation sends them (by database), and the tokens each shares with the one before it
(system prompt and schema) are what vLLM's prefix cache serves without computing.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bird.data import load_split
from bird.schema import load_schema, render_schema
from rationale.prompting.retrieval import ShotQuery, build_retriever
from rationale.prompting.task import TaskPrompter, completion_text, load_tokenizer
from rationale.prompting.teacher import build_teacher_prompt
from rationale.records.rationales import PoolEntry
from rationale.stages.decompose import decompose_examples

TRAIN_QUESTIONS = 9428
DEV_QUESTIONS = 1534
TEACHER_COVERAGE = 0.74  # the paper's teacher-only coverage
COVERAGE_BY_ITERATION = (0.60, 0.70, TEACHER_COVERAGE)  # the realistic row's assumption
SAMPLES = 4  # per uncovered question in iterations 2 and 3 (bird-full)
THROUGHPUTS = (1_000, 3_000, 10_000)  # output tokens/s of the serving fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/bird/train"))
    parser.add_argument("--model", default="smollm2-135m", help="Tokenizer to count with.")
    args = parser.parse_args()
    console = Console(width=160)
    split = load_split(args.data)
    examples = split.select(executable=True)
    tokenizer = load_tokenizer(args.model)

    def ids(messages: list[dict]) -> list[int]:
        found = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(found["input_ids"] if hasattr(found, "keys") else found)

    def count(messages: list[dict]) -> int:
        return len(ids(messages))

    def text_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    records, _ = decompose_examples(split, examples, validate=True, workers=2)
    valid = {r.question_id: r for r in records if r.validation == "ex_equal"}
    chosen = [e for e in examples if e.question_id in valid]
    pool = [
        PoolEntry.from_example(e, split.name, valid[e.question_id].rationale(), "decompose")
        for e in chosen
    ]
    retriever = build_retriever(pool, "sql", target_split=split.name)
    shots = retriever.retrieve_many(
        [
            ShotQuery(split=split.name, question_id=e.question_id, db_id=e.db_id,
                      question=e.question, sql=e.sql)
            for e in chosen
        ],
        3,
    )  # fmt: skip
    schemas = {
        db: render_schema(load_schema(split, db), max_chars=12000)
        for db in {e.db_id for e in chosen}
    }
    teacher_ids = [
        ids([m.model_dump() for m in build_teacher_prompt(e, schemas[e.db_id], s).messages])
        for e, s in zip(chosen, shots, strict=True)
    ]
    teacher = [len(prompt) for prompt in teacher_ids]
    order = sorted(range(len(chosen)), key=lambda i: (chosen[i].db_id, chosen[i].question_id))
    shared = [
        _shared_prefix(teacher_ids[i], teacher_ids[j])
        for i, j in itertools.pairwise(order)
        if chosen[i].db_id == chosen[j].db_id
    ]
    rationalizer = TaskPrompter(kind="rationalizer", split=split)
    student = TaskPrompter(kind="student-cot", split=split)
    rationalizer_prompt = [
        count([m.model_dump() for m in rationalizer.prompt(e).messages]) for e in chosen
    ]
    student_prompt = [count([m.model_dump() for m in student.prompt(e).messages]) for e in chosen]
    rationale = [
        text_tokens(completion_text("student-cot", e.sql, valid[e.question_id].rationale()))
        for e in chosen
    ]
    sql = [text_tokens(completion_text("student-nocot", e.sql, None)) for e in chosen]

    per_example = Table(title=f"tokens per example ({len(chosen)} questions of {split.root}, "
                              f"{args.model} tokenizer)")  # fmt: skip
    for column in ("stage", "prompt mean", "prompt p90", "completion mean", "completion p90"):
        per_example.add_column(column, justify="left" if column == "stage" else "right")

    def p90(values: list[int]) -> int:
        return sorted(values)[int(0.9 * (len(values) - 1))]

    rows = {
        "teacher (distill)": (teacher, rationale),
        "rationalizer (annotate)": (rationalizer_prompt, rationale),
        "CoT student (predict)": (student_prompt, rationale),
        "no-CoT student (predict)": (student_prompt, sql),
    }
    for name, (prompts, completions) in rows.items():
        per_example.add_row(
            name,
            f"{statistics.mean(prompts):.0f}",
            str(p90(prompts)),
            f"{statistics.mean(completions):.0f}",
            str(p90(completions)),
        )
    console.print(per_example)

    mean_rationale = statistics.mean(rationale)
    if shared:
        console.print(
            f"prefix cache: a teacher prompt shares {statistics.mean(shared):.0f} of its "
            f"{statistics.mean(teacher):.0f} tokens on average with the one before it "
            f"({100 * sum(shared) / sum(teacher[1:]):.0f}% of prompt tokens served from the "
            "cache, system prompt and schema)"
        )
    bound = TRAIN_QUESTIONS * (1 + SAMPLES * 2)
    uncovered = [1 - c for c in COVERAGE_BY_ITERATION[:2]]
    teacher_samples = TRAIN_QUESTIONS * (1 + SAMPLES * sum(uncovered))
    rationalizer_samples = TRAIN_QUESTIONS * (1 - TEACHER_COVERAGE) * (1 + 4 * 0.5)
    student_samples = DEV_QUESTIONS * (1 + 8)
    stages = {
        "distill, upper bound (nothing covered)": (
            bound, statistics.mean(teacher), mean_rationale
        ),
        "distill (teacher), 60/70/74% covered": (
            teacher_samples, statistics.mean(teacher), mean_rationale
        ),
        "annotate (rationalizer)": (
            rationalizer_samples, statistics.mean(rationalizer_prompt), mean_rationale
        ),
        "predict CoT, 1+8 samples": (
            student_samples, statistics.mean(student_prompt), mean_rationale
        ),
        "predict no-CoT, 1+8 samples": (
            student_samples, statistics.mean(student_prompt), statistics.mean(sql)
        ),
    }  # fmt: skip
    projection = Table(title="BIRD at full scale (projected from the tokens above)")
    for column in ("stage", "samples", "prompt tokens", "output tokens",
                   *(f"hours at {t:,} out tok/s" for t in THROUGHPUTS)):  # fmt: skip
        projection.add_column(column, justify="left" if column == "stage" else "right")
    for name, (samples, prompt, completion) in stages.items():
        output = samples * completion
        projection.add_row(
            name,
            f"{samples:,.0f}",
            f"{samples * prompt / 1e6:.1f} M",
            f"{output / 1e6:.1f} M",
            *(f"{output / t / 3600:.1f}" for t in THROUGHPUTS),
        )
    console.print(projection)


def _shared_prefix(a: list[int], b: list[int]) -> int:
    unequal = (k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return next(unequal, min(len(a), len(b)))


if __name__ == "__main__":
    main()
