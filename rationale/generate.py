"""The generate stage: chat requests from a JSONL file, samples to a JSONL file, resumable.

Each finished record is appended and flushed at once (and fsynced every few seconds), so a
killed run keeps everything it finished. On restart the output is read back: a truncated
last line left by the kill is cut off, done ids are skipped, and the rest is generated
(most of it from the response cache if the kill came after the samples arrived). A sidecar
`<output>.meta.json` records model and sampling settings so a resume with different
settings fails instead of mixing outputs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from rationale.llm.backend import ChatBackend
from rationale.llm.cache import ResponseCache
from rationale.llm.runner import GenerationStats, iter_generate
from rationale.llm.types import (
    ChatMessage,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    Usage,
)

_FSYNC_INTERVAL_S = 2.0


class InputRecord(BaseModel):
    """One line of the input file: `{"id": ..., "messages": [{"role", "content"}, ...]}`."""

    model_config = ConfigDict(extra="ignore")

    id: str | int
    messages: list[ChatMessage]


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


class InputFileError(ValueError):
    """A problem in a user's file; the message names the file and line."""


def read_requests(path: Path) -> list[InputRecord]:
    """Read and validate the input JSONL; errors name the file and line."""
    if not path.is_file():
        raise InputFileError(f"{path}: input file not found")
    records: list[InputRecord] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = InputRecord.model_validate_json(line)
            except ValidationError as error:
                problem = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in error.errors()
                )
                raise InputFileError(
                    f'{path}:{number}: expected {{"id": ..., "messages": [...]}}: {problem}'
                ) from None
            if not record.messages:
                raise InputFileError(f"{path}:{number}: 'messages' is empty")
            key = str(record.id)
            if key in seen:
                raise InputFileError(
                    f"{path}:{number}: id {record.id!r} already used on line {seen[key]}"
                )
            seen[key] = number
            records.append(record)
    return records


def load_done_ids(path: Path) -> set[str]:
    """Ids already in the output file. A last line cut short by a kill is removed from the
    file; any other unreadable line is an error naming its line."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as handle:
            handle.truncate(keep)
        data = data[:keep]
    done: set[str] = set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            done.add(str(OutputRecord.model_validate_json(line).id))
        except ValidationError as error:
            raise InputFileError(
                f"{path}:{number}: not an output record ({error.errors()[0]['msg']}); "
                "was this file written by `rationale generate`? Use another --output."
            ) from None
    return done


def _settings_path(output: Path) -> Path:
    return output.with_name(output.name + ".meta.json")


def _check_settings(output: Path, settings: RunSettings, resuming: bool) -> None:
    meta = _settings_path(output)
    if resuming and meta.exists():
        previous = RunSettings.model_validate_json(meta.read_text(encoding="utf-8"))
        if previous != settings:
            raise InputFileError(
                f"{output} was produced with {previous.model_dump_json()}, not "
                f"{settings.model_dump_json()}: use another --output or delete it to start over"
            )
        return
    meta.write_text(settings.model_dump_json(indent=2) + "\n", encoding="utf-8")


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


def run_generate(
    backend: ChatBackend,
    input_path: Path,
    output_path: Path,
    sampling: SamplingParams,
    cache: ResponseCache | None,
    stats: GenerationStats | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_record: Callable[[OutputRecord], None] | None = None,
) -> GenerateSummary:
    """Generate every input id not yet in `output_path`, appending records as they finish.

    `on_start(to_generate, already_done)` is called once before generation starts and
    `on_record(record)` after each record is written (progress bars hook in here).
    """
    records = read_requests(input_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    done = load_done_ids(output_path)
    _check_settings(output_path, RunSettings(model=backend.model, sampling=sampling), bool(done))
    original_ids = {str(record.id): record.id for record in records}
    requests = [
        GenerationRequest(id=str(record.id), messages=tuple(record.messages), sampling=sampling)
        for record in records
        if str(record.id) not in done
    ]
    stats = stats if stats is not None else GenerationStats()
    if on_start is not None:
        on_start(len(requests), len(records) - len(requests))
    started = stats.started = time.perf_counter()
    generated = 0
    with output_path.open("a", encoding="utf-8") as handle:
        last_sync = time.monotonic()
        try:
            for result in iter_generate(backend, requests, cache, stats):
                record = _output_record(original_ids[result.id], result)
                handle.write(record.model_dump_json() + "\n")
                handle.flush()
                generated += 1
                if time.monotonic() - last_sync > _FSYNC_INTERVAL_S:
                    os.fsync(handle.fileno())
                    last_sync = time.monotonic()
                if on_record is not None:
                    on_record(record)
        finally:
            handle.flush()
            os.fsync(handle.fileno())
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


def read_outputs(path: Path) -> list[OutputRecord]:
    """All records of an output file, in file order."""
    with path.open(encoding="utf-8") as handle:
        return [OutputRecord.model_validate_json(line) for line in handle if line.strip()]
