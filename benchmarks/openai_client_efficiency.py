"""How much throughput the `openai` backend leaves on the table, and what a cached re-run costs.

Against one server and the same prompts, with the same number of requests in flight:

    baseline  a minimal asyncio client: httpx, a semaphore, gather
    ours      rationale.llm's OpenAIBackend through the runner, cache disabled

The two alternate (baseline first in even rounds, ours first in odd rounds) so server
warm-up and drift hit both. Target: ours / baseline >= 0.95 in requests/s and tokens/s.
On a shared, busy machine single runs can be slowed several-fold by other work: besides the
pooled ratio (all rounds summed) the table shows the best-of-rounds ratio (each client's
fastest run, the usual way to filter out interference) and the median per-round ratio.

The cached re-run cost is `rationale generate`'s code path (`stages.generate.run`: read the input,
look up every sample, write the output) over requests whose samples are all in the cache,
with the backend pointed at a closed port, so any request it sent would fail the run.

    python benchmarks/openai_client_efficiency.py                # starts transformers serve
    python benchmarks/openai_client_efficiency.py --base-url http://127.0.0.1:8000 \
        --served-model my-model --requests 256 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from rationale.llm import ChatMessage, GenerationRequest, ResponseCache, SamplingParams, generate
from rationale.llm.backends.openai import OpenAIBackend
from rationale.llm.cache import CachedSample, sample_key
from rationale.llm.models import TINY_MODEL_NAME, prepare_model
from rationale.stages import generate as generate_stage

console = Console()

# transformers serve (continuous batching, CPU) now and then never answers a request; both
# clients give up on a request after this long and send it again.
REQUEST_TIMEOUT_S = 30.0


def _prompts(count: int) -> list[str]:
    return [f"Write one sentence about the number {i}." for i in range(count)]


async def _baseline(
    base_url: str, model: str, prompts: list[str], concurrency: int, max_tokens: int
) -> tuple[float, int]:
    """The reference: the least a client can do to hold `concurrency` requests in flight."""
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def one(prompt: str) -> int:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "top_p": 1.0,
            }
            async with semaphore:
                while True:  # the same timeout-and-retry rule as ours, nothing more
                    try:
                        response = await client.post(f"{base_url}/v1/chat/completions", json=body)
                    except httpx.TimeoutException:
                        continue
                    response.raise_for_status()
                    return response.json()["usage"]["completion_tokens"]

        started = time.perf_counter()
        tokens = await asyncio.gather(*(one(p) for p in prompts))
        return time.perf_counter() - started, sum(tokens)


def _ours(
    base_url: str, model: str, prompts: list[str], concurrency: int, max_tokens: int
) -> tuple[float, int]:
    backend = OpenAIBackend(
        TINY_MODEL_NAME,
        [base_url],
        served_model=model,
        max_in_flight=concurrency,
        timeout=REQUEST_TIMEOUT_S,
    )
    sampling = SamplingParams(max_tokens=max_tokens)
    requests = [
        GenerationRequest(
            id=str(i), messages=(ChatMessage(role="user", content=p),), sampling=sampling
        )
        for i, p in enumerate(prompts)
    ]
    started = time.perf_counter()
    results = generate(backend, requests, cache=None)
    elapsed = time.perf_counter() - started
    return elapsed, sum(r.usage.completion_tokens for r in results)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    model_dir = prepare_model(TINY_MODEL_NAME)
    port = _free_port()
    executable = (
        shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    )
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                executable,
                "serve",
                str(model_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--device",
                "cpu",
                "--continuous-batching",
                # Without a cap the server reserves 60% of free RAM for its KV cache on CPU.
                *("--cb-num-blocks", "64", "--cb-max-batch-tokens", "2048"),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"transformers serve exited; see {log}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return process, base_url, str(model_dir)
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"transformers serve did not start in 180 s; see {log}")


def _cached_rerun_cost(count: int, workdir: Path) -> float:
    """Seconds per 1000 requests for a generate run where every sample is cached."""
    cache = ResponseCache(workdir / "cache")
    sampling = SamplingParams(max_tokens=64)
    input_path = workdir / "cached-input.jsonl"
    with input_path.open("w") as handle:
        for i in range(count):
            messages = (ChatMessage(role="user", content=f"Cached question number {i}?"),)
            key = sample_key(TINY_MODEL_NAME, messages, sampling, 0)
            cache.put(
                key,
                CachedSample(
                    model=TINY_MODEL_NAME,
                    sample_index=0,
                    text=f"SELECT {i} AS answer",
                    finish_reason="stop",
                    prompt_tokens=30,
                    completion_tokens=8,
                ),
            )
            handle.write(
                json.dumps({"id": i, "messages": [m.model_dump() for m in messages]}) + "\n"
            )
    closed = f"http://127.0.0.1:{_free_port()}"  # nothing listens: a sent request would fail
    backend = OpenAIBackend(TINY_MODEL_NAME, [closed], max_attempts=1)
    output = workdir / "cached-output.jsonl"
    started = time.perf_counter()
    config = generate_stage.GenerateConfig(
        backend="openai",
        model=TINY_MODEL_NAME,
        base_urls=[closed],
        input=input_path,
        output=output,
        max_tokens=sampling.max_tokens,
        cache_dir=cache.root,
    )
    summary = generate_stage.run(config, backend=backend)
    elapsed = time.perf_counter() - started
    assert summary.cache_hits == count and summary.cache_misses == 0
    return elapsed / count * 1000


def main() -> None:
    # `kill` runs the cleanup below too (the server must not outlive the benchmark).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-url",
        help="an OpenAI-compatible server; default: start transformers serve with the tiny model",
    )
    parser.add_argument("--served-model", help="model name the server expects")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cached-requests", type=int, default=2000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="openai-bench-"))
    process = None
    try:
        if args.base_url:
            base_url, model = args.base_url.rstrip("/").removesuffix("/v1"), args.served_model
            if not model:
                parser.error("--served-model is required with --base-url")
        else:
            process, base_url, model = _start_server(workdir / "serve.log")
        prompts = _prompts(args.requests)
        # Warm-up: the first requests pay for model loading and batch set-up.
        asyncio.run(
            _baseline(
                base_url, model, prompts[: args.concurrency], args.concurrency, args.max_tokens
            )
        )
        totals = {"baseline": [0.0, 0], "ours": [0.0, 0]}
        round_ratios: list[float] = []
        fastest = {"baseline": float("inf"), "ours": float("inf")}
        rounds = Table(title="rounds")
        for column in ("round", "client", "seconds", "req/s", "tok/s"):
            rounds.add_column(column, justify="right")
        for round_index in range(args.rounds):
            order = ["baseline", "ours"] if round_index % 2 == 0 else ["ours", "baseline"]
            round_seconds: dict[str, float] = {}
            for name in order:
                if name == "baseline":
                    seconds, tokens = asyncio.run(
                        _baseline(base_url, model, prompts, args.concurrency, args.max_tokens)
                    )
                else:
                    seconds, tokens = _ours(
                        base_url, model, prompts, args.concurrency, args.max_tokens
                    )
                totals[name][0] += seconds
                totals[name][1] += tokens
                round_seconds[name] = seconds
                fastest[name] = min(fastest[name], seconds)
                rounds.add_row(
                    str(round_index),
                    name,
                    f"{seconds:.2f}",
                    f"{len(prompts) / seconds:.2f}",
                    f"{tokens / seconds:.1f}",
                )
                print(f"round {round_index} {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
            round_ratios.append(round_seconds["baseline"] / round_seconds["ours"])
        console.print(rounds)

        def rates(name: str) -> tuple[float, float]:
            seconds, tokens = totals[name]
            return len(prompts) * args.rounds / seconds, tokens / seconds

        base_rps, base_tps = rates("baseline")
        our_rps, our_tps = rates("ours")
        summary = Table(
            title=f"openai backend vs minimal asyncio client "
            f"({args.requests} requests x {args.rounds} rounds, "
            f"{args.concurrency} in flight, max_tokens {args.max_tokens})"
        )
        for column in ("", "requests/s", "tokens/s"):
            summary.add_column(column, justify="right")
        summary.add_row("minimal asyncio client", f"{base_rps:.2f}", f"{base_tps:.1f}")
        summary.add_row("rationale openai backend", f"{our_rps:.2f}", f"{our_tps:.1f}")
        summary.add_row(
            "pooled ratio (target >= 0.95)",
            f"{our_rps / base_rps:.3f}",
            f"{our_tps / base_tps:.3f}",
        )
        summary.add_row(
            "best-of-rounds ratio", f"{fastest['baseline'] / fastest['ours']:.3f}", "(same prompts)"
        )
        summary.add_row(
            "median per-round ratio", f"{statistics.median(round_ratios):.3f}", "(same prompts)"
        )
        console.print(summary)

        cost = _cached_rerun_cost(args.cached_requests, workdir)
        console.print(
            f"fully cached re-run ({args.cached_requests} requests through "
            f"run_generate): {cost:.3f} s per 1000 requests"
        )
    finally:
        if process is not None:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
