"""`rationale reward`: answers scored with the rewards GRPO trains with."""

from __future__ import annotations

from rich.table import Table

from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.rewards.scoring import COMPONENTS
from rationale.run_dir import RunDir
from rationale.stages.reward import NAME, RewardReport

SHOWN_LINES = 20


def show(report: RewardReport, _run_dir: RunDir | None) -> None:
    weights = ", ".join(f"{name} {weight:g}" for name, weight in report.weights.items())
    table = Table(title=f"rewards of {report.answers} {report.kind} answers (weights: {weights})")
    for column in ("line", "question", *COMPONENTS, "total", "note"):
        table.add_column(column, justify="left" if column == "note" else "right")
    for line in report.lines[:SHOWN_LINES]:
        table.add_row(
            str(line.line),
            str(line.question_id),
            *(f"{getattr(line, name):.2f}" for name in COMPONENTS),
            f"{line.total:.3f}",
            line.note,
        )
    if report.answers > SHOWN_LINES:
        table.add_row(
            "...", "", *([""] * len(COMPONENTS)), "", f"{report.answers - SHOWN_LINES} more"
        )
    table.add_row(
        "mean", "", *(f"{report.means[name]:.3f}" for name in COMPONENTS),
        f"{report.means['total']:.3f}", f"{report.execution_right} of {report.answers} right",
        end_section=True,
    )  # fmt: skip
    console.print(table)
    console.print(f"{report.queries_run} queries run in {report.seconds:.1f} s")
    if report.output:
        console.print(f"per answer: {report.output}", soft_wrap=True)


command = stage_command(
    stage(NAME),
    show,
    doc="""Score answers with the rewards GRPO training uses, component by component.

    Each --input line is {"question_id": int, "completion": str}, a question of --data.
    Components: format (the answer parses as its --kind expects), execution (its SQL returns
    the gold result, the official EX rule), steps (the share of its steps that execute,
    return rows and feed the answer) and step_match (the share of the gold query's own
    intermediate results its steps reproduce). Every query runs read-only in the sandbox,
    time- and step-limited. --output writes every component per answer.
    """,
)
