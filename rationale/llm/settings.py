"""The model settings every generating stage shares: which backend and model, where it runs,
how requests are retried and cached, and how samples are drawn round after round.

Stage configs mix these in (`class DistillConfig(BackendConfig, RoundSampling, StageConfig)`),
so each choice set and default is spelled once, and every stage exposes the same keys and
flags. The fields in `RUNTIME_FIELDS` change speed or placement, not results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rationale.config import OUTPUT_FOLDER
from rationale.llm.backend import ChatBackend
from rationale.llm.backends import BackendName, LazyBackend, make_backend
from rationale.llm.cache import ResponseCache, default_cache_dir
from rationale.llm.models import check_model_name, model_identity
from rationale.llm.types import SamplingParams


class BackendConfig(BaseModel):
    """Which model generates, on which backend, and how requests travel."""

    model_config = ConfigDict(extra="forbid")

    CLI_PANEL: ClassVar[str] = "Model and backend"
    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "base_urls",
            "max_in_flight",
            "request_timeout",
            "max_attempts",
            "batch_size",
            "device",
            "tensor_parallel_size",
            "data_parallel_size",
            "gpu_memory_utilization",
            "enforce_eager",
            "engine_start_timeout",
            "cache_dir",
            "use_cache",
        }
    )

    backend: BackendName = Field(
        description="vllm: offline vLLM on GPUs; openai: an OpenAI-compatible server such as "
        "`vllm serve`; hf: local transformers generate (CPU or GPU)."
    )
    model: str = Field(
        description="Model name or path; `smollm2-135m` is the tiny local model; a folder "
        "written by `rationale train` works with every backend."
    )
    served_model: str | None = Field(
        default=None, description="openai: the model name the server expects (default: model)."
    )
    base_urls: list[str] = Field(
        default_factory=list,
        description="openai: server URL (e.g. http://HOST:8000/v1); repeat for several "
        "servers, used round-robin.",
        json_schema_extra={"flag": "base-url"},
    )
    max_in_flight: int = Field(default=32, ge=1, description="openai: requests in flight.")
    request_timeout: float = Field(
        default=600.0, gt=0, description="openai: seconds to wait for one answer."
    )
    max_attempts: int = Field(
        default=8, ge=1, description="openai: tries per request (timeouts, 429/5xx, refused)."
    )
    batch_size: int = Field(default=8, ge=1, description="hf: prompts per generate batch.")
    device: str = Field(default="auto", description="hf: cpu, cuda, cuda:1 or auto.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="vllm: GPUs per model copy.")
    data_parallel_size: int = Field(default=1, ge=1, description="vllm: model copies.")
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="vllm: share of each GPU's memory an engine may take (lower it on a "
        "shared GPU, or when an engine fails to start for lack of memory).",
    )
    max_model_len: int | None = Field(
        default=None,
        ge=256,
        description="vllm: longest prompt + answer in tokens (default: the model's own, "
        "131k for Llama 3.x, which costs KV-cache memory).",
    )
    enforce_eager: bool = Field(
        default=False,
        description="vllm: no CUDA graphs (less memory, slower; try it when an engine fails "
        "to start).",
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict,
        description="vllm: more keyword arguments of vllm.LLM, KEY=VALUE (value read as "
        "YAML); repeat for several (e.g. quantization=fp8, kv_cache_dtype=fp8).",
        json_schema_extra={"flag": "engine-option"},
    )
    engine_start_timeout: float = Field(
        default=1800.0,
        gt=0,
        description="vllm: seconds an engine may take to load its model before the step "
        "gives up (a 70B model from a cold disk takes minutes).",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Response cache folder (default: $SQL_RATIONALE_CACHE/responses or "
        "~/.cache/sql-rationale/responses).",
        json_schema_extra={"output": OUTPUT_FOLDER},
    )
    use_cache: bool = Field(
        default=True,
        description="Read and write the response cache (a resumed run then sends nothing "
        "already answered).",
        json_schema_extra={"flag": "cache"},
    )

    @model_validator(mode="after")
    def _openai_needs_a_server(self) -> BackendConfig:
        if self.backend == "openai" and not self.base_urls:
            raise ValueError(
                "backend 'openai' needs base_urls: give --base-url http://HOST:PORT/v1 "
                "(repeat for several servers)"
            )
        return self

    def check_model(self) -> None:
        """Fail now for a model that cannot exist (a typo, a missing folder); backends that
        load weights here only (an openai server knows its own model names)."""
        if self.backend in ("hf", "vllm"):
            check_model_name(self.model)

    def response_cache(self) -> ResponseCache | None:
        if not self.use_cache:
            return None
        return ResponseCache(self.cache_dir or default_cache_dir() / "responses")

    def make_backend(self) -> ChatBackend:
        """The backend, built on the first request that misses the cache: a fully cached
        pass never loads a model or needs a server."""
        return LazyBackend(
            model_identity(self.model),  # what the response cache knows it by
            lambda: make_backend(
                self.backend,
                self.model,
                base_urls=self.base_urls,
                served_model=self.served_model,
                max_in_flight=self.max_in_flight,
                timeout=self.request_timeout,
                max_attempts=self.max_attempts,
                batch_size=self.batch_size,
                device=self.device,
                tensor_parallel_size=self.tensor_parallel_size,
                data_parallel_size=self.data_parallel_size,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
                enforce_eager=self.enforce_eager,
                engine_options=self.engine_options,
                engine_start_timeout=self.engine_start_timeout,
            ),
        )


class RoundSampling(BaseModel):
    """Sampling for stages that ask again in rounds (distill iterations, annotation rounds,
    self-consistency): with `greedy_first`, round 1 is one greedy sample; later rounds draw
    `samples` at `temperature`, with seeds that differ per round so no two rounds repeat the
    same draws."""

    model_config = ConfigDict(extra="forbid")

    CLI_PANEL: ClassVar[str] = "Sampling"

    greedy_first: bool = Field(
        default=True, description="Round 1 is one greedy sample (else it samples too)."
    )
    samples: int = Field(default=4, ge=1, description="Samples per example in sampled rounds.")
    temperature: float = Field(default=0.7, ge=0.0, description="For sampled rounds.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(default=1024, ge=1, description="Tokens per sample at most.")
    seed: int = Field(default=0, description="Sampling seed base (varied per round).")

    def sampling_for(self, round_number: int) -> SamplingParams:
        if round_number == 1 and self.greedy_first:
            return SamplingParams(n=1, temperature=0.0, max_tokens=self.max_tokens)
        return SamplingParams(
            n=self.samples,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed + 1000 * round_number,
        )
