"""What a user does wrong or interrupts never corrupts a run or misleads (real processes).

Two commands on one run directory or output file, Ctrl-C, changed data at the same path,
selections that would do nothing, unknown models, a server that never answers, bad values:
each ends with one clear line and an exit code, never a traceback, and leaves the files
as a correct run would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rationale.records.rationales import AcceptedRationale, AttemptRecord, PoolEntry
from rationale.run_dir import RunDir, read_jsonl
from rationale.stages.seed import SeedConfig
from rationale.stages.seed import run as run_seed

RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]
ENV = {**os.environ, "COLUMNS": "250"}


def _rationale(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RATIONALE, *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return " ".join(result.stderr.split())


def _seeded(train_dir: Path, root: Path) -> RunDir:
    run = RunDir(root)
    run_seed(SeedConfig(data=train_dir, workers=1), run)
    return run


def _distill_args(train_dir: Path, run: Path, url: str, cache: Path, *extra: str) -> list[str]:
    return [
        "distill", "--data", str(train_dir), "--run", str(run), "--backend", "openai",
        "--model", "symbolic-teacher", "--base-url", url, "--db", "beer_factory",
        "--iterations", "1", "--shots", "1", "--cache-dir", str(cache), *extra,
    ]  # fmt: skip


def test_a_second_distill_on_the_same_run_directory_is_refused(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    run = _seeded(train_dir, tmp_path / "run")
    args = _distill_args(
        train_dir, run.root, symbolic_server.url, tmp_path / "cache", "--max-in-flight", "1"
    )
    first = subprocess.Popen(
        [*RATIONALE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    try:
        deadline = time.monotonic() + 120
        while not (run.root / ".lock").exists() or not (run.root / ".lock").read_text():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = _rationale(*args)
        assert second.returncode == 1
        assert f"run directory {run.root} is in use by process {first.pid}" in _one_line(second)
    finally:
        assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    attempts = read_jsonl(run.stage_dir("distill") / "attempts.jsonl", AttemptRecord)
    keys = [(a.iteration, a.question_id, a.sample_index) for a in attempts]
    assert len(keys) == len(set(keys))
    accepted = read_jsonl(run.stage_dir("distill") / "rationales.jsonl", AcceptedRationale)
    pool = read_jsonl(run.pool_path(1), PoolEntry)
    assert len(accepted) == len({a.key for a in accepted}) == len(pool) > 0


def test_records_doubled_by_a_crash_or_race_are_kept_once(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    run = _seeded(train_dir, tmp_path / "run")
    args = _distill_args(
        train_dir, run.root, symbolic_server.url, tmp_path / "cache", "--limit", "12"
    )
    assert _rationale(*args).returncode == 0
    files = [
        run.stage_dir("distill") / "attempts.jsonl",
        run.stage_dir("distill") / "rationales.jsonl",
        run.pool_path(1),
    ]
    before = {path: path.read_text() for path in files}
    for path in files:  # what two racing writers used to leave behind
        path.write_text(before[path] + before[path])
    again = _rationale(*args)
    assert again.returncode == 0, again.stderr
    report = json.loads((run.stage_dir("distill") / "report.json").read_text())
    assert report["iterations"][0]["samples"] == before[files[0]].count("\n")
    assert report["iterations"][0]["accepted"] == before[files[2]].count("\n")
    for path in files:
        assert sorted(path.read_text().splitlines()) == sorted(before[path].splitlines())


def test_changed_gold_sql_at_the_same_path_is_refused_until_forced(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    data = tmp_path / "train"
    data.mkdir()
    (data / "train_databases").symlink_to(train_dir / "train_databases")
    questions = json.loads((train_dir / "train.json").read_text())
    (data / "train.json").write_text(json.dumps(questions))
    run = _seeded(data, tmp_path / "run")
    args = _distill_args(data, run.root, symbolic_server.url, tmp_path / "cache", "--limit", "6")
    assert _rationale(*args).returncode == 0
    target = next(q for q in questions if q["db_id"] == "beer_factory")
    target["SQL"] = "SELECT COUNT(*) FROM customers"
    (data / "train.json").write_text(json.dumps(questions))
    refused = _rationale(*args)
    assert refused.returncode == 1
    message = _one_line(refused)
    assert f"{(data / 'train.json').resolve()} changed since the 'distill' stage started" in message
    assert "--force" in message
    forced = _rationale(*args, "--force")
    assert forced.returncode == 0, forced.stderr


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--db", "beer_factroy"], "unknown database id(s) 'beer_factroy'"),
        (["--limit", "0"], "limit (from --limit): Input should be greater than or equal to 1"),
        (["--limit", "-3"], "limit (from --limit): Input should be greater than or equal to 1"),
        (["--min-gain", "-5"], "min_gain (from --min-gain): Input should be greater than"),
        (["--validation-timeout", "0"], "validation_timeout (from --validation-timeout)"),
    ],
)
def test_selections_that_would_do_nothing_are_errors(
    train_dir: Path, tmp_path: Path, extra: list[str], expected: str
) -> None:
    run = _seeded(train_dir, tmp_path / "run")
    result = _rationale(
        *_distill_args(train_dir, run.root, "http://127.0.0.1:9", tmp_path / "c")[:-2], *extra
    )
    assert result.returncode == 2
    assert expected in _one_line(result)
    assert not run.stage_dir("distill").exists()


def test_the_dev_split_is_refused_for_training_stages(dev_dir: Path, tmp_path: Path) -> None:
    result = _rationale("seed", "--data", str(dev_dir), "--run", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "evaluation split" in _one_line(result) and "--allow-eval-split" in result.stderr
    assert not (tmp_path / "run" / "pool").exists()


@pytest.mark.parametrize("flag", ["seed", "validate", "decompose"])
def test_a_zero_timeout_is_one_line(flag: str, train_dir: Path, tmp_path: Path) -> None:
    args = {
        "seed": ["seed", "--data", str(train_dir), "--run", str(tmp_path / "r")],
        "validate": ["validate", "--data", str(train_dir), "--input", str(tmp_path / "in")],
        "decompose": ["decompose", "--data", str(train_dir)],
    }[flag]
    result = _rationale(*args, "--timeout", "0")
    assert result.returncode == 2
    assert "timeout (from --timeout): Input should be greater than 0" in _one_line(result)


def test_an_unknown_model_fails_at_once_and_the_fixed_command_runs(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    run = _seeded(train_dir, tmp_path / "run")
    base = _distill_args(train_dir, run.root, symbolic_server.url, tmp_path / "c", "--limit", "4")
    wrong = [*base]
    wrong[wrong.index("openai")] = "hf"
    wrong[wrong.index("symbolic-teacher")] = "smollm2-13m"
    started = time.monotonic()
    result = _rationale(*wrong)
    assert time.monotonic() - started < 60  # no minute of hub retries
    assert result.returncode == 1
    message = _one_line(result)
    assert "'smollm2-13m' is not a local model (smollm2-135m), not a folder" in message
    fixed = _rationale(*base)  # the failed attempt's config does not block the right one
    assert fixed.returncode == 0, fixed.stderr


def test_a_server_that_never_answers_fails_with_a_clear_message(
    train_dir: Path, silent_server: str, tmp_path: Path
) -> None:
    run = _seeded(train_dir, tmp_path / "run")
    args = _distill_args(
        train_dir, run.root, silent_server, tmp_path / "c",
        "--limit", "2", "--request-timeout", "1", "--max-attempts", "2",
    )  # fmt: skip
    started = time.monotonic()
    result = _rationale(*args, timeout=120)
    assert time.monotonic() - started < 90
    assert result.returncode == 1
    message = _one_line(result)
    assert "failed 2 times" in message and "ReadTimeout" in message
    assert f"Check that the server at {silent_server}/v1 is running" in message


def test_ctrl_c_stops_distill_with_130_and_no_traceback(
    train_dir: Path, silent_server: str, tmp_path: Path
) -> None:
    run = _seeded(train_dir, tmp_path / "run")
    args = _distill_args(train_dir, run.root, silent_server, tmp_path / "c", "--limit", "3")
    process = subprocess.Popen(
        [*RATIONALE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    deadline = time.monotonic() + 120
    while not silent_server.held:  # ready: a request of distill waits on the silent server
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr and "EOFError" not in stderr and "BrokenPipe" not in stderr
    assert "interrupted" in stderr
    assert not (run.stage_dir("distill") / "report.json").exists()


def test_two_generate_on_one_output_and_the_vllm_hint(silent_server: str, tmp_path: Path) -> None:
    requests = tmp_path / "in.jsonl"
    requests.write_text(
        json.dumps({"id": 1, "messages": [{"role": "user", "content": "hi"}]}) + "\n"
    )
    output = tmp_path / "out.jsonl"
    args = [
        "generate", "--backend", "openai", "--model", "m", "--base-url", silent_server,
        "--input", str(requests), "--output", str(output), "--request-timeout", "30",
    ]  # fmt: skip
    first = subprocess.Popen([*RATIONALE, *args], stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        lock = output.with_name("out.jsonl.lock")
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = _rationale(*args)
        assert second.returncode == 1
        assert f"output file {output} is in use by process {first.pid}" in _one_line(second)
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    assert first.returncode == 130
    vllm = _rationale(
        "generate", "--backend", "vllm", "--model", "smollm2-135m",
        "--input", str(requests), "--output", str(tmp_path / "v.jsonl"),
    )  # fmt: skip
    assert vllm.returncode == 1
    assert "pip install 'sql-rationale[vllm]'" in _one_line(vllm)
