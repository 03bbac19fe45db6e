"""The reward tool: score model answers with exactly the functions GRPO trains with.

Each input line is `{"question_id": int, "completion": str}` (a question of `data`); each
output line holds every component (`rationale.rewards.scoring`), the weighted total and a
note saying why a component is low. Users debug reward design with it before a GPU hour
goes into training on it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, field_validator

from bird.console import ProgressCallback, no_progress
from bird.data import load_split
from rationale.config import OUTPUT_FILE, SplitDir, StageConfig
from rationale.rewards.scoring import (
    COMPONENTS,
    DEFAULT_WEIGHTS,
    RewardKind,
    RewardLimits,
    RewardQuestion,
    RewardScorer,
)
from rationale.run_dir import read_input_jsonl, rewrite_jsonl
from rationale.stages.validate import InputError, gradable_example

NAME = "reward"
BATCH = 64  # answers scored together (one pool round trip)


class RewardConfig(StageConfig):
    """Score answers to questions of a split with the training rewards."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers"})

    data: SplitDir = Field(description="The split the answers' questions come from.")
    input: Path = Field(
        description='JSONL, one answer per line: {"question_id": int, "completion": str}.'
    )
    kind: RewardKind = Field(
        default="cot", description="cot: answers are rationale chains; nocot: plain SQL."
    )
    output: Path | None = Field(
        default=None,
        description="Write one line per answer: every component, the total and a note.",
        json_schema_extra={"output": OUTPUT_FILE},
    )
    weights: list[str] = Field(
        default_factory=list,
        description="NAME=WEIGHT for the total, repeat per component (default: "
        + ", ".join(f"{k}={v}" for k, v in DEFAULT_WEIGHTS.items())
        + "; a component not named keeps its default).",
        json_schema_extra={"flag": "weight"},
    )
    timeout: float = Field(default=10.0, gt=0, description="Seconds per query of an answer.")
    max_steps: int | None = Field(
        default=50_000_000, gt=0, description="SQLite VM steps per query of an answer."
    )
    workers: int = Field(default=2, ge=1, description="Processes executing queries.")

    @field_validator("weights")
    @classmethod
    def _named_weights(cls, values: list[str]) -> list[str]:
        for value in values:
            name, separator, weight = value.partition("=")
            if not separator or name not in COMPONENTS:
                raise ValueError(
                    f"{value!r} is not NAME=WEIGHT with NAME one of {', '.join(COMPONENTS)}"
                )
            try:
                float(weight)
            except ValueError:
                raise ValueError(f"{value!r}: the weight is not a number") from None
        return values

    def weight_map(self) -> dict[str, float]:
        given = {v.partition("=")[0]: float(v.partition("=")[2]) for v in self.weights}
        return {**DEFAULT_WEIGHTS, **given}


ANSWER_LINE = 'each line is {"question_id": <int>, "completion": "<the model\'s text>"}'


class AnswerLine(BaseModel):
    question_id: int
    completion: str


class RewardLine(BaseModel):
    """One line of the output."""

    line: int
    question_id: int
    db_id: str
    format: float
    execution: float
    steps: float
    step_match: float
    total: float
    note: str = ""


class RewardReport(BaseModel):
    answers: int
    kind: str
    weights: dict[str, float]
    means: dict[str, float]  # component (and "total") -> mean over the answers
    execution_right: int
    lines: list[RewardLine] = []
    queries_run: int
    seconds: float
    output: str | None


def run(config: RewardConfig, *, progress: ProgressCallback = no_progress) -> RewardReport:
    clock = time.perf_counter()
    split = load_split(config.data)
    answers = read_input_jsonl(config.input, AnswerLine, what="an answer line", advice=ANSWER_LINE)
    if not answers:
        raise InputError(f"{config.input} holds no answers")
    questions = []
    for number, answer in answers:
        example = gradable_example(split, answer.question_id, f"{config.input}:{number}")
        questions.append(
            RewardQuestion(
                question_id=example.question_id,
                db_id=example.db_id,
                db_path=split.database_path(example.db_id),
                gold_sql=example.sql,
            )
        )
    weights = config.weight_map()
    limits = RewardLimits(timeout=config.timeout, max_steps=config.max_steps)
    lines: list[RewardLine] = []
    with RewardScorer(limits, workers=config.workers) as scorer:
        for start in range(0, len(answers), BATCH):
            chunk = slice(start, start + BATCH)
            scored = scorer.score(
                [answer.completion for _, answer in answers[chunk]], questions[chunk], config.kind
            )
            for (number, _), question, breakdown in zip(
                answers[chunk], questions[chunk], scored, strict=True
            ):
                lines.append(
                    RewardLine(
                        line=number,
                        db_id=question.db_id,
                        total=round(breakdown.total(weights), 6),
                        **breakdown.model_dump(),
                    )
                )
            progress("score", len(lines), len(answers))
        queries = scorer.queries_run
    if config.output is not None:
        rewrite_jsonl(config.output, lines)
    means = {
        name: round(sum(getattr(line, name) for line in lines) / len(lines), 4)
        for name in (*COMPONENTS, "total")
    }
    return RewardReport(
        answers=len(lines),
        kind=config.kind,
        weights=weights,
        means=means,
        execution_right=sum(line.execution == 1.0 for line in lines),
        lines=lines,
        queries_run=queries,
        seconds=round(time.perf_counter() - clock, 3),
        output=str(config.output) if config.output else None,
    )
