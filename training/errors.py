"""The one error type for bad input, so the entry point can answer it with one line and exit 2."""

from __future__ import annotations


class TrainingInputError(ValueError):
    """The user's recipe, flags, dataset or model cannot be used as given.

    The message is one line that names what is wrong and, where it helps, what to do instead;
    `training.sft.main` prints it without a traceback.
    """


class TrainingFailed(RuntimeError):
    """A training process ended with an error that is not the user's input (out of memory, a
    crash, a killed worker). The message is one line with the cause and the log file."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
