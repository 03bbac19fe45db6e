"""The decompose tool: every gold query of a BIRD split as a rationale, validated, with coverage.

Examples whose database is absent still decompose (the chain must parse and assemble)
and are reported as not validated. Validation goes through `rationale.validation.checks`, which
runs every query through `bird.executor` and compares with the official set rule; each
distinct gold query executes once. A structured chain that fails validation is replaced
by the one-step chain (whole gold query as step1), which is validated in its turn, so the
output only holds chains that reproduce the gold result where that could be checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, Literal

import sqlglot
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlglot.errors import SqlglotError

from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample, BirdSplit, load_split
from rationale.chain.format import QuestionRationale, Rationale, render_rationale
from rationale.config import OUTPUT_FILE, SplitDir, StageConfig
from rationale.decomposer.builder import (
    DIALECT,
    Decomposition,
    DecompositionError,
    Schema,
    database_schema,
    decompose_sql,
    fallback_decomposition,
)
from rationale.run_dir import rewrite_jsonl

NAME = "decompose"
ValidationStatus = Literal["ex_equal", "failed", "not_validated"]


class DecompositionRecord(QuestionRationale):
    """One line of `rationale decompose` output."""

    model_config = ConfigDict(frozen=True)

    text: str  # the rendered rationale (what a model reads)
    structured: bool  # False: the one-step fallback chain
    fallback_reason: str | None = None
    chain_length: int  # steps + the final query
    needs_several_steps: bool  # the gold query has a join, aggregation or subquery
    assembles: bool  # the assembled query parses as one SQLite query
    validation: ValidationStatus
    validation_detail: str = ""  # failed checks, or why it was not validated
    failed_checks: list[str] = Field(default_factory=list)


class UndecomposableRecord(BaseModel):
    """A gold query that does not parse: nothing to decompose."""

    question_id: int
    db_id: str
    error: str


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


def decompose_examples(
    split: BirdSplit,
    examples: list[BirdExample],
    *,
    validate: bool = True,
    workers: int = 1,
    timeout: float = 30.0,
    progress: ProgressCallback = no_progress,
) -> tuple[list[DecompositionRecord], list[UndecomposableRecord]]:
    """Decompose (and, where the database is present, validate) `examples` of `split`;
    `progress` reports the "decompose" and "validate" phases."""
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
        progress("decompose", done, len(examples), "")

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
        reports = _validate(split, to_validate, workers, timeout, progress)
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
                retry, _validate(split, retry, workers, timeout, progress), strict=True
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
    progress: ProgressCallback,
):
    # imported here: validation needs the executor, decomposition alone does not
    from rationale.validation.checks import ValidationItem, validate_many

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
        on_progress=lambda done, total: progress("validate", done, total, ""),
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


class DecomposeConfig(StageConfig):
    """The decompose tool: symbolic rationales for a split's gold queries."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers"})

    data: SplitDir = Field(
        description="Split folder in the official layout (holding dev.json, ...)."
    )
    output: Path | None = Field(
        default=None,
        description="JSONL file for the records, one per example (default: "
        "./<split folder>_decomposed.jsonl, named when written).",
        json_schema_extra={"output": OUTPUT_FILE},
    )
    validate_chains: bool = Field(
        default=False,
        description="Execute each chain and its gold query and check EX equality (official "
        "set rule); examples whose database is missing are reported as not validated.",
        json_schema_extra={"flag": "validate"},
    )
    db_ids: list[str] = Field(
        default_factory=list,
        description="Only these databases; repeat for several.",
        json_schema_extra={"flag": "db"},
    )
    limit: int | None = Field(default=None, ge=1, description="Only the first N examples.")
    workers: int = Field(default=1, ge=1, description="Processes for execution.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds per query.")

    @model_validator(mode="after")
    def _default_output(self) -> DecomposeConfig:
        # records thrown away after minutes of work surprise everyone: always write them
        if self.output is None:
            self.output = Path(f"{self.data.name}_decomposed.jsonl").absolute()
        return self


class DecomposeReport(BaseModel):
    coverage: CoverageRow
    causes: dict[str, int]
    records: int
    output: str | None


def run(config: DecomposeConfig, *, progress: ProgressCallback = no_progress) -> DecomposeReport:
    """Decompose the selected examples, write the records to `output`, and measure coverage."""
    split = load_split(config.data)
    examples = split.select(config.db_ids, config.limit)
    records, unparsable = decompose_examples(
        split,
        examples,
        validate=config.validate_chains,
        workers=config.workers,
        timeout=config.timeout,
        progress=progress,
    )
    if config.output is not None:
        rewrite_jsonl(config.output, records)
    label = split.name + (f" ({', '.join(config.db_ids)})" if config.db_ids else "")
    return DecomposeReport(
        coverage=coverage(label, records, unparsable),
        causes=dict(failure_causes(records, unparsable).most_common()),
        records=len(records),
        output=str(config.output) if config.output is not None else None,
    )
