"""The distillation loop end to end on the real beer_factory train data.

Two real teachers:
- the tiny LLM (SmolLM2-135M through the `hf` backend): real generation, but it almost
  never writes a valid rationale, so it exercises the rejecting path;
- `rationale.decomposer.teacher_server`, a real OpenAI-compatible HTTP server started
  here that answers each teacher prompt with the symbolic decomposer's rationale for the
  question asked. Its answers are deterministic and mostly valid, so the accepting path,
  pool growth and resume-after-SIGKILL are exercised for real (real HTTP, real `openai`
  backend, real parsing and validation); no mock anywhere.
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

from rationale.records.leakage import DatasetLeakageError
from rationale.records.rationales import AcceptedRationale, AttemptRecord, PoolEntry
from rationale.run_dir import RunConfigError, RunDir, read_jsonl, rewrite_jsonl
from rationale.stages.distill import DistillConfig, DistillReport
from rationale.stages.distill import run as run_distill
from rationale.stages.seed import SeedConfig
from rationale.stages.seed import run as run_seed
from rationale.validation.checks import ValidationItem, validate_many

RATIONALE_CLI = Path(sys.executable).parent / "rationale"


def _seeded_run(train_dir: Path, root: Path) -> RunDir:
    run = RunDir(root)
    run_seed(SeedConfig(data=train_dir, workers=1), run)
    return run


def _symbolic_config(train_dir: Path, server: Any, cache: Path, **extra) -> DistillConfig:
    fields = dict(
        data=train_dir,
        backend="openai",
        model="symbolic-teacher",
        base_urls=[server.url],
        db_ids=["beer_factory"],
        iterations=2,
        samples=2,
        shots=2,
        cache_dir=cache,
        validation_workers=2,
        validation_batch=8,
        max_in_flight=4,
    )
    fields.update(extra)
    return DistillConfig(**fields)


def _records(path: Path) -> list[str]:
    """A file's records as canonical JSON, sorted: records are appended as samples arrive,
    and concurrent requests finish in any order."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines)


def _check_mechanics(run: RunDir, report: DistillReport, train_dir: Path) -> None:
    """What must hold for any teacher: pool growth, coverage, provenance, no leakage."""
    attempts = read_jsonl(run.stage_dir("distill") / "attempts.jsonl", AttemptRecord)
    accepted = read_jsonl(run.stage_dir("distill") / "rationales.jsonl", AcceptedRationale)
    seed_pool = read_jsonl(run.pool_path(0), PoolEntry)
    pool_size = len(seed_pool)
    for row in report.iterations:
        added = read_jsonl(run.pool_path(row.iteration), PoolEntry)
        assert len(added) == row.accepted  # the pool grows by exactly the accepted count
        assert {e.iteration for e in added} <= {row.iteration}
        assert all(e.source == "teacher" for e in added)
        pool_size += len(added)
        assert row.pool_size == pool_size
        its = [a for a in attempts if a.iteration == row.iteration]
        assert len(its) == row.samples
        assert len({a.question_id for a in its}) == row.attempted == row.candidates
        assert row.valid == sum(a.valid for a in its)
    pool_keys = {
        e.key
        for k in range(len(report.iterations) + 1)
        for e in read_jsonl(run.pool_path(k), PoolEntry)
    }
    scope = {("train", qid) for qid in _beer_ids(train_dir, report.executable)}
    assert report.covered == len(pool_keys & scope)
    assert report.coverage == pytest.approx(100.0 * report.covered / report.executable, abs=0.01)
    assert len(accepted) == sum(row.accepted for row in report.iterations)
    assert len({(a.split, a.question_id) for a in accepted}) == len(accepted)
    for record in accepted:
        p = record.provenance
        assert p.model and p.backend and p.template.endswith(".j2")
        assert len(p.template_hash) == 64 and p.iteration >= 1 and p.sample_index >= 0
        assert record.validation.valid and record.prompt_tokens
        assert p.shot_ids == [s.question_id for s in p.shots]
    for attempt in attempts:
        assert attempt.question_id not in {s.question_id for s in attempt.shots}
        assert all(s.split == "train" for s in attempt.shots)  # never a dev rationale
        assert attempt.parsed == (attempt.rationale is not None)
        assert attempt.valid == (attempt.validation is not None and attempt.validation.valid)
        assert (attempt.validation is None) == (not attempt.parsed or attempt.rejected is not None)
    assert report.no_database == {}  # scope: beer_factory only


def _beer_ids(train_dir: Path, limit: int) -> list[int]:
    from bird.data import load_split

    split = load_split(train_dir)
    return [e.question_id for e in split.executable_examples() if e.db_id == "beer_factory"][:limit]


def test_symbolic_teacher_grows_the_pool_with_validated_rationales(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    run = _seeded_run(train_dir, tmp_path / "run")
    config = _symbolic_config(train_dir, symbolic_server, tmp_path / "cache")
    report = run_distill(config, run)
    # Every beer_factory example: the decomposer's chains fail validation on a few, which
    # iteration 2 samples again (two samples each) and rejects again.
    assert [row.iteration for row in report.iterations] == [1, 2]
    assert report.iterations[0].accepted > 0 and report.iterations[1].candidates > 0
    _check_mechanics(run, report, train_dir)
    # Independent re-validation of everything accepted (all samples share the gold run).
    from bird.data import load_split

    split = load_split(train_dir)
    accepted = read_jsonl(run.stage_dir("distill") / "rationales.jsonl", AcceptedRationale)
    reports = validate_many(
        [
            ValidationItem(
                rationale=a.rationale,
                db_path=split.database_path(a.db_id),
                gold_sql=split.example(a.question_id).sql,
            )
            for a in accepted
        ]
    )
    assert all(r.valid for r in reports)
    # A second pass with the same config sends nothing and changes nothing.
    before = {p.name: p.read_bytes() for p in run.root.rglob("*.jsonl") if "timings" not in p.name}
    again = run_distill(config, run)
    assert again.this_pass["samples_generated"] == 0
    after = {p.name: p.read_bytes() for p in run.root.rglob("*.jsonl") if "timings" not in p.name}
    assert after == before
    assert [r.model_dump(exclude={"wall_seconds"}) for r in again.iterations] == [
        r.model_dump(exclude={"wall_seconds"}) for r in report.iterations
    ]


def test_kill_and_resume_gives_the_same_files_and_resends_nothing(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    args = [
        "--data", str(train_dir), "--backend", "openai", "--model", "symbolic-teacher",
        "--base-url", symbolic_server.url, "--db", "beer_factory",
        "--iterations", "2", "--samples", "2", "--shots", "2", "--max-in-flight", "1",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}

    def distill(run: Path, cache: Path, batch: int = 64) -> subprocess.Popen[bytes]:
        # --validation-batch only changes how often records are written (a runtime field):
        # small in the run to kill, so that attempts appear early.
        return subprocess.Popen(
            [
                str(RATIONALE_CLI),
                "distill",
                *args,
                "--run",
                str(run),
                "--cache-dir",
                str(cache),
                "--validation-batch",
                str(batch),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )

    reference = _seeded_run(train_dir, tmp_path / "reference")
    done = distill(reference.root, tmp_path / "cache_reference")
    assert done.wait(timeout=120) == 0, done.stderr.read().decode()[-2000:]

    killed = _seeded_run(train_dir, tmp_path / "killed")
    cache = tmp_path / "cache_killed"
    process = distill(killed.root, cache, batch=2)
    attempts = killed.stage_dir("distill") / "attempts.jsonl"
    deadline = time.monotonic() + 60
    while not (attempts.exists() and attempts.stat().st_size > 0):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _, killed_stderr = process.communicate(timeout=60)  # until its workers let go too
    assert b"Traceback" not in killed_stderr  # workers whose parent died exit quietly
    answered_before_kill = sum(1 for _ in cache.glob("??/*.json"))
    assert answered_before_kill > 0
    assert not (killed.stage_dir("distill") / "report.json").exists()  # it did not finish

    resumed = distill(killed.root, cache)
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()[-2000:]
    reference_report = json.loads((reference.stage_dir("distill") / "report.json").read_text())
    resumed_report = json.loads((killed.stage_dir("distill") / "report.json").read_text())
    total = reference_report["this_pass"]["samples_generated"]
    assert resumed_report["this_pass"]["samples_generated"] == total - answered_before_kill
    for relative in (
        "distill/attempts.jsonl",
        "distill/rationales.jsonl",
        "pool/iteration_0.jsonl",
        "pool/iteration_1.jsonl",
        "pool/iteration_2.jsonl",
    ):
        assert _records(killed.root / relative) == _records(reference.root / relative), relative
    for key in ("covered", "coverage", "stop_reason"):
        assert resumed_report[key] == reference_report[key]
    # the report's traffic and time cover both passes, not only the last one
    sent = sum(row["samples_generated"] for row in resumed_report["iterations"])
    assert resumed_report["this_pass"]["samples_generated"] < sent <= total
    wall = sum(row["wall_seconds"] for row in resumed_report["iterations"])
    assert wall > resumed_report["this_pass"]["seconds"] * 0.5


def test_rerun_with_another_config_is_refused(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    run = _seeded_run(train_dir, tmp_path / "run")
    cache = tmp_path / "cache"
    run_distill(_symbolic_config(train_dir, symbolic_server, cache, limit=5, iterations=1), run)
    # Runtime-only fields (workers, batch sizes, URLs) may change on a resumption.
    run_distill(
        _symbolic_config(
            train_dir, symbolic_server, cache, limit=5, iterations=1, validation_workers=1
        ),
        run,
    )
    with pytest.raises(RunConfigError, match=r"shots: 2 -> 1"):
        run_distill(_symbolic_config(train_dir, symbolic_server, cache, limit=5, shots=1), run)


def test_a_dev_entry_in_a_train_pool_is_refused(
    train_dir: Path, dev_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    run = _seeded_run(train_dir, tmp_path / "run")
    pool = read_jsonl(run.pool_path(0), PoolEntry)
    leaked = pool[0].model_copy(update={"split": "dev"})
    rewrite_jsonl(run.pool_path(0), [*pool, leaked])
    with pytest.raises(DatasetLeakageError, match="dev:"):
        run_distill(_symbolic_config(train_dir, symbolic_server, tmp_path / "cache", limit=20), run)


def test_tiny_llm_teacher_two_iterations(train_dir: Path, tmp_path: Path) -> None:
    from rationale.llm.models import TINY_MODEL_NAME, prepare_model

    prepare_model(TINY_MODEL_NAME)  # scripts/install.sh installs it: a failure here is real
    run = _seeded_run(train_dir, tmp_path / "run")
    config = DistillConfig(
        data=train_dir,
        backend="hf",
        model=TINY_MODEL_NAME,
        device="cpu",
        db_ids=["beer_factory"],
        limit=5,  # the first 5 beer_factory examples, 2 of them seeds: 3 candidates
        iterations=2,
        min_gain=0.0,
        samples=1,  # CPU time on 2 shared cores; the symbolic tests cover n > 1
        temperature=0.8,
        shots=1,
        schema_max_chars=1500,
        max_tokens=48,  # too short for a full rationale: bounded CPU time
        cache_dir=tmp_path / "cache",
        validation_workers=1,
    )
    report = run_distill(config, run)
    assert [row.iteration for row in report.iterations] == [1, 2]
    first, second = report.iterations
    assert first.samples == first.candidates  # greedy: one sample each
    assert second.samples == second.candidates
    assert report.this_pass["samples_generated"] == first.samples + second.samples
    assert first.completion_tokens > 0 and first.prompt_tokens > 0
    _check_mechanics(run, report, train_dir)
    again = run_distill(config, run)  # fully cached: the model is never even loaded
    assert again.this_pass["samples_generated"] == 0 and again.covered == report.covered
