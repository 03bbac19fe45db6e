"""The vLLM backend's process structure, with stand-in engines (vLLM itself cannot run on a
CPU): engines in non-daemonic processes that may start processes of their own, a readiness
deadline, a liveness check, and nothing left running after the backend closes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from rationale.llm import ChatMessage, GenerationError, GenerationRequest, SamplingParams
from rationale.llm import generate as run
from rationale.llm.backends.vllm import VLLMBackend

STANDINS = Path(__file__).parent / "standins"


@pytest.fixture
def child_pids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where stand-in engines write the pids of the processes they start; their module is
    importable in the spawned engine processes (spawn passes sys.path on)."""
    monkeypatch.syspath_prepend(str(STANDINS))
    pids = tmp_path / "child_pids.txt"
    monkeypatch.setenv("STANDIN_CHILD_PIDS", str(pids))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose: it holds no memory and runs nothing
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def _requests(count: int) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            id=f"q{i}",
            messages=(ChatMessage(role="user", content=f"question {i}"),),
            sampling=SamplingParams(n=2, temperature=0.7, max_tokens=8, seed=1),
        )
        for i in range(count)
    ]


def _backend(engine: str, tmp_path: Path, **options: object) -> VLLMBackend:
    return VLLMBackend(
        "stand-in-model",
        engine_class=f"standin_engines:{engine}",
        log_dir=tmp_path / "logs",
        **options,  # type: ignore[arg-type]
    )


def test_engines_with_children_of_their_own_serve_and_leave_nothing_behind(
    child_pids: Path, tmp_path: Path
) -> None:
    backend = _backend(
        "EchoWithChild",
        tmp_path,
        data_parallel_size=2,
        tensor_parallel_size=2,
        gpus=["0", "1", "2", "3"],
        gpu_memory_utilization=0.5,
        max_model_len=4096,
        enforce_eager=True,
        engine_options={"kv_cache_dtype": "fp8"},
        chunk_size=3,
    )
    try:
        results = run(backend, _requests(5))
        engines = [process.pid for process in backend._processes]
    finally:
        backend.close()
    assert [result.id for result in results] == [f"q{i}" for i in range(5)]
    texts = [text for result in results for text in result.texts]
    assert [text.split(" on ")[0] for text in texts[:2]] == [
        "echo question 0 #0",
        "echo question 0 #1",
    ]
    # every sample answered by an engine on its own slice of tensor_parallel_size GPUs
    assert {text.rsplit(" on ", 1)[1] for text in texts} <= {"0,1", "2,3"}
    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert len(logs) == 2
    options_line = logs[0].read_text()
    assert "('enforce_eager', True)" in options_line and "('gpu_memory_utilization', 0.5)" in (
        options_line
    )
    assert "('kv_cache_dtype', 'fp8')" in options_line and "('max_model_len', 4096)" in (
        options_line
    )
    helpers = [int(line) for line in child_pids.read_text().split()]
    assert len(helpers) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(map(_alive, [*helpers, *engines])):
        time.sleep(0.1)
    assert not any(map(_alive, [*helpers, *engines]))  # engines and their own children


def test_an_engine_that_dies_before_ready_is_one_clear_error(
    child_pids: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(GenerationError) as caught:
        _backend("DiesBeforeReady", tmp_path, gpus=["0"], start_timeout=120)
    message = str(caught.value)
    assert time.monotonic() - started < 60
    assert "vLLM engine 0 (GPUs 0) exited with code 1" in message
    assert "CUDA out of memory (stand-in)" in message  # the last lines of its log
    assert "gpu_memory_utilization (now 0.9)" in message and "enforce_eager" in message
    assert "\n" not in message


def test_an_engine_that_never_becomes_ready_is_stopped_at_its_deadline(
    child_pids: Path, tmp_path: Path, live_processes: Any
) -> None:
    started = time.monotonic()
    with pytest.raises(GenerationError, match=r"did not become ready within 3 s") as caught:
        _backend("HangsBeforeReady", tmp_path, start_timeout=3)
    assert time.monotonic() - started < 30
    assert "never finishes" in str(caught.value)
    # no engine process is left: the group was stopped
    mine = [p.command for p in live_processes() if p.ppid == os.getpid()]
    assert not [command for command in mine if "spawn_main" in command]


def test_an_engine_that_dies_while_generating_ends_the_stream(
    child_pids: Path, tmp_path: Path
) -> None:
    backend = _backend("DiesWhileGenerating", tmp_path)
    try:
        with pytest.raises(GenerationError, match=r"engine 0 was killed by SIGKILL.*segfault"):
            run(backend, _requests(1))
    finally:
        backend.close()
    helpers = [int(line) for line in child_pids.read_text().split()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(map(_alive, helpers)):
        time.sleep(0.1)
    assert not any(map(_alive, helpers))


def test_engine_settings_are_keys_and_flags(tmp_path: Path) -> None:
    """gpu_memory_utilization, max_model_len, enforce_eager and free-form engine options are
    reachable from the command line (and so from YAML: the same keys)."""
    import subprocess
    import sys

    import yaml

    result = subprocess.run(
        [
            sys.executable, "-c", "from rationale.cli import app; app()",
            "generate", "--backend", "vllm", "--model", "smollm2-135m",
            "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
            "--gpu-memory-utilization", "0.45", "--max-model-len", "8192", "--enforce-eager",
            "--engine-option", "kv_cache_dtype=fp8", "--engine-option", "max_num_seqs=64",
            "--print-config",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["gpu_memory_utilization"] == 0.45 and config["max_model_len"] == 8192
    assert config["enforce_eager"] is True
    assert config["engine_options"] == {"kv_cache_dtype": "fp8", "max_num_seqs": 64}
