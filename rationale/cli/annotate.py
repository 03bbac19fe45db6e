"""`rationale annotate`: the rationalization model covers the examples the pool lacks."""

from __future__ import annotations

import typer
from rich.table import Table

from rationale.cli.common import console
from rationale.cli.distill import iteration_rows
from rationale.cli.stage_command import stage_command
from rationale.records.coverage import CoverageTable
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.annotate import NAME, AnnotateReport


def coverage_table(table: CoverageTable) -> Table:
    """The whole train split by source, and why the rest is not covered."""
    out = Table(title=f"coverage of {table.split} ({table.examples} examples)")
    out.add_column("")
    out.add_column("examples", justify="right")
    out.add_column("%", justify="right")
    for source, count in table.covered.items():
        out.add_row(f"covered by {source}", str(count), f"{table.percent(count):.1f}")
    out.add_section()
    out.add_row("covered", str(table.covered_total), f"{table.percent(table.covered_total):.1f}")
    out.add_section()
    for cause, count in table.not_covered.items():
        out.add_row(f"not covered: {cause}", str(count), f"{table.percent(count):.1f}")
    return out


def show(report: AnnotateReport, run_dir: RunDir | None) -> None:
    rounds = iteration_rows(report.iterations, title=f"annotate {report.split} with {report.model}")
    rounds.caption = (
        f"{report.covered}/{report.executable} executable examples covered "
        f"({report.coverage:.1f}%), {report.quarantined} quarantined; stopped: "
        f"{report.stop_reason}. sent = samples not served by the cache."
    )
    console.print(rounds)
    console.print(coverage_table(report.coverage_table))
    if run_dir is not None:
        typer.echo(str(run_dir.stage_dir(NAME) / "report.json"))


command = stage_command(
    stage(NAME),
    show,
    doc="""Annotate the train examples the pool does not cover with the rationalization model.

    Every example neither the seeds nor the teacher covered (and the audit did not
    quarantine) is asked with schema, evidence, question and gold SQL exactly as the model
    was trained; every sample is validated as in distillation and one is accepted per
    example, round after round. Kill it and run it again: same accepted set, nothing asked
    twice.
    """,
)
