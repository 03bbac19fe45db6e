"""`rationale predict`: a student answers BIRD dev; candidates vote by execution result."""

from __future__ import annotations

import typer
from rich.table import Table

from bird.evaluation import TOTAL
from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.predict import NAME, OFFICIAL_FILE, PredictReport


def predict_table(report: PredictReport) -> Table:
    """EX and soft-F1 by difficulty, greedy and voted side by side."""
    levels = list(report.voted.counts)
    table = Table(title=f"{report.questions} questions answered")
    table.add_column("metric")
    for level in levels:
        table.add_column(f"{level} ({report.voted.counts[level]})", justify="right")
    for name, summary in (("greedy", report.greedy), ("voted", report.voted)):
        for metric, label in (("ex", "EX"), ("soft_f1", "soft-F1")):
            values = summary.metrics[metric]
            table.add_row(f"{label} {name}", *(f"{values[level]:.2f}" for level in levels))
    table.caption = (
        f"{report.no_sql} greedy answers hold no SQL, {report.failing} greedy SQL fail to "
        f"execute; {report.seconds:.0f} s. EX {TOTAL}: greedy "
        f"{report.greedy.metrics['ex'][TOTAL]:.2f}, voted {report.voted.metrics['ex'][TOTAL]:.2f}"
    )
    return table


def show(report: PredictReport, _run_dir: RunDir | None) -> None:
    console.print(predict_table(report))
    typer.echo(f"{report.out}/{OFFICIAL_FILE}")


command = stage_command(
    stage(NAME),
    show,
    doc="""Answer a split's questions with a trained student and score the answers.

    Each question is asked exactly as the student was trained (the export's template and
    token budget, found through the model folder), once greedily and --samples more times;
    every candidate runs in the sandbox and the largest group of equal results wins (ties:
    the earliest candidate). Writes the official predict_dev.json (voted) and
    predict_dev_greedy.json, every answer with its candidates and vote, and EX by
    difficulty. Kill it and run it again: nothing is asked twice.
    """,
)
