"""The protocol every generation backend implements, and the errors they raise."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from rationale.llm.types import SampleJob, SampleOutput


class GenerationError(RuntimeError):
    """Generation cannot go on; the message says what failed and what to do."""


class BackendUnavailable(GenerationError):
    """The backend's software or hardware is missing (vLLM not installed, no GPU)."""


@runtime_checkable
class ChatBackend(Protocol):
    """Generates chat samples. Caching and result assembly live above it (`runner`).

    `model` is the name the samples are cached under; `retried_errors` counts transient
    failures that were retried (shown as "errors" in progress bars).
    """

    model: str
    retried_errors: int

    def stream(self, jobs: Sequence[SampleJob]) -> AsyncIterator[SampleOutput]:
        """Yield one `SampleOutput` per (job, sample index), in the order they finish."""
        ...

    def close(self) -> None:
        """Release processes, GPUs and connections."""
        ...
