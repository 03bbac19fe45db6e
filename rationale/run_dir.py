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

import fcntl
import hashlib
import os
import platform
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError

from bird.files import write_text_atomic
from rationale.config import StageConfig

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
_VERSIONED_PACKAGES = ("sql-rationale", "sqlglot", "pydantic", "transformers", "torch", "vllm")

Record = TypeVar("Record", bound=BaseModel)


class RunConfigError(ValueError):
    """A run directory cannot be used as asked (config mismatch, missing earlier stage)."""


class InUseError(RuntimeError):
    """Another process holds the lock of a run directory or an output file."""


class RecordFileError(ValueError):
    """A JSONL record file holds a line that is not a record; the message names file and line."""


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


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`field: old -> new` for every top-level field whose value differs."""
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


# --- JSONL records -------------------------------------------------------------------------


def read_jsonl(
    path: Path,
    model: type[Record],
    *,
    key: Callable[[Record], Hashable] | None = None,
    repair: bool = True,
    what: str = "",
    advice: str = "the file is corrupt: delete the run directory's stage folder to start over",
    live: bool = False,
) -> list[Record]:
    """Records of `path` (none if it is absent), repaired from what a kill or a race leaves.

    A last line cut short by a kill is dropped and the file rewritten without it (unless
    `repair` is off: a user's input file is never rewritten). With
    `key`, a record whose key repeats an earlier one (two writers, or a crash between a write
    and its bookkeeping) is dropped and the file rewritten, the first kept. A bad line
    elsewhere is corruption: `RecordFileError` naming file and line, `what` a record should
    be, and `advice`. A `live` read (of a run another process may be writing) changes
    nothing: a last line still being written is left out, a repeated key skipped.
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
            if live and is_last and not raw.endswith(b"\n"):
                break  # being written now
            if repair and is_last and not raw.endswith(b"\n"):
                # the kill cut the last write short: cut it off, keeping the rest's bytes
                with path.open("r+b") as handle:
                    handle.truncate(raw.rfind(b"\n") + 1)
                break
            what = what or f"a valid {model.__name__} record"
            raise bad_line(path, number, what, error, advice) from None
    if key is not None:
        first: dict[Hashable, Record] = {}
        for record in records:
            first.setdefault(key(record), record)
        if len(first) != len(records):
            records = list(first.values())
            if not live:
                rewrite_jsonl(path, records)
    return records


def read_input_jsonl(
    path: Path, model: type[Record], *, what: str, advice: str, flag: str = "--input"
) -> list[tuple[int, Record]]:
    """(line number, record) of every non-blank line of a user's JSONL file, never rewritten.

    A missing file is a `RecordFileError` naming `flag` and `advice` (what a line holds); a
    line that is not JSON or not a `model` is one naming file and line, `what` a line
    should be, and `advice`.
    """
    if not path.is_file():
        raise RecordFileError(f"{path}: no such file; pass a JSONL file to {flag}: {advice}")
    records: list[tuple[int, Record]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append((number, model.model_validate_json(line)))
            except ValidationError as error:
                raise bad_line(path, number, what, error, advice) from None
    return records


def bad_line(path: Path, number: int, what: str, error: Exception, advice: str) -> RecordFileError:
    """The error for line `number` of a JSONL file: not `what` a line should be, and why."""
    problem: object = error
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "json_invalid":
            problem = f"not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
        else:
            problem = f"{where}: {first['msg']}" if where else first["msg"]
    return RecordFileError(f"{path}:{number}: not {what} ({problem}); {advice}")


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


# --- exclusive use --------------------------------------------------------------------------

_held: dict[Path, int] = {}  # lock file -> how many times this process holds it


@contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Exclusive use of `what` by this process while the block runs.

    Two processes appending to the same records would double them. The lock is an
    advisory `flock` on `lock_path`, released by the kernel when the holder dies (so a
    killed run never leaves a stale lock); the file holds the holder's pid for the error.
    Re-entrant within a process (a pipeline holds its run directory while its stages run).
    """
    lock_path = lock_path.resolve()
    if _held.get(lock_path):
        _held[lock_path] += 1
        try:
            yield
        finally:
            _held[lock_path] -= 1
        return
    created = [folder for folder in (lock_path.parent, *lock_path.parent.parents)
               if not folder.exists()]  # fmt: skip
    lock_existed = lock_path.exists()
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _locked_file(lock_path, what, lambda: _remove_if_unused(lock_path, lock_existed, created)):
        yield


def _remove_if_unused(lock_path: Path, lock_existed: bool, created: list[Path]) -> None:
    """After a refusal or a failure, take back what taking the lock created: the lock file,
    and the folders made for it when nothing else was written in them. A refused command
    leaves no empty run directory behind."""
    if not lock_existed:
        lock_path.unlink(missing_ok=True)
    for folder in created:  # deepest first; a folder holding anything stays
        try:
            folder.rmdir()
        except OSError:
            return


@contextmanager
def _locked_file(lock_path: Path, what: str, on_failure: Callable[[], None]) -> Iterator[None]:
    """The flock itself; `on_failure` runs while the lock is still held when the block (or
    taking the lock) fails."""
    with lock_path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            on_failure()
            raise InUseError(
                f"{what} is in use by {holder}: wait for it to finish or stop it; two "
                "processes writing the same records would double them"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} (since {now_iso()})\n")
        handle.flush()
        _held[lock_path] = 1
        try:
            yield
        except BaseException:
            on_failure()
            raise
        finally:
            del _held[lock_path]
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


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

    def locked(self) -> AbstractContextManager[None]:
        """Exclusive use of this run directory (see `exclusive`)."""
        return exclusive(self.root / ".lock", f"run directory {self.root}")

    def record_config(self, stage: str, config: StageConfig, *, force: bool = False) -> bool:
        """Store `config` under `stage` in config.yaml; True when this is a resumption.

        A stored config whose result-relevant fields differ is refused unless `force`
        (the caller then clears the stage's outputs). A stage that stopped before it wrote
        any result (a wrong model name, a server that never answered) blocks nothing: its
        config is simply replaced by the corrected one.
        """
        configs = self.read_configs()
        new = config.model_dump(mode="json")
        stored = configs.get(stage)
        resuming = isinstance(stored, dict) and self.has_results(stage)
        if resuming and not force:
            runtime = config.runtime_fields()
            old_identity = {k: v for k, v in stored.items() if k not in runtime}
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

    def has_results(self, stage: str) -> bool:
        """Whether `stage` wrote anything beyond its manifest (records, a report)."""
        folder = self.stage_dir(stage)
        return folder.is_dir() and any(
            path.is_file() and path.name != MANIFEST_FILE and path.stat().st_size > 0
            for path in folder.rglob("*")
        )

    def read_manifest(self, stage: str) -> StageManifest | None:
        path = self.manifest_path(stage)
        if not path.exists():
            return None
        return StageManifest.model_validate_json(path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: StageManifest) -> None:
        write_text_atomic(
            self.manifest_path(manifest.stage), manifest.model_dump_json(indent=2) + "\n"
        )

    def begin_stage(
        self,
        stage: str,
        config: StageConfig,
        inputs: Sequence[Path],
        *,
        force: bool = False,
        resumes: bool = False,
    ) -> StageManifest:
        """Record the stage's resolved config and start its manifest.

        A stage that `resumes` from its earlier records refuses to go on when an input file
        changed since those records were made (they would silently mix old and new data),
        unless `force`; the caller then clears the stage's outputs.
        """
        current = [input_file(path) for path in inputs]
        resuming = resumes and not force and self.has_results(stage)
        previous = self.read_manifest(stage) if resuming else None
        if previous is not None:
            recorded = {item.path: item.sha256 for item in previous.inputs}
            changed = [
                item.path for item in current if recorded.get(item.path, item.sha256) != item.sha256
            ]
            if changed:
                raise RunConfigError(
                    f"{', '.join(changed)} changed since the {stage!r} stage started in "
                    f"{self.root}, and its records were built on the old content. Use a new run "
                    f"directory, or --force to discard this stage's results and start it over."
                )
        self.record_config(stage, config, force=force)
        manifest = StageManifest(
            stage=stage,
            config_hash=config.config_hash(),
            inputs=current,
            versions=software_versions(),
            started=now_iso(),
        )
        self.write_manifest(manifest)
        return manifest

    def finish_stage(
        self, manifest: StageManifest, *, counts: dict[str, int], timings: dict[str, float]
    ) -> None:
        """Complete a manifest started by `begin_stage`: counts, timings, finish time."""
        manifest.counts = counts
        manifest.timings = timings
        manifest.finished = now_iso()
        self.write_manifest(manifest)
