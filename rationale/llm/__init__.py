"""The LLM layer: one chat-generation interface over vLLM, OpenAI-compatible servers and
local transformers, with a shared content-addressed response cache.

    backend = make_backend("openai", "smollm2-135m", base_urls=["http://127.0.0.1:8000"])
    for result in iter_generate(backend, requests, ResponseCache.default()):
        ...  # results arrive as they finish
"""

from rationale.llm.backend import BackendUnavailable, ChatBackend, GenerationError
from rationale.llm.backends import BACKEND_NAMES, make_backend
from rationale.llm.cache import ResponseCache, default_cache_dir, sample_key
from rationale.llm.runner import GenerationStats, generate, generate_stream, iter_generate
from rationale.llm.types import (
    ChatMessage,
    Completion,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    Usage,
)

__all__ = [
    "BACKEND_NAMES",
    "BackendUnavailable",
    "ChatBackend",
    "ChatMessage",
    "Completion",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "GenerationStats",
    "ResponseCache",
    "SamplingParams",
    "Usage",
    "default_cache_dir",
    "generate",
    "generate_stream",
    "iter_generate",
    "make_backend",
    "sample_key",
]
