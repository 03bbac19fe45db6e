"""The three backends, built by name. Each is imported only when chosen, so the heavy
optional dependencies (torch, vLLM) load only where they are used."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Literal, get_args

from rationale.llm.backend import ChatBackend, GenerationError
from rationale.llm.types import SampleJob, SampleOutput

BackendName = Literal["vllm", "openai", "hf"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)


class LazyBackend:
    """A backend built on its first `stream` call: a fully cached pass never loads a model
    or needs a server."""

    def __init__(self, model: str, factory: Callable[[], ChatBackend]) -> None:
        self.model = model
        self._factory = factory
        self._backend: ChatBackend | None = None

    @property
    def retried_errors(self) -> int:
        return self._backend.retried_errors if self._backend is not None else 0

    def stream(self, jobs: Sequence[SampleJob]) -> AsyncIterator[SampleOutput]:
        if self._backend is None:
            try:
                self._backend = self._factory()
            except (OSError, ValueError) as error:  # transformers' "not a model" errors
                raise GenerationError(f"cannot load model {self.model!r}: {error}") from None
        return self._backend.stream(jobs)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def make_backend(
    name: BackendName,
    model: str,
    *,
    base_urls: Sequence[str] = (),
    served_model: str | None = None,
    max_in_flight: int = 32,
    timeout: float = 600.0,
    max_attempts: int = 8,
    batch_size: int = 8,
    device: str = "auto",
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    enforce_eager: bool = False,
    engine_options: Mapping[str, Any] | None = None,
    engine_start_timeout: float = 1800.0,
) -> ChatBackend:
    """Build a backend from command-line style options; options a backend does not use are
    ignored."""
    if name == "openai":
        from rationale.llm.backends.openai import OpenAIBackend

        return OpenAIBackend(
            model,
            base_urls,
            served_model=served_model,
            max_in_flight=max_in_flight,
            timeout=timeout,
            max_attempts=max_attempts,
        )
    if name == "hf":
        from rationale.llm.backends.hf import HFBackend

        return HFBackend(model, device=device, batch_size=batch_size)
    if name == "vllm":
        from rationale.llm.backends.vllm import VLLMBackend

        return VLLMBackend(
            model,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            engine_options=dict(engine_options or {}),
            start_timeout=engine_start_timeout,
        )
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
