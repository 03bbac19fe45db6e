"""The response cache: what its keys depend on, atomic entries, unreadable entries."""

from __future__ import annotations

from pathlib import Path

from rationale.llm.cache import CachedSample, ResponseCache, default_cache_dir, sample_key
from rationale.llm.types import ChatMessage, SamplingParams, truncate_at_stop

MESSAGES = (ChatMessage(role="user", content="How many heroes are there?"),)


def test_key_ignores_n_but_not_other_parameters() -> None:
    base = SamplingParams(temperature=0.7, max_tokens=64, seed=3)
    key = sample_key("m", MESSAGES, base, 0)
    assert sample_key("m", MESSAGES, base.model_copy(update={"n": 5}), 0) == key
    different = [
        sample_key("other-model", MESSAGES, base, 0),
        sample_key("m", (ChatMessage(role="user", content="How many?"),), base, 0),
        sample_key("m", MESSAGES, base.model_copy(update={"temperature": 0.8}), 0),
        sample_key("m", MESSAGES, base.model_copy(update={"seed": 4}), 0),
        sample_key("m", MESSAGES, base.model_copy(update={"stop": ("\n",)}), 0),
        sample_key("m", MESSAGES, base, 1),
    ]
    assert key not in different
    assert len(set(different)) == len(different)


def test_put_then_get_round_trips_and_counts(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = sample_key("m", MESSAGES, SamplingParams(), 0)
    assert cache.get(key) is None
    sample = CachedSample(
        model="m",
        sample_index=0,
        text="SELECT 1",
        finish_reason="stop",
        prompt_tokens=9,
        completion_tokens=4,
    )
    cache.put(key, sample)
    assert cache.get(key) == sample
    assert (cache.hits, cache.misses) == (1, 1)
    assert len(cache) == 1
    # No temporary files are left beside the entry.
    assert [p.name for p in (tmp_path / key[:2]).iterdir()] == [f"{key}.json"]


def test_unreadable_entry_is_a_miss_and_is_overwritten(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = sample_key("m", MESSAGES, SamplingParams(), 0)
    path = tmp_path / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"model": "m", "sample_in')  # what a torn write would look like
    assert cache.get(key) is None
    sample = CachedSample(model="m", sample_index=0, text="ok", finish_reason="stop")
    cache.put(key, sample)
    assert cache.get(key) == sample


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SQL_RATIONALE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert ResponseCache.default().root == tmp_path / "c" / "responses"


def test_seed_per_sample_and_stop_truncation() -> None:
    assert SamplingParams(seed=10).seed_for_sample(3) == 13
    assert SamplingParams().seed_for_sample(3) is None
    assert SamplingParams(stop="x").stop == ("x",)
    assert truncate_at_stop("SELECT 1;\nmore", (";", "\n")) == ("SELECT 1", True)
    assert truncate_at_stop("SELECT 1", (";",)) == ("SELECT 1", False)
