"""The pool of validated rationales: what few-shot retrieval draws from and distillation grows.

Each entry carries the split it comes from, so that train data is never built from dev or
test rationales (the leakage guard in `rationale.retrieval` checks it), and the source that
produced it (seed file, symbolic decomposer, teacher LLM, rationalization model).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from bird.data import BirdExample
from rationale.format import Rationale

PoolSource = Literal["seed", "decompose", "teacher", "rationalizer"]


class PoolEntry(BaseModel):
    """One validated rationale with the question and gold SQL it explains."""

    model_config = ConfigDict(frozen=True)

    question_id: int
    db_id: str
    split: str  # "train" for everything a train pool may hold
    question: str
    evidence: str = ""
    gold_sql: str
    rationale: Rationale
    source: PoolSource
    iteration: int = 0  # distillation iteration that accepted it; 0 for seeds

    @property
    def key(self) -> tuple[str, int]:
        """Identity across splits: question ids restart at 0 in every split."""
        return (self.split, self.question_id)

    @classmethod
    def from_example(
        cls,
        example: BirdExample,
        split: str,
        rationale: Rationale,
        source: PoolSource,
        iteration: int = 0,
    ) -> PoolEntry:
        """The entry for a rationale of `example`, a question of split `split`."""
        return cls(
            question_id=example.question_id,
            db_id=example.db_id,
            split=split,
            question=example.question,
            evidence=example.evidence,
            gold_sql=example.sql,
            rationale=rationale,
            source=source,
            iteration=iteration,
        )
