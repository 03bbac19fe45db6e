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
    stop_after_block: str | None = Field(
        default=None,
        description="End the answer once a fenced code block closes after this text (case "
        "insensitive; '' for any block): the answer formats end that way, and small models "
        "seldom emit their end token.",
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_tuple(cls, value: object) -> object:
        if isinstance(value, str):
            return (value,)
        return tuple(value) if isinstance(value, list) else value

    def seed_for_sample(self, sample_index: int) -> int | None:
        return None if self.seed is None else self.seed + sample_index

    def cache_identity(self) -> dict[str, object]:
        """The parameters that change what one sample looks like (everything but `n`; the
        block rule only when set, so answers cached before it existed keep their keys)."""
        exclude = {"n"} if self.stop_after_block is not None else {"n", "stop_after_block"}
        return self.model_dump(exclude=exclude, mode="json")


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


FENCE = "```"


def end_of_block_after(text: str, marker: str) -> int | None:
    """The index just past the first fenced code block that closes after `marker` (searched
    case-insensitively; '' matches at the start), or None while no such block is complete.
    Fences count at the start of a line only, as Markdown reads them."""
    start = 0
    if marker:
        found = text.lower().find(marker.lower())
        if found < 0:
            return None
        start = found + len(marker)
    opened: int | None = None
    position = start
    while True:
        fence = text.find(FENCE, position)
        if fence < 0:
            return None
        at_line_start = fence == 0 or text[fence - 1] == "\n"
        if at_line_start:
            if opened is None:
                opened = fence
            else:
                line_end = text.find("\n", fence)
                closing = text[fence + len(FENCE) : line_end if line_end >= 0 else len(text)]
                if not closing.strip():  # a bare closing fence, not a new opening one
                    return line_end if line_end >= 0 else len(text)
        position = fence + len(FENCE)


def cut_answer(text: str, sampling: SamplingParams) -> tuple[str, bool]:
    """A finished sample as every backend returns it: cut before the first stop string,
    then after the block `stop_after_block` asks for. Returns (text, was_cut)."""
    text, was_cut = truncate_at_stop(text, sampling.stop)
    if sampling.stop_after_block is not None:
        end = end_of_block_after(text, sampling.stop_after_block)
        if end is not None and end < len(text.rstrip()):
            return text[:end], True
        was_cut = was_cut or end is not None
    return text, was_cut


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut `text` before the first stop string, as OpenAI servers do.

    Some servers (transformers serve with continuous batching) ignore `stop`; applying it
    here again keeps every backend's output the same shape. Returns (text, was_cut).
    """
    cut = min((index for s in stop if s and (index := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
