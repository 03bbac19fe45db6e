"""Consoles for the result tables the commands print, and the one progress display they share."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PIPED_WIDTH = 160
INTERRUPTED = 130  # the shell's exit code for a command stopped by Ctrl-C

Command = TypeVar("Command", bound=Callable[..., Any])


class ProgressCallback(Protocol):
    """How long work reports how far it is: `(phase, done, total or None, note)` per step,
    and `log(message)` for a line worth keeping (a resumption, a phase that starts)."""

    def __call__(self, phase: str, done: int, total: int | None, note: str = "") -> None: ...

    def log(self, message: str) -> None: ...


def table_console(stderr: bool = False) -> Console:
    """A rich console that keeps wide tables whole in logs and pipes.

    Off a terminal rich assumes 80 columns and squeezes a ten-column table into "…" cells;
    there, use a width that fits every table the commands print.
    """
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)


class _Silent:
    """A `ProgressCallback` that shows nothing (library use, tests)."""

    def __call__(self, phase: str, done: int, total: int | None, note: str = "") -> None:
        return None

    def log(self, message: str) -> None:
        return None


no_progress: ProgressCallback = _Silent()


class PhaseProgress:
    """A bar per phase ("validate", "iteration 2", ...) with done/total, elapsed time, time
    left and a free note (error counts, tokens/s). Call it as a `ProgressCallback`.

        with PhaseProgress(console) as progress:
            run_stage(config, progress=progress)
    """

    def __init__(self, console: Console | None = None, *, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=console or Console(stderr=True),
            disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> PhaseProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.__exit__(kind, error, trace)

    def __call__(self, phase: str, done: int, total: int | None, note: str = "") -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._progress.add_task(phase, total=total, note=note)
        self._progress.update(task, completed=done, total=total, note=note)

    def log(self, message: str) -> None:
        self._progress.console.print(message, markup=False, highlight=False)


def exit_cleanly(command: Command) -> Command:
    """Ctrl-C stops the command with exit code 130 and one line, never a traceback (the
    command writes its results only at the end, so nothing partial is left as final); a
    file-system error no earlier check caught (a disk that fills, a folder removed under a
    run) is one line naming the path and what to do, exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            Console(stderr=True).print(
                "[yellow]interrupted[/yellow]: stopped before writing final results; run the "
                "same command again (what a run had finished is kept where it resumes)"
            )
            raise typer.Exit(INTERRUPTED) from None
        except OSError as error:
            from bird.files import os_error_line

            typer.echo(f"error: {os_error_line(error)}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
