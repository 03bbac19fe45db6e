"""Any OpenAI-compatible chat server (`vllm serve` first of all, also `transformers serve`).

A fixed number of asyncio workers hold at most `max_in_flight` requests in flight, spread
round-robin over one or more base URLs. Refused connections, timeouts, dropped
connections, 429 and 5xx are retried with exponential backoff and jitter (each retry goes
to the next URL); any other 4xx fails at once with the server's message.

`n` > 1: in mode "auto" one request asks for all missing samples; a server that answers
with fewer choices (transformers serve ignores `n`) is remembered, and the remaining
samples are fanned out as single requests, each with seed `seed + sample_index`. Mode
"fanout" always sends single-sample requests; "native" always trusts `n`. With native `n`
the server reports completion tokens only for the whole response: each sample carries an
even share of it, so totals stay exact.

`transformers serve --continuous-batching` (transformers 5.x), the CPU test server: it
ignores `n` (handled above) and `stop` (stop strings are cut here again, for every server),
takes temperature and top_p from the first request it sees, answers only to the model name
it was started with (hence `served_model`), reports prompt and completion tokens, and now
and then never answers a request: the per-request timeout turns that into a retry.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from rationale.llm.backend import GenerationError
from rationale.llm.types import FinishReason, SampleJob, SampleOutput, cut_answer

NMode = Literal["auto", "native", "fanout"]


class ServerRejectedRequest(GenerationError):
    """A 4xx other than 429: retrying would not help."""


class ServerUnavailable(GenerationError):
    """Every attempt failed with a transient error."""


def normalize_base_url(url: str) -> str:
    """`http://host:8000`, `.../v1` and `.../v1/` all become `http://host:8000/v1`."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


@dataclass(frozen=True)
class _Unit:
    """One HTTP request's worth of work: some sample indices of one job."""

    job: SampleJob
    indices: tuple[int, ...]


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if "detail" in body:
            return str(body["detail"])
        if isinstance(error, str):
            return error
    return str(body)[:500]


def _finish_reason(value: object) -> FinishReason:
    return value if value in ("stop", "length") else "unknown"  # type: ignore[return-value]


def _token_shares(total: object, samples: int) -> list[int | None]:
    """Per-sample completion tokens from a response's total. With native `n` the server
    counts all choices together: each sample gets an even share (the first the remainder),
    so the sum, and every tokens/s figure built on it, stays exact."""
    if not isinstance(total, int) or samples < 1:
        return [None] * samples
    share, remainder = divmod(total, samples)
    return [share + remainder] + [share] * (samples - 1)


class OpenAIBackend:
    """Chat completions over HTTP; see the module docstring for retry and `n` behaviour."""

    def __init__(
        self,
        model: str,
        base_urls: Sequence[str],
        *,
        served_model: str | None = None,
        api_key: str | None = None,
        max_in_flight: int = 32,
        timeout: float = 600.0,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        n_mode: NMode = "auto",
    ) -> None:
        if not base_urls:
            raise ValueError("the openai backend needs at least one base URL")
        if max_in_flight < 1 or max_attempts < 1:
            raise ValueError("max_in_flight and max_attempts must be at least 1")
        self.model = model
        self.served_model = served_model or model
        self.base_urls = [normalize_base_url(url) for url in base_urls]
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.n_mode: NMode = n_mode
        self.retried_errors = 0
        self._native_n_works = n_mode != "fanout"
        self._next_url = itertools.cycle(self.base_urls)

    def close(self) -> None:
        """Connections live only inside `stream`; nothing is held between calls."""

    def _body(self, unit: _Unit) -> dict[str, Any]:
        sampling = unit.job.request.sampling
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": [m.model_dump() for m in unit.job.request.messages],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if len(unit.indices) > 1:
            body["n"] = len(unit.indices)
        seed = sampling.seed_for_sample(unit.indices[0])
        if seed is not None:
            body["seed"] = seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        return body

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), self.backoff_max)
            except ValueError:
                pass
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _rejection(
        self, url: str, request_id: str, response: httpx.Response
    ) -> ServerRejectedRequest:
        message = _server_message(response)
        hint = ""
        if response.status_code in (400, 404) and "model" in message.lower():
            hint = (
                f" (the model name sent was {self.served_model!r}; "
                "set --served-model to the name the server uses)"
            )
        return ServerRejectedRequest(
            f"{url} rejected request {request_id!r} with HTTP {response.status_code}: "
            f"{message}{hint}"
        )

    async def _post(self, client: httpx.AsyncClient, unit: _Unit) -> dict[str, Any]:
        request_id = unit.job.request.id
        body = self._body(unit)
        last_error = ""
        for attempt in range(1, self.max_attempts + 1):
            url = next(self._next_url)
            retry_after: str | None = None
            try:
                response = await client.post(f"{url}/chat/completions", json=body)
            except httpx.TransportError as error:  # refused, reset, timed out, dropped
                last_error = f"{url}: {type(error).__name__}: {error or 'no details'}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        last_error = f"{url}: HTTP 200 with a body that is not JSON"
                elif response.status_code == 429 or response.status_code >= 500:
                    retry_after = response.headers.get("retry-after")
                    last_error = f"{url}: HTTP {response.status_code}: {_server_message(response)}"
                else:
                    raise self._rejection(url, request_id, response)
            self.retried_errors += 1
            if attempt < self.max_attempts:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        raise ServerUnavailable(
            f"request {request_id!r} failed {self.max_attempts} times; last error: {last_error}. "
            f"Check that the server at {', '.join(self.base_urls)} is running and healthy."
        )

    def _outputs(self, unit: _Unit, data: dict[str, Any]) -> list[SampleOutput]:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        shares = _token_shares(usage.get("completion_tokens"), len(choices))
        sampling = unit.job.request.sampling
        outputs: list[SampleOutput] = []
        answered = zip(unit.indices, choices, shares, strict=False)  # fewer choices than asked
        for index, choice, tokens in answered:
            text = (choice.get("message") or {}).get("content") or ""
            text, was_cut = cut_answer(text, sampling)
            reason = "stop" if was_cut else _finish_reason(choice.get("finish_reason"))
            outputs.append(
                SampleOutput(
                    request_id=unit.job.request.id,
                    sample_index=index,
                    text=text,
                    finish_reason=reason,
                    prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=tokens,
                )
            )
        return outputs

    async def stream(self, jobs: Sequence[SampleJob]) -> AsyncIterator[SampleOutput]:
        work: asyncio.Queue[_Unit] = asyncio.Queue()
        for job in jobs:
            work.put_nowait(_Unit(job=job, indices=job.sample_indices))
        remaining = sum(len(job.sample_indices) for job in jobs)
        finished: asyncio.Queue[list[SampleOutput] | BaseException] = asyncio.Queue()

        async def worker(client: httpx.AsyncClient) -> None:
            while True:
                unit = await work.get()
                if len(unit.indices) > 1 and not self._native_n_works:
                    for index in unit.indices[1:]:
                        work.put_nowait(_Unit(job=unit.job, indices=(index,)))
                    unit = _Unit(job=unit.job, indices=unit.indices[:1])
                try:
                    outputs = self._outputs(unit, await self._post(client, unit))
                except Exception as error:
                    finished.put_nowait(error)
                    raise
                if not outputs:
                    finished.put_nowait(
                        GenerationError(
                            f"the server answered request {unit.job.request.id!r} with no choices"
                        )
                    )
                    return
                if len(outputs) < len(unit.indices):
                    if self.n_mode == "auto":
                        self._native_n_works = False  # the server ignores `n`: fan out
                    work.put_nowait(_Unit(job=unit.job, indices=unit.indices[len(outputs) :]))
                finished.put_nowait(outputs)

        limits = httpx.Limits(
            max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight
        )
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=headers) as client:
            workers = [
                asyncio.create_task(worker(client))
                for _ in range(min(self.max_in_flight, remaining))
            ]
            try:
                while remaining > 0:
                    item = await finished.get()
                    if isinstance(item, BaseException):
                        raise item
                    remaining -= len(item)
                    for output in item:
                        yield output
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
