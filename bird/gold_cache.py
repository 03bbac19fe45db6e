"""Cache of gold query results, so each gold query runs once however often it is compared.

Evaluating many prediction files (a model sweep), or validating many candidates against
one gold query, would otherwise re-execute the same gold SQL again and again, as the
official script does. A result is keyed by what determines it: the database's content
(sha256 of the file, not its path), the SQL text, and the executor's limits.

Two layers: memory (always) and, optionally, a directory the user names, by default
under the user's cache folder (never beside the data). Only successful results go to
disk, as JSON with an exact encoding of SQLite values (ints and floats keep their type
and every bit; bytes are base64), so a cached result compares exactly as a fresh one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from bird.executor import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    ExecutionPool,
    ExecutionRequest,
    ExecutionResult,
    TextDecoding,
    execute_many,
)
from bird.files import cache_root, write_text_atomic

CACHE_FORMAT_VERSION = 1
_HASH_CHUNK_BYTES = 1 << 20

# (resolved path, size, mtime_ns) -> sha256 hex: each database file is hashed once per
# process unless it changes on disk.
_digest_by_file_state: dict[tuple[str, int, int], str] = {}


def default_gold_cache_dir() -> Path:
    """`gold/` under the project's cache root (`bird.files.cache_root`)."""
    return cache_root() / "gold"


def database_digest(db_path: Path | str) -> str:
    """sha256 of a database file's bytes, computed once per file state per process."""
    resolved = Path(db_path).resolve()
    stat = resolved.stat()
    state = (str(resolved), stat.st_size, stat.st_mtime_ns)
    digest = _digest_by_file_state.get(state)
    if digest is None:
        hasher = hashlib.sha256()
        with resolved.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        _digest_by_file_state[state] = digest
    return digest


class ExecutionLimits(BaseModel):
    """The executor settings a result depends on (part of the cache key)."""

    model_config = ConfigDict(frozen=True)

    timeout: float = 30.0
    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_steps: int | None = None
    text: TextDecoding = "strict"

    def executor_options(self) -> dict[str, Any]:
        """These limits as keyword arguments of `execute_many` (the function or the pool's)."""
        return self.model_dump()

    def key_material(self) -> dict[str, Any]:
        """The fields as the cache key holds them: a field at its neutral value (no step
        limit, strict text) is left out, so keys written before it existed stay valid."""
        material = self.model_dump(mode="json")
        if self.max_steps is None:
            del material["max_steps"]
        if self.text == "strict":
            del material["text"]
        return material


class GoldCacheStats(BaseModel):
    """Counters: a hit is a request answered without executing; executions ran a query."""

    hits: int
    disk_hits: int
    misses: int
    executions: int


def encode_value(value: Any) -> Any:
    """A SQLite value as JSON: bytes become {"base64": ...}; the rest is JSON already."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return value


def encode_result(result: ExecutionResult) -> str:
    """ExecutionResult -> JSON text that `decode_result` turns back into an equal result.

    Python's JSON writes floats with repr (shortest round-trip form) and keeps ints and
    floats apart ("1" vs "1.0"), so only bytes need a tag.
    """
    fields = result.model_dump(mode="json", exclude={"rows"})
    rows = [[encode_value(value) for value in row] for row in result.rows]
    return json.dumps({"format": CACHE_FORMAT_VERSION, "result": fields, "rows": rows})


def decode_result(text: str) -> ExecutionResult:
    payload = json.loads(text)
    if payload.get("format") != CACHE_FORMAT_VERSION:
        raise ValueError(f"unknown gold cache format {payload.get('format')!r}")
    rows = [tuple(decode_value(value) for value in row) for row in payload["rows"]]
    return ExecutionResult.model_validate({**payload["result"], "rows": rows})


class GoldCache:
    """Gold results by (database content, SQL, limits), in memory and optionally on disk."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, ExecutionResult] = {}
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0
        self.executions = 0

    def stats(self) -> GoldCacheStats:
        return GoldCacheStats(
            hits=self.hits, disk_hits=self.disk_hits, misses=self.misses, executions=self.executions
        )

    @staticmethod
    def key(
        db_path: Path | str, sql: str, limits: ExecutionLimits, *, digest: str | None = None
    ) -> str:
        """Cache key; the database file must exist (its content is hashed) unless its
        `digest` is given."""
        material = json.dumps(
            [digest or database_digest(db_path), sql, limits.key_material()],
            sort_keys=True,
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def _disk_path(self, key: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / key[:2] / f"{key}.json"

    def _lookup(self, key: str) -> ExecutionResult | None:
        found = self._memory.get(key)
        if found is not None:
            return found
        path = self._disk_path(key)
        if path is None or not path.is_file():
            return None
        try:
            found = decode_result(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable or foreign entry: execute again and overwrite it
        self._memory[key] = found
        self.disk_hits += 1
        return found

    def _store(self, key: str, result: ExecutionResult) -> None:
        self._memory[key] = result
        path = self._disk_path(key)
        if path is None or not result.ok:
            return  # failures (timeouts above all) may not repeat: keep them out of disk
        write_text_atomic(path, encode_result(result))  # readers never see half a file

    def results(
        self,
        requests: Sequence[ExecutionRequest],
        *,
        limits: ExecutionLimits,
        workers: int = 1,
        on_result: Callable[[int, ExecutionResult], None] | None = None,
        pool: ExecutionPool | None = None,
    ) -> list[ExecutionResult]:
        """Gold results for `requests`, in order, executing only what no layer holds.

        Requests with the same key in one call run once, in `pool` when given (else in
        `workers` processes); gold SQL is trusted, so it also runs here while the pool's
        workers start. `on_result(index, result)` is called once per request, for
        cached ones straight away.
        """
        answers: list[ExecutionResult | None] = [None] * len(requests)
        digests = {path: database_digest(path) for path in {r.db_path for r in requests}}
        keys = [
            self.key(request.db_path, request.sql, limits, digest=digests[request.db_path])
            for request in requests
        ]
        to_run: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            if key in to_run:
                self.hits += 1
                to_run[key].append(index)
                continue
            found = self._lookup(key)
            if found is None:
                self.misses += 1
                to_run[key] = [index]
                continue
            self.hits += 1
            answers[index] = found
            if on_result is not None:
                on_result(index, found)

        pending = list(to_run.items())

        def deliver(position: int, result: ExecutionResult) -> None:
            key, indices = pending[position]
            self._store(key, result)
            for index in indices:
                answers[index] = result
                if on_result is not None:
                    on_result(index, result)

        if pending:
            first_request = [requests[indices[0]] for _, indices in pending]
            self.executions += len(first_request)
            settings = {**limits.executor_options(), "on_result": deliver}
            executed = (
                pool.execute_many(first_request, trusted=True, **settings)
                if pool is not None
                else execute_many(first_request, workers=workers, **settings)
            )
            for position, result in enumerate(executed):
                key, indices = pending[position]
                if answers[indices[0]] is None:  # executor did not call back for it
                    deliver(position, result)
        complete = [answer for answer in answers if answer is not None]
        if len(complete) != len(requests):
            raise RuntimeError("gold cache: the executor returned fewer results than requests")
        return complete
