"""The `hf` backend with the real tiny model on CPU, through the cache-aware runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from rationale.llm import (
    ChatMessage,
    GenerationRequest,
    GenerationStats,
    ResponseCache,
    SamplingParams,
    generate,
)
from rationale.llm.backends.hf import HFBackend
from rationale.llm.models import TINY_MODEL_NAME


@pytest.fixture(scope="module")
def hf_backend(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(TINY_MODEL_NAME, device="cpu", batch_size=4)


def _request(rid: str, question: str, **sampling: object) -> GenerationRequest:
    return GenerationRequest(
        id=rid,
        messages=(ChatMessage(role="user", content=question),),
        sampling=SamplingParams(**sampling),
    )


def test_batched_greedy_generation_matches_single_requests(hf_backend: HFBackend) -> None:
    questions = ["What is 2 plus 2?", "Name a colour.", "Write the word SELECT in capitals."]
    requests = [_request(f"q{i}", q, max_tokens=10) for i, q in enumerate(questions)]
    batched = generate(hf_backend, requests)
    assert [r.id for r in batched] == ["q0", "q1", "q2"]
    for result in batched:
        (completion,) = result.completions
        assert completion.text.strip()
        assert 1 <= completion.completion_tokens <= 10
        assert completion.finish_reason in ("stop", "length")
        assert result.usage.prompt_tokens > 5
    # Left padding in a batch must not change greedy output.
    alone = generate(hf_backend, [requests[1]])
    assert alone[0].texts == batched[1].texts


def test_n_samples_with_seeds_are_reproducible_and_cached(
    hf_backend: HFBackend, tmp_path: Path
) -> None:
    request = _request("r", "Tell me a short story.", n=3, temperature=1.0, max_tokens=8, seed=7)
    cache = ResponseCache(tmp_path / "cache")
    first_stats = GenerationStats()
    (first,) = generate(hf_backend, [request], cache, first_stats)
    assert [c.sample_index for c in first.completions] == [0, 1, 2]
    assert len(set(first.texts)) > 1  # different seeds give different samples
    assert (first_stats.samples_generated, first_stats.cache_misses) == (3, 3)

    again_stats = GenerationStats()
    (again,) = generate(hf_backend, [request], cache, again_stats)
    assert again.texts == first.texts
    assert (again_stats.samples_generated, again_stats.cache_hits) == (0, 3)
    assert again.usage.cached_samples == 3

    # Regenerating without the cache reproduces the samples from their seeds.
    (fresh,) = generate(hf_backend, [request])
    assert fresh.texts == first.texts

    # Asking for more samples reuses the three already drawn.
    more_stats = GenerationStats()
    more_request = request.model_copy(
        update={"sampling": request.sampling.model_copy(update={"n": 4})}
    )
    (more,) = generate(hf_backend, [more_request], cache, more_stats)
    assert more.texts[:3] == first.texts
    assert (more_stats.cache_hits, more_stats.samples_generated) == (3, 1)


def test_stop_strings_cut_the_output(hf_backend: HFBackend) -> None:
    plain = _request("a", "Count from 1 to 9, separated by commas.", max_tokens=24)
    (full,) = generate(hf_backend, [plain])
    assert "," in full.texts[0]
    stopped = _request("a", "Count from 1 to 9, separated by commas.", max_tokens=24, stop=[","])
    (cut,) = generate(hf_backend, [stopped])
    assert "," not in cut.texts[0]
    assert full.texts[0].startswith(cut.texts[0])
    assert cut.completions[0].finish_reason == "stop"


def test_an_answer_ends_where_its_block_closes(hf_backend: HFBackend) -> None:
    """The stop rule every backend applies, and the per-token check the hf backend runs with
    the real tokenizer (what ends generation early)."""
    from rationale.llm.types import cut_answer, end_of_block_after

    cot = (
        "### Step 1: Rows\n\nKeep them.\n\n```sql\nSELECT a FROM t\n```\n\n### Final answer\n\n"
        "Count them.\n\n```sql\nSELECT COUNT(*) FROM step1\n```\nAnd then the model rambles"
    )
    end = cot.index("FROM step1\n```") + len("FROM step1\n```")
    assert end_of_block_after(cot, "### Final answer") == end
    assert end_of_block_after(cot[: end - 1], "### Final answer") is None  # not closed yet
    assert end_of_block_after("```sql\nSELECT 1\n```\nmore", "") == len("```sql\nSELECT 1\n```")
    text, cut = cut_answer(cot, SamplingParams(stop_after_block="### Final answer"))
    assert text == cot[:end] and cut
    assert cut_answer(cot, SamplingParams())[0] == cot  # no rule: nothing cut
    tokenizer = hf_backend.tokenizer
    criteria = hf_backend._stopping_criteria(
        SamplingParams(stop_after_block="### Final answer"), prompt_width=2
    )
    prefix = tokenizer("x y", add_special_tokens=False, return_tensors="pt")["input_ids"][:, :2]

    def stops(text: str) -> bool:
        import torch

        body = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        return bool(criteria(torch.cat([prefix, body], dim=1), None)[0])

    assert stops(cot[:end])
    assert not stops(cot[: end - 4])
    assert not stops("### Step 1: x\n\n```sql\nSELECT 1\n```")  # a step's block: go on
