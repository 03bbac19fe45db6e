"""`rationale seed`: validate the seed rationales and write pool iteration 0."""

from __future__ import annotations

import typer
from rich.table import Table

from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.seed import NAME, SeedReport


def seed_table(report: SeedReport) -> Table:
    table = Table(title=f"seed pool ({report.split})")
    for column in ("question_id", "db_id", "status", "failed check / detail"):
        table.add_column(column)
    for outcome in report.outcomes:
        if outcome.status in ("valid", "no_database"):
            continue  # no_database seeds are counted in the caption, listed in seed/report.json
        why = ", ".join(outcome.failed_checks) or outcome.detail
        table.add_row(str(outcome.question_id), outcome.db_id, outcome.status, why[:120])
    table.caption = (
        f"{report.seeds} seeds: {report.valid} valid, {report.invalid} invalid, "
        f"{report.no_database} without database ({report.kept_unverified} kept unverified), "
        f"{report.not_in_split} not in this split; decomposer added {report.bootstrap_added}; "
        f"pool iteration 0: {report.pool_size} entries"
    )
    return table


def show(report: SeedReport, run_dir: RunDir | None) -> None:
    table = seed_table(report)
    console.print(table if table.row_count else table.caption)
    if run_dir is not None:
        typer.echo(str(run_dir.pool_path(0)))


command = stage_command(
    stage(NAME),
    show,
    doc="""Validate the seed rationales on your databases and write pool iteration 0.

    Each invalid seed is listed with the check it failed; seeds whose database is absent
    are listed as not verified and left out of the pool unless --keep-unverified.
    """,
)
