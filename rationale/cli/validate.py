"""`rationale validate`: check a JSONL file of rationales against a split's gold SQL."""

from __future__ import annotations

from rich.table import Table

from bird.console import table_console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.validate import NAME, ValidateReport


def outcome_table(report: ValidateReport) -> Table:
    """Per check: how many rationales passed, failed, skipped it or were flagged by it."""
    table = Table(title=f"Validation of {report.rationales} rationales")
    for column in ("check", "passed", "failed", "skipped", "flagged"):
        table.add_column(column, justify="left" if column == "check" else "right")
    for name, c in report.checks.items():
        table.add_row(name, str(c.passed), str(c.failed), str(c.skipped), str(c.flagged))
    table.add_section()
    table.add_row("valid", str(report.valid), str(report.rationales - report.valid), "", "")
    return table


def show(report: ValidateReport, _run_dir: RunDir | None) -> None:
    out = table_console()
    out.print(outcome_table(report))
    if report.output is not None:
        out.print(f"reports written to {report.output}")


command = stage_command(
    stage(NAME),
    show,
    doc="Validate rationales by parsing and executing every step against the gold SQL.",
)
