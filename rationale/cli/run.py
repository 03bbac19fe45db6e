"""`rationale run`: the whole pipeline from one YAML file into one run directory."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from bird.console import PhaseProgress
from bird.data import load_split
from bird.files import check_output_place
from rationale.cli.annotate import coverage_table as coverage_rich_table
from rationale.cli.common import console, reporting_errors
from rationale.cli.options import LOG_LEVELS
from rationale.cli.report import print_report
from rationale.pipeline.steps import StepOutcome, load_pipeline, run_pipeline
from rationale.records.coverage import coverage_table
from rationale.run_dir import RunDir
from rationale.stages.report import Report


def steps_table(outcomes: list[StepOutcome]) -> Table:
    table = Table(title="pipeline")
    for column in ("step", "status", "seconds", "produced"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for outcome in outcomes:
        table.add_row(outcome.name, outcome.status, f"{outcome.seconds:.0f}", outcome.summary)
    return table


@reporting_errors
def command(
    config: str = typer.Option(
        ...,
        "--config",
        help="A pipeline file, or a shipped one by name: demo, bird-tiny, bird-full.",
    ),
    run: Path = typer.Option(..., "--run", help="Run directory (created if absent)."),
    only: list[str] = typer.Option(
        [], "--only", help="Only this step (or steps starting with it, e.g. predict); repeat."
    ),
    start: str | None = typer.Option(None, "--from", help="Run from this step on."),
    overrides: list[str] = typer.Option(
        [], "--set", help="SECTION.KEY=VALUE over the pipeline file (e.g. distill.limit=8)."
    ),
    log_level: LOG_LEVELS = typer.Option(  # type: ignore[valid-type]
        LOG_LEVELS("info"),
        "--log-level",
        help="What the log files keep (RUN/logs/run.log, and one per step). The console "
        "shows the same either way.",
        case_sensitive=False,
    ),
) -> None:
    """Run the whole pipeline into one run directory, resumably.

    audit, seed, distill, export and train the rationalizer, annotate, export and train the
    CoT and no-CoT students, predict, report; each step with its section of the pipeline
    file. Re-running skips finished steps whose section is unchanged, re-runs a changed one
    and every step after it, and resumes an interrupted one. Ends with what each step
    produced, coverage by source, the students' EX by difficulty and where the report is.
    """
    pipeline = load_pipeline(config, overrides)
    check_output_place(run, "--run", folder=True)
    run_dir = RunDir(run)
    with PhaseProgress(console) as progress:
        outcomes = run_pipeline(pipeline, run_dir, only=only, start=start, progress=progress)
    console.print(steps_table(outcomes))
    console.print(coverage_rich_table(coverage_table(run_dir, load_split(pipeline.train))))
    report_json = run_dir.root / "report" / "report.json"
    if report_json.exists():
        print_report(Report.model_validate_json(report_json.read_text()))
        typer.echo(str(run_dir.root / "report" / "report.md"))
