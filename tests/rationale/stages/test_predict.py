"""`rationale predict`: students answer BIRD dev; candidates vote by execution result."""

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

from bird.data import load_split
from bird.evaluation import EvaluationOptions, evaluate
from bird.executor import ExecutionRequest, execute_many
from bird.gold_cache import GoldCache
from rationale.chain.format import Rationale, RationaleStep, parse_rationale
from rationale.llm.models import TINY_MODEL_NAME
from rationale.run_dir import read_jsonl
from rationale.stages.predict import (
    Candidate,
    PredictConfig,
    Prediction,
    _step_record,
    result_signature,
    vote,
)
from rationale.stages.predict import run as predict

RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]


def _candidate(index: int, signature: str | None) -> Candidate:
    error = None if signature else "runtime: no such column"
    return Candidate(index=index, text="", sql=f"q{index}", signature=signature, error=error)


@pytest.mark.parametrize(
    ("signatures", "chosen", "votes"),
    [
        (["a", "b", "b", "a", "b"], 1, {"a": 2, "b": 3}),  # the largest group wins
        (["a", "b", "b", "a"], 0, {"a": 2, "b": 2}),  # a tie: the earliest candidate's group
        ([None, "b", "c", "c"], 2, {"b": 1, "c": 2}),  # failing candidates do not vote
        ([None, "b", "c"], 1, {"b": 1, "c": 1}),  # tie among the voters: the earliest
        ([None, None], 0, {}),  # nothing executes: the greedy answer
    ],
)
def test_vote_by_execution_result(signatures: list, chosen: int, votes: dict) -> None:
    candidates = [_candidate(i, s) for i, s in enumerate(signatures)]
    assert vote(candidates) == (chosen, votes)


def test_equal_signatures_are_official_set_equality(superhero_db: Path) -> None:
    requests = [
        "SELECT id FROM colour ORDER BY id",
        "SELECT id FROM colour ORDER BY id DESC",  # same set, other order: equal
        "SELECT id FROM colour UNION ALL SELECT id FROM colour",  # duplicates: equal sets
        "SELECT id FROM colour WHERE id > 1",
    ]
    results = execute_many([ExecutionRequest(db_path=superhero_db, sql=sql) for sql in requests])
    signatures = [result_signature(result) for result in results]
    assert signatures[0] == signatures[1] == signatures[2] != signatures[3]


def test_step_record_names_the_first_failing_step(superhero_db: Path) -> None:
    rationale = Rationale(
        steps=[
            RationaleStep(name="step1", title="a", explanation="x", sql="SELECT id FROM colour"),
            RationaleStep(name="step2", title="b", explanation="y", sql="SELECT nope FROM step1"),
        ],
        final_explanation="z",
        final_sql="SELECT * FROM step2",
    )
    queries = [rationale.step_query(name) for name in rationale.step_names()]
    results = execute_many([ExecutionRequest(db_path=superhero_db, sql=q) for q in queries])
    record = _step_record(
        rationale,
        superhero_db,
        {(superhero_db, q): r for q, r in zip(queries, results, strict=True)},
    )
    assert (record.parsed, record.steps, record.executed) == (True, 2, 1)
    assert record.first_failure is not None and record.first_failure.startswith("step2:")
    assert "nope" in record.first_failure
    unparsed = _step_record(parse_rationale("no steps here"), superhero_db, {})
    assert not unparsed.parsed and "no_steps" in (unparsed.parse_error or "")


def _official_pairs(path: Path, dev_dir: Path) -> dict[int, tuple[str, str]]:
    """An independent reader of the official file: position -> (SQL, db_id), checked
    against dev.json by position as the official scripts pair them."""
    questions = json.loads((dev_dir / "dev.json").read_text())
    pairs = {}
    for key, value in json.loads(path.read_text()).items():
        sql, db_id = value.split("\t----- bird -----\t")
        question = questions[int(key)]
        assert question["db_id"] == db_id
        pairs[question["question_id"]] = (sql, db_id)
    return pairs


def _oracle_args(server: Any, dev_dir: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "predict", "--data", str(dev_dir), "--kind", "cot", "--out", str(out),
        "--backend", "openai", "--model", "oracle", "--base-url", server.url,
        "--db", "superhero", "--limit", "16", "--samples", "2", "--temperature", "0.7",
        "--tokenizer", TINY_MODEL_NAME, "--cache-dir", str(cache), *extra,
    ]  # fmt: skip


def test_oracle_student_scores_like_bird_evaluate_and_resumes_asking_nothing_again(
    oracle_student: Any, dev_dir: Path, tmp_path: Path
) -> None:
    reference = subprocess.run(
        [*RATIONALE, *_oracle_args(oracle_student, dev_dir, tmp_path / "ref", tmp_path / "c1")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    pairs = _official_pairs(tmp_path / "ref" / "predict_dev.json", dev_dir)
    assert len(pairs) == summary["questions"] == 16
    # the official file, scored on its own, agrees with the stage's summary question by question
    split = load_split(dev_dir)
    scored = evaluate(
        split, tmp_path / "ref" / "predict_dev.json",
        options=EvaluationOptions(allow_missing=True), gold_cache=GoldCache(),
    )  # fmt: skip
    by_question = {q.question_id: q.ex for q in scored.questions if q.question_id in pairs}
    records = read_jsonl(tmp_path / "ref" / "predictions.jsonl", Prediction)
    assert summary["voted"]["metrics"]["ex"]["total"] == pytest.approx(
        100 * sum(by_question.values()) / 16
    )
    assert summary["voted"]["metrics"]["ex"]["total"] >= 90  # the decomposer's answers
    for record in records:
        assert len(record.candidates) == 3 and record.candidates[0].text
        assert record.steps is not None and record.steps.parsed
        assert record.steps.executed == record.steps.steps  # every step of a correct chain runs
        assert record.votes == {record.candidates[0].signature: 3}  # the same answer thrice
        assert pairs[record.question_id][0] == record.sql
    # kill a second run in the middle, then resume: same records, no sample asked twice
    out, cache = tmp_path / "killed", tmp_path / "c2"
    args = [*_oracle_args(oracle_student, dev_dir, out, cache), "--batch", "1"]
    asked_before = oracle_student.samples()
    process = subprocess.Popen([*RATIONALE, *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (
        (out / "predictions.jsonl").exists()
        and (out / "predictions.jsonl").read_text().count("\n") >= 4
    ):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (out / "summary.json").exists()
    answered = len(list(cache.glob("??/*.json")))  # samples that reached the cache
    asked_after_kill = oracle_student.samples()
    assert 0 < answered < 16 * 3 and asked_after_kill > asked_before
    resumed = subprocess.run([*RATIONALE, *args], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming:" in resumed.stderr
    # only what had not been answered is asked again
    assert oracle_student.samples() - asked_after_kill == 16 * 3 - answered
    assert len(list(cache.glob("??/*.json"))) == 16 * 3
    again = read_jsonl(out / "predictions.jsonl", Prediction)
    assert sorted(r.model_dump_json() for r in again) == sorted(
        r.model_dump_json() for r in records
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cot", "nocot"])
def test_tiny_model_predictions_are_official_files(
    kind: str, dev_dir: Path, tmp_path: Path
) -> None:
    config = PredictConfig(
        backend="hf", model=TINY_MODEL_NAME, device="cpu", data=dev_dir, kind=kind,
        out=tmp_path / kind, limit=2, max_tokens=24, max_prompt_tokens=1024,
        cache_dir=tmp_path / "cache", workers=1,
    )  # fmt: skip
    report = predict(config)
    assert report.questions == 2
    pairs = _official_pairs(tmp_path / kind / "predict_dev.json", dev_dir)
    greedy = _official_pairs(tmp_path / kind / "predict_dev_greedy.json", dev_dir)
    assert set(pairs) == set(greedy) == {e.question_id for e in load_split(dev_dir).examples[:2]}
    records = read_jsonl(tmp_path / kind / "predictions.jsonl", Prediction)
    assert all(r.candidates[0].text and r.prompt_tokens for r in records)
    assert all((r.steps is not None) == (kind == "cot") for r in records)
    manifest = json.loads((tmp_path / kind / "manifest.json").read_text())
    assert manifest["settings"]["prompt"]["kind"] == f"student-{kind}"
    assert len(manifest["settings"]["template_hash"]) == 64
    again = predict(config)  # all cached: the model is not even loaded
    assert again.voted.metrics == report.voted.metrics
    env = {**os.environ}
    refused = subprocess.run(
        [*RATIONALE, "predict", "--data", str(dev_dir), "--kind", kind, "--out",
         str(tmp_path / kind), "--backend", "hf", "--model", TINY_MODEL_NAME, "--limit", "2",
         "--max-tokens", "25", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 1 and "other settings" in refused.stderr
