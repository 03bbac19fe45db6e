"""`rationale` command line: one thin module per command over the stage functions.

Stage commands come in pipeline order, then the tools. Heavy imports (torch,
transformers, vLLM) happen only inside the commands that need them.
"""

from __future__ import annotations

import typer

from rationale.cli import (
    annotate,
    audit,
    decompose,
    distill,
    export,
    generate,
    predict,
    report,
    reward,
    run,
    seed,
    train,
    validate,
    view,
)
from rationale.cli.models import models_app

app = typer.Typer(
    help="Chain-of-thought rationales for text-to-SQL: seed pool, teacher distillation, "
    "and the tools beside them (decomposition, validation, LLM generation).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Rationale pipeline tools."""


app.command("run")(run.command)
app.command("audit")(audit.command)
app.command("seed")(seed.command)
app.command("distill")(distill.command)
app.command(
    "train",
    help=train.HELP,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)(train.command)
app.command("annotate")(annotate.command)
app.command("export")(export.command)
app.command("predict")(predict.command)
app.command("report")(report.command)
app.command("decompose")(decompose.command)
app.command("validate")(validate.command)
app.command("generate")(generate.command)
app.command("reward")(reward.command)
app.command("view")(view.command)
app.add_typer(models_app, name="models")
