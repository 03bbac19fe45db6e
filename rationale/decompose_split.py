"""Decompose every gold query of a BIRD split, validate the chains, and summarise coverage.

Examples whose database is absent still decompose (the chain must parse and assemble)
and are reported as not validated. Validation goes through `rationale.validate`, which
runs every query through `bird.executor` and compares with the official set rule; each
distinct gold query executes once. A structured chain that fails validation is replaced
by the one-step chain (whole gold query as step1), which is validated in its turn, so the
output only holds chains that reproduce the gold result where that could be checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Literal

import sqlglot
from pydantic import BaseModel, ConfigDict
from sqlglot.errors import SqlglotError

from bird.data import BirdExample, BirdSplit
from bird.schema import read_database_schema
from rationale.decompose import (
    DIALECT,
    Decomposition,
    DecompositionError,
    Schema,
    decompose_sql,
    fallback_decomposition,
)
from rationale.format import Rationale, RationaleStep, render_rationale

ValidationStatus = Literal["ex_equal", "failed", "not_validated"]


class DecompositionRecord(BaseModel):
    """One line of `rationale decompose` output."""

    model_config = ConfigDict(frozen=True)

    question_id: int
    db_id: str
    steps: list[RationaleStep]
    final_explanation: str
    final_sql: str
    text: str  # the rendered rationale (what a model reads)
    structured: bool  # False: the one-step fallback chain
    fallback_reason: str | None = None
    chain_length: int  # steps + the final query
    needs_several_steps: bool  # the gold query has a join, aggregation or subquery
    assembles: bool  # the assembled query parses as one SQLite query
    validation: ValidationStatus
    validation_detail: str = ""  # failed checks, or why it was not validated
    failed_checks: list[str] = []

    def rationale(self) -> Rationale:
        return Rationale(
            steps=self.steps, final_explanation=self.final_explanation, final_sql=self.final_sql
        )


class UndecomposableRecord(BaseModel):
    """A gold query that does not parse: nothing to decompose."""

    question_id: int
    db_id: str
    error: str


def database_schema(split: BirdSplit, db_id: str) -> Schema | None:
    """Table -> columns for a database that is present (exact star and correlation checks)."""
    if not split.has_database(db_id):
        return None
    schema = read_database_schema(split.database_path(db_id), db_id, sample_values=0)
    return {table.name: [column.name for column in table.columns] for table in schema.tables}


def assembles(rationale: Rationale) -> bool:
    try:
        statements = sqlglot.parse(rationale.assembled_sql(), read=DIALECT)
    except SqlglotError:
        return False
    return len([s for s in statements if s is not None]) == 1


def _record(
    example: BirdExample,
    decomposition: Decomposition,
    validation: ValidationStatus,
    detail: str = "",
    failed_checks: Iterable[str] = (),
) -> DecompositionRecord:
    rationale = decomposition.rationale
    return DecompositionRecord(
        question_id=example.question_id,
        db_id=example.db_id,
        steps=rationale.steps,
        final_explanation=rationale.final_explanation,
        final_sql=rationale.final_sql,
        text=render_rationale(rationale),
        structured=decomposition.structured,
        fallback_reason=decomposition.fallback_reason,
        chain_length=decomposition.chain_length,
        needs_several_steps=decomposition.features.needs_several_steps,
        assembles=assembles(rationale),
        validation=validation,
        validation_detail=detail,
        failed_checks=list(failed_checks),
    )


def select_examples(
    split: BirdSplit, db_ids: Iterable[str] = (), limit: int | None = None
) -> list[BirdExample]:
    wanted = {db.lower() for db in db_ids}
    chosen = [e for e in split.examples if not wanted or e.db_id.lower() in wanted]
    return chosen[:limit] if limit is not None else chosen


def decompose_examples(
    split: BirdSplit,
    examples: list[BirdExample],
    *,
    validate: bool = True,
    workers: int = 1,
    timeout: float = 30.0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> tuple[list[DecompositionRecord], list[UndecomposableRecord]]:
    """Decompose (and, where the database is present, validate) `examples` of `split`.

    `on_progress(phase, done, total)` reports the "decompose" and "validate" phases.
    """
    schemas: dict[str, Schema | None] = {}
    decomposed: list[tuple[BirdExample, Decomposition]] = []
    unparsable: list[UndecomposableRecord] = []
    for done, example in enumerate(examples, start=1):
        if example.db_id not in schemas:
            schemas[example.db_id] = database_schema(split, example.db_id)
        try:
            decomposed.append((example, decompose_sql(example.sql, schemas[example.db_id])))
        except DecompositionError as error:
            unparsable.append(
                UndecomposableRecord(
                    question_id=example.question_id, db_id=example.db_id, error=str(error)
                )
            )
        if on_progress is not None:
            on_progress("decompose", done, len(examples))

    records: dict[int, DecompositionRecord] = {}
    to_validate = [
        (example, d) for example, d in decomposed if validate and split.has_database(example.db_id)
    ]
    for example, d in decomposed:
        if not validate:
            records[example.question_id] = _record(example, d, "not_validated", "not requested")
        elif not split.has_database(example.db_id):
            records[example.question_id] = _record(
                example, d, "not_validated", f"database {example.db_id} is not in {split.root}"
            )
    if to_validate:
        reports = _validate(split, to_validate, workers, timeout, on_progress)
        retry: list[tuple[BirdExample, Decomposition]] = []
        for (example, d), report in zip(to_validate, reports, strict=True):
            if report.outcome("ex_equal").passed or not d.structured:
                records[example.question_id] = _from_report(example, d, report)
            else:
                reason = "the structured chain failed validation: " + ", ".join(
                    report.failed_checks()
                )
                try:
                    retry.append((example, fallback_decomposition(example.sql, reason)))
                except DecompositionError:  # no one-step form (own WITH): keep the failure
                    records[example.question_id] = _from_report(example, d, report)
        if retry:
            for (example, d), report in zip(
                retry, _validate(split, retry, workers, timeout, on_progress), strict=True
            ):
                records[example.question_id] = _from_report(example, d, report)
    ordered = [records[e.question_id] for e, _ in decomposed]
    return ordered, unparsable


def _from_report(example: BirdExample, decomposition: Decomposition, report) -> DecompositionRecord:
    failed = report.failed_checks()
    ex_passed = report.outcome("ex_equal").passed
    status: ValidationStatus = "ex_equal" if ex_passed else "failed"
    detail = "; ".join(f"{o.name}: {o.detail}" for o in report.outcomes if o.status == "failed")
    return _record(example, decomposition, status, detail, failed)


def _validate(
    split: BirdSplit,
    pairs: list[tuple[BirdExample, Decomposition]],
    workers: int,
    timeout: float,
    on_progress: Callable[[str, int, int], None] | None,
):
    # imported here: validation needs the executor, decomposition alone does not
    from rationale.validate import ValidationItem, validate_many

    items = [
        ValidationItem(
            rationale=d.rationale,
            db_path=split.database_path(example.db_id),
            gold_sql=example.sql,
            question_id=example.question_id,
            db_id=example.db_id,
        )
        for example, d in pairs
    ]
    return validate_many(
        items,
        timeout=timeout,
        workers=workers,
        on_progress=(lambda done, total: on_progress("validate", done, total))
        if on_progress is not None
        else None,
    )


class CoverageRow(BaseModel):
    """Coverage of one set of examples, against the issue's targets."""

    label: str
    total: int
    decomposed: int  # structured chain (not the one-step fallback, not unparsable)
    assembles: int
    executable: int  # database present and validated
    ex_equal: int
    needs_several_steps: int
    several_steps: int  # of those, chains with >= 2 steps (steps + final), structured
    ex_equal_and_shaped: int  # EX-equal, and >= 2 steps where a join/aggregate/subquery asks

    def percent(self, part: int, whole: int) -> float:
        return 100.0 * part / whole if whole else 100.0


def coverage(
    label: str, records: list[DecompositionRecord], unparsable: list[UndecomposableRecord]
) -> CoverageRow:
    validated = [r for r in records if r.validation != "not_validated"]
    needing = [r for r in records if r.needs_several_steps]
    return CoverageRow(
        label=label,
        total=len(records) + len(unparsable),
        decomposed=sum(r.structured for r in records),
        assembles=sum(r.assembles for r in records),
        executable=len(validated),
        ex_equal=sum(r.validation == "ex_equal" for r in validated),
        needs_several_steps=len(needing),
        several_steps=sum(_shaped(r) for r in needing),
        ex_equal_and_shaped=sum(r.validation == "ex_equal" and _shaped(r) for r in validated),
    )


def _shaped(record: DecompositionRecord) -> bool:
    """A chain of at least two steps (steps + final) where the gold query needs one."""
    return not record.needs_several_steps or (record.structured and record.chain_length >= 2)


def failure_causes(
    records: list[DecompositionRecord], unparsable: list[UndecomposableRecord]
) -> Counter[str]:
    """Why examples missed a target (gold parse errors, fallbacks, failed validation), plus
    EX-equal chains that failed another validator check, which the targets do not count."""
    causes: Counter[str] = Counter()
    for item in unparsable:
        causes[f"gold query does not parse: {item.error[:80]}"] += 1
    for record in records:
        if not record.assembles:
            causes["assembled chain does not parse"] += 1
        if record.validation == "failed":
            causes[f"not EX-equal ({', '.join(record.failed_checks)})"] += 1
        elif record.failed_checks:  # EX-equal; e.g. a COUNT over a step with no rows
            causes[
                f"EX-equal, other validator checks failed: {', '.join(record.failed_checks)}"
            ] += 1
        if not record.structured:
            reason = record.fallback_reason or ""
            causes[f"one-step fallback: {reason[:100]}"] += 1
    return causes
