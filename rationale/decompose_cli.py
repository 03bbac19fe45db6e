"""`rationale decompose`: symbolic rationales for a split's gold queries, with a coverage table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bird.console import table_console
from bird.data import BirdDataError, load_split
from rationale.decompose_split import (
    CoverageRow,
    coverage,
    decompose_examples,
    failure_causes,
    select_examples,
)

_console = table_console(stderr=True)


def coverage_table(rows: list[CoverageRow], title: str = "Decomposition coverage") -> Table:
    """Counts and percentages per row; the targets are the issue's (97 / 99 / 100 %)."""
    table = Table(title=title)
    for column in (
        "examples",
        "total",
        "decomposed",
        "assembles+parses",
        "EX-equal / executable",
        ">=2 steps / needing",
    ):
        table.add_column(column, justify="left" if column == "examples" else "right")
    for row in rows:
        table.add_row(
            row.label,
            str(row.total),
            f"{row.decomposed} ({row.percent(row.decomposed, row.total):.1f}%)",
            f"{row.assembles} ({row.percent(row.assembles, row.total):.1f}%)",
            f"{row.ex_equal}/{row.executable} ({row.percent(row.ex_equal, row.executable):.1f}%)"
            if row.executable
            else "not validated (--validate)",
            f"{row.several_steps}/{row.needs_several_steps} "
            f"({row.percent(row.several_steps, row.needs_several_steps):.1f}%)",
        )
    return table


def decompose_command(
    data: Path = typer.Option(
        ..., "--data", help="Split folder in the official layout (holding dev.json, ...)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="JSONL file for the records (one per example)."
    ),
    validate: bool = typer.Option(
        False,
        "--validate/--no-validate",
        help="Execute each chain and its gold query and check EX equality (official set "
        "rule); examples whose database is missing are reported as not validated.",
    ),
    db: list[str] = typer.Option([], "--db", help="Only these db_ids (repeatable)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N examples."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes for execution."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per query."),
) -> None:
    """Turn each gold query of a split into a step-by-step rationale with sqlglot alone.

    Steps follow SQL's evaluation order: subqueries and set-operation branches first,
    then joins and filters, aggregation, and a final SELECT that sorts, limits and
    projects. Prints a coverage table and the causes of the remaining failures.
    """
    try:
        split = load_split(data)
    except BirdDataError as error:
        _console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    examples = select_examples(split, db, limit)
    if not examples:
        _console.print(f"[red]error:[/red] no examples in {data} match --db {' '.join(db)}")
        raise typer.Exit(2)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        records, unparsable = decompose_examples(
            split, examples, validate=validate, workers=workers, timeout=timeout, on_progress=report
        )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(record.model_dump_json() + "\n")
        _console.print(f"wrote {len(records)} records to {output}")
    label = split.name + (f" ({', '.join(db)})" if db else "")
    table_console().print(coverage_table([coverage(label, records, unparsable)]))
    causes = failure_causes(records, unparsable)
    for cause, count in causes.most_common():
        table_console().print(f"  {count:5d}  {cause}")
