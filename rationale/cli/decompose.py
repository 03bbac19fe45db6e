"""`rationale decompose`: symbolic rationales for a split's gold queries, with a coverage table."""

from __future__ import annotations

from rich.table import Table

from bird.console import table_console
from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.decompose import NAME, CoverageRow, DecomposeReport


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


def show(report: DecomposeReport, _run_dir: RunDir | None) -> None:
    if report.output is not None:
        console.print(f"wrote {report.records} records to {report.output}")
    out = table_console()
    out.print(coverage_table([report.coverage]))
    for cause, count in report.causes.items():
        out.print(f"  {count:5d}  {cause}")


command = stage_command(
    stage(NAME),
    show,
    doc="""Turn each gold query of a split into a step-by-step rationale with sqlglot alone.

    Steps follow SQL's evaluation order: subqueries and set-operation branches first,
    then joins and filters, aggregation, and a final SELECT that sorts, limits and
    projects. Prints a coverage table and the causes of the remaining failures.
    """,
)
