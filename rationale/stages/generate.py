"""The generate tool: chat requests from a JSONL file, samples to a JSONL file, resumable.

Each finished record is appended and flushed at once (and fsynced every few seconds), so a
killed run keeps everything it finished. On restart the output is read back through
`rationale.run_dir.read_jsonl` (a last line cut short by the kill is dropped, a record
written twice is kept once), done ids are skipped, and the rest is generated (from the
response cache where the kill came after the samples arrived). A sidecar
`<output>.meta.json` records model and sampling so that a resume with other settings fails
instead of mixing outputs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bird.console import ProgressCallback, no_progress
from rationale.config import OUTPUT_FILE, StageConfig
from rationale.llm import ChatBackend, GenerationStats, iter_generate
from rationale.llm.settings import BackendConfig
from rationale.llm.types import (
    ChatMessage,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    Usage,
)
from rationale.run_dir import (
    RecordFileError,
    RunConfigError,
    exclusive,
    read_jsonl,
    write_text_atomic,
)

NAME = "generate"
_FSYNC_INTERVAL_S = 2.0

InputFileError = RecordFileError  # a user's file that is not what the command reads


class GenerateConfig(BackendConfig, StageConfig):
    """The generate tool: one model, a JSONL of chats in, a JSONL of samples out."""

    input: Path = Field(description='JSONL input, one {"id": ..., "messages": [...]} per line.')
    output: Path = Field(
        description="JSONL output; an existing file is completed, not overwritten.",
        json_schema_extra={"output": OUTPUT_FILE},
    )
    n: int = Field(default=1, ge=1, description="Samples per request.")
    temperature: float = Field(default=0.0, ge=0.0, description="0 is greedy.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(default=512, ge=1, description="Tokens per sample at most.")
    seed: int | None = Field(default=None, description="Sample i uses seed + i.")
    stop: list[str] = Field(default_factory=list, description="Stop string; repeat for several.")

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            n=self.n,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed,
            stop=tuple(self.stop),
        )


class InputRecord(BaseModel):
    """One line of the input file: `{"id": ..., "messages": [{"role", "content"}, ...]}`."""

    model_config = ConfigDict(extra="ignore")

    id: str | int
    messages: list[ChatMessage]

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise ValueError("'messages' is empty")
        return value


class OutputSample(BaseModel):
    text: str
    finish_reason: FinishReason
    completion_tokens: int | None = None


class OutputRecord(BaseModel):
    """One line of the output file."""

    id: str | int
    outputs: list[OutputSample]
    usage: Usage


class RunSettings(BaseModel):
    """What the outputs depend on; stored beside the output file."""

    model: str
    sampling: SamplingParams


class GenerateSummary(BaseModel):
    requests: int
    already_done: int
    generated: int
    cache_hits: int
    cache_misses: int
    completion_tokens: int
    retried_errors: int
    seconds: float


def read_requests(path: Path) -> list[InputRecord]:
    """Read and validate the input JSONL; errors name the file and line."""
    if not path.is_file():
        raise InputFileError(f"{path}: input file not found")
    records = read_jsonl(
        path,
        InputRecord,
        repair=False,
        what='a request {"id": ..., "messages": [...]}',
        advice="fix the line",
    )
    lines = [
        number
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip()
    ]
    seen: dict[str, int] = {}
    for record, number in zip(records, lines, strict=False):
        key = str(record.id)
        if key in seen:
            raise InputFileError(
                f"{path}:{number}: id {record.id!r} already used on line {seen[key]}"
            )
        seen[key] = number
    return records


def read_outputs(path: Path) -> list[OutputRecord]:
    """The records of an output file, each id once (the first), in file order."""
    return read_jsonl(
        path,
        OutputRecord,
        key=lambda record: str(record.id),
        what="an output record",
        advice="was this file written by `rationale generate`? Use another --output.",
    )


def load_done_ids(path: Path) -> set[str]:
    """Ids already in the output file (repairing what a kill or a second writer left)."""
    return {str(record.id) for record in read_outputs(path)}


def _settings_path(output: Path) -> Path:
    return output.with_name(output.name + ".meta.json")


def _check_settings(output: Path, settings: RunSettings, resuming: bool) -> None:
    meta = _settings_path(output)
    if resuming and meta.exists():
        try:
            previous = RunSettings.model_validate_json(meta.read_text(encoding="utf-8"))
        except ValidationError:
            previous = None
        if previous != settings:
            raise RunConfigError(
                f"{output} was produced with other settings ({meta}), not "
                f"{settings.model_dump_json()}: use another --output or delete it to start over"
            )
        return
    write_text_atomic(meta, settings.model_dump_json(indent=2) + "\n")


def _output_record(original_id: str | int, result: GenerationResult) -> OutputRecord:
    return OutputRecord(
        id=original_id,
        outputs=[
            OutputSample(
                text=c.text, finish_reason=c.finish_reason, completion_tokens=c.completion_tokens
            )
            for c in result.completions
        ],
        usage=result.usage,
    )


def _rates(stats: GenerationStats) -> str:
    return (
        f"{stats.requests_per_second():.2f} req/s  {stats.tokens_per_second():.1f} tok/s  "
        f"cache hits {stats.cache_hits}  errors {stats.errors}"
    )


def run(
    config: GenerateConfig,
    *,
    progress: ProgressCallback = no_progress,
    backend: ChatBackend | None = None,
) -> GenerateSummary:
    """Generate every input id not yet in `config.output`, appending records as they finish.

    One process at a time per output file (a second would write every record twice)."""
    lock = config.output.with_name(config.output.name + ".lock")
    with exclusive(lock, f"output file {config.output}"):
        return _run(config, progress, backend)


def _run(
    config: GenerateConfig, progress: ProgressCallback, backend: ChatBackend | None
) -> GenerateSummary:
    config.check_model()
    records = read_requests(config.input)
    sampling = config.sampling()
    output_path = config.output
    output_path.parent.mkdir(parents=True, exist_ok=True)
    done = load_done_ids(output_path)
    _check_settings(output_path, RunSettings(model=config.model, sampling=sampling), bool(done))
    original_ids = {str(record.id): record.id for record in records}
    requests = [
        GenerationRequest(id=str(record.id), messages=tuple(record.messages), sampling=sampling)
        for record in records
        if str(record.id) not in done
    ]
    if done:
        progress.log(f"resuming: {len(records) - len(requests)} ids already in the output")
    backend = backend if backend is not None else config.make_backend()
    stats = GenerationStats()
    started = stats.started = time.perf_counter()
    generated = 0
    progress("generate", 0, len(requests), "")
    try:
        with output_path.open("a", encoding="utf-8") as handle:
            last_sync = time.monotonic()
            try:
                for result in iter_generate(
                    backend,
                    requests,
                    config.response_cache(),
                    stats,
                    on_wait=lambda seconds: progress(
                        "generate", stats.requests_done, len(requests), f"waiting {seconds:.0f} s"
                    ),
                ):
                    record = _output_record(original_ids[result.id], result)
                    handle.write(record.model_dump_json() + "\n")
                    handle.flush()
                    generated += 1
                    if time.monotonic() - last_sync > _FSYNC_INTERVAL_S:
                        os.fsync(handle.fileno())
                        last_sync = time.monotonic()
                    progress("generate", generated, len(requests), _rates(stats))
            finally:
                handle.flush()
                os.fsync(handle.fileno())
    finally:
        backend.close()
    return GenerateSummary(
        requests=len(records),
        already_done=len(records) - len(requests),
        generated=generated,
        cache_hits=stats.cache_hits,
        cache_misses=stats.cache_misses,
        completion_tokens=stats.completion_tokens,
        retried_errors=stats.errors,
        seconds=time.perf_counter() - started,
    )
