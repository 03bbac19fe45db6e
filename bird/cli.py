"""`bird` command line: thin wrappers over the bird package's functions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from bird.console import exit_cleanly
from bird.files import OutputPlaceError, check_output_place
from bird.sandbox import PROGRESS_INTERVAL

if TYPE_CHECKING:
    from bird.data import BirdSplit
    from bird.evaluation import EvaluationSummary

app = typer.Typer(
    help="BIRD benchmark tools: schemas, sandboxed SQL execution, official-equivalent evaluation.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """BIRD benchmark tools."""


@app.command()
@exit_cleanly
def schema(
    data: Path = typer.Option(..., help="Split folder in the official layout, e.g. bird/dev."),
    db: str = typer.Option(..., help="Database id, e.g. superhero."),
    samples: int = typer.Option(3, min=0, help="Distinct sample values shown per column."),
    max_chars: int | None = typer.Option(
        None, min=1, help="Size budget: drop detail, then tables, until the text fits."
    ),
) -> None:
    """Print a database's schema as CREATE TABLE statements, as prompts show it."""
    from bird.data import BirdDataError, load_split
    from bird.schema import load_schema, render_schema

    try:
        split = load_split(data)
        if db not in split.db_ids() and not split.has_database(db):
            known = ", ".join(split.db_ids()[:20])
            raise BirdDataError(f"{db!r} is not a database of {split.root} (known: {known})")
        text = render_schema(load_schema(split, db, sample_values=samples), max_chars=max_chars)
    except BirdDataError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(text)


@app.command()
@exit_cleanly
def evaluate(
    data: Path = typer.Option(
        ...,
        help="Split folder as released (BIRD dev/, mini-dev MINIDEV/, Spider spider/), or "
        "its questions file (dev.json, mini_dev_sqlite.json, ...).",
    ),
    predictions: list[Path] = typer.Option(
        ...,
        help="Prediction file; repeat for a sweep (gold runs once for all). The official "
        "JSON object (position -> 'SQL\\t----- bird -----\\tdb_id'), JSON Lines of "
        "{question_id, sql}, or for Spider one query per line.",
    ),
    timeout: float = typer.Option(30.0, min=0.001, help="Seconds allowed per query execution."),
    max_steps: int | None = typer.Option(
        None,
        min=PROGRESS_INTERVAL,
        help="Also stop a query after this many SQLite VM steps: a limit that, unlike "
        "--timeout, gives the same scores on any machine (e.g. 100000000).",
    ),
    workers: int = typer.Option(1, min=1, help="Executor processes."),
    output: Path | None = typer.Option(
        None,
        help="Folder for summary.json and per_question.jsonl (several files: a subfolder "
        "each). Default: <prediction file's folder>/<its name>_eval/.",
    ),
    allow_missing: bool = typer.Option(
        False,
        "--allow-missing",
        help="Score missing and db-mismatched predictions as wrong and ignore extra ones, "
        "instead of stopping with an error.",
    ),
    pair_by: str = typer.Option(
        "auto",
        help="Official files: how keys pair with questions: auto, position (the official "
        "form), question_id, or order (file order, as the official scripts pair).",
    ),
    keep_distinct: bool = typer.Option(
        False, "--keep-distinct", help="Spider: keep DISTINCT when comparing (official flag)."
    ),
    ves: bool = typer.Option(
        False, "--ves", help="Also compute R-VES (times every correct pair repeatedly: slow)."
    ),
    ves_iterations: int = typer.Option(
        100, min=1, help="Timed runs per query for R-VES (the official script uses 100)."
    ),
    cache_dir: Path | None = typer.Option(
        None,
        help="Gold result cache folder (default: ~/.cache/sql-rationale/gold, or "
        "$XDG_CACHE_HOME/sql-rationale/gold).",
    ),
    no_disk_cache: bool = typer.Option(
        False, "--no-disk-cache", help="Keep gold results in memory only for this run."
    ),
) -> None:
    """Score predictions by execution: EX (official set equality), soft-F1, optional R-VES;
    Spider's EX on a Spider split.

    Prints counts and metrics by difficulty, the questions that hit a limit and the gold
    ceiling, and writes summary.json and per_question.jsonl for each file.
    """
    from bird.console import table_console
    from bird.data import BirdDataError, load_split
    from bird.evaluation import (
        EvaluationOptions,
        ceiling_line,
        evaluate_many,
        summary_table,
        write_report,
    )
    from bird.gold_cache import GoldCache, default_gold_cache_dir
    from bird.predictions import PredictionFileError

    if pair_by not in PAIR_BY_CHOICES:
        _fail(f"--pair-by {pair_by!r}: choose one of {', '.join(PAIR_BY_CHOICES)}")
    folders = _report_folders(predictions, output)
    if cache_dir is not None and not no_disk_cache:
        _check_place(cache_dir, "--cache-dir", folder=True)
    try:
        split = load_split(data)
    except BirdDataError as error:
        _fail(str(error))
    if ves and split.benchmark == "spider":
        _fail("--ves: R-VES is BIRD's metric; a Spider split is scored by EX only")
    if keep_distinct and split.benchmark != "spider":
        _fail("--keep-distinct applies to Spider splits (BIRD compares rows as they come)")
    options = EvaluationOptions(
        timeout=timeout,
        max_steps=max_steps,
        workers=workers,
        allow_missing=allow_missing,
        pair_by=pair_by,  # type: ignore[arg-type]  # checked against PAIR_BY_CHOICES above
        keep_distinct=keep_distinct,
        ves=ves,
        ves_iterations=ves_iterations,
    )
    gold_cache = GoldCache(None if no_disk_cache else (cache_dir or default_gold_cache_dir()))
    try:
        reports = evaluate_many(
            split, predictions, options=options, gold_cache=gold_cache, show_progress=True
        )
    except (BirdDataError, PredictionFileError) as error:
        _fail(str(error))
    console = table_console()
    for note in split.notes:
        typer.echo(f"note: {note}", err=True)
    for report, folder in zip(reports, folders, strict=True):
        summary = report.summary
        for warning in summary.warnings[len(split.notes) :]:
            typer.echo(f"warning: {warning}", err=True)
        _warn_about_results(summary, split)
        console.print(summary_table(summary))
        for kind, ids in summary.limit_hits.items():
            shown = ", ".join(map(str, ids[:20])) + (", ..." if len(ids) > 20 else "")
            typer.echo(f"{len(ids)} predictions hit {kind}: question_id {shown}")
        typer.echo(ceiling_line(summary))
        summary_path, per_question_path = write_report(report, folder)
        typer.echo(f"wrote {summary_path} and {per_question_path.name} beside it")


PAIR_BY_CHOICES = ("auto", "position", "question_id", "order")


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit code 2: what was given cannot be used."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_place(path: Path, option: str, *, folder: bool) -> None:
    try:
        check_output_place(path, option, folder=folder)
    except OutputPlaceError as error:
        _fail(str(error))


def _report_folders(predictions: list[Path], output: Path | None) -> list[Path]:
    """Where each file's reports go: --output (a subfolder per file when there are several)
    or, by default, `<name>_eval/` beside the prediction file. Checked before evaluating, so
    a folder that cannot be written costs no evaluation."""
    if output is None:
        folders = [path.parent / f"{path.stem}_eval" for path in predictions]
    elif len(predictions) == 1:
        folders = [output]
    else:
        names: list[str] = []
        for path in predictions:
            name, number = path.stem, 2
            while name in names:
                name, number = f"{path.stem}_{number}", number + 1
            names.append(name)
        folders = [output / name for name in names]
    for folder in folders:
        option = "--output" if output is not None else "the default report folder (--output)"
        _check_place(folder, option, folder=True)
    return folders


def _warn_about_results(summary: EvaluationSummary, split: BirdSplit) -> None:
    if summary.gold_failed_question_ids:
        shown = ", ".join(map(str, summary.gold_failed_question_ids[:20]))
        typer.echo(
            f"warning: {len(summary.gold_failed_question_ids)} gold queries failed "
            f"(question_id {shown}); they score 0 with error 'gold_failed'. Check the data "
            f"or raise --timeout / --max-steps.",
            err=True,
        )
    if summary.errors.get("missing_database"):
        typer.echo(
            f"warning: {summary.errors['missing_database']} questions have no database under "
            f"{split.databases_dir}; they score 0 with error 'missing_database'.",
            err=True,
        )
    if summary.ignored_extra_predictions:
        typer.echo(
            f"warning: ignored {len(summary.ignored_extra_predictions)} predictions that match "
            f"no question (--allow-missing).",
            err=True,
        )


@app.command("exec")
@exit_cleanly
def exec_sql(
    db: Path = typer.Option(..., "--db", help="SQLite database file, e.g. .../superhero.sqlite."),
    sql: str = typer.Option(..., "--sql", help="One SQL statement; '-' reads it from stdin."),
    timeout: float = typer.Option(30.0, min=0.001, help="Seconds before the query is stopped."),
    max_rows: int | None = typer.Option(
        None,
        "--max-rows",
        min=1,
        help="Rows fetched at most (default 1,000,000); more is a too_large error.",
    ),
) -> None:
    """Run one read-only statement in the sandbox and print the result as JSON.

    Output fields: columns, rows, error_kind, error, timed_out, truncated, elapsed.
    Blob values print as {"$bytes_hex": "<hex>"}, infinite floats as {"$float": "inf"}.
    Exit code 0 on success, 1 when the SQL fails, 2 on bad usage (e.g. no such database).
    """
    import json
    import sys

    from bird.executor import DEFAULT_MAX_ROWS, ExecutionPool, ExecutionRequest

    statement = sys.stdin.read() if sql == "-" else sql
    # A worker process, not this one: its watchdog also stops the rare single SQLite call
    # that the in-process deadline cannot interrupt (see bird.sandbox).
    with ExecutionPool(workers=1) as pool:
        (result,) = pool.execute_many(
            [ExecutionRequest(db_path=db, sql=statement)],
            timeout=timeout,
            max_rows=max_rows or DEFAULT_MAX_ROWS,
        )
    if result.error_kind == "missing_database":
        typer.echo(f"error: {result.error} (check --db)", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(result.to_jsonable(), ensure_ascii=False))
    if not result.ok:
        raise typer.Exit(1)


@app.command()
@exit_cleanly
def audit(
    data: Path = typer.Option(..., help="Split folder in the official layout, e.g. bird/train."),
    db: list[str] = typer.Option([], "--db", help="Only these databases; repeat for several."),
    timeout: float = typer.Option(30.0, min=0.001, help="Seconds allowed per gold query."),
    workers: int = typer.Option(2, min=1, help="Executor processes."),
    no_reorder: bool = typer.Option(
        False, "--no-reorder", help="Skip the row-order check (no reordered database copies)."
    ),
    output: Path | None = typer.Option(None, help="Write the findings as JSON to this file."),
) -> None:
    """Check every gold query: does it execute, in time, and is its result determined?

    A result that changes on a copy of the database whose rows are stored in reverse order
    (same content, whatever the table's key), or when every scan runs backwards (PRAGMA
    reverse_unordered_selects), depends on chance: LIMIT without ORDER BY, ties at an
    ORDER BY ... LIMIT cut, bare columns. Prints counts by reason and every finding; exit
    code 0 either way.
    """
    from rich.table import Table

    from bird.audit import audit_split
    from bird.console import PhaseProgress, table_console
    from bird.data import BirdDataError, load_split
    from bird.files import write_text_atomic

    if output is not None:
        _check_place(output, "--output", folder=False)
    try:
        split = load_split(data)
        examples = split.select(db)
    except BirdDataError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    with PhaseProgress() as progress:
        report = audit_split(
            split, examples, timeout=timeout, workers=workers, reorder=not no_reorder,
            progress=progress,
        )  # fmt: skip
    console = table_console()
    table = Table(title=f"gold audit of {split.name} ({report.examples} questions)")
    for column in ("question_id", "db_id", "reason", "detail"):
        table.add_column(column)
    for finding in report.findings:
        if finding.reason != "no_database":
            table.add_row(str(finding.question_id), finding.db_id, finding.reason, finding.detail)
    if table.row_count:
        console.print(table)
    counts = ", ".join(f"{reason} {count}" for reason, count in report.counts.items())
    console.print(f"{report.checked} of {report.examples} gold queries checked: {counts}")
    if output is not None:
        write_text_atomic(output, report.model_dump_json(indent=2) + "\n")
        typer.echo(str(output))
