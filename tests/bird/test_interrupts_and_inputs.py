"""Ctrl-C and bad inputs on the bird commands, with real processes and files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bird.executor import execute_sql
from bird.files import write_text_atomic
from bird.gold_cache import default_gold_cache_dir

BIRD = [sys.executable, "-c", "from bird.cli import app; app()"]
# A query that keeps SQLite busy for many seconds (a recursive count to 2e8).
SLOW = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000000) "
    "SELECT COUNT(*) FROM n"
)


def _slow_predictions(dev_dir: Path, path: Path) -> Path:
    questions = json.loads((dev_dir / "dev.json").read_text())
    entries = {
        str(position): f"{SLOW if position == 3 else q['SQL']}\t----- bird -----\t{q['db_id']}"
        for position, q in enumerate(questions)
    }
    path.write_text(json.dumps(entries))
    return path


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until(process: subprocess.Popen, ready, what: str, timeout: float = 120.0) -> None:
    """Poll `ready()` until it holds; fail if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"the command exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no sign within {timeout:.0f} s that {what}")
        time.sleep(0.05)


def test_ctrl_c_stops_evaluate_with_130_and_writes_nothing(dev_dir: Path, tmp_path: Path) -> None:
    """With one worker the query runs in this process: the interrupt must not be taken for
    the query's failure (scored wrong, written, exit 0)."""
    output = tmp_path / "report"
    cache = tmp_path / "gold-cache"  # where the gold phase shows its progress
    distinct_gold = {(q["db_id"], q["SQL"]) for q in json.loads((dev_dir / "dev.json").read_text())}
    process = subprocess.Popen(
        [*BIRD, "evaluate", "--data", str(dev_dir), "--timeout", "120", "--cache-dir", str(cache),
         "--predictions", str(_slow_predictions(dev_dir, tmp_path / "p.json")),
         "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Ready when every gold result is stored; then the only query left to run is the slow
    # prediction (the others are the gold queries): once the process has spent half a
    # second of CPU more, it is inside that query.
    _wait_until(
        process,
        lambda: len(list(cache.glob("??/*.json"))) >= len(distinct_gold),
        "the gold queries were done",
    )
    after_gold = _cpu_seconds(process.pid)
    _wait_until(
        process,
        lambda: _cpu_seconds(process.pid) > after_gold + 0.5,
        "the slow prediction was running",
    )
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not output.exists()


def test_output_that_is_a_file_is_refused_before_evaluating(dev_dir: Path, tmp_path: Path) -> None:
    taken = tmp_path / "summary.json"
    taken.write_text("{}")
    started = time.monotonic()
    result = subprocess.run(
        [*BIRD, "evaluate", "--data", str(dev_dir), "--output", str(taken),
         "--predictions", str(_slow_predictions(dev_dir, tmp_path / "p.json"))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and time.monotonic() - started < 30
    assert f"--output {taken} is a file" in result.stderr and "Traceback" not in result.stderr


def test_an_empty_database_file_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    result = execute_sql(empty, "SELECT 1")
    assert result.error_kind == "missing_database" and "empty (0 bytes)" in (result.error or "")
    cli = subprocess.run(
        [*BIRD, "exec", "--db", str(empty), "--sql", "SELECT 1"], capture_output=True, text=True
    )
    assert cli.returncode == 2 and "empty (0 bytes)" in cli.stderr


def test_one_variable_moves_every_cache(tmp_path: Path, monkeypatch) -> None:
    from bird.demo import default_cache_dir as demo_dir
    from rationale.llm.cache import default_cache_dir as response_root

    monkeypatch.setenv("SQL_RATIONALE_CACHE", str(tmp_path / "all"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_gold_cache_dir() == tmp_path / "all" / "gold"
    assert response_root() == tmp_path / "all"
    assert demo_dir() == tmp_path / "all" / "demo"
    monkeypatch.delenv("SQL_RATIONALE_CACHE")
    assert default_gold_cache_dir() == tmp_path / "xdg" / "sql-rationale" / "gold"


def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
        os.umask(0o027)
        write_text_atomic(tmp_path / "b.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640
