"""`rationale export`: training datasets from a real run on BIRD train (beer_factory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rationale.chain.format import parse_rationale
from rationale.llm.models import TINY_MODEL_NAME, prepare_model
from rationale.prompting.task import task_prompt
from rationale.records.leakage import DatasetLeakageError
from rationale.records.rationales import PoolEntry
from rationale.run_dir import RunConfigError, RunDir, read_jsonl, rewrite_jsonl
from rationale.stages.export import ExportConfig
from rationale.stages.export import run as export
from rationale.stages.seed import SeedConfig
from rationale.stages.seed import run as seed

BUDGET = 700  # tokens: below beer_factory's full schema, so some prompts are cut


@pytest.fixture(scope="module")
def seeded_run(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """Seeds plus the decomposer's validated chains: ~100 pool entries, no LLM needed."""
    run = RunDir(tmp_path_factory.mktemp("export") / "run")
    seed(SeedConfig(data=train_dir, bootstrap="decompose", workers=1), run)
    return run


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(prepare_model(TINY_MODEL_NAME))


def _rows(folder: Path, split: str) -> list[dict]:
    path = folder / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _tokens(tokenizer, prompt: list[dict]) -> int:
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_rationalizer_dataset_holds_the_pool_as_trained_prompts(
    seeded_run: RunDir, tmp_path: Path, tokenizer
) -> None:
    out = tmp_path / "rationalizer"
    report = export(
        ExportConfig(
            tokenizer="smollm2-135m", kind="rationalizer", out=out, max_prompt_tokens=BUDGET
        ),
        seeded_run,
    )
    pool = {e.question_id: e for e in read_jsonl(seeded_run.pool_path(0), PoolEntry)}
    rows = _rows(out, "train") + _rows(out, "validation")
    assert len(rows) == len(pool) == report.counts["train"] + report.counts["validation"]
    assert report.counts["validation"] > 0 and report.counts["train"] > report.counts["validation"]
    assert {r["question_id"] for r in _rows(out, "train")}.isdisjoint(
        r["question_id"] for r in _rows(out, "validation")
    )
    for row in rows:
        entry = pool[row["question_id"]]
        system, user = row["prompt"]
        assert (system["role"], user["role"]) == ("system", "user")
        # stripped: some BIRD questions end in whitespace or a newline, the prompt does not
        assert entry.gold_sql.strip() in user["content"]
        assert entry.question.strip() in user["content"]
        [answer] = row["completion"]
        assert answer["role"] == "assistant"
        assert parse_rationale(answer["content"]) == entry.rationale  # the exact rationale
        assert _tokens(tokenizer, row["prompt"]) <= BUDGET
        assert row["source"] == entry.source and json.loads(row["provenance"])["source"]
    # exactly the prompts that would exceed the budget were cut
    uncut = export(
        ExportConfig(
            tokenizer="smollm2-135m",
            kind="rationalizer",
            out=tmp_path / "full",
            max_prompt_tokens=None,
        ),
        seeded_run,
    )
    full_rows = _rows(tmp_path / "full", "train") + _rows(tmp_path / "full", "validation")
    over = sum(_tokens(tokenizer, row["prompt"]) > BUDGET for row in full_rows)
    assert uncut.prompts_cut == 0 and report.prompts_cut == over > 0
    assert report.by_source == {
        "seed": sum(e.source == "seed" for e in pool.values()),
        "decompose": sum(e.source == "decompose" for e in pool.values()),
    }
    # the other formats hold the same rows
    from datasets import load_from_disk

    saved = load_from_disk(str(out / "hf"))
    assert [dict(r) for r in saved["train"]] == _rows(out, "train")
    import pyarrow.parquet as pq

    assert pq.read_table(out / "train.parquet").num_rows == report.counts["train"]
    # the card's metadata says what is in the folder
    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["license"] == "cc-by-sa-4.0"  # BIRD's: the questions and SQL are BIRD's
    assert metadata["sql_rationale"]["source"]["kind"] == "bird"
    assert "BIRD (train split" in card and "sql-rationale demo" not in card
    assert "smollm2-135m" in card  # the model whose tokenizer budgeted the prompts
    assert metadata["sql_rationale"]["counts"]["train"] == report.counts["train"]
    assert metadata["sql_rationale"]["prompts_cut"] == report.prompts_cut
    assert metadata["sql_rationale"]["template_hash"] == report.template_hash
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["kind"] == "rationalizer" and manifest["max_prompt_tokens"] == BUDGET


def test_student_datasets_hold_the_same_questions(seeded_run: RunDir, tmp_path: Path) -> None:
    cot = export(
        ExportConfig(tokenizer="smollm2-135m", kind="student-cot", out=tmp_path / "cot"), seeded_run
    )
    nocot = export(
        ExportConfig(tokenizer="smollm2-135m", kind="student-nocot", out=tmp_path / "nocot"),
        seeded_run,
    )
    assert cot.counts == nocot.counts
    cot_rows = {r["question_id"]: r for r in _rows(tmp_path / "cot", "train")}
    nocot_rows = {r["question_id"]: r for r in _rows(tmp_path / "nocot", "train")}
    assert set(cot_rows) == set(nocot_rows)
    pool = {e.question_id: e for e in read_jsonl(seeded_run.pool_path(0), PoolEntry)}
    for question_id, row in nocot_rows.items():
        gold = pool[question_id].gold_sql.strip()
        assert gold not in row["prompt"][1]["content"]  # a student never sees the answer
        assert row["completion"][0]["content"] == f"```sql\n{gold}\n```"
        cot_answer = parse_rationale(cot_rows[question_id]["completion"][0]["content"])
        assert cot_answer == pool[question_id].rationale


def test_a_prompt_that_only_one_student_format_fits_is_left_out_of_both(tmp_path: Path) -> None:
    """A tight budget: some CoT prompt (its system prompt is the longer) cannot fit while
    the no-CoT prompt of the same question does; both datasets still hold the same ones."""
    run = RunDir(tmp_path / "run")
    seed(SeedConfig(data="demo:train", seeds="demo:seeds", bootstrap="decompose"), run)
    tight = {"tokenizer": "smollm2-135m", "max_prompt_tokens": 320, "schema_style": "compact"}
    reports = {
        kind: export(ExportConfig(kind=kind, out=tmp_path / kind, **tight), run)
        for kind in ("student-cot", "student-nocot")
    }
    over = "left out: prompt over max_prompt_tokens even with the shortest schema"
    assert reports["student-cot"].counts.get(over, 0) > reports["student-nocot"].counts.get(over, 0)

    def kept(kind: str) -> set[int]:
        parts = [
            part for part in ("train", "validation") if (tmp_path / kind / f"{part}.jsonl").exists()
        ]
        return {row["question_id"] for part in parts for row in _rows(tmp_path / kind, part)}

    assert kept("student-cot") == kept("student-nocot")
    assert sum(reports["student-cot"].counts.values()) == sum(
        reports["student-nocot"].counts.values()
    )


def test_re_export_is_deterministic_and_replaces_the_folder(
    seeded_run: RunDir, tmp_path: Path
) -> None:
    out = tmp_path / "nocot"
    config = ExportConfig(tokenizer="smollm2-135m", kind="student-nocot", out=out)
    export(config, seeded_run)
    first = (out / "train.jsonl").read_bytes()
    (out / "stale.txt").write_text("left from an older export")
    export(config, seeded_run)
    assert (out / "train.jsonl").read_bytes() == first
    assert not (out / "stale.txt").exists()
    assert not list(tmp_path.glob(".nocot-*"))  # no staging folder left behind


def test_dev_questions_and_databases_are_refused(
    seeded_run: RunDir, train_dir: Path, dev_dir: Path, tmp_path: Path
) -> None:
    run = RunDir(tmp_path / "run")
    run.pool_dir.mkdir(parents=True)
    pool = read_jsonl(seeded_run.pool_path(0), PoolEntry)
    config = ExportConfig(
        tokenizer="smollm2-135m", kind="rationalizer", data=train_dir, out=tmp_path / "out"
    )
    rewrite_jsonl(run.pool_path(0), [*pool, pool[0].model_copy(update={"split": "dev"})])
    with pytest.raises(DatasetLeakageError, match=r"dev:\d+ \(beer_factory\)"):
        export(config, run)
    leaked = pool[0].model_copy(update={"db_id": "superhero", "question_id": 10**6})
    rewrite_jsonl(run.pool_path(0), [*pool, leaked])
    with pytest.raises(DatasetLeakageError, match="superhero"):
        export(config, run)
    # a held-out split folder the user names adds its databases to the refused ones
    rewrite_jsonl(run.pool_path(0), pool)
    with pytest.raises(DatasetLeakageError, match="beer_factory"):
        export(config.model_copy(update={"heldout": [train_dir]}), run)
    assert not (tmp_path / "out").exists()


def test_a_changed_split_is_refused(seeded_run: RunDir, train_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "train"
    copy.mkdir()
    (copy / "train_databases").symlink_to(train_dir / "train_databases")
    questions = json.loads((train_dir / "train.json").read_text())
    first = read_jsonl(seeded_run.pool_path(0), PoolEntry)[0]
    for question in questions:
        if question["question_id"] == first.question_id:
            question["SQL"] = "SELECT 1"
    (copy / "train.json").write_text(json.dumps(questions))
    with pytest.raises(RunConfigError, match="gold SQL"):
        export(
            ExportConfig(
                tokenizer="smollm2-135m", kind="rationalizer", data=copy, out=tmp_path / "o"
            ),
            seeded_run,
        )


def test_a_prompt_over_the_budget_even_with_the_shortest_schema_is_left_out_and_counted(
    seeded_run: RunDir, train_dir: Path, tmp_path: Path, tokenizer
) -> None:
    from bird.data import load_split
    from rationale.prompting.task import _MIN_SCHEMA_CHARS, TaskPrompter

    split = load_split(train_dir)
    pool = read_jsonl(seeded_run.pool_path(0), PoolEntry)
    shortest = TaskPrompter("rationalizer", split, tokenizer=tokenizer)
    sizes = {
        entry.question_id: shortest.tokens(
            task_prompt(
                "rationalizer",
                split.example(entry.question_id),
                shortest.schema_text(entry.db_id, _MIN_SCHEMA_CHARS),
            )
        )
        for entry in pool
    }
    budget = sorted(sizes.values())[len(sizes) // 2]  # half the questions cannot fit
    report = export(
        ExportConfig(
            tokenizer="smollm2-135m",
            kind="rationalizer",
            out=tmp_path / "o",
            max_prompt_tokens=budget,
        ),
        seeded_run,
    )
    too_long = {question for question, size in sizes.items() if size > budget}
    assert 0 < len(too_long) < len(pool)
    assert report.counts[
        "left out: prompt over max_prompt_tokens even with the shortest schema"
    ] == (len(too_long))
    rows = _rows(tmp_path / "o", "train") + _rows(tmp_path / "o", "validation")
    assert {row["question_id"] for row in rows} == set(sizes) - too_long
    assert all(_tokens(tokenizer, row["prompt"]) <= budget for row in rows)


def test_a_nocot_dataset_of_all_questions_adds_every_uncovered_one_with_its_gold_sql(
    seeded_run: RunDir, tmp_path: Path, train_dir: Path
) -> None:
    from bird.data import load_split

    covered = export(
        ExportConfig(
            tokenizer="smollm2-135m",
            kind="student-nocot",
            out=tmp_path / "covered",
            max_prompt_tokens=None,
        ),
        seeded_run,
    )
    everything = export(
        ExportConfig(
            kind="student-nocot", out=tmp_path / "all", max_prompt_tokens=None, questions="all"
        ),
        seeded_run,
    )
    split = load_split(train_dir)
    executable = {e.question_id for e in split.executable_examples()}
    rows = _rows(tmp_path / "all", "train") + _rows(tmp_path / "all", "validation")
    assert {row["question_id"] for row in rows} == executable  # nothing quarantined: no audit
    gold = [row for row in rows if row["source"] == "gold"]
    pool = {e.question_id for e in read_jsonl(seeded_run.pool_path(0), PoolEntry)}
    assert {row["question_id"] for row in gold} == executable - pool
    for row in gold[:5]:  # the completion is the question's own gold SQL
        sql = split.example(row["question_id"]).sql.strip()
        assert row["completion"][0]["content"] == f"```sql\n{sql}\n```"
    assert everything.by_source["gold"] == len(gold)
    assert sum(covered.by_source.values()) == len(pool & executable)
    with pytest.raises(ValueError, match="questions: all is for kinds student-nocot and grpo"):
        ExportConfig(tokenizer="smollm2-135m", kind="student-cot", questions="all")


def test_the_prompt_budget_is_counted_with_the_trained_models_tokenizer(tmp_path: Path) -> None:
    """No silent default: the tokenizer is given, or read from the recipe that will train
    on the dataset, or (with a prompt budget) the export is refused; a pipeline fills in
    each dataset's own recipe or model."""
    from rationale.pipeline.steps import build_steps, load_pipeline
    from training.recipe import find_recipe, read_recipe_file

    with pytest.raises(ValueError, match=r"give --tokenizer MODEL .* or --recipe RECIPE"):
        ExportConfig(kind="student-cot")
    assert ExportConfig(kind="student-cot", max_prompt_tokens=None).tokenizer is None
    for recipe in ("student-cot-tiny", "student-cot-qwen2.5-coder-1.5b"):
        model = read_recipe_file(find_recipe(recipe))["model_name_or_path"]
        assert ExportConfig(kind="student-cot", recipe=recipe).tokenizer == model
    assert (
        ExportConfig(kind="student-cot", recipe="student-cot-tiny", tokenizer="x").tokenizer == "x"
    )

    qwen_small = "train_students.student-nocot.model_name_or_path=Qwen/Qwen2.5-Coder-0.5B-Instruct"
    pipeline = load_pipeline("bird-full", ["train=demo:train", "dev=demo:dev", qwen_small])
    steps = {step.name: step.config for step in build_steps(pipeline, RunDir(tmp_path / "r"))}
    for name in ("rationalizer", "student-cot"):
        recipe = steps[f"train-{name}"].recipe
        model = read_recipe_file(find_recipe(recipe))["model_name_or_path"]
        assert steps[f"export-{name}"].tokenizer == model
    assert steps["export-student-nocot"].tokenizer == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
