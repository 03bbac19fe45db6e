"""Cache-aware generation over any backend: requests in, results out as they finish.

Cached samples are served from disk; only the missing sample indices go to the backend,
and each new sample is written to the cache the moment it arrives, so a killed run loses
at most the requests that were in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from rationale.llm.backend import ChatBackend, GenerationError
from rationale.llm.cache import CachedSample, ResponseCache, sample_key
from rationale.llm.types import (
    Completion,
    GenerationRequest,
    GenerationResult,
    SampleJob,
    SampleOutput,
    Usage,
)


@dataclass
class GenerationStats:
    """Live counters for progress bars and summaries."""

    requests_total: int = 0
    requests_done: int = 0
    samples_generated: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    backend: ChatBackend | None = None

    @property
    def errors(self) -> int:
        """Transient errors the backend retried."""
        return self.backend.retried_errors if self.backend is not None else 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def requests_per_second(self) -> float:
        return self.requests_done / max(self.elapsed, 1e-9)

    def tokens_per_second(self) -> float:
        """Completion tokens generated (not read from the cache) per second."""
        return self.completion_tokens / max(self.elapsed, 1e-9)


@dataclass
class _Pending:
    request: GenerationRequest
    samples: dict[int, Completion]
    prompt_tokens: int | None


def _check_unique_ids(requests: Sequence[GenerationRequest]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.id in seen:
            raise ValueError(f"duplicate request id {request.id!r}: ids must be unique")
        seen.add(request.id)


def _result(pending: _Pending) -> GenerationResult:
    completions = [pending.samples[index] for index in sorted(pending.samples)]
    return GenerationResult(
        id=pending.request.id,
        completions=completions,
        usage=Usage(
            prompt_tokens=pending.prompt_tokens or 0,
            completion_tokens=sum(c.completion_tokens or 0 for c in completions),
            cached_samples=sum(c.cached for c in completions),
        ),
    )


async def generate_stream(
    backend: ChatBackend,
    requests: Sequence[GenerationRequest],
    cache: ResponseCache | None = None,
    stats: GenerationStats | None = None,
) -> AsyncIterator[GenerationResult]:
    """Yield one `GenerationResult` per request as soon as all its samples exist.

    Fully cached requests come first (no backend call at all); the rest follow in the order
    the backend finishes them.
    """
    _check_unique_ids(requests)
    stats = stats if stats is not None else GenerationStats()
    stats.backend = backend
    stats.requests_total += len(requests)
    pending: dict[str, _Pending] = {}
    keys: dict[tuple[str, int], str] = {}
    jobs: list[SampleJob] = []
    for request in requests:
        entry = _Pending(request=request, samples={}, prompt_tokens=None)
        missing: list[int] = []
        for index in range(request.sampling.n):
            key = sample_key(backend.model, request.messages, request.sampling, index)
            keys[(request.id, index)] = key
            hit = cache.get(key) if cache is not None else None
            if hit is None:
                missing.append(index)
                stats.cache_misses += 1
                continue
            stats.cache_hits += 1
            entry.prompt_tokens = entry.prompt_tokens or hit.prompt_tokens
            entry.samples[index] = Completion(
                sample_index=index,
                text=hit.text,
                finish_reason=hit.finish_reason,
                completion_tokens=hit.completion_tokens,
                cached=True,
            )
        if missing:
            pending[request.id] = entry
            jobs.append(SampleJob(request=request, sample_indices=tuple(missing)))
        else:
            stats.requests_done += 1
            yield _result(entry)

    if not jobs:
        return
    async for output in backend.stream(jobs):
        entry = pending.get(output.request_id)
        if entry is None or (output.request_id, output.sample_index) not in keys:
            raise GenerationError(
                f"backend returned an unexpected sample {output.sample_index} "
                f"for request {output.request_id!r}"
            )
        if output.sample_index in entry.samples:
            continue  # a duplicate delivery (e.g. after a retry) changes nothing
        _record(output, entry, keys[(output.request_id, output.sample_index)], backend, cache)
        stats.samples_generated += 1
        stats.completion_tokens += output.completion_tokens or 0
        if len(entry.samples) == entry.request.sampling.n:
            del pending[output.request_id]
            result = _result(entry)
            stats.requests_done += 1
            stats.prompt_tokens += result.usage.prompt_tokens
            yield result
    if pending:
        missing_ids = ", ".join(sorted(pending)[:5])
        raise GenerationError(
            f"backend finished without answering {len(pending)} request(s), e.g. {missing_ids}"
        )


def _record(
    output: SampleOutput,
    entry: _Pending,
    key: str,
    backend: ChatBackend,
    cache: ResponseCache | None,
) -> None:
    entry.prompt_tokens = entry.prompt_tokens or output.prompt_tokens
    entry.samples[output.sample_index] = Completion(
        sample_index=output.sample_index,
        text=output.text,
        finish_reason=output.finish_reason,
        completion_tokens=output.completion_tokens,
    )
    if cache is not None:
        cache.put(
            key,
            CachedSample(
                model=backend.model,
                sample_index=output.sample_index,
                text=output.text,
                finish_reason=output.finish_reason,
                prompt_tokens=output.prompt_tokens,
                completion_tokens=output.completion_tokens,
            ),
        )


_DONE = object()


def iter_generate(
    backend: ChatBackend,
    requests: Sequence[GenerationRequest],
    cache: ResponseCache | None = None,
    stats: GenerationStats | None = None,
    *,
    on_wait: Callable[[float], None] | None = None,
    wait_interval: float = 5.0,
) -> Iterator[GenerationResult]:
    """Synchronous `generate_stream`: the event loop runs in a helper thread, so requests
    keep flowing while the caller writes results. Stopping iteration early cancels the rest.

    `on_wait(seconds)` is called every `wait_interval` seconds that pass without a result,
    with the time since the last one, so a user sees that requests are waiting (a slow or
    silent server) instead of a progress bar that stands still.
    """
    results: queue.Queue[object] = queue.Queue()
    loop = asyncio.new_event_loop()
    task_holder: list[asyncio.Task[None]] = []

    async def pump() -> None:
        try:
            async for result in generate_stream(backend, requests, cache, stats):
                results.put(result)
        except BaseException as error:  # handed to the caller's thread
            results.put(error)
        finally:
            results.put(_DONE)

    def run_loop() -> None:
        asyncio.set_event_loop(loop)
        task_holder.append(loop.create_task(pump()))
        loop.run_until_complete(task_holder[0])
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run_loop, name="llm-generation", daemon=True)
    thread.start()
    finished = False
    last_result = time.monotonic()
    try:
        while True:
            try:
                item = results.get(timeout=wait_interval if on_wait is not None else None)
            except queue.Empty:
                assert on_wait is not None
                on_wait(time.monotonic() - last_result)
                continue
            last_result = time.monotonic()
            if item is _DONE:
                finished = True
                return
            if isinstance(item, BaseException):
                finished = True
                raise item
            assert isinstance(item, GenerationResult)
            yield item
    finally:
        if not finished and task_holder:
            with contextlib.suppress(RuntimeError):  # the loop may have closed on its own
                loop.call_soon_threadsafe(task_holder[0].cancel)
        thread.join(timeout=30)


def generate(
    backend: ChatBackend,
    requests: Sequence[GenerationRequest],
    cache: ResponseCache | None = None,
    stats: GenerationStats | None = None,
) -> list[GenerationResult]:
    """All results, in request order."""
    by_id = {result.id: result for result in iter_generate(backend, requests, cache, stats)}
    return [by_id[request.id] for request in requests]
