"""`rationale seed` and `rationale distill`: parse options, build the config, call the stage.

Registered on the main `rationale` app in `rationale/cli.py`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bird.console import table_console
from bird.data import BirdDataError
from rationale.distill import DistillReport, IterationRow, run_distill
from rationale.distill_config import DEFAULT_SEEDS, DistillConfig, SeedConfig
from rationale.llm import GenerationError
from rationale.llm.cli import BackendChoice
from rationale.models import ModelPreparationError
from rationale.prompts import PromptTemplateError
from rationale.retrieval import LeakageError
from rationale.run_dir import RunConfigError, RunDir
from rationale.seed_stage import SeedFileError, SeedReport, run_seed

console = table_console(stderr=True)
_USER_ERRORS = (
    BirdDataError,
    GenerationError,
    LeakageError,
    ModelPreparationError,
    PromptTemplateError,
    RunConfigError,
    SeedFileError,
)


class BootstrapChoice(StrEnum):
    none = "none"
    decompose = "decompose"


class ModeChoice(StrEnum):
    free = "free"
    skeleton = "skeleton"


class RetrievalChoice(StrEnum):
    sql = "sql"
    question = "question"
    hybrid = "hybrid"


class AcceptChoice(StrEnum):
    most_steps = "most_steps"
    fewest_steps = "fewest_steps"


def seed_table(report: SeedReport) -> Table:
    table = Table(title=f"seed pool ({report.split})")
    for column in ("question_id", "db_id", "status", "failed check / detail"):
        table.add_column(column)
    for outcome in report.outcomes:
        if outcome.status in ("valid", "no_database"):
            continue  # no_database seeds are counted in the caption, listed in seed/report.json
        why = ", ".join(outcome.failed_checks) or outcome.detail
        table.add_row(str(outcome.question_id), outcome.db_id, outcome.status, why[:120])
    table.caption = (
        f"{report.seeds} seeds: {report.valid} valid, {report.invalid} invalid, "
        f"{report.no_database} without database ({report.kept_unverified} kept unverified), "
        f"{report.not_in_split} not in this split; decomposer added {report.bootstrap_added}; "
        f"pool iteration 0: {report.pool_size} entries"
    )
    return table


def seed_command(
    data: Path = typer.Option(..., "--data", help="Train split folder (holds train.json)."),
    run: Path = typer.Option(..., "--run", help="Run directory (created if absent)."),
    seeds: Path = typer.Option(DEFAULT_SEEDS, "--seeds", help="Seed rationales (JSONL)."),
    bootstrap: BootstrapChoice = typer.Option(
        BootstrapChoice.none,
        "--bootstrap",
        help="decompose: also add the symbolic decomposer's validated chains for executable "
        "examples (off by default: the paper's seed-only setting).",
    ),
    keep_unverified: bool = typer.Option(
        False,
        "--keep-unverified",
        help="Keep seeds whose database is absent (cannot be validated) in the pool.",
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per SQL statement."),
    workers: int = typer.Option(2, "--workers", min=1, help="SQL worker processes."),
    force: bool = typer.Option(False, "--force", help="Replace a seed stage with another config."),
) -> None:
    """Validate the seed rationales on your databases and write pool iteration 0.

    Each invalid seed is listed with the check it failed; seeds whose database is absent are
    listed as not verified and left out of the pool unless --keep-unverified.
    """
    try:
        config = SeedConfig(
            data=data,
            seeds=seeds,
            bootstrap=bootstrap.value,
            keep_unverified=keep_unverified,
            timeout=timeout,
            workers=workers,
        )
        report = run_seed(config, RunDir(run), force=force, on_phase=console.print)
    except _USER_ERRORS as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    table = seed_table(report)
    console.print(table if table.row_count else table.caption)
    typer.echo(str(RunDir(run).pool_path(0)))


def iteration_table(report: DistillReport) -> Table:
    """The per-iteration table: the figures of report.json."""
    table = Table(title=f"distill {report.split} with {report.teacher_model} ({report.mode})")
    columns = (
        "iter",
        "candidates",
        "attempted",
        "samples",
        "parsed",
        "valid",
        "accepted",
        "coverage %",
        "gain",
        "prompt tok",
        "completion tok",
        "sent",
        "wall s",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in report.iterations:
        table.add_row(*_row_cells(row))
    missing = sum(report.no_database.values())
    table.caption = (
        f"{report.covered}/{report.executable} executable examples covered "
        f"({report.coverage:.1f}%), seed pool {report.seed_pool}; {missing} examples have no "
        f"database; stopped: {report.stop_reason}. sent = samples not served by the cache."
    )
    return table


def _row_cells(row: IterationRow) -> list[str]:
    return [
        str(row.iteration),
        str(row.candidates),
        str(row.attempted),
        str(row.samples),
        str(row.parsed),
        str(row.valid),
        str(row.accepted),
        f"{row.coverage:.1f}",
        f"{row.gain:+.1f}",
        str(row.prompt_tokens),
        str(row.completion_tokens),
        str(row.samples_generated),
        f"{row.wall_seconds:.1f}",
    ]


def distill_command(
    data: Path = typer.Option(..., "--data", help="Train split folder (holds train.json)."),
    run: Path = typer.Option(..., "--run", help="Run directory holding pool/iteration_0.jsonl."),
    backend: BackendChoice = typer.Option(
        ..., "--backend", help="vllm: offline on GPUs; openai: a server such as `vllm serve`; hf."
    ),
    model: str = typer.Option(..., "--model", help="Teacher model name or path."),
    base_url: list[str] = typer.Option(
        [], "--base-url", help="openai: server URL; repeat for several servers."
    ),
    served_model: str | None = typer.Option(
        None, "--served-model", help="openai: the name the server expects (default: --model)."
    ),
    iterations: int = typer.Option(3, "--iterations", min=1, help="At most K iterations."),
    samples: int = typer.Option(
        4, "--samples", min=1, help="Samples per example after the first iteration."
    ),
    temperature: float = typer.Option(
        0.7, "--temperature", min=0.0, help="For sampled iterations."
    ),
    no_greedy_first: bool = typer.Option(
        False, "--no-greedy-first", help="Sample in iteration 1 too (default: one greedy sample)."
    ),
    shots: int = typer.Option(3, "--shots", min=0, help="Few-shot rationales per prompt."),
    mode: ModeChoice = typer.Option(
        ModeChoice.free, "--mode", help="free (paper) or skeleton (decomposer steps given)."
    ),
    retrieval: RetrievalChoice = typer.Option(RetrievalChoice.sql, "--retrieval"),
    accept: AcceptChoice = typer.Option(
        AcceptChoice.most_steps, "--accept", help="Which valid sample to keep per example."
    ),
    max_tokens: int = typer.Option(1024, "--max-tokens", min=1),
    seed: int = typer.Option(0, "--seed", help="Sampling seed base (varied per iteration)."),
    min_gain: float = typer.Option(
        0.5, "--min-gain", help="Stop when an iteration adds fewer coverage points."
    ),
    schema_max_chars: int = typer.Option(12000, "--schema-max-chars", help="Schema text budget."),
    db: list[str] = typer.Option([], "--db", help="Only these databases; repeat for several."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N executable examples."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Response cache folder."),
    max_in_flight: int = typer.Option(32, "--max-in-flight", min=1, help="openai: concurrency."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="hf: prompts per batch."),
    device: str = typer.Option("auto", "--device", help="hf: cpu, cuda or auto."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", min=1, help="vllm."),
    validation_workers: int = typer.Option(
        2, "--validation-workers", min=1, help="SQL worker processes for validation."
    ),
    validation_batch: int = typer.Option(
        64, "--validation-batch", min=1, help="Examples validated (and written) together."
    ),
    force: bool = typer.Option(
        False, "--force", help="Discard this run's distillation results and start over."
    ),
) -> None:
    """Distil validated rationales from a teacher LLM, iteratively growing the pool.

    Kill it at any point and run the same command again: it finishes with the same accepted
    set, and every sample already answered comes from the response cache.
    """
    if backend is BackendChoice.openai and not base_url:
        console.print(
            "[red]error:[/red] --backend openai needs --base-url (e.g. http://HOST:8000/v1)"
        )
        raise typer.Exit(1)
    try:
        config = DistillConfig(
            data=data,
            backend=backend.value,
            model=model,
            served_model=served_model,
            base_urls=base_url,
            iterations=iterations,
            samples=samples,
            temperature=temperature,
            greedy_first=not no_greedy_first,
            shots=shots,
            mode=mode.value,
            retrieval=retrieval.value,
            accept=accept.value,
            max_tokens=max_tokens,
            seed=seed,
            min_gain=min_gain,
            schema_max_chars=schema_max_chars,
            db_ids=db,
            limit=limit,
            cache_dir=cache_dir,
            max_in_flight=max_in_flight,
            batch_size=batch_size,
            device=device,
            tensor_parallel_size=tensor_parallel_size,
            validation_workers=validation_workers,
            validation_batch=validation_batch,
        )
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            tasks: dict[int, object] = {}

            def progress(iteration: int, done: int, total: int) -> None:
                if iteration not in tasks:
                    tasks[iteration] = bar.add_task(f"iteration {iteration}", total=total)
                bar.update(tasks[iteration], completed=done)  # type: ignore[arg-type]

            report = run_distill(config, RunDir(run), force=force, progress=progress)
    except _USER_ERRORS as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    console.print(iteration_table(report))
    typer.echo(str(RunDir(run).stage_dir("distill") / "report.json"))
