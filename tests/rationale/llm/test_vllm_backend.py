"""The `vllm` backend: real generation where vLLM and a CUDA GPU exist, a clear error elsewhere."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rationale.llm import BackendUnavailable, ChatMessage, GenerationRequest, SamplingParams
from rationale.llm import generate as run
from rationale.llm.models import TINY_MODEL_NAME


def _gpu_and_vllm() -> str | None:
    """Why the vLLM test cannot run here, or None where it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'sql-rationale[vllm]' on a CUDA machine)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def test_missing_vllm_or_gpu_is_a_clear_error() -> None:
    reason = _gpu_and_vllm()
    if reason is None:
        pytest.skip("vLLM and a GPU are present: the error path cannot occur here")
    from rationale.llm.backends.vllm import VLLMBackend

    with pytest.raises(BackendUnavailable, match="--backend hf or --backend openai"):
        VLLMBackend(TINY_MODEL_NAME)


@pytest.mark.skipif(_gpu_and_vllm() is not None, reason=str(_gpu_and_vllm()))
def test_vllm_generates_batched_samples(tiny_model_dir: Path) -> None:
    from rationale.llm.backends.vllm import VLLMBackend

    backend = VLLMBackend(TINY_MODEL_NAME, gpu_memory_utilization=0.3, max_model_len=2048)
    try:
        requests = [
            GenerationRequest(
                id=f"q{i}",
                messages=(ChatMessage(role="user", content=f"What is {i} times {i}?"),),
                sampling=SamplingParams(n=2, temperature=0.8, max_tokens=16, seed=5),
            )
            for i in range(4)
        ]
        first = run(backend, requests)
        again = run(backend, requests)
    finally:
        backend.close()
    assert [r.id for r in first] == ["q0", "q1", "q2", "q3"]
    for result in first:
        assert len(result.completions) == 2
        assert all(1 <= (c.completion_tokens or 0) <= 16 for c in result.completions)
        assert result.usage.prompt_tokens > 5
    # Per-sample seeds make sampled outputs reproducible.
    assert [r.texts for r in again] == [r.texts for r in first]
