"""The validate tool: check a JSONL file of rationales against a BIRD split's gold SQL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample, BirdSplit, load_split
from rationale.chain.format import Rationale, RationaleStep
from rationale.config import OUTPUT_FILE, SplitDir, StageConfig
from rationale.run_dir import bad_line, read_input_jsonl, rewrite_jsonl
from rationale.validation.checks import CHECK_NAMES, ValidationItem, validate_many
from rationale.validation.robust import RobustConfig

NAME = "validate"


class RationaleRecord(BaseModel):
    """One input line: a rationale as rendered text, or as steps plus final SQL."""

    model_config = ConfigDict(extra="ignore")

    question_id: int
    db_id: str
    text: str | None = None
    steps: list[RationaleStep] | None = None
    final_sql: str | None = None
    final_explanation: str = ""

    @model_validator(mode="after")
    def _one_form(self) -> RationaleRecord:
        if self.text is None and (self.steps is None or self.final_sql is None):
            raise ValueError('needs either "text" or both "steps" and "final_sql"')
        return self

    def rationale(self) -> Rationale | str:
        if self.text is not None:
            return self.text
        return Rationale(
            steps=self.steps or [],
            final_explanation=self.final_explanation,
            final_sql=self.final_sql or "",
        )


class InputError(ValueError):
    """A bad input line; the message names the file and line."""


RECORD_LINE = (
    'each line needs question_id, db_id and either "text" (a rendered rationale) or "steps" '
    'and "final_sql"'
)


def load_records(path: Path) -> list[tuple[int, RationaleRecord, Rationale | str]]:
    """(line number, record, rationale) for every non-blank line; RecordFileError on a bad one."""
    records = []
    for number, record in read_input_jsonl(
        path, RationaleRecord, what="a rationale line", advice=RECORD_LINE
    ):
        try:
            rationale = record.rationale()
        except ValidationError as error:
            raise bad_line(path, number, "a rationale line", error, RECORD_LINE) from None
        records.append((number, record, rationale))
    return records


def gradable_example(split: BirdSplit, question_id: int, where: str) -> BirdExample:
    """The question `question_id` of `split`, whose database is present; an InputError
    naming `where` (the file and line asking for it) when there is none."""
    try:
        example = split.example(question_id)
    except KeyError as error:
        raise InputError(
            f"{where}: {error.args[0]}: pass --data the split the lines come from"
        ) from None
    if not split.has_database(example.db_id):
        raise InputError(
            f"{where}: database {example.db_id!r} of question {question_id} is missing at "
            f"{split.database_path(example.db_id)}"
        )
    return example


class ValidateConfig(StageConfig):
    """The validate tool: parse and execute every step of each rationale against gold SQL."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers", "robust_cache"})

    data: SplitDir = Field(
        description="BIRD split folder holding <split>.json and <split>_databases/."
    )
    input: Path = Field(
        description='JSONL of rationales: question_id, db_id and either "text" (rendered '
        'rationale) or "steps" + "final_sql" (+ "final_explanation").'
    )
    robust: bool = Field(
        default=False,
        description="Also compare with the gold query on perturbed copies of the database "
        "(row subsets, shuffled rows) to reject coincidental matches.",
    )
    robust_cache: Path | None = Field(
        default=None, description="Folder for perturbed database copies (default: temp dir)."
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds allowed per query.")
    workers: int = Field(default=1, ge=1, description="Parallel execution processes.")
    output: Path | None = Field(
        default=None,
        description="Write one JSON validation report per input line here.",
        json_schema_extra={"output": OUTPUT_FILE},
    )
    strict_explanations: bool = Field(
        default=False,
        description="Count a rationale whose explanation names a number, date, quoted value "
        "or `name` its SQL does not use as invalid (default: valid, flagged).",
    )


class CheckCounts(BaseModel):
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    flagged: int = 0


class ValidateReport(BaseModel):
    rationales: int
    valid: int
    checks: dict[str, CheckCounts]  # in CHECK_NAMES order, only checks that ran
    output: str | None


def validation_items(data: Path, input_path: Path) -> list[ValidationItem]:
    """One item per line of `input_path`, paired with its gold query in split `data`."""
    split = load_split(data)
    items: list[ValidationItem] = []
    for number, record, rationale in load_records(input_path):
        example = gradable_example(split, record.question_id, f"{input_path}:{number}")
        if example.db_id != record.db_id:
            raise InputError(
                f"{input_path}:{number}: db_id {record.db_id!r} does not match question "
                f"{record.question_id}'s database {example.db_id!r} in {split.root}"
            )
        items.append(
            ValidationItem(
                rationale=rationale,
                db_path=split.database_path(example.db_id),
                gold_sql=example.sql,
                question_id=example.question_id,
                db_id=example.db_id,
            )
        )
    return items


def run(config: ValidateConfig, *, progress: ProgressCallback = no_progress) -> ValidateReport:
    """Validate every line of `config.input`; write the reports to `config.output`."""
    items = validation_items(config.data, config.input)
    robust = RobustConfig(cache_dir=config.robust_cache) if config.robust else None
    reports = validate_many(
        items,
        timeout=config.timeout,
        workers=config.workers,
        robust=robust,
        on_progress=lambda done, total: progress("executing queries", done, total, ""),
        strict_explanations=config.strict_explanations,
    )
    if config.output is not None:
        rewrite_jsonl(config.output, reports)
    counts: Counter[tuple[str, str]] = Counter(
        (outcome.name, outcome.status) for report in reports for outcome in report.outcomes
    )
    checks = {
        name: CheckCounts(
            passed=counts[(name, "passed")],
            failed=counts[(name, "failed")],
            skipped=counts[(name, "skipped")],
            flagged=counts[(name, "flagged")],
        )
        for name in CHECK_NAMES
        if any(key[0] == name for key in counts)
    }
    return ValidateReport(
        rationales=len(reports),
        valid=sum(report.valid for report in reports),
        checks=checks,
        output=str(config.output) if config.output is not None else None,
    )
