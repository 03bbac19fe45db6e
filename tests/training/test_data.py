"""Dataset loading: exported folders, plain files and save_to_disk folders of real records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from datasets import Dataset, load_from_disk

from bird.data import load_split
from rationale.prompting.task import completion_text, dataset_prompt_settings, load_tokenizer
from rationale.prompting.templates import sql_block
from rationale.records.rationales import PoolEntry
from rationale.run_dir import RunDir, read_jsonl
from training.data import check_kind, load_training_data
from training.errors import TrainingInputError


def test_an_exported_folder_gives_its_kind_and_both_splits(
    rationalizer_export: Path, training_run: Path
) -> None:
    data = load_training_data(rationalizer_export)
    info = json.loads((rationalizer_export / "export.json").read_text())
    assert data.kind == "rationalizer" == info["kind"]
    assert len(data.train) == info["counts"]["train"]
    assert len(data.validation) == info["counts"]["validation"] > 0
    assert data.train.column_names == ["prompt", "completion"]
    # The first record is what the run's pool and the export's recorded prompt settings
    # give for its question: the prompt annotation would ask, the pooled rationale.
    row = load_from_disk(str(rationalizer_export / "hf" / "train"))[0]
    record = data.train[0]
    assert record == {"prompt": row["prompt"], "completion": row["completion"]}
    run = RunDir(training_run)
    (entry,) = [
        e for e in read_jsonl(run.pool_path(0), PoolEntry) if e.question_id == row["question_id"]
    ]
    split = load_split(Path(run.stored_config("seed")["data"]))
    settings = dataset_prompt_settings(rationalizer_export, "rationalizer")
    assert settings is not None and settings.tokenizer is not None
    prompter = settings.prompter(split, load_tokenizer(settings.tokenizer))
    prompt, fits = prompter.fitted(split.example(entry.question_id))
    assert fits and record["prompt"] == [message.model_dump() for message in prompt.messages]
    assert [m["role"] for m in record["prompt"]] == ["system", "user"]
    assert sql_block(entry.gold_sql) in record["prompt"][1]["content"]  # the gold SQL is shown
    assert record["completion"] == [
        {
            "role": "assistant",
            "content": completion_text("rationalizer", entry.gold_sql, entry.rationale),
        }
    ]
    assert record["completion"][0]["content"].startswith("### Step 1")


@pytest.mark.parametrize("name", ["train.jsonl", "train.parquet"])
def test_plain_files_train_without_a_kind(rationalizer_export: Path, name: str) -> None:
    data = load_training_data(rationalizer_export / name)
    exported = load_training_data(rationalizer_export)
    assert data.kind is None and data.validation is None
    assert data.train["completion"] == exported.train["completion"]


def test_a_save_to_disk_folder_is_read_without_a_kind(rationalizer_export: Path) -> None:
    data = load_training_data(rationalizer_export / "hf")
    assert data.kind is None and data.validation is not None
    single = load_training_data(rationalizer_export / "hf" / "train")  # a bare Dataset
    assert len(single.train) == len(data.train) and single.validation is None


def test_fingerprint_follows_content_not_location(
    rationalizer_export: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(rationalizer_export, copy)
    original = load_training_data(rationalizer_export).fingerprint
    assert load_training_data(copy).fingerprint == original
    edited = load_from_disk(str(rationalizer_export / "hf"))
    edited["train"] = edited["train"].select(range(10))
    shutil.rmtree(copy / "hf")
    edited.save_to_disk(str(copy / "hf"))
    assert load_training_data(copy).fingerprint != original


def test_dev_questions_never_enter_training(rationalizer_export: Path, tmp_path: Path) -> None:
    rows = load_from_disk(str(rationalizer_export / "hf" / "train")).to_list()
    rows[3]["split"] = "dev"
    path = tmp_path / "leaky.jsonl"
    Dataset.from_list(rows).to_json(str(path), lines=True)
    with pytest.raises(TrainingInputError, match=r"1 record.*dev split"):
        load_training_data(path)


def test_records_must_be_prompt_completion_chats(tmp_path: Path) -> None:
    path = tmp_path / "text.jsonl"
    path.write_text(json.dumps({"text": "SELECT 1"}) + "\n")
    with pytest.raises(TrainingInputError, match=r"lacks column.*prompt, completion"):
        load_training_data(path)
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    with pytest.raises(TrainingInputError, match="prompt must be a non-empty list of messages"):
        load_training_data(path)


def test_missing_and_unreadable_datasets(tmp_path: Path) -> None:
    with pytest.raises(TrainingInputError, match="does not exist"):
        load_training_data(tmp_path / "absent")
    (tmp_path / "folder").mkdir()
    with pytest.raises(TrainingInputError, match="expected an exported dataset folder"):
        load_training_data(tmp_path / "folder")
    (tmp_path / "folder" / "export.json").write_text('{"kind": "student-cot"}')
    with pytest.raises(TrainingInputError, match="has no hf/ folder"):
        load_training_data(tmp_path / "folder")
    (tmp_path / "folder" / "export.json").write_text('{"kind": "teacher"}')
    with pytest.raises(TrainingInputError, match="declares kind 'teacher'"):
        load_training_data(tmp_path / "folder")


def test_kind_check(rationalizer_export: Path) -> None:
    data = load_training_data(rationalizer_export)
    check_kind("rationalizer", data)
    check_kind(None, data)
    with pytest.raises(TrainingInputError, match=r"trains a student-nocot model.*rationalizer"):
        check_kind("student-nocot", data)
    check_kind("student-nocot", load_training_data(rationalizer_export / "train.jsonl"))
