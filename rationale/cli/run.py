"""`rationale run`: the whole pipeline from one YAML file into one run directory."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from bird.audit import AuditReport
from bird.console import PhaseProgress
from bird.data import load_split
from bird.evaluation import TOTAL
from bird.files import check_output_place
from rationale.cli.annotate import coverage_table as coverage_rich_table
from rationale.cli.common import console, reporting_errors
from rationale.cli.report import report_tables
from rationale.pipeline.runner import StepOutcome, load_pipeline, run_pipeline
from rationale.records.coverage import coverage_table
from rationale.run_dir import RunDir
from rationale.stages.annotate import AnnotateReport
from rationale.stages.distill import DistillReport
from rationale.stages.export import ExportReport
from rationale.stages.predict import PredictReport
from rationale.stages.report import Report
from rationale.stages.seed import SeedReport
from rationale.stages.train import TrainReport


def summarize(_name: str, result: BaseModel) -> str:
    """One line of what a step produced."""
    if isinstance(result, AuditReport):
        bad = sum(v for k, v in result.counts.items() if k != "no_database")
        return f"{result.checked} gold queries checked, {bad} quarantined"
    if isinstance(result, SeedReport):
        return f"{result.valid}/{result.seeds} seeds valid, pool {result.pool_size}"
    if isinstance(result, DistillReport | AnnotateReport):
        accepted = sum(row.accepted for row in result.iterations)
        return f"{accepted} accepted, coverage {result.coverage:.1f}% ({result.covered})"
    if isinstance(result, ExportReport):
        sources = ", ".join(f"{k} {v}" for k, v in result.by_source.items())
        return (
            f"train {result.counts['train']}, validation {result.counts['validation']} "
            f"({sources}); {result.prompts_cut} prompts cut"
        )
    if isinstance(result, TrainReport):
        return _training_line(result)
    if isinstance(result, PredictReport):
        voted = (
            "voted = greedy (no samples)"
            if not result.samples
            else f"voted {result.voted.metrics['ex'][TOTAL]:.2f}"
        )
        parts = [
            f"{result.questions} questions, EX greedy {result.greedy.metrics['ex'][TOTAL]:.2f}, "
            f"{voted}",
            f"{result.cut_at_max_tokens} cut at {result.max_tokens} tokens",
        ]
        if result.prompts_cut:
            parts.append(f"{result.prompts_cut} schemas cut")
        return "; ".join(parts)
    if isinstance(result, Report):
        scores = ", ".join(f"{s.name} {s.summary.metrics['ex'][TOTAL]:.2f}" for s in result.systems)
        return f"EX {scores} on {result.questions} questions"
    return ""


def _training_line(result: TrainReport) -> str:
    """Rows, epochs, losses, and whether the model learned anything."""
    parts = [f"{result.train_rows} rows, {result.steps} steps ({result.epochs:.1f} epochs)"]
    if result.eval_loss_start is not None and result.eval_loss is not None:
        parts.append(f"validation loss {result.eval_loss_start:.3f} -> {result.eval_loss:.3f}")
        learned = result.eval_loss < result.eval_loss_start
    elif result.train_loss_first is not None and result.train_loss_final is not None:
        parts.append(f"loss {result.train_loss_first:.3f} -> {result.train_loss_final:.3f}")
        learned = result.train_loss_final < result.train_loss_first
    else:
        parts.append("loss not logged")
        learned = True
    if result.stopped_early and result.best_step is not None:
        parts.append(f"stopped early at the best step {result.best_step}")
    if not learned:
        parts.append("LOSS DID NOT GO DOWN")
    return ", ".join(parts)


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
        outcomes = run_pipeline(
            pipeline, run_dir, only=only, start=start, progress=progress, summarize=summarize
        )
    console.print(steps_table(outcomes))
    console.print(coverage_rich_table(coverage_table(run_dir, load_split(pipeline.train))))
    report_json = run_dir.root / "report" / "report.json"
    if report_json.exists():
        report = Report.model_validate_json(report_json.read_text())
        for table in report_tables(report):
            console.print(table)
        if report.notes:
            console.print("[bold]What limits these numbers[/bold]")
            for note in report.notes:
                console.print(f"  - {escape(note)}")
        typer.echo(str(run_dir.root / "report" / "report.md"))
