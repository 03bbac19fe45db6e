"""Training datasets: what `rationale export` writes, or any file of the same records.

Accepted forms of `--dataset PATH`, tried in this order:

1. an exported dataset folder: `PATH/export.json` names the kind (rationalizer, student-cot,
   student-nocot) and `PATH/hf/` is a `DatasetDict.save_to_disk` folder with a `train` split
   and, optionally, a `validation` split of held-out questions;
2. any `save_to_disk` folder (a DatasetDict with `train`, or a single Dataset);
3. a `.jsonl` / `.json` or `.parquet` file: the training split alone.

Only forms 1 knows its kind; for the others the recipe's `dataset_kind` cannot be checked.
Records are in TRL's conversational prompt/completion form: `prompt` a list of
`{"role", "content"}` messages, `completion` a list with one assistant message. GRPO data
(`trainer: grpo`) holds prompts only, with every other column kept: TRL hands them to the
reward functions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.errors import TrainingInputError
from training.recipe import DATASET_KINDS

if TYPE_CHECKING:
    from datasets import Dataset

TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"
EXPORT_INFO = "export.json"
EXPORT_HF_DIR = "hf"
# Splits of a benchmark whose questions must never be trained on (leakage guard).
HELD_OUT_SPLITS = frozenset({"dev", "test"})
_FILE_LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_CACHE_PREFIXES = ("cache-", "tmp")


@dataclass(frozen=True)
class TrainingData:
    """The splits a run trains and evaluates on, and where they came from."""

    path: Path
    kind: str | None  # None: not an exported folder, so the kind is unknown
    fingerprint: str  # sha256 over the data files: the same data gives the same value
    train: Dataset
    validation: Dataset | None


def fingerprint_files(paths: list[Path], root: Path) -> str:
    """A content hash of data files (names relative to `root` included), independent of
    mtimes and of the cache files `datasets` may write beside them."""
    digest = hashlib.sha256()
    for path in sorted(p for p in paths if not p.name.startswith(_CACHE_PREFIXES)):
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def read_export_kind(folder: Path) -> str:
    """The kind an exported dataset declares in its export.json."""
    info_path = folder / EXPORT_INFO
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise TrainingInputError(f"cannot read {info_path}: {error}") from error
    kind = info.get("kind") if isinstance(info, dict) else None
    if kind not in DATASET_KINDS:
        raise TrainingInputError(
            f"{info_path} declares kind {kind!r}; expected one of {', '.join(DATASET_KINDS)}"
        )
    return kind


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _load_saved(folder: Path) -> dict[str, Dataset]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        # In memory: tokenizing then writes no cache files into the exported folder.
        loaded = load_from_disk(str(folder), keep_in_memory=True)
    except (OSError, ValueError) as error:
        raise TrainingInputError(f"cannot load the saved dataset {folder}: {error}") from error
    if isinstance(loaded, Dataset):
        return {TRAIN_SPLIT: loaded}
    assert isinstance(loaded, DatasetDict)
    return dict(loaded)


def _load_file(path: Path) -> dict[str, Dataset]:
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # a file of a few MB: its "Generating train split" bar is noise
    loader = _FILE_LOADERS[path.suffix.lower()]
    try:
        if loader == "json":
            dataset = Dataset.from_json(str(path), keep_in_memory=True)
        else:
            dataset = Dataset.from_parquet(str(path), keep_in_memory=True)
    except Exception as error:  # datasets raises several types for unreadable files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingInputError(f"cannot read dataset file {path}: {message}") from error
    assert isinstance(dataset, Dataset)
    return {TRAIN_SPLIT: dataset}


def _check_messages(value: Any, column: str, roles: set[str]) -> str | None:
    """Why `value` is not a list of {"role", "content"} messages with allowed roles, or None."""
    if not isinstance(value, list) or not value:
        return f"{column} must be a non-empty list of messages"
    for message in value:
        if not isinstance(message, dict) or not {"role", "content"} <= message.keys():
            return f"{column} messages need 'role' and 'content'"
        if message["role"] not in roles:
            return f"{column} has a {message['role']!r} message"
    return None


def check_records(dataset: Dataset, split: str, path: Path, trainer: str = "sft") -> None:
    """Refuse data TRL would misread (not prompt/completion chats) or must not train on."""
    needed = ("prompt",) if trainer == "grpo" else ("prompt", "completion")
    missing = [column for column in needed if column not in dataset.column_names]
    if missing:
        raise TrainingInputError(
            f"dataset {path} split {split!r} lacks column(s) {', '.join(missing)}: records need "
            + (
                "a 'prompt' (system and user messages) and the columns the rewards read "
                "(rationale export --kind grpo writes them)"
                if trainer == "grpo"
                else "a 'prompt' (system and user messages) and a 'completion' (one "
                "assistant message)"
            )
        )
    if len(dataset) == 0:
        raise TrainingInputError(f"dataset {path} split {split!r} is empty")
    first = dataset[0]
    problem = _check_messages(first["prompt"], "prompt", {"system", "user", "assistant"})
    if trainer != "grpo":
        problem = problem or _check_messages(first["completion"], "completion", {"assistant"})
    if problem:
        raise TrainingInputError(f"dataset {path} split {split!r}: {problem} (first record)")
    if "split" in dataset.column_names:
        leaked = sorted(set(dataset["split"]) & HELD_OUT_SPLITS)
        if leaked:
            count = sum(1 for value in dataset["split"] if value in HELD_OUT_SPLITS)
            raise TrainingInputError(
                f"dataset {path} split {split!r} holds {count} record(s) from the "
                f"{'/'.join(leaked)} split: evaluation questions never enter training"
            )


def load_training_data(path: str | Path, trainer: str = "sft") -> TrainingData:
    """Load a dataset in any accepted form (see the module docstring) for `trainer`."""
    root = Path(path).expanduser()
    if not root.exists():
        raise TrainingInputError(f"dataset {root} does not exist")
    kind: str | None = None
    if root.is_dir() and (root / EXPORT_INFO).is_file():
        kind = read_export_kind(root)
        data_dir = root / EXPORT_HF_DIR
        if not _is_saved_dataset(data_dir):
            raise TrainingInputError(
                f"exported dataset {root} has no {EXPORT_HF_DIR}/ folder saved by datasets"
            )
        splits = _load_saved(data_dir)
        files = [file for file in data_dir.rglob("*") if file.is_file()]
        fingerprint = fingerprint_files(files, data_dir)
    elif root.is_dir() and _is_saved_dataset(root):
        splits = _load_saved(root)
        fingerprint = fingerprint_files([f for f in root.rglob("*") if f.is_file()], root)
    elif root.is_file() and root.suffix.lower() in _FILE_LOADERS:
        splits = _load_file(root)
        fingerprint = fingerprint_files([root], root.parent)
    else:
        raise TrainingInputError(
            f"cannot read dataset {root}: expected an exported dataset folder (export.json and "
            "hf/), a datasets save_to_disk folder, or a .jsonl / .parquet file"
        )
    if TRAIN_SPLIT not in splits:
        raise TrainingInputError(
            f"dataset {root} has no {TRAIN_SPLIT!r} split (it has: {', '.join(sorted(splits))})"
        )
    for split, dataset in splits.items():
        check_records(dataset, split, root, trainer)
    train = splits[TRAIN_SPLIT]
    validation = splits.get(VALIDATION_SPLIT)
    if trainer != "grpo":  # SFT reads these two; GRPO's rewards read the rest
        keep = ["prompt", "completion"]
        train = train.select_columns(keep)
        validation = validation.select_columns(keep) if validation is not None else None
    return TrainingData(
        path=root, kind=kind, fingerprint=fingerprint, train=train, validation=validation
    )


def check_kind(expected: str | None, data: TrainingData) -> None:
    """A recipe for one kind must not train on another kind's data (e.g. a no-CoT student
    recipe on rationalizer data would teach the wrong task without any visible error)."""
    if expected is None or data.kind is None or expected == data.kind:
        return
    raise TrainingInputError(
        f"the recipe trains a {expected} model but dataset {data.path} is a {data.kind} "
        f"dataset (export.json): pick the {data.kind} recipe or the {expected} dataset"
    )
