"""`rationale generate`: chat completions for a JSONL file of requests, resumable, cached."""

from __future__ import annotations

from rich.table import Table

from rationale.cli.common import console
from rationale.cli.stage_command import stage_command
from rationale.registry import stage
from rationale.run_dir import RunDir
from rationale.stages.generate import NAME, GenerateSummary


def show(summary: GenerateSummary, _run_dir: RunDir | None) -> None:
    table = Table(title="generate", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = {
        "requests in input": summary.requests,
        "already in output": summary.already_done,
        "written now": summary.generated,
        "cache hits / misses": f"{summary.cache_hits} / {summary.cache_misses}",
        "completion tokens generated": summary.completion_tokens,
        "retried errors": summary.retried_errors,
        "seconds": f"{summary.seconds:.1f}",
    }
    for what, value in rows.items():
        table.add_row(what, str(value))
    console.print(table)


command = stage_command(
    stage(NAME),
    show,
    doc="""Generate chat completions for a JSONL file of requests, resumably and with a cache.

Writes one line per request as soon as it finishes: {"id", "outputs", "usage"}.

Kill it and run it again: done ids are kept and cached samples cost no request.""",
)
