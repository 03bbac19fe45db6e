"""The seed stage on the real train split: validation by execution on beer_factory, seeds
whose database is absent reported (and kept only on request), bad seed files, the
decomposer bootstrap and config-mismatch refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bird.compare import ex_match
from bird.data import load_split
from bird.executor import execute_sql
from rationale.records.leakage import DatasetLeakageError
from rationale.records.rationales import PoolEntry
from rationale.run_dir import RunConfigError, RunDir, read_jsonl
from rationale.stages.seed import DEFAULT_SEEDS, SeedConfig, SeedFileError, read_seed_file
from rationale.stages.seed import run as run_seed


def _seed_lines() -> list[dict]:
    return [json.loads(line) for line in DEFAULT_SEEDS.read_text().splitlines() if line.strip()]


def test_seeds_validate_on_beer_factory_and_absent_databases_are_reported(
    train_dir: Path, tmp_path: Path
) -> None:
    run = RunDir(tmp_path / "run")
    report = run_seed(SeedConfig(data=train_dir), run)
    seeds = _seed_lines()
    beer = [s for s in seeds if s["db_id"] == "beer_factory"]
    assert report.seeds == len(seeds)
    assert report.no_database == len(seeds) - len(beer)
    assert report.valid + report.invalid == len(beer)
    pool = read_jsonl(run.pool_path(0), PoolEntry)
    assert len(pool) == report.valid == report.pool_size
    split = load_split(train_dir)
    for entry in pool:
        # Independent check: the pooled rationale's assembled query reproduces the gold rows.
        db = split.database_path(entry.db_id)
        mine = execute_sql(db, entry.rationale.assembled_sql())
        gold = execute_sql(db, split.example(entry.question_id).sql)
        assert mine.ok and ex_match(mine.rows, gold.rows)
        assert (entry.source, entry.iteration, entry.split) == ("seed", 0, "train")
        assert entry.question == split.example(entry.question_id).question
    missing = [o for o in report.outcomes if o.status == "no_database"]
    assert {o.db_id for o in missing} == {s["db_id"] for s in seeds} - {"beer_factory"}
    manifest = run.read_manifest("seed")
    assert manifest is not None and manifest.counts["pool"] == len(pool)
    assert {Path(i.path).name for i in manifest.inputs} == {"seeds.jsonl", "train.json"}


def test_keep_unverified_keeps_seeds_without_database(train_dir: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    report = run_seed(SeedConfig(data=train_dir, keep_unverified=True), run)
    pool = read_jsonl(run.pool_path(0), PoolEntry)
    assert len(pool) == report.valid + report.no_database
    assert {e.db_id for e in pool} - {"beer_factory"}


def test_invalid_seed_is_reported_with_its_failed_check(train_dir: Path, tmp_path: Path) -> None:
    seed = next(s for s in _seed_lines() if s["db_id"] == "beer_factory")
    broken = dict(seed, final_sql=seed["final_sql"] + " LIMIT 0")  # returns no rows
    seeds_path = tmp_path / "seeds.jsonl"
    seeds_path.write_text(json.dumps(seed) + "\n" + json.dumps(broken) + "\n")
    run = RunDir(tmp_path / "run")
    report = run_seed(SeedConfig(data=train_dir, seeds=seeds_path), run)
    good, bad = report.outcomes
    assert good.status == "valid"
    assert bad.status == "invalid" and "ex_equal" in bad.failed_checks
    assert len(read_jsonl(run.pool_path(0), PoolEntry)) == 1


def test_seed_file_errors_name_file_and_line(tmp_path: Path) -> None:
    seed = _seed_lines()[0]
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps(seed) + "\n{not json\n")
    with pytest.raises(SeedFileError, match=r"seeds\.jsonl:2: not valid JSON"):
        read_seed_file(path)
    path.write_text(json.dumps({k: v for k, v in seed.items() if k != "final_sql"}) + "\n")
    with pytest.raises(SeedFileError, match=r"seeds\.jsonl:1: .*final_sql"):
        read_seed_file(path)


def test_seeds_of_another_split_are_not_matched_by_id(dev_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetLeakageError, match="--allow-eval-split"):
        run_seed(SeedConfig(data=dev_dir), RunDir(tmp_path / "refused"))
    report = run_seed(SeedConfig(data=dev_dir, allow_eval_split=True), RunDir(tmp_path / "run"))
    assert report.valid == 0 and report.pool_size == 0
    assert report.not_in_split == report.seeds


def test_bootstrap_decompose_adds_validated_chains(train_dir: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    report = run_seed(SeedConfig(data=train_dir, bootstrap="decompose"), run)
    pool = read_jsonl(run.pool_path(0), PoolEntry)
    added = [e for e in pool if e.source == "decompose"]
    assert len(added) == report.bootstrap_added > 0
    assert len({e.key for e in pool}) == len(pool)  # a seeded question is not added twice
    executable = len(load_split(train_dir).executable_examples())
    assert (
        report.valid + len(added) + report.bootstrap_fallbacks_skipped + (report.bootstrap_failed)
        == executable
    )
    assert all(len(e.rationale.steps) >= 1 for e in added)


def test_rerun_with_another_config_is_refused(train_dir: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run_seed(SeedConfig(data=train_dir), run)
    run_seed(SeedConfig(data=train_dir, workers=1), run)  # runtime-only field: a resumption
    with pytest.raises(RunConfigError, match="keep_unverified: False -> True"):
        run_seed(SeedConfig(data=train_dir, keep_unverified=True), run)
    run_seed(SeedConfig(data=train_dir, keep_unverified=True), run, force=True)
