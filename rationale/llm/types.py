"""Records that go into and come out of the LLM layer.

Every backend takes the same `GenerationRequest`s and the layer hands back the same
`GenerationResult`s, so a stage never knows which backend or cache served it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    """One turn of a chat, in the OpenAI message shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str


class SamplingParams(BaseModel):
    """How to sample: the subset of OpenAI / vLLM parameters every backend honours.

    With a `seed`, sample `i` of a request is drawn with seed `seed + i`, so each cached
    sample can be reproduced on its own.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(default=1, ge=1, description="Samples per request.")
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_tuple(cls, value: object) -> object:
        if isinstance(value, str):
            return (value,)
        return tuple(value) if isinstance(value, list) else value

    def seed_for_sample(self, sample_index: int) -> int | None:
        return None if self.seed is None else self.seed + sample_index

    def cache_identity(self) -> dict[str, object]:
        """The parameters that change what one sample looks like (everything but `n`)."""
        return self.model_dump(exclude={"n"}, mode="json")


class GenerationRequest(BaseModel):
    """One chat to complete `sampling.n` times. `id` is the caller's key (e.g. question_id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams = SamplingParams()

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
        if not value:
            raise ValueError("a request needs at least one message")
        return value


FinishReason = Literal["stop", "length", "error", "unknown"]


class Completion(BaseModel):
    """One sample. `completion_tokens` is None where the server did not report it per sample."""

    model_config = ConfigDict(frozen=True)

    sample_index: int
    text: str
    finish_reason: FinishReason
    completion_tokens: int | None = None
    cached: bool = False


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_samples: int = 0


class GenerationResult(BaseModel):
    """All `n` samples of one request, in sample order."""

    id: str
    completions: list[Completion]
    usage: Usage

    @property
    def texts(self) -> list[str]:
        return [completion.text for completion in self.completions]


class SampleOutput(BaseModel):
    """What a backend produces for one sample of one request (before caching)."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    sample_index: int
    text: str
    finish_reason: FinishReason
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class SampleJob(BaseModel):
    """A request together with the sample indices still to generate (the rest are cached)."""

    model_config = ConfigDict(frozen=True)

    request: GenerationRequest
    sample_indices: tuple[int, ...]


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut `text` before the first stop string, as OpenAI servers do.

    Some servers (transformers serve with continuous batching) ignore `stop`; applying it
    here again keeps every backend's output the same shape. Returns (text, was_cut).
    """
    cut = min((index for s in stop if s and (index := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
