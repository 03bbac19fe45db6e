"""A run directory: the resolved config of every stage, manifests and resumable JSONL records.

    runs/<name>/config.yaml           one key per stage, each the stage's resolved config
    runs/<name>/<stage>/manifest.json  inputs (paths + sha256), config hash, counts, timings,
                                       versions
    runs/<name>/<stage>/*.jsonl        records appended as they are produced

Re-running a stage with a different config in the same directory would silently mix
results, so `record_config` refuses and names the fields that differ; fields that only
change how fast or where a stage runs (workers, URLs) are left out of the comparison.
JSONL files survive a kill: a truncated last line is dropped and the file rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
_VERSIONED_PACKAGES = ("sql-rationale", "sqlglot", "pydantic", "transformers", "torch", "vllm")

Record = TypeVar("Record", bound=BaseModel)


class RunConfigError(ValueError):
    """A run directory cannot be used as asked (config mismatch, missing earlier stage)."""


class StageConfig(BaseModel):
    """Base of every stage config. `RUNTIME_FIELDS` change speed or placement, not results,
    so they may differ between a run and its resumption."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def identity(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(self.RUNTIME_FIELDS))

    def config_hash(self) -> str:
        return sha256_json(self.identity())


class InputFile(BaseModel):
    path: str
    sha256: str


class StageManifest(BaseModel):
    """What a stage read, how it was configured, what it produced, and with which software."""

    stage: str
    config_hash: str
    inputs: list[InputFile] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    started: str = ""
    finished: str = ""


def sha256_json(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_file(path: Path) -> InputFile:
    return InputFile(path=str(path.resolve()), sha256=file_sha256(path))


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file and rename it into place: a kill leaves old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`field: old -> new` for every top-level field whose value differs."""
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


# --- JSONL records -------------------------------------------------------------------------


def read_jsonl(path: Path, model: type[Record]) -> list[Record]:
    """Records of `path` (none if it is absent). A last line cut short by a kill is dropped and
    the file rewritten without it; a bad line elsewhere is corruption and raises with file:line.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[Record] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
        try:
            records.append(model.model_validate_json(line))
        except (ValidationError, ValueError) as error:
            if is_last and not raw.endswith(b"\n"):
                rewrite_jsonl(path, records)  # the kill cut the last write short
                return records
            raise RunConfigError(
                f"{path}:{number}: not a valid {model.__name__} record ({error}); "
                "the file is corrupt: delete the run directory's stage folder to start over"
            ) from error
    return records


def rewrite_jsonl(path: Path, records: Iterable[BaseModel]) -> None:
    write_text_atomic(path, "".join(record.model_dump_json() + "\n" for record in records))


class JsonlAppender:
    """Appends records, one flushed write per call, so a kill loses at most the last write."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = path.open("a", encoding="utf-8")

    def append(self, records: Sequence[BaseModel]) -> None:
        if not records:
            return
        self._handle.write("".join(record.model_dump_json() + "\n" for record in records))
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


# --- the run directory ---------------------------------------------------------------------


class RunDir:
    """One run's folder; see the module docstring for its layout."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def pool_dir(self) -> Path:
        return self.root / "pool"

    def pool_path(self, iteration: int) -> Path:
        return self.pool_dir / f"iteration_{iteration}.jsonl"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def manifest_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / MANIFEST_FILE

    def read_configs(self) -> dict[str, Any]:
        if not self.config_path.exists():
            return {}
        try:
            loaded = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise RunConfigError(f"{self.config_path}: not valid YAML ({error})") from error
        return loaded if isinstance(loaded, dict) else {}

    def stored_config(self, stage: str) -> dict[str, Any] | None:
        stored = self.read_configs().get(stage)
        return stored if isinstance(stored, dict) else None

    def record_config(self, stage: str, config: StageConfig, *, force: bool = False) -> bool:
        """Store `config` under `stage` in config.yaml; True when this is a resumption.

        A stored config whose result-relevant fields differ is refused unless `force`
        (the caller then clears the stage's outputs).
        """
        configs = self.read_configs()
        new = config.model_dump(mode="json")
        stored = configs.get(stage)
        resuming = isinstance(stored, dict)
        if resuming and not force:
            old_identity = {k: v for k, v in stored.items() if k not in config.RUNTIME_FIELDS}
            differences = config_differences(old_identity, config.identity())
            if differences:
                raise RunConfigError(
                    f"{self.config_path}: the {stage!r} stage already ran here with another "
                    f"config, and mixing results would be silent. Differences: "
                    + "; ".join(differences)
                    + ". Use a new run directory, or --force to discard this stage's results."
                )
        configs[stage] = new
        write_text_atomic(self.config_path, yaml.safe_dump(configs, sort_keys=False))
        return resuming and not force

    def read_manifest(self, stage: str) -> StageManifest | None:
        path = self.manifest_path(stage)
        if not path.exists():
            return None
        return StageManifest.model_validate_json(path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: StageManifest) -> None:
        write_text_atomic(
            self.manifest_path(manifest.stage), manifest.model_dump_json(indent=2) + "\n"
        )
