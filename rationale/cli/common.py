"""What every command shares: the console, and one way to report a user's error.

A mistake in what the user gave (a config key, a data folder, an input file) exits 2; a
run that cannot go on as asked (a run directory built with another config or in use, a
server that does not answer, a model that cannot be prepared) exits 1, as does a
file-system error no check foresaw (a disk that fills); Ctrl-C exits 130
(`bird.console.exit_cleanly`). A place to write that cannot be written is refused before
any work (`bird.files.check_output_place`).
Each prints one line naming what is wrong and what to do, never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.markup import escape

from bird.console import exit_cleanly, table_console
from bird.data import BirdDataError
from bird.files import OutputPlaceError
from rationale.analysis.plots import PlotsUnavailable
from rationale.browser.collect import BrowserInputError
from rationale.config import ConfigError
from rationale.llm import GenerationError
from rationale.llm.models import ModelPreparationError
from rationale.prompting.task import PromptSettingsError
from rationale.prompting.templates import PromptTemplateError
from rationale.records.leakage import DatasetLeakageError
from rationale.run_dir import InUseError, RecordFileError, RunConfigError
from rationale.stages.seed import SeedFileError
from rationale.stages.train import TrainingRefused, TrainingRunFailed, TrainingUnavailable
from rationale.stages.validate import InputError

console = table_console(stderr=True)

INPUT_ERRORS: tuple[type[Exception], ...] = (
    BirdDataError,
    BrowserInputError,
    ConfigError,
    DatasetLeakageError,
    InputError,
    OutputPlaceError,
    PromptSettingsError,
    PromptTemplateError,
    RecordFileError,
    SeedFileError,
    TrainingRefused,
)
RUN_ERRORS: tuple[type[Exception], ...] = (
    GenerationError,
    InUseError,
    ModelPreparationError,
    PlotsUnavailable,
    RunConfigError,
    TrainingRunFailed,
    TrainingUnavailable,
)

Command = TypeVar("Command", bound=Callable[..., Any])


def fail(message: str, code: int) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)  # one line, any width
    return typer.Exit(code)


def reporting_errors(command: Command) -> Command:
    """Run `command`, turning the errors a user can fix into one line and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except INPUT_ERRORS as error:
            raise fail(str(error), 2) from None
        except RUN_ERRORS as error:
            raise fail(str(error), 1) from None

    return exit_cleanly(wrapper)  # type: ignore[return-value]
