"""Fixtures of the stage tests: a deterministic teacher over real HTTP, and a server that
accepts connections and never answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
SERVER_MODULE = "rationale.decomposer.teacher_server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SymbolicServer:
    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def samples(self) -> int:
        return int(httpx.get(f"{self.url}/v1/stats").json()["samples"])


def _start(data: Path, db: str, delay: float, log: Path) -> SymbolicServer:
    port = _free_port()
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "--data", str(data), "--port", str(port),
             "--db", db, "--delay", str(delay)],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = SymbolicServer(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 120
    while True:
        try:
            server.samples()
            return server
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"symbolic teacher server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)


@pytest.fixture(scope="session")
def symbolic_server(
    train_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SymbolicServer]:
    """The teacher for beer_factory train questions."""
    server = _start(train_dir, "beer_factory", 0.03, tmp_path_factory.mktemp("server") / "log")
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def oracle_student(
    dev_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SymbolicServer]:
    """A "student" that answers every superhero dev question with its gold query's
    decomposition (the symbolic server, matching the question text of student prompts)."""
    server = _start(dev_dir, "superhero", 0.05, tmp_path_factory.mktemp("student") / "log")
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


class SilentServerURL(str):
    """The silent server's URL (a str, as a base URL is given), with the connections it has
    accepted so far: a test waits on those to know a client is waiting on the server."""

    held: list[socket.socket]

    def __new__(cls, url: str, held: list[socket.socket]) -> SilentServerURL:
        made = super().__new__(cls, url)
        made.held = held
        return made


@pytest.fixture
def silent_server() -> Iterator[SilentServerURL]:
    """A real TCP server that accepts every connection and never sends a byte back: a
    teacher server that hangs. Yields its URL, whose `held` lists the connections taken."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield SilentServerURL(f"http://127.0.0.1:{listener.getsockname()[1]}", held)
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    listener.close()
