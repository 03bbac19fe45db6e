"""`rationale audit`: the train split's gold queries checked, the untrustworthy quarantined."""

from __future__ import annotations

from rich.table import Table

from bird.audit import AuditReport
from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.audit import NAME, QUARANTINE_FILE


def show(report: AuditReport, run_dir: RunDir | None) -> None:
    table = Table(title=f"gold audit of {report.split}: {report.checked} of {report.examples}")
    table.add_column("reason")
    table.add_column("examples", justify="right")
    for reason, count in report.counts.items():
        table.add_row(reason, str(count))
    console.print(table)
    if run_dir is not None:
        console.print(f"quarantine list: {run_dir.stage_dir(NAME) / QUARANTINE_FILE}")


command = stage_command(
    stage(NAME),
    show,
    doc="""Check every gold query of the train split before anything trains on it.

    Gold queries that fail, time out, or whose result changes on a copy of the database
    with the rows stored in another order are quarantined (with the reason): annotation
    skips them and the export leaves them out of training datasets. `bird audit` prints the
    same report for any split without a run directory.
    """,
)
