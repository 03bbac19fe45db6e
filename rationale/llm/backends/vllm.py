"""Offline vLLM (`vllm.LLM`): batched chat generation with prefix caching, GPU only.

vLLM is an optional extra (`pip install 'sql-rationale[vllm]'`) and is imported only in the
engine processes. Every sample is its own vLLM request with seed `seed + index`; prefix
caching makes the shared prompt of a request's samples nearly free.

Every engine runs in a process of its own, `data_parallel_size` of them, each on its own
slice of the visible GPUs (`tensor_parallel_size` GPUs each); chunks of work go to whichever
engine is free. Engine processes are spawned and *not* daemonic: vLLM starts processes of
its own (the EngineCore, tensor-parallel workers), which a daemonic process may not have
(vLLM issue 18308). Running even one engine in a child means its GPU memory is returned
when the stage closes the backend, so a later step (training, another engine) finds it
free.

Each engine is the leader of its own process group and writes everything it and its
children print to a log file. The parent waits for "ready" with a deadline
(`start_timeout`) while checking that the process is alive, so an engine killed by the OOM
killer, a CUDA error or a segfault ends the step with one line (which engine, its exit,
the last lines of its log, what to try) instead of hanging; during generation the same
liveness check runs whenever no result is due. Closing the backend stops every engine's
whole process group; an engine also dies with its parent (PR_SET_PDEATHSIG).

The engine itself is a small class (`VLLMEngine`) named by import path, so tests can run
the same process structure with stand-in engines where vLLM cannot run.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rationale.llm.backend import BackendUnavailable, GenerationError
from rationale.llm.cache import default_cache_dir
from rationale.llm.models import resolve_model
from rationale.llm.types import SampleJob, SampleOutput, cut_answer
from training.process import die_with_parent  # stdlib only: no training extra needed

# One work item for an engine: plain data, so it can cross a process boundary.
WorkItem = dict[str, Any]
REAL_ENGINE = "rationale.llm.backends.vllm:VLLMEngine"
POLL_S = 1.0
LOG_TAIL_LINES = 12


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
                    "sampling": sampling.model_dump(mode="json"),
                }
            )
    return items


class VLLMEngine:
    """One `vllm.LLM` in an engine process: builds it, generates chunks with one batched
    `llm.chat` call each."""

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        from vllm import LLM

        self.llm = LLM(model=model_path, **{"enable_prefix_caching": True, **options})

    def generate(self, items: list[WorkItem]) -> list[dict[str, Any]]:
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
        results = self.llm.chat(
            [item["messages"] for item in items], sampling_params=params, use_tqdm=False
        )
        outputs: list[dict[str, Any]] = []
        for item, result in zip(items, results, strict=True):
            completion = result.outputs[0]
            text, was_cut = cut_answer(
                completion.text, SamplingParams.model_validate(item["sampling"])
            )
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


def _load_engine_class(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class EngineSpec:
    """What one engine process needs (picklable: it crosses the spawn boundary)."""

    rank: int
    model_path: str
    options: dict[str, Any]
    devices: str  # CUDA_VISIBLE_DEVICES of this engine ("" when not set)
    log_path: str
    engine_class: str


def _engine_main(
    spec: EngineSpec,
    tasks: multiprocessing.Queue,  # type: ignore[type-arg]
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """An engine process: its own process group, its output in a log file, then serve
    chunks until it receives None."""
    os.setsid()  # the parent stops this engine and every process it starts as one group
    die_with_parent()
    log = open(spec.log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    os.dup2(log.fileno(), 1)  # vLLM's processes inherit these: everything lands in the log
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    if spec.devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.devices
    print(f"engine {spec.rank}: starting {spec.engine_class} on devices {spec.devices or '-'}")
    try:
        engine = _load_engine_class(spec.engine_class)(spec.model_path, spec.options)
        results.put(("ready", spec.rank, None))
        while (chunk := tasks.get()) is not None:
            results.put(("done", spec.rank, engine.generate(chunk)))
        print(f"engine {spec.rank}: work done, stopping")
        results.put(("stopped", spec.rank, None))  # the parent now stops the whole group
    except BaseException as error:
        import traceback

        traceback.print_exc()
        results.put(("error", spec.rank, f"{type(error).__name__}: {error}"))


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last non-empty lines of an engine's log, joined for a one-line message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(the log is empty)"


def default_log_dir() -> Path:
    return default_cache_dir() / "logs" / "vllm"


class VLLMBackend:
    """Offline vLLM in engine processes; see the module docstring."""

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        engine_options: dict[str, Any] | None = None,
        start_timeout: float = 1800.0,
        chunk_size: int = 512,
        log_dir: Path | None = None,
        engine_class: str = REAL_ENGINE,
        gpus: Sequence[str] | None = None,
    ) -> None:
        if tensor_parallel_size < 1 or data_parallel_size < 1 or chunk_size < 1:
            raise ValueError("parallel sizes and chunk_size must be at least 1")
        real = engine_class == REAL_ENGINE
        if real:
            require_vllm()
        self.model = model
        self.retried_errors = 0
        self.chunk_size = chunk_size
        self.start_timeout = start_timeout
        self.model_path = resolve_model(model) if real else model
        self.options: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            **({"max_model_len": max_model_len} if max_model_len is not None else {}),
            **(engine_options or {}),
        }
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._specs: list[EngineSpec] = []
        self._ready: set[int] = set()
        self._closed = False
        slices = self._device_slices(tensor_parallel_size, data_parallel_size, gpus, real)
        folder = log_dir or default_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self._specs = [
            EngineSpec(
                rank=rank,
                model_path=self.model_path,
                options=self.options,
                devices=devices,
                log_path=str(folder / f"{stamp}-{os.getpid()}-engine{rank}.log"),
                engine_class=engine_class,
            )
            for rank, devices in enumerate(slices)
        ]
        self._start()

    @staticmethod
    def _device_slices(tp: int, dp: int, gpus: Sequence[str] | None, real: bool) -> list[str]:
        """The CUDA_VISIBLE_DEVICES of each engine: consecutive slices of `tp` GPUs."""
        if gpus is None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible:
                gpus = [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
            elif real:
                import torch

                gpus = [str(i) for i in range(torch.cuda.device_count())]
            else:
                return [""] * dp
        if len(gpus) < tp * dp:
            raise BackendUnavailable(
                f"tensor_parallel_size {tp} x data_parallel_size {dp} needs {tp * dp} GPUs; "
                f"{len(gpus)} are visible"
            )
        return [",".join(gpus[rank * tp : (rank + 1) * tp]) for rank in range(dp)]

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._tasks = context.Queue()
        self._results = context.Queue()
        for spec in self._specs:
            process = context.Process(
                target=_engine_main,
                args=(spec, self._tasks, self._results),
                name=f"vllm-engine-{spec.rank}",
                daemon=False,  # vLLM starts processes of its own
            )
            process.start()
            self._processes.append(process)
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _hints(self) -> str:
        return (
            f"try a lower gpu_memory_utilization (now {self.options['gpu_memory_utilization']}), "
            "enforce_eager: true, or a smaller max_model_len"
            + (f" (now {self.options['max_model_len']})" if "max_model_len" in self.options else "")
        )

    def _engine_failure(self, rank: int, what: str) -> GenerationError:
        spec = self._specs[rank]
        where = f"vLLM engine {rank}" + (f" (GPUs {spec.devices})" if spec.devices else "")
        return GenerationError(
            f"{where} {what}; its log {spec.log_path} ends: {log_tail(Path(spec.log_path))}; "
            f"{self._hints()}"
        )

    def _dead_engine(self) -> GenerationError | None:
        for rank, process in enumerate(self._processes):
            if not process.is_alive():
                code = process.exitcode
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code is not None and code < 0 and -code in signal.valid_signals()
                    else f"exited with code {code}"
                )
                return self._engine_failure(rank, how)
        return None

    def _poll(self) -> tuple[str, int, Any] | None:
        """The next message from an engine, or None after POLL_S; an engine that died
        meanwhile raises its failure."""
        try:
            return self._results.get(timeout=POLL_S)
        except queue.Empty:
            dead = self._dead_engine()
            if dead is not None:
                raise dead from None
            return None

    def _wait_ready(self) -> None:
        waiting = set(range(len(self._specs)))
        deadline = time.monotonic() + self.start_timeout
        while waiting:
            message = self._poll()
            if message is None:
                if time.monotonic() > deadline:
                    raise self._engine_failure(
                        min(waiting), f"did not become ready within {self.start_timeout:.0f} s"
                    )
                continue
            kind, rank, payload = message
            if kind == "error":
                raise self._engine_failure(rank, f"failed to start ({payload})")
            waiting.discard(rank)
            self._ready.add(rank)

    def _next_result(self) -> list[dict[str, Any]]:
        while True:
            message = self._poll()
            if message is None:
                continue
            kind, rank, payload = message
            if kind == "error":
                raise self._engine_failure(rank, f"failed ({payload})")
            if kind == "done":
                return payload

    def close(self) -> None:
        """Stop every engine and everything it started; wait for them to end."""
        if self._closed:
            return
        self._closed = True
        # engines that serve get the end of work and time to shut vLLM down; the others
        # (still loading, hung) are stopped at once
        serving = {rank for rank in self._ready if self._processes[rank].is_alive()}
        for _ in serving:
            self._tasks.put(None)
        deadline = time.monotonic() + 30
        while serving and time.monotonic() < deadline:
            try:
                kind, rank, _ = self._results.get(timeout=POLL_S)
            except queue.Empty:
                serving = {rank for rank in serving if self._processes[rank].is_alive()}
                continue
            if kind in ("stopped", "error"):
                serving.discard(rank)
        for process in self._processes:
            _stop_group(process)
        self._processes = []

    async def stream(self, jobs: Sequence[SampleJob]) -> AsyncIterator[SampleOutput]:
        if self._closed:
            raise GenerationError("the vLLM backend is closed")
        items = _work_items(jobs)
        chunks = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        for chunk in chunks:
            self._tasks.put(chunk)
        for _ in chunks:
            for output in await asyncio.to_thread(self._next_result):
                yield SampleOutput(**output)


def _stop_group(process: multiprocessing.process.BaseProcess) -> None:
    """SIGTERM, then SIGKILL, to an engine's process group (the engine is its leader, so
    the group id is its pid): nothing it started outlives the backend."""
    pid = process.pid
    if pid is None:
        return
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            process.join(timeout=0.05)  # reap the leader: a zombie would count as alive
            if not _group_running(pid):
                break
        if not _group_running(pid):
            break
    process.join(timeout=5)


def _group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies, dead but not yet reaped by
    their parent, do not count). Reads /proc on Linux; elsewhere any member counts."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False
