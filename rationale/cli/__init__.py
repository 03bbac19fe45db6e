"""`rationale` command line: one thin module per command over the stage functions.

The commands are the registry's (`rationale.registry`): `run` first, the stages in pipeline
order, then the tools. Each command module holds `command` (and `SETTINGS` for typer when it
parses its own arguments). Heavy imports (torch, transformers, vLLM) happen only inside the
commands that need them.
"""

from __future__ import annotations

from importlib import import_module

import typer

from rationale.cli import run
from rationale.cli.models import models_app
from rationale.registry import ALL

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
for _stage in ALL:
    _module = import_module(f"rationale.cli.{_stage.name}")
    app.command(_stage.name, **getattr(_module, "SETTINGS", {}))(_module.command)
app.add_typer(models_app, name="models")
