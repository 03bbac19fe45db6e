"""Records that more than one stage reads: the pool of validated rationales, the attempts a
model made, and the rationales a stage accepted with their provenance.

Every record names the split its question comes from, so that train data is never built
from dev or test questions (the leakage guard in `rationale.prompting.retrieval` and the export
check it), and every rationale says what produced it (seed file, symbolic decomposer,
teacher LLM, rationalization model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bird.data import BirdExample
from rationale.chain.format import Rationale, render_rationale
from rationale.llm import SamplingParams
from rationale.validation.checks import ValidationReport

RationaleSource = Literal["seed", "decompose", "teacher", "rationalizer"]
PoolSource = RationaleSource  # the name the pool's readers know
AcceptRule = Literal["most_steps", "fewest_steps"]


class ExampleRationale(BaseModel):
    """One question with its gold SQL and a rationale that decomposes that SQL."""

    split: str  # "train" for everything a train pool or dataset may hold
    question_id: int
    db_id: str
    question: str
    evidence: str = ""
    gold_sql: str
    rationale: Rationale

    @property
    def key(self) -> tuple[str, int]:
        """Identity across splits: question ids restart at 0 in every split."""
        return (self.split, self.question_id)

    @staticmethod
    def example_fields(example: BirdExample, split: str) -> dict[str, Any]:
        return {
            "split": split,
            "question_id": example.question_id,
            "db_id": example.db_id,
            "question": example.question,
            "evidence": example.evidence,
            "gold_sql": example.sql,
        }


class PoolEntry(ExampleRationale):
    """A validated rationale few-shot retrieval may draw from (pool/iteration_k.jsonl)."""

    model_config = ConfigDict(frozen=True)

    source: RationaleSource
    iteration: int = 0  # distillation iteration that accepted it; 0 for seeds

    @classmethod
    def from_example(
        cls,
        example: BirdExample,
        split: str,
        rationale: Rationale,
        source: RationaleSource,
        iteration: int = 0,
    ) -> PoolEntry:
        """The entry for a rationale of `example`, a question of split `split`."""
        return cls(
            **cls.example_fields(example, split),
            rationale=rationale,
            source=source,
            iteration=iteration,
        )


class ShotRef(BaseModel):
    """A few-shot example a prompt showed, by identity."""

    split: str
    question_id: int
    db_id: str
    source: str

    @classmethod
    def of(cls, entry: PoolEntry) -> ShotRef:
        return cls(
            split=entry.split, question_id=entry.question_id, db_id=entry.db_id, source=entry.source
        )


class AttemptRecord(BaseModel):
    """One sample of a model with its parse and validation outcome (attempts.jsonl)."""

    iteration: int
    split: str
    question_id: int
    db_id: str
    request_id: str
    sample_index: int
    model: str
    backend: str
    mode: str
    template: str
    template_hash: str
    shots: list[ShotRef]
    text: str
    finish_reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    parsed: bool
    parse_error: str | None = None
    rejected: str | None = None  # parsed, but refused before validation (and why)
    rationale: Rationale | None = None
    validation: ValidationReport | None = None
    valid: bool
    steps: int | None = None


# What an accepted rationale keeps of the attempt it came from.
_FROM_ATTEMPT = frozenset(
    {"model", "backend", "mode", "template", "template_hash", "shots", "iteration", "sample_index"}
)


class Provenance(BaseModel):
    """Everything needed to reproduce an accepted rationale's generation."""

    model: str
    backend: str
    mode: str
    template: str
    template_hash: str
    shot_ids: list[int]
    shots: list[ShotRef]
    retrieval: str
    iteration: int
    sample_index: int
    sampling: SamplingParams
    acceptance_rule: AcceptRule
    samples: int
    valid_samples: int


class AcceptedRationale(ExampleRationale):
    """One accepted rationale with everything needed to trust and reproduce it."""

    text: str
    provenance: Provenance
    validation: ValidationReport
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def pool_entry(self, source: RationaleSource) -> PoolEntry:
        return PoolEntry(
            **self.model_dump(include=set(ExampleRationale.model_fields)),
            source=source,
            iteration=self.provenance.iteration,
        )


def choose_sample(attempts: Sequence[AttemptRecord], rule: AcceptRule) -> AttemptRecord | None:
    """The accepted sample among an example's attempts, or None when none is valid.

    `most_steps` (default): validation already proves every step runs, feeds the answer and
    returns rows, so extra steps are real intermediate results, and longer chains teach the
    decomposition students need on moderate and challenging questions. `fewest_steps`
    prefers the most compact valid chain. Ties go to the lowest sample index (the greedy
    sample first), so the choice does not depend on the order samples arrived in.
    """
    valid = [attempt for attempt in attempts if attempt.valid and attempt.steps is not None]
    if not valid:
        return None
    sign = -1 if rule == "most_steps" else 1
    return min(valid, key=lambda a: (sign * (a.steps or 0), a.sample_index))


def accept(
    example: BirdExample,
    attempts: Sequence[AttemptRecord],
    *,
    rule: AcceptRule,
    retrieval: str,
    sampling: SamplingParams,
) -> AcceptedRationale | None:
    """The accepted rationale of one example's attempts (see `choose_sample`), with its
    provenance, or None when no attempt is valid: the one place acceptance is decided."""
    chosen = choose_sample(attempts, rule)
    if chosen is None:
        return None
    assert chosen.rationale is not None and chosen.validation is not None
    return AcceptedRationale(
        **ExampleRationale.example_fields(example, chosen.split),
        rationale=chosen.rationale,
        text=render_rationale(chosen.rationale),
        provenance=Provenance(
            **chosen.model_dump(include=_FROM_ATTEMPT),
            shot_ids=[shot.question_id for shot in chosen.shots],
            retrieval=retrieval,
            sampling=sampling,
            acceptance_rule=rule,
            samples=len(attempts),
            valid_samples=sum(a.valid for a in attempts),
        ),
        validation=chosen.validation,
        prompt_tokens=chosen.prompt_tokens,
        completion_tokens=chosen.completion_tokens,
    )
