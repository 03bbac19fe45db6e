"""Local transformers `generate`, batched, on CPU or GPU.

Samples that share sampling parameters (and seed) are batched together with left padding.
A seed is applied per batch (`torch.manual_seed(seed + sample_index)`), so a sampled
(temperature > 0) output is reproducible for the same batch composition; greedy output
does not depend on it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from rationale.llm.models import resolve_model
from rationale.llm.types import (
    GenerationRequest,
    SampleJob,
    SampleOutput,
    SamplingParams,
    truncate_at_stop,
)


@dataclass(frozen=True)
class _Item:
    request: GenerationRequest
    sample_index: int


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HFBackend:
    """Batched `model.generate` with a chat template; `model` is a local name or a path."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        batch_size: int = 8,
        dtype: str = "auto",
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model = model
        self.retried_errors = 0
        self.batch_size = batch_size
        self.device = _resolve_device(device)
        path = resolve_model(model)
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        transformers_logging.disable_progress_bar()  # the stage shows its own progress
        self.hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        self.hf_model.to(self.device).eval()
        eos = self.hf_model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self._eos_ids = {i for i in [*eos_ids, self.tokenizer.eos_token_id] if i is not None}

    def close(self) -> None:
        self.hf_model = None

    def _batches(self, jobs: Sequence[SampleJob]) -> list[list[_Item]]:
        """Group samples by identical generation settings, then cut into batches; prompts of
        similar length share a batch to keep padding small."""
        groups: dict[tuple[Any, ...], list[_Item]] = defaultdict(list)
        for job in jobs:
            sampling = job.request.sampling
            for index in job.sample_indices:
                key = (
                    sampling.temperature,
                    sampling.top_p,
                    sampling.max_tokens,
                    sampling.stop,
                    sampling.seed_for_sample(index),
                )
                groups[key].append(_Item(job.request, index))
        batches: list[list[_Item]] = []
        for items in groups.values():
            items.sort(key=lambda item: sum(len(m.content) for m in item.request.messages))
            for start in range(0, len(items), self.batch_size):
                batches.append(items[start : start + self.batch_size])
        return batches

    def _generate_batch(self, items: list[_Item]) -> list[SampleOutput]:
        import torch

        sampling: SamplingParams = items[0].request.sampling
        prompts = [
            self.tokenizer.apply_chat_template(
                [m.model_dump() for m in item.request.messages],
                add_generation_prompt=True,
                tokenize=False,
            )
            for item in items
        ]
        encoded = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        seed = sampling.seed_for_sample(items[0].sample_index)
        if seed is not None:
            torch.manual_seed(seed)
        options: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling.temperature > 0:
            options.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            options.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            sequences = self.hf_model.generate(**encoded, **options)
        prompt_width = encoded["input_ids"].shape[1]
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        outputs: list[SampleOutput] = []
        for row, item in enumerate(items):
            generated = sequences[row, prompt_width:].tolist()
            end = next((i for i, t in enumerate(generated) if t in self._eos_ids), None)
            tokens = generated if end is None else generated[: end + 1]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            text, was_cut = truncate_at_stop(text, sampling.stop)
            outputs.append(
                SampleOutput(
                    request_id=item.request.id,
                    sample_index=item.sample_index,
                    text=text,
                    finish_reason="stop" if end is not None or was_cut else "length",
                    prompt_tokens=int(prompt_lengths[row]),
                    completion_tokens=len(tokens),
                )
            )
        return outputs

    async def stream(self, jobs: Sequence[SampleJob]) -> AsyncIterator[SampleOutput]:
        for batch in self._batches(jobs):
            for output in await asyncio.to_thread(self._generate_batch, batch):
                yield output
