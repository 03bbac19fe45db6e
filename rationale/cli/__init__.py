"""`rationale` command line: one thin module per command over the stage functions.

The commands are the registry's (`rationale.registry`): `run` first, the stages in pipeline
order, then the tools. A command module holds `command` (and `SETTINGS` for typer when it
parses its own arguments); a stage without one gets the command its config implies, which
prints the report's summary. Heavy imports (torch, transformers, vLLM) happen only inside the
commands that need them.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

import typer

from rationale.cli import run
from rationale.cli.models import models_app
from rationale.cli.stage_command import print_summary, stage_command
from rationale.registry import ALL, Stage

app = typer.Typer(
    help="Chain-of-thought rationales for text-to-SQL: seed pool, teacher distillation, "
    "and the tools beside them (decomposition, validation, LLM generation).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Rationale pipeline tools."""


def _command(declared: Stage) -> tuple[Callable[..., None], dict[str, Any]]:
    """The stage's command module's `command`, or, for a stage without one, the command
    derived from its config that prints its summary: a new stage needs no CLI code."""
    try:
        module = import_module(f"rationale.cli.{declared.name}")
    except ModuleNotFoundError as error:
        if error.name != f"rationale.cli.{declared.name}":
            raise
        return stage_command(declared, print_summary, doc=declared.run.__doc__ or ""), {}
    return module.command, getattr(module, "SETTINGS", {})


app.command("run")(run.command)
for _stage in ALL:
    _function, _settings = _command(_stage)
    app.command(_stage.name, **_settings)(_function)
app.add_typer(models_app, name="models")
