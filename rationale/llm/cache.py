"""Content-addressed on-disk cache of LLM samples, shared by every backend.

One file per sample, named by the sha256 of a canonical JSON of (model, messages, sampling
parameters without `n`, sample index). Raising `n` later reuses the samples already drawn;
a crash or a re-run costs no tokens. Files are written to a temporary name and renamed
into place, so a killed process never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ValidationError

from bird.files import cache_root, write_bytes_atomic
from rationale.llm.types import ChatMessage, FinishReason, SamplingParams


def default_cache_dir() -> Path:
    """The project's cache root (`bird.files.cache_root`): models and responses live here."""
    return cache_root()


class CachedSample(BaseModel):
    """One stored sample; the key fields are kept too so an entry explains itself."""

    model: str
    sample_index: int
    text: str
    finish_reason: FinishReason
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def sample_key(
    model: str, messages: Sequence[ChatMessage], sampling: SamplingParams, sample_index: int
) -> str:
    """The sha256 hex digest that names a sample's cache entry."""
    identity = {
        "model": model,
        "messages": [message.model_dump(mode="json") for message in messages],
        "sampling": sampling.cache_identity(),
        "sample_index": sample_index,
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Samples stored under `root/<2 hex>/<64 hex>.json`; counts hits and misses."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    @classmethod
    def default(cls) -> ResponseCache:
        return cls(default_cache_dir() / "responses")

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedSample | None:
        try:
            raw = self._path(key).read_bytes()
            sample = CachedSample.model_validate_json(raw)
        except (FileNotFoundError, ValidationError, ValueError):
            # A missing or unreadable entry is a miss; the next put overwrites it.
            self.misses += 1
            return None
        self.hits += 1
        return sample

    def put(self, key: str, sample: CachedSample) -> None:
        write_bytes_atomic(self._path(key), sample.model_dump_json().encode("utf-8"))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.json")) if self.root.exists() else 0
