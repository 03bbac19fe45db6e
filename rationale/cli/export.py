"""`rationale export`: a training dataset (rationalizer, CoT or no-CoT student) from a run."""

from __future__ import annotations

import typer
from rich.table import Table

from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.export import NAME, ExportReport


def show(report: ExportReport, _run_dir: RunDir | None) -> None:
    table = Table(title=f"{report.kind} dataset", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, count in report.counts.items():
        table.add_row(what, str(count))
    for source, count in report.by_source.items():
        table.add_row(f"from {source}", str(count))
    table.add_row("prompts cut to the token budget", str(report.prompts_cut))
    table.add_row("seconds", f"{report.seconds:.1f}")
    console.print(table)
    typer.echo(report.out)


command = stage_command(
    stage(NAME),
    show,
    doc="""Build a Hugging Face dataset for training from a run directory.

    rationalizer: (schema, evidence, question, gold SQL) -> rationale, from the pool;
    student-cot: (schema, evidence, question) -> rationale; student-nocot: the same
    questions -> SQL. Written as save_to_disk, Parquet and JSONL with a dataset card; dev and
    test questions and databases are refused.
    """,
)
