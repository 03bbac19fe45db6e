"""Configs of the seed and distill stages (stored resolved in the run's config.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from rationale.llm import SamplingParams
from rationale.run_dir import StageConfig

DEFAULT_SEEDS = Path(__file__).resolve().parents[1] / "prompts" / "seeds.jsonl"

Bootstrap = Literal["none", "decompose"]
AcceptRule = Literal["most_steps", "fewest_steps"]


class SeedConfig(StageConfig):
    """Stage 1: validate the hand-written seeds and write pool iteration 0."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers"})

    data: Path = Field(description="The train split folder (holds train.json).")
    seeds: Path = DEFAULT_SEEDS
    bootstrap: Bootstrap = "none"
    keep_unverified: bool = Field(
        default=False,
        description="Keep seeds whose database is absent (not execution-checked) in the pool.",
    )
    timeout: float = 30.0
    workers: int = 2

    @field_validator("data", "seeds")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class DistillConfig(StageConfig):
    """Stage 2: the teacher loop. Sampling differs per iteration: with `greedy_first`,
    iteration 1 is one greedy sample; later iterations draw `samples` at `temperature`, with
    seeds that differ per iteration so no two iterations repeat the same draws."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "base_urls",
            "max_in_flight",
            "request_timeout",
            "batch_size",
            "device",
            "tensor_parallel_size",
            "data_parallel_size",
            "cache_dir",
            "validation_workers",
            "validation_batch",
            "iterations",
            "min_gain",
            "min_iterations",
        }
    )

    data: Path
    backend: Literal["vllm", "openai", "hf"]
    model: str
    served_model: str | None = None
    # what the teacher sees
    mode: Literal["free", "skeleton"] = "free"
    shots: int = Field(default=3, ge=0)
    retrieval: Literal["sql", "question", "hybrid"] = "sql"
    hybrid_weight: float = 0.5
    schema_max_chars: int | None = 12000
    schema_sample_values: int = 3
    # sampling
    greedy_first: bool = True
    samples: int = Field(default=4, ge=1)
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = 1.0
    max_tokens: int = Field(default=1024, ge=1)
    seed: int = 0
    # acceptance and stopping
    accept: AcceptRule = "most_steps"
    iterations: int = Field(default=3, ge=1)
    min_gain: float = Field(default=0.5, ge=0.0, description="Coverage points per iteration.")
    min_iterations: int = Field(default=2, ge=1)
    validation_timeout: float = 30.0
    # which examples
    db_ids: list[str] = Field(default_factory=list)
    limit: int | None = None
    # runtime only
    base_urls: list[str] = Field(default_factory=list)
    max_in_flight: int = 32
    request_timeout: float = 600.0
    batch_size: int = 8
    device: str = "auto"
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    cache_dir: Path | None = None
    validation_workers: int = 2
    validation_batch: int = 64

    @field_validator("data")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def sampling_for(self, iteration: int) -> SamplingParams:
        """Iteration 1 greedy (one sample) when `greedy_first`; otherwise `samples` draws."""
        if iteration == 1 and self.greedy_first:
            return SamplingParams(n=1, temperature=0.0, max_tokens=self.max_tokens)
        return SamplingParams(
            n=self.samples,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed + 1000 * iteration,
        )
