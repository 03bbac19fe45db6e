"""`rationale validate`: validate a JSONL file of rationales against a BIRD split's gold SQL."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from bird.console import table_console
from bird.data import BirdDataError, load_split
from rationale.format import Rationale, RationaleStep
from rationale.robust import RobustConfig
from rationale.validate import CHECK_NAMES, ValidationItem, ValidationReport, validate_many


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


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def load_records(path: Path) -> list[tuple[int, RationaleRecord, Rationale | str]]:
    """(line number, record, rationale) for every non-blank line; InputError on a bad one."""
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass a JSONL file of rationales to --input")
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = RationaleRecord.model_validate(json.loads(line))
                rationale = record.rationale()
            except json.JSONDecodeError as error:
                raise InputError(
                    f"{path}:{number}: not valid JSON ({error.msg}); each line must be one "
                    "JSON object"
                ) from error
            except ValidationError as error:
                raise InputError(
                    f"{path}:{number}: {_describe(error)}. Each line needs question_id, db_id "
                    'and either "text" (a rendered rationale) or "steps" and "final_sql"'
                ) from error
            records.append((number, record, rationale))
    return records


def validate_file(
    data: Path,
    input_path: Path,
    *,
    robust: RobustConfig | None,
    timeout: float,
    workers: int,
    console: Console,
) -> list[ValidationReport]:
    """Validate every line of `input_path` against the gold SQL of split `data`."""
    split = load_split(data)
    items: list[ValidationItem] = []
    for number, record, rationale in load_records(input_path):
        try:
            example = split.example(record.question_id)
        except KeyError as error:
            raise InputError(f"{input_path}:{number}: {error.args[0]}") from error
        if example.db_id != record.db_id:
            raise InputError(
                f"{input_path}:{number}: db_id {record.db_id!r} does not match question "
                f"{record.question_id}'s database {example.db_id!r} in {split.root}"
            )
        if not split.has_database(example.db_id):
            raise InputError(
                f"{input_path}:{number}: database {example.db_id!r} is missing at "
                f"{split.database_path(example.db_id)}"
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
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("executing queries", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return validate_many(
            items, timeout=timeout, workers=workers, robust=robust, on_progress=advance
        )


def outcome_table(reports: list[ValidationReport]) -> Table:
    """Per check: how many rationales passed, failed and skipped it."""
    counts: Counter[tuple[str, str]] = Counter(
        (outcome.name, outcome.status) for report in reports for outcome in report.outcomes
    )
    table = Table(title=f"Validation of {len(reports)} rationales")
    for column in ("check", "passed", "failed", "skipped"):
        table.add_column(column, justify="left" if column == "check" else "right")
    for name in CHECK_NAMES:
        if any(key[0] == name for key in counts):
            table.add_row(
                name, *(str(counts[(name, status)]) for status in ("passed", "failed", "skipped"))
            )
    valid = sum(report.valid for report in reports)
    table.add_section()
    table.add_row("valid", str(valid), str(len(reports) - valid), "")
    return table


def validate_command(
    data: Path = typer.Option(
        ..., "--data", help="BIRD split folder holding <split>.json and <split>_databases/."
    ),
    input_path: Path = typer.Option(
        ...,
        "--input",
        help='JSONL of rationales: question_id, db_id and either "text" (rendered '
        'rationale) or "steps" + "final_sql" (+ "final_explanation").',
    ),
    robust: bool = typer.Option(
        False,
        "--robust",
        help="Also compare with the gold query on perturbed copies of the database "
        "(row subsets, shuffled rows) to reject coincidental matches.",
    ),
    robust_cache: Path | None = typer.Option(
        None, "--robust-cache", help="Folder for perturbed database copies (default: temp dir)."
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds allowed per query."),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel execution processes."),
    output: Path | None = typer.Option(
        None, "--output", help="Write one JSON validation report per input line here."
    ),
) -> None:
    """Validate rationales by parsing and executing every step against the gold SQL."""
    console = table_console()
    config = RobustConfig(cache_dir=robust_cache) if robust else None
    try:
        reports = validate_file(
            data, input_path, robust=config, timeout=timeout, workers=workers, console=console
        )
    except (InputError, BirdDataError) as error:
        console.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(code=2) from error
    console.print(outcome_table(reports))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8") as handle:
            for report in reports:
                handle.write(report.model_dump_json() + "\n")
        console.print(f"reports written to {output}")
