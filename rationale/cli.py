"""`rationale` command line: thin wrappers over the rationale pipeline's functions.

Each command lives beside the stage it drives; this module only assembles them. Heavy
imports (torch, transformers, vLLM) happen inside the commands that need them.
"""

from __future__ import annotations

import typer

from rationale.decompose_cli import decompose_command
from rationale.distill_cli import distill_command, seed_command
from rationale.llm.cli import generate_command, models_app
from rationale.validate_cli import validate_command

app = typer.Typer(
    help="Chain-of-thought rationales for text-to-SQL: format, validation, decomposition, "
    "seed pool, teacher distillation, LLM generation.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Rationale pipeline tools."""


app.command("validate")(validate_command)
app.command("decompose")(decompose_command)
app.command("seed")(seed_command)
app.command("distill")(distill_command)
app.command("generate")(generate_command)
app.add_typer(models_app, name="models")
