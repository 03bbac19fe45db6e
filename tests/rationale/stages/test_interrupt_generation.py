"""Ctrl-C during `hf` generation ends every generating stage at once (real processes, the
real tiny model): the backend's stopping check sees the stage close it within a token,
instead of the batch running to max_tokens (minutes on a CPU) while the process waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]
# CPU seconds a process has spent once it is surely generating: imports and the model load
# take well under this; a batch of 2,000 tokens takes minutes more.
GENERATING_CPU_S = 20.0
STOP_WITHIN_S = 15.0
HF = ["--backend", "hf", "--model", "smollm2-135m", "--device", "cpu", "--batch-size", "4"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stream:
        return subprocess.Popen(
            [*RATIONALE, *args],
            stdout=stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
            # a background job of a non-interactive shell ignores SIGINT; undo that
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            start_new_session=True,
        )


def test_ctrl_c_stops_every_generating_stage_within_seconds(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "".join(
            json.dumps({"id": i, "messages": [{"role": "user", "content": f"Count to {i}00."}]})
            + "\n"
            for i in range(8)
        )
    )
    seeded = tmp_path / "run"
    subprocess.run(
        [*RATIONALE, "seed", "--data", "demo:train", "--seeds", "demo:seeds", "--run", str(seeded)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    annotated = tmp_path / "annotated"
    subprocess.run(["cp", "-r", str(seeded), str(annotated)], check=True)
    cache = ["--no-cache"]
    long = ["--max-tokens", "2000"]
    stages = {
        "generate": ["generate", *HF, *long, "--input", str(requests), "--output",
                     str(tmp_path / "out.jsonl"), *cache],
        "predict": ["predict", *HF, *long, "--data", "demo:dev", "--kind", "nocot", "--out",
                    str(tmp_path / "predict"), "--no-stop-at-answer-end", *cache],
        "distill": ["distill", *HF, *long, "--data", "demo:train", "--run", str(seeded),
                    "--limit", "8", "--iterations", "1", "--shots", "1",
                    "--no-stop-at-answer-end", *cache],
        "annotate": ["annotate", *HF, *long, "--data", "demo:train", "--run", str(annotated),
                     "--limit", "8", "--iterations", "1", "--no-stop-at-answer-end", *cache],
    }  # fmt: skip
    processes = {name: _start(args, tmp_path / f"{name}.log") for name, args in stages.items()}
    try:
        for name, process in processes.items():
            deadline = time.monotonic() + 600
            while _cpu_seconds(process.pid) < GENERATING_CPU_S:
                assert process.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
                assert time.monotonic() < deadline
                time.sleep(0.5)
        stopped = {}
        for name, process in processes.items():
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
            stopped[name] = time.monotonic() - started
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for name, process in processes.items():
        output = (tmp_path / f"{name}.log").read_text()
        assert process.returncode == 130, f"{name}: {output[-3000:]}"
        assert "interrupted" in output and "Traceback" not in output, f"{name}: {output}"
        assert stopped[name] < STOP_WITHIN_S, f"{name} took {stopped[name]:.1f} s to stop"
