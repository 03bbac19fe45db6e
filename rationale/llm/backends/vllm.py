"""Offline vLLM (`vllm.LLM`): batched chat generation with prefix caching, GPU only.

vLLM is an optional extra (`pip install 'sql-rationale[vllm]'`) and is imported only when
this backend is built. Every sample is its own vLLM request with seed `seed + index`;
prefix caching makes the shared prompt of a request's samples nearly free.

Tensor parallelism is vLLM's own (`tensor_parallel_size`). Data parallelism runs
`data_parallel_size` independent engines in spawned processes, each on its own slice of the
visible GPUs (vLLM's `LLM(data_parallel_size=k)` is not supported in one process); chunks
of work go to whichever engine is free.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
from collections.abc import AsyncIterator, Sequence
from typing import Any

from rationale.llm.backend import BackendUnavailable, GenerationError
from rationale.llm.models import resolve_model
from rationale.llm.types import SampleJob, SampleOutput, truncate_at_stop

# One work item for an engine: plain data, so it can cross a process boundary.
WorkItem = dict[str, Any]


def require_vllm() -> None:
    """Fail with what to do where vLLM or a CUDA GPU is missing."""
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        raise BackendUnavailable(
            "the vllm backend needs vLLM: pip install 'sql-rationale[vllm]' on a machine with "
            f"a CUDA GPU (import failed: {error}); on CPU use --backend hf or --backend openai"
        ) from error
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable(
            "the vllm backend needs a CUDA GPU and none is visible "
            "(torch.cuda.is_available() is False); on CPU use --backend hf or --backend openai"
        )


def _work_items(jobs: Sequence[SampleJob]) -> list[WorkItem]:
    items: list[WorkItem] = []
    for job in jobs:
        sampling = job.request.sampling
        for index in job.sample_indices:
            items.append(
                {
                    "request_id": job.request.id,
                    "sample_index": index,
                    "messages": [m.model_dump() for m in job.request.messages],
                    "temperature": sampling.temperature,
                    "top_p": sampling.top_p,
                    "max_tokens": sampling.max_tokens,
                    "seed": sampling.seed_for_sample(index),
                    "stop": list(sampling.stop),
                }
            )
    return items


def _build_engine(model_path: str, engine_options: dict[str, Any]) -> Any:
    from vllm import LLM

    return LLM(model=model_path, enable_prefix_caching=True, **engine_options)


def _run_chunk(llm: Any, items: list[WorkItem]) -> list[dict[str, Any]]:
    """Generate one chunk with a single batched `llm.chat` call."""
    from vllm import SamplingParams

    params = [
        SamplingParams(
            n=1,
            temperature=item["temperature"],
            top_p=item["top_p"],
            max_tokens=item["max_tokens"],
            seed=item["seed"],
            stop=item["stop"] or None,
        )
        for item in items
    ]
    results = llm.chat([item["messages"] for item in items], sampling_params=params, use_tqdm=False)
    outputs: list[dict[str, Any]] = []
    for item, result in zip(items, results, strict=True):
        completion = result.outputs[0]
        text, was_cut = truncate_at_stop(completion.text, tuple(item["stop"]))
        reason = (
            completion.finish_reason
            if completion.finish_reason in ("stop", "length")
            else "unknown"
        )
        outputs.append(
            {
                "request_id": item["request_id"],
                "sample_index": item["sample_index"],
                "text": text,
                "finish_reason": "stop" if was_cut else reason,
                "prompt_tokens": len(result.prompt_token_ids or []),
                "completion_tokens": len(completion.token_ids),
            }
        )
    return outputs


def _engine_process(
    model_path: str,
    engine_options: dict[str, Any],
    devices: str,
    tasks: multiprocessing.Queue,  # type: ignore[type-arg]
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """A data-parallel engine: owns `devices`, serves chunks until it receives None."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        llm = _build_engine(model_path, engine_options)
        results.put(("ready", devices))
        while (chunk := tasks.get()) is not None:
            results.put(("done", _run_chunk(llm, chunk)))
    except BaseException as error:
        results.put(("error", f"engine on GPUs {devices}: {type(error).__name__}: {error}"))


class VLLMBackend:
    """Offline vLLM; see the module docstring."""

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        chunk_size: int = 512,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        require_vllm()
        if tensor_parallel_size < 1 or data_parallel_size < 1 or chunk_size < 1:
            raise ValueError("parallel sizes and chunk_size must be at least 1")
        self.model = model
        self.retried_errors = 0
        self.chunk_size = chunk_size
        self.model_path = resolve_model(model)
        options: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            **(engine_options or {}),
        }
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        self._llm: Any = None
        self._processes: list[multiprocessing.process.BaseProcess] = []
        if data_parallel_size == 1:
            self._llm = _build_engine(self.model_path, options)
            return
        self._start_engines(options, tensor_parallel_size, data_parallel_size)

    def _start_engines(self, options: dict[str, Any], tp: int, dp: int) -> None:
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        if len(gpus) < tp * dp:
            raise BackendUnavailable(
                f"tensor_parallel_size {tp} x data_parallel_size {dp} needs {tp * dp} GPUs; "
                f"{len(gpus)} are visible"
            )
        context = multiprocessing.get_context("spawn")
        self._tasks = context.Queue()
        self._results = context.Queue()
        for rank in range(dp):
            devices = ",".join(gpus[rank * tp : (rank + 1) * tp])
            process = context.Process(
                target=_engine_process,
                args=(self.model_path, options, devices, self._tasks, self._results),
                daemon=True,
            )
            process.start()
            self._processes.append(process)
        for _ in range(dp):
            kind, payload = self._results.get()
            if kind != "ready":
                self.close()
                raise GenerationError(f"a vLLM engine failed to start: {payload}")

    def close(self) -> None:
        for _ in self._processes:
            self._tasks.put(None)
        for process in self._processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
        self._processes = []
        self._llm = None

    def _next_result(self) -> list[dict[str, Any]]:
        while True:
            try:
                kind, payload = self._results.get(timeout=5)
            except queue.Empty:
                if not all(process.is_alive() for process in self._processes):
                    raise GenerationError("a vLLM engine process died; see its log") from None
                continue
            if kind == "error":
                raise GenerationError(f"vLLM engine failed: {payload}")
            return payload

    async def stream(self, jobs: Sequence[SampleJob]) -> AsyncIterator[SampleOutput]:
        items = _work_items(jobs)
        chunks = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        if self._llm is not None:
            for chunk in chunks:
                for output in await asyncio.to_thread(_run_chunk, self._llm, chunk):
                    yield SampleOutput(**output)
            return
        for chunk in chunks:
            self._tasks.put(chunk)
        for _ in chunks:
            for output in await asyncio.to_thread(self._next_result):
                yield SampleOutput(**output)
