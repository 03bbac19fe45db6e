"""`rationale annotate` end to end on BIRD train (beer_factory), with the deterministic
symbolic server as the rationalization model over real HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bird.compare import ex_match
from bird.data import load_split
from bird.executor import ExecutionRequest, execute_many
from rationale.records.rationales import AcceptedRationale, AttemptRecord, PoolEntry
from rationale.run_dir import RunDir, read_jsonl
from rationale.stages.annotate import AnnotateConfig
from rationale.stages.annotate import run as annotate
from rationale.stages.audit import AuditConfig
from rationale.stages.audit import run as audit
from rationale.stages.seed import SeedConfig
from rationale.stages.seed import run as seed

RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]


def _prepared(train_dir: Path, root: Path) -> RunDir:
    run = RunDir(root)
    audit(AuditConfig(data=train_dir, db_ids=["beer_factory"], workers=1), run)
    seed(SeedConfig(data=train_dir, workers=1), run)
    return run


def _config(train_dir: Path, server: Any, cache: Path, **extra: Any) -> AnnotateConfig:
    fields = dict(
        data=train_dir, backend="openai", model="symbolic-rationalizer",
        base_urls=[server.url], db_ids=["beer_factory"], iterations=2, samples=2,
        tokenizer="smollm2-135m", cache_dir=cache, validation_workers=2,
        validation_batch=8, max_in_flight=4,
    )  # fmt: skip
    fields.update(extra)
    return AnnotateConfig(**fields)


def test_annotation_covers_the_rest_and_every_acceptance_is_right(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    run = _prepared(train_dir, tmp_path / "run")
    report = annotate(_config(train_dir, symbolic_server, tmp_path / "cache"), run)
    split = load_split(train_dir)
    seeds = {e.question_id for e in read_jsonl(run.pool_path(0), PoolEntry)}
    quarantined = {
        json.loads(line)["question_id"]
        for line in (run.stage_dir("audit") / "quarantine.jsonl").read_text().splitlines()
    }
    assert quarantined and report.quarantined == len(quarantined)
    accepted = read_jsonl(run.stage_dir("annotate") / "rationales.jsonl", AcceptedRationale)
    attempts = read_jsonl(run.stage_dir("annotate") / "attempts.jsonl", AttemptRecord)
    annotated = {a.question_id for a in accepted}
    asked = {a.question_id for a in attempts}
    assert annotated and not annotated & seeds and not asked & (seeds | quarantined)
    # every acceptance re-checked independently: the assembled query equals gold by EX
    requests = []
    for record in accepted:
        db = split.database_path(record.db_id)
        requests += [
            ExecutionRequest(db_path=db, sql=record.rationale.assembled_sql()),
            ExecutionRequest(db_path=db, sql=split.example(record.question_id).sql),
        ]
    results = execute_many(requests)
    for mine, gold in zip(results[0::2], results[1::2], strict=True):
        assert mine.ok and gold.ok and ex_match(mine.rows, gold.rows)
    for record in accepted:
        p = record.provenance
        assert p.model == "symbolic-rationalizer" and p.backend == "openai"
        assert p.template == "rationalizer.j2" and len(p.template_hash) == 64
        assert p.iteration in (1, 2) and record.validation.valid
    # the coverage the report states is what the files hold
    beer = [e for e in split.examples if e.db_id == "beer_factory"]
    in_scope = [e for e in beer if e.question_id not in quarantined]
    covered = (seeds | annotated) & {e.question_id for e in in_scope}
    assert report.covered == len(covered) and report.executable == len(in_scope)
    table = report.coverage_table
    # a quarantined question is not covered, even by a seed: the export leaves it out
    assert table.covered["seed"] == len(seeds - quarantined)
    assert table.covered["rationalizer"] == len(annotated)
    assert table.examples == len(split.examples)
    # counted from the files: the shipped train has one database, the release all of them
    without_database = [
        e
        for e in split.examples
        if not (train_dir / "train_databases" / e.db_id / f"{e.db_id}.sqlite").is_file()
    ]
    assert table.not_covered.get("no database", 0) == len(without_database)
    assert table.not_covered["quarantined: nondeterministic"] == len(quarantined)
    assert table.covered_total + sum(table.not_covered.values()) == table.examples


def test_a_killed_annotation_resumes_with_the_same_files_and_no_new_requests(
    train_dir: Path, symbolic_server: Any, tmp_path: Path
) -> None:
    def command(run: Path, cache: Path, batch: int) -> list[str]:
        return [
            *RATIONALE, "annotate", "--run", str(run), "--data", str(train_dir),
            "--backend", "openai", "--model", "symbolic-rationalizer",
            "--base-url", symbolic_server.url, "--db", "beer_factory", "--iterations", "2",
            "--samples", "2", "--tokenizer", "smollm2-135m", "--cache-dir", str(cache),
            "--max-in-flight", "1", "--validation-batch", str(batch),
        ]  # fmt: skip

    reference = _prepared(train_dir, tmp_path / "reference")
    done = subprocess.run(
        command(reference.root, tmp_path / "c1", 64), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    killed = _prepared(train_dir, tmp_path / "killed")
    cache = tmp_path / "c2"
    process = subprocess.Popen(command(killed.root, cache, 2), stderr=subprocess.PIPE)
    attempts = killed.stage_dir("annotate") / "attempts.jsonl"
    deadline = time.monotonic() + 300
    while not (attempts.exists() and attempts.stat().st_size > 0):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    answered = len(list(cache.glob("??/*.json")))
    asked_before = symbolic_server.samples()
    resumed = subprocess.run(command(killed.root, cache, 64), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    total = len(list((tmp_path / "c1").glob("??/*.json")))
    assert symbolic_server.samples() - asked_before == total - answered  # nothing asked twice
    for name in ("attempts.jsonl", "rationales.jsonl"):
        mine = sorted(
            json.dumps(json.loads(line), sort_keys=True)
            for line in (killed.stage_dir("annotate") / name).read_text().splitlines()
        )
        theirs = sorted(
            json.dumps(json.loads(line), sort_keys=True)
            for line in (reference.stage_dir("annotate") / name).read_text().splitlines()
        )
        assert mine == theirs, name
