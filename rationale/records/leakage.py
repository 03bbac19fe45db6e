"""The leakage guard of training data: no dev or test question, no evaluation database.

A model trained on a question it is later scored on would report a number that means
nothing, and no error would ever show it. Every training dataset and train pool passes
here: records whose split is an evaluation split (dev, test, mini-dev, ...) or whose
database belongs to one (BIRD dev's eleven and the demo's dev databases, plus the
databases of any held-out split folder the user names) are refused, with their ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from bird.data import EVALUATION_DATABASES, BirdSplit, is_evaluation_split, load_split


class DatasetLeakageError(ValueError):
    """Training data (a dataset, a pool, few-shot shots for train examples) would hold dev or
    test questions or databases; `offending` holds their (split, question_id)."""

    def __init__(self, message: str, offending: Sequence[tuple[str, int]]) -> None:
        super().__init__(message)
        self.offending = list(offending)


class QuestionRecord(Protocol):
    """What the guard reads of a record: where its question comes from."""

    @property
    def split(self) -> str: ...
    @property
    def question_id(self) -> int: ...
    @property
    def db_id(self) -> str: ...


def heldout_databases(heldout_splits: Iterable[Path] = ()) -> frozenset[str]:
    """The known evaluation databases plus those of the given held-out split folders."""
    names = set(EVALUATION_DATABASES)
    for folder in heldout_splits:
        names |= set(load_split(folder).db_ids())
    return frozenset(name.lower() for name in names)


def check_training_records(
    records: Iterable[QuestionRecord], heldout_db_ids: frozenset[str], what: str
) -> None:
    """Refuse `records` for `what` (a dataset, a pool, a few-shot pool) when any comes from
    an evaluation split or database."""
    offending = sorted(
        (r.split, r.question_id, r.db_id)
        for r in records
        if is_evaluation_split(r.split) or r.db_id.lower() in heldout_db_ids
    )
    if offending:
        named = [f"{split}:{question_id} ({db_id})" for split, question_id, db_id in offending]
        shown = ", ".join(named[:10]) + (f" and {len(named) - 10} more" if len(named) > 10 else "")
        raise DatasetLeakageError(
            f"{what} would hold {len(offending)} question(s) of an evaluation split or "
            f"database: {shown}. Dev and test questions never enter training data: remove "
            "them from the run (or use a run built on the train split only).",
            [(split, question_id) for split, question_id, _ in offending],
        )


def refuse_evaluation_split(split: BirdSplit, allowed: bool, stage: str) -> None:
    """Stages that build training data (seed, distill) refuse a dev or test split unless the
    user says so: its pool could otherwise end up as training data."""
    if allowed or not is_evaluation_split(split.name):
        return
    raise DatasetLeakageError(
        f"{split.root} is the {split.name!r} split, an evaluation split: {stage} builds "
        "training data and must run on the train split. Pass --allow-eval-split to do it "
        "anyway (for an analysis; the result must never train a model).",
        [],
    )
