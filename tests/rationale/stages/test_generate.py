"""`rationale generate`: the JSONL command, its resume after a kill, and its file errors."""

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
from typer.testing import CliRunner

from rationale.cli import app
from rationale.stages.generate import InputFileError, load_done_ids, read_outputs, read_requests

RUN_CLI = [sys.executable, "-c", "from rationale.cli import app; app()"]


def _write_input(path: Path, count: int) -> list[str]:
    ids = [f"q{i}" for i in range(count)]
    with path.open("w") as handle:
        for i, rid in enumerate(ids):
            message = {"role": "user", "content": f"Say something about the number {i}."}
            handle.write(json.dumps({"id": rid, "messages": [message]}) + "\n")
    return ids


def _openai_args(server: Any, tmp_path: Path, input_path: Path, output: Path) -> list[str]:
    return [
        "generate",
        "--backend", "openai",
        "--model", "smollm2-135m",
        "--served-model", server.served_model,
        "--base-url", server.base_url,
        "--input", str(input_path),
        "--output", str(output),
        "--max-tokens", "12",
        "--max-in-flight", "2",
        "--request-timeout", "45",  # transformers serve now and then never answers a request
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip


def test_generate_writes_every_id_and_a_rerun_costs_no_request(
    transformers_server: Any, tmp_path: Path
) -> None:
    input_path, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(input_path, 4)
    args = _openai_args(transformers_server, tmp_path, input_path, output)
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    records = read_outputs(output)
    assert sorted(r.id for r in records) == ids
    assert all(r.outputs[0].text and r.usage.completion_tokens > 0 for r in records)

    output.unlink()  # regenerate the whole file: every sample now comes from the cache
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    again = {r.id: r for r in read_outputs(output)}
    assert {r.id: r.outputs for r in records} == {rid: again[rid].outputs for rid in ids}
    assert all(r.usage.cached_samples == 1 for r in again.values())

    third = CliRunner().invoke(app, args)  # nothing left to do
    assert third.exit_code == 0, third.output
    assert len(read_outputs(output)) == 4


def test_killed_run_resumes_with_no_lost_and_no_duplicated_ids(
    transformers_server: Any, tmp_path: Path
) -> None:
    input_path, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(input_path, 8)
    args = _openai_args(transformers_server, tmp_path, input_path, output)
    process = subprocess.Popen([*RUN_CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600  # transformers serve on busy CPUs can be slow
    while process.poll() is None:
        if output.exists() and output.read_text().count("\n") >= 3:
            break
        assert time.monotonic() < deadline, "3 answers did not come in 10 minutes"
        time.sleep(0.05)
    assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = output.read_text().count("\n")
    assert 3 <= written < 8
    with output.open("a") as handle:  # what a kill in the middle of a write leaves behind
        handle.write('{"id": "q9", "outputs": [{"te')

    resumed = subprocess.run([*RUN_CLI, *args], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming: {written} ids already in the output" in resumed.stderr
    final_ids = [record.id for record in read_outputs(output)]
    assert sorted(final_ids) == ids  # each id exactly once


def test_hf_backend_through_the_command(tiny_model_dir: Path, tmp_path: Path) -> None:
    input_path, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(input_path, 2)
    result = CliRunner().invoke(
        app,
        [
            "generate", "--backend", "hf", "--model", "smollm2-135m", "--device", "cpu",
            "--input", str(input_path), "--output", str(output), "--max-tokens", "6",
            "--n", "2", "--temperature", "0.8", "--seed", "1", "--no-cache",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = read_outputs(output)
    assert sorted(r.id for r in records) == ids
    assert all(len(r.outputs) == 2 for r in records)


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    input_path, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(input_path, 1)
    runner = CliRunner()
    closed = "http://127.0.0.1:9"  # never reached: the check comes first
    record = {"id": "q0", "outputs": [], "usage": {}}
    output.write_text(json.dumps(record) + "\n")
    output.with_name("out.jsonl.meta.json").write_text(
        json.dumps({"model": "smollm2-135m", "sampling": {"max_tokens": 99}})
    )
    result = runner.invoke(
        app,
        ["generate", "--backend", "openai", "--model", "smollm2-135m", "--base-url", closed,
         "--input", str(input_path), "--output", str(output), "--max-tokens", "12"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "use another --output" in result.output


def test_input_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    good = json.dumps({"id": 1, "messages": [{"role": "user", "content": "hi"}]})
    path.write_text(good + "\n\n" + '{"id": 2, "messages": [{"role": "robot"}]}\n')
    with pytest.raises(InputFileError, match=rf"{path}:3: .*messages"):
        read_requests(path)
    path.write_text(good + "\n" + good + "\n")
    with pytest.raises(InputFileError, match=rf"{path}:2: id 1 already used on line 1"):
        read_requests(path)
    path.write_text("not json\n")
    with pytest.raises(InputFileError, match=rf"{path}:1:"):
        read_requests(path)
    with pytest.raises(InputFileError, match="not found"):
        read_requests(tmp_path / "missing.jsonl")


def test_truncated_last_line_is_dropped_and_a_bad_middle_line_is_an_error(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    record = json.dumps({"id": "a", "outputs": [], "usage": {}})
    path.write_text(record + "\n" + '{"id": "b", "outp')
    assert load_done_ids(path) == {"a"}
    assert path.read_text() == record + "\n"  # rewritten cleanly for the appends to come
    path.write_text("garbage\n" + record + "\n")
    with pytest.raises(InputFileError, match=rf"{path}:1: not an output record"):
        load_done_ids(path)
    assert os.path.getsize(path) > 0
