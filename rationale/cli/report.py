"""`rationale report`: several systems scored on one split and compared, with plots."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from bird.data import DIFFICULTIES
from bird.evaluation import TOTAL
from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.report import NAME, Report


def report_tables(report: Report) -> list[Table]:
    counts = report.gold_ceiling.counts
    levels = [level for level in (*DIFFICULTIES, TOTAL) if level in counts]
    scores = Table(title=f"EX / soft-F1 on {report.questions} questions of {report.split}")
    scores.add_column("system")
    for level in levels:
        scores.add_column(f"{level} ({counts[level]})", justify="right")
    for name, summary in [(s.name, s.summary) for s in report.systems] + [
        ("gold ceiling", report.gold_ceiling)
    ]:
        ex, f1 = summary.metrics["ex"], summary.metrics["soft_f1"]
        scores.add_row(name, *(f"{ex[level]:.2f} / {f1[level]:.2f}" for level in levels))
    paired = Table(title="paired comparisons")
    for column in ("A vs B", "A only", "B only", "EX A-B", "95% CI", "McNemar p"):
        paired.add_column(column, justify="left" if column == "A vs B" else "right")
    for c in report.comparisons:
        paired.add_row(
            f"{c.a} vs {c.b}",
            str(c.a_only),
            str(c.b_only),
            f"{c.ex_difference:+.2f}",
            f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}]",
            f"{c.mcnemar_p:.3g}",
        )
    return [scores, paired] if report.comparisons else [scores]


def print_report(report: Report) -> None:
    """The report's tables, then what limits its numbers."""
    for table in report_tables(report):
        console.print(table)
    if report.notes:
        console.print("[bold]What limits these numbers[/bold]")
        for note in report.notes:
            console.print(f"  - {escape(note)}")


def show(report: Report, _run_dir: RunDir | None) -> None:
    print_report(report)


command = stage_command(
    stage(NAME),
    show,
    doc="""Score several prediction files on one split and compare them, with plots.

    Each --predictions NAME=FILE is scored as bird evaluate scores it (each gold query runs
    once for all), beside the gold ceiling under the same limits; pairs of systems are
    compared question by question (won / lost, McNemar's exact test, a paired bootstrap
    interval of the EX difference). Writes report.json, report.md and PNG plots to --out.
    """,
)
