"""`rationale distill`: grow the pool with teacher rationales that validation accepts."""

from __future__ import annotations

import typer
from rich.table import Table

from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.distill import NAME, DistillReport, IterationRow


def iteration_rows(rows: list[IterationRow], title: str) -> Table:
    """One line per round: the figures of report.json."""
    table = Table(title=title)
    columns = (
        "iter",
        "candidates",
        "attempted",
        "samples",
        "parsed",
        "valid",
        "accepted",
        "coverage %",
        "gain",
        "prompt tok",
        "completion tok",
        "sent",
        "wall s",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*_row_cells(row))
    return table


def iteration_table(report: DistillReport) -> Table:
    """The per-iteration table of distillation, with its coverage caption."""
    table = iteration_rows(
        report.iterations,
        title=f"distill {report.split} with {report.teacher_model} ({report.mode})",
    )
    missing = sum(report.no_database.values())
    table.caption = (
        f"{report.covered}/{report.executable} executable examples covered "
        f"({report.coverage:.1f}%), seed pool {report.seed_pool}; {missing} examples have no "
        f"database; stopped: {report.stop_reason}. sent = samples not served by the cache."
    )
    return table


def _row_cells(row: IterationRow) -> list[str]:
    return [
        str(row.iteration),
        str(row.candidates),
        str(row.attempted),
        str(row.samples),
        str(row.parsed),
        str(row.valid),
        str(row.accepted),
        f"{row.coverage:.1f}",
        f"{row.gain:+.1f}",
        str(row.prompt_tokens),
        str(row.completion_tokens),
        str(row.samples_generated),
        f"{row.wall_seconds:.1f}",
    ]


def show(report: DistillReport, run_dir: RunDir | None) -> None:
    console.print(iteration_table(report))
    if run_dir is not None:
        typer.echo(str(run_dir.stage_dir(NAME) / "report.json"))


command = stage_command(
    stage(NAME),
    show,
    doc="""Distil validated rationales from a teacher LLM, iteratively growing the pool.

    Kill it at any point and run the same command again: it finishes with the same
    accepted set, and every sample already answered comes from the response cache.
    """,
)
