"""The Slurm scripts, run for real by bash with stand-ins for what this machine lacks.

There is no Slurm cluster, GPU or vLLM here, so `scontrol`, `srun` and `vllm` are small
stand-in commands on PATH (srun runs its command locally; the stand-in vLLM server answers
/health, dies with an out-of-memory line, or never becomes healthy); `curl`, bash and the
script's own logic are real. `rationale` is a stand-in too: it records its arguments (the
pipeline itself is tested elsewhere).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "scripts" / "slurm" / "teacher_and_pipeline.sbatch"

STUBS = {
    "scontrol": '#!/bin/bash\n[[ "$1 $2" == "show hostnames" ]] && tr "," "\\n" <<< "$3"\n',
    "srun": '#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
    "rationale": '#!/bin/bash\nprintf "%s\\n" "$@" > "$STUB_ARGS"\n',
    "vllm": """#!/usr/bin/env python3
import http.server, os, sys, time
port = int(sys.argv[sys.argv.index("--port") + 1])
mode = os.environ["STUB_VLLM_MODE"]
print(f"stand-in vllm {mode} on port {port}", flush=True)
if mode == "die":
    time.sleep(1)
    print("torch.OutOfMemoryError: CUDA out of memory (stand-in)", flush=True)
    sys.exit(1)
if mode == "hang":
    while True:
        time.sleep(60)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
time.sleep(1)
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
""",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sbatch(tmp_path: Path, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in STUBS.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return subprocess.run(
        ["bash", str(SBATCH)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "SLURM_JOB_ID": "42",
            "SLURM_JOB_NODELIST": "localhost",
            "BIRD": "/shared/bird",
            "PORT": str(_free_port()),
            "POLL": "0.2",
            "HF_HOME": str(tmp_path / "hf"),
            "STUB_VLLM_MODE": mode,
            "STUB_ARGS": str(tmp_path / "rationale-args.txt"),
            **env,
        },
    )


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="the script waits with curl")
def test_a_healthy_teacher_starts_the_pipeline_against_it(tmp_path: Path) -> None:
    result = _sbatch(tmp_path, "ok")
    assert result.returncode == 0, result.stderr
    assert "ready: http://localhost:" in result.stdout
    args = (tmp_path / "rationale-args.txt").read_text().splitlines()
    assert args[:2] == ["run", "--config"] and "train=/shared/bird/train" in args
    assert any(arg.startswith("distill.base_urls=[http://localhost:") for arg in args)
    assert (tmp_path / "logs" / "42" / "vllm-localhost.log").is_file()  # created by the script
    assert (tmp_path / "hf").is_dir()


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="the script waits with curl")
def test_a_teacher_that_dies_fails_the_job_at_once_with_its_last_lines(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _sbatch(tmp_path, "die", TEACHER_START_TIMEOUT="600")
    assert result.returncode == 1
    assert time.monotonic() - started < 60  # not the 600 s deadline
    assert "exited before it was healthy" in result.stderr
    assert "CUDA out of memory (stand-in)" in result.stderr
    assert not (tmp_path / "rationale-args.txt").exists()


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="the script waits with curl")
def test_a_teacher_that_never_gets_healthy_fails_at_its_deadline(tmp_path: Path) -> None:
    result = _sbatch(tmp_path, "hang", TEACHER_START_TIMEOUT="3")
    assert result.returncode == 1
    assert "was not healthy within 3 s" in result.stderr
    assert "stand-in vllm hang" in result.stderr
    assert not (tmp_path / "rationale-args.txt").exists()
