"""Shared fixtures: where the real BIRD files are, and whether their absence is fatal.

Tests that need ../shared/bird skip with a reason when it is missing, except where
BIRD_REQUIRED=1 (as in CI), where they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from bird.data import BirdSplit, load_split

REPO_ROOT = Path(__file__).resolve().parent.parent


def _bird_root() -> Path:
    # Absolute, so tests that symlink into it or run a command elsewhere still find it.
    configured = os.environ.get("BIRD_ROOT")
    return (Path(configured) if configured else REPO_ROOT.parent / "shared" / "bird").resolve()


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set BIRD_ROOT to the folder holding dev/ and train/)"
    if os.environ.get("BIRD_REQUIRED") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def bird_root() -> Path:
    return _require(_bird_root(), "BIRD data")


@pytest.fixture(scope="session")
def dev_dir(bird_root: Path) -> Path:
    return _require(bird_root / "dev", "BIRD dev split")


@pytest.fixture(scope="session")
def train_dir(bird_root: Path) -> Path:
    return _require(bird_root / "train", "BIRD train split")


@pytest.fixture(scope="session")
def superhero_db(dev_dir: Path) -> Path:
    return _require(dev_dir / "dev_databases" / "superhero" / "superhero.sqlite", "superhero db")


@pytest.fixture(scope="session")
def beer_factory_db(train_dir: Path) -> Path:
    return _require(
        train_dir / "train_databases" / "beer_factory" / "beer_factory.sqlite", "beer_factory db"
    )


@pytest.fixture(scope="session")
def dev(dev_dir: Path) -> BirdSplit:
    """The dev split, loaded once per test session."""
    return load_split(dev_dir)


@pytest.fixture(scope="session")
def train(train_dir: Path) -> BirdSplit:
    """The train split (6601 questions), loaded once per test session."""
    return load_split(train_dir)


class LiveProcess(NamedTuple):
    pid: int
    ppid: int
    command: str  # the command line, arguments joined by spaces


def _live_processes() -> list[LiveProcess]:
    """Every process of this machine that has not exited (zombies left out), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it exited while being read
            continue
        if fields[0] != "Z":
            found.append(LiveProcess(int(entry.name), int(fields[1]), command))
    return found


@pytest.fixture(scope="session")
def live_processes() -> Callable[[], list[LiveProcess]]:
    """Lists the live processes when called: for tests that check what a kill left behind."""
    return _live_processes
