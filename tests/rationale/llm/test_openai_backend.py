"""The `openai` backend against a real `transformers serve` and real faulty HTTP servers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rationale.llm import (
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    ResponseCache,
    SamplingParams,
    generate,
    iter_generate,
)
from rationale.llm.backends.openai import OpenAIBackend, ServerRejectedRequest, ServerUnavailable
from rationale.llm.models import TINY_MODEL_NAME

REQUEST_TIMEOUT_S = 45.0


def _requests(count: int, **sampling: object) -> list[GenerationRequest]:
    params = SamplingParams(**{"max_tokens": 8, **sampling})
    return [
        GenerationRequest(
            id=f"q{i}",
            messages=(ChatMessage(role="user", content=f"Give one fact about the number {i}."),),
            sampling=params,
        )
        for i in range(count)
    ]


def _backend(server: Any, **options: Any) -> OpenAIBackend:
    # transformers serve now and then never answers a request; a timeout sends it again.
    options.setdefault("timeout", REQUEST_TIMEOUT_S)
    return OpenAIBackend(
        TINY_MODEL_NAME, [server.base_url], served_model=server.served_model, **options
    )


def test_concurrent_requests_all_complete_with_usage(
    transformers_server: Any,
) -> None:
    requests = _requests(8)
    backend = _backend(transformers_server, max_in_flight=4)
    stats = GenerationStats()
    order = [result.id for result in iter_generate(backend, requests, None, stats)]
    assert sorted(order) == sorted(r.id for r in requests)
    results = generate(backend, requests)
    for result in results:
        (completion,) = result.completions
        assert completion.text
        assert completion.finish_reason in ("stop", "length")
        assert 1 <= completion.completion_tokens <= 8
        assert result.usage.prompt_tokens > 5
    assert stats.completion_tokens > 8
    assert backend.retried_errors == 0


def test_n_samples_fan_out_where_the_server_ignores_n(
    transformers_server: Any, tmp_path: Path
) -> None:
    requests = _requests(2, n=3, temperature=0.0, seed=11)
    backend = _backend(transformers_server, max_in_flight=4)
    stats = GenerationStats()
    cache = ResponseCache(tmp_path / "cache")
    results = generate(backend, requests, cache, stats)
    for result in results:
        assert [c.sample_index for c in result.completions] == [0, 1, 2]
        assert all(c.text for c in result.completions)
    # transformers serve answers one choice whatever `n` is; the backend noticed.
    assert backend._native_n_works is False
    assert stats.samples_generated == 6

    rerun_stats = GenerationStats()
    rerun = generate(_backend(transformers_server), requests, cache, rerun_stats)
    assert [r.texts for r in rerun] == [r.texts for r in results]
    assert (rerun_stats.cache_hits, rerun_stats.cache_misses) == (6, 0)
    assert rerun_stats.samples_generated == 0


def test_wrong_model_name_fails_fast_with_the_server_message(
    transformers_server: Any,
) -> None:
    backend = OpenAIBackend("not-served", [transformers_server.base_url], max_attempts=5)
    with pytest.raises(ServerRejectedRequest, match=r"HTTP 400.*pinned.*--served-model"):
        generate(backend, _requests(1))
    assert backend.retried_errors == 0


def test_server_killed_mid_run_and_restarted(server_factory: Callable[..., Any]):
    server = server_factory()
    server.start()
    requests = _requests(12, max_tokens=12)
    backend = _backend(server, max_in_flight=2, max_attempts=40, backoff_base=0.2, backoff_max=2.0)
    results: list[GenerationResult] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            results.extend(iter_generate(backend, requests))
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while len(results) < 3 and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.05)
    assert len(results) >= 3, f"no progress before the kill: {failure}\n{server.log_tail()}"
    errors_before = backend.retried_errors
    server.stop()
    deadline = time.monotonic() + 60  # down until the client has met the outage
    while backend.retried_errors == errors_before and worker.is_alive():
        assert time.monotonic() < deadline, "the client did not notice the server was gone"
        time.sleep(0.05)
    server.start()  # same port
    worker.join(timeout=240)
    assert not worker.is_alive(), "generation did not finish after the server came back"
    assert not failure, failure
    ids = [result.id for result in results]
    assert sorted(ids) == sorted(r.id for r in requests)  # nothing lost, nothing twice
    assert backend.retried_errors >= 1


class _ScriptedHandler(BaseHTTPRequestHandler):
    """Answers POSTs from a script of (status, body) pairs, then with the last one."""

    script: ClassVar[list[tuple[int, dict]]] = []
    hits: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length))
        type(self).hits.append(body["model"])
        status, payload = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted_server() -> Iterator[Callable[[list[tuple[int, dict]]], tuple[str, list[str]]]]:
    """A real HTTP server on 127.0.0.1 that answers with scripted faults."""
    servers: list[ThreadingHTTPServer] = []

    def start(script: list[tuple[int, dict]]) -> tuple[str, list[str]]:
        handler = type("Handler", (_ScriptedHandler,), {"script": list(script), "hits": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler.hits

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _ok(text: str) -> tuple[int, dict]:
    return 200, {
        "choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }


def test_errors_are_retried_then_succeed(scripted_server) -> None:
    url, hits = scripted_server(
        [(500, {"error": {"message": "boom"}}), (429, {"error": "slow down"}), _ok("SELECT 1")]
    )
    backend = OpenAIBackend("m", [url], backoff_base=0.01, max_attempts=3)
    (result,) = generate(backend, _requests(1))
    assert result.texts == ["SELECT 1"]
    assert backend.retried_errors == 2
    assert len(hits) == 3


def test_persistent_errors_end_in_a_clear_error(scripted_server) -> None:
    url, hits = scripted_server([(503, {"error": {"message": "overloaded"}})])
    backend = OpenAIBackend("m", [url], backoff_base=0.01, max_attempts=4)
    with pytest.raises(ServerUnavailable, match=r"failed 4 times.*HTTP 503: overloaded"):
        generate(backend, _requests(1))
    assert len(hits) == 4


def test_client_errors_are_not_retried(scripted_server) -> None:
    url, hits = scripted_server([(400, {"error": {"message": "prompt too long"}})])
    backend = OpenAIBackend("m", [url], backoff_base=0.01, max_attempts=4)
    with pytest.raises(ServerRejectedRequest, match="HTTP 400: prompt too long"):
        generate(backend, _requests(1))
    assert len(hits) == 1


def test_refused_connections_name_the_url(unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}"  # nothing listens there
    backend = OpenAIBackend("m", [url], backoff_base=0.01, max_attempts=3)
    with pytest.raises(ServerUnavailable, match=rf"{url}/v1.*ConnectError"):
        generate(backend, _requests(1))
    assert backend.retried_errors == 3


def test_requests_are_shared_round_robin_and_native_n_is_used(scripted_server) -> None:
    three = (
        200,
        {
            "choices": [
                {"index": i, "message": {"content": f"s{i}"}, "finish_reason": "stop"}
                for i in range(3)
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6},
        },
    )
    first_url, first_hits = scripted_server([three])
    second_url, second_hits = scripted_server([three])
    backend = OpenAIBackend("m", [first_url, second_url], max_in_flight=1)
    results = generate(backend, _requests(4, n=3))
    assert [r.texts for r in results] == [["s0", "s1", "s2"]] * 4
    assert (len(first_hits), len(second_hits)) == (2, 2)  # one request per n=3 each
    # the server counts all choices together: each sample gets a share, the sum is exact
    assert [c.completion_tokens for c in results[0].completions] == [2, 2, 2]
    assert results[0].usage.completion_tokens == 6
