"""`rationale view`: one HTML page to browse a run's rationales and predictions."""

from __future__ import annotations

from rationale.browser.tool import NAME, ViewReport
from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir


def show(report: ViewReport, _run_dir: RunDir | None) -> None:
    systems = ", ".join(f"{name} ({count})" for name, count in report.systems.items())
    console.print(
        f"{report.questions} questions ({report.covered} covered)"
        + (f", predictions: {systems}" if systems else "")
        + f"; {report.queries_run} queries run; {report.page_bytes / 1e6:.1f} MB in "
        f"{report.seconds:.1f} s"
    )
    console.print(f"page: {report.out}", soft_wrap=True)


command = stage_command(
    stage(NAME),
    show,
    doc="""Write one self-contained HTML page to browse rationales and predictions.

    With --run DIR: coverage of the train split by source (and per database), every question
    filterable by database, difficulty, source, outcome and failed check, with text search;
    per question its gold result, the accepted rationale step by step with each step's
    result, the validation checks, the provenance and the rejected attempts; and every
    prediction folder under DIR/predict (greedy and voted answers, candidates and votes, EX,
    the first failing step). With --input FILE: the questions one record file holds. The
    page opens from disk in any browser and requests nothing from any server.
    """,
)
