"""Local transformers `generate`, batched, on CPU or GPU.

Samples that share sampling parameters (and seed) are batched together with left padding.
A seed is applied per batch (`torch.manual_seed(seed + sample_index)`), so a sampled
(temperature > 0) output is reproducible for the same batch composition; greedy output
does not depend on it.

Generation stops for a row at its end token, at a stop string, or once the answer format
is complete (`stop_after_block`: the closing fence of the SQL block), checked per token;
and for every row at once when the backend is closed (Ctrl-C: the stage closes it): a
check before every decoder layer ends even a long prompt's prefill within a layer, so an
interrupted batch ends in well under a second instead of running to `max_tokens`. Closing
also returns the model's memory (on a GPU, to the device).
"""

from __future__ import annotations

import asyncio
import gc
import re
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from rationale.llm.backend import GenerationError
from rationale.llm.models import resolve_model
from rationale.llm.types import (
    GenerationRequest,
    SampleJob,
    SampleOutput,
    SamplingParams,
    cut_answer,
    end_of_block_after,
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
        self._cancel = threading.Event()
        self._watch_layers()

    def _watch_layers(self) -> None:
        """A check before every decoder layer (the stacked `layers.N` modules; the whole
        model where it has none) that ends a forward pass once the backend is closed."""
        cancel = self._cancel

        def stop_if_closed(_module: Any, _args: Any) -> None:
            if cancel.is_set():
                raise GenerationError("generation stopped: the backend was closed")

        layers = [
            module
            for name, module in self.hf_model.named_modules()
            if re.fullmatch(r"(.*\.)?layers\.\d+", name)
        ]
        for module in layers or [self.hf_model]:
            module.register_forward_pre_hook(stop_if_closed)

    def close(self) -> None:
        """Stop a generate call in flight (at its next token) and free the model."""
        self._cancel.set()
        self.hf_model = None
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

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
                    sampling.stop_after_block,
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
        prompt_width = encoded["input_ids"].shape[1]
        options["stopping_criteria"] = self._stopping_criteria(sampling, prompt_width)
        model = self.hf_model
        if model is None or self._cancel.is_set():
            raise GenerationError("generation stopped: the backend was closed")
        with torch.inference_mode():
            sequences = model.generate(**encoded, **options)
        if self._cancel.is_set():  # stopped mid-batch: these answers are incomplete
            raise GenerationError("generation stopped: the backend was closed")
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        outputs: list[SampleOutput] = []
        for row, item in enumerate(items):
            generated = sequences[row, prompt_width:].tolist()
            # the end token, or the padding generate puts after a row that stopped early
            ends = self._eos_ids | {self.tokenizer.pad_token_id}
            end = next((i for i, t in enumerate(generated) if t in ends), None)
            tokens = generated if end is None else generated[: end + 1]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            text, was_cut = cut_answer(text, sampling)
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

    def _stopping_criteria(self, sampling: SamplingParams, prompt_width: int) -> Any:
        """Per-token checks: the backend was closed (every row stops), or a row's answer is
        complete (`stop_after_block`)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancel, tokenizer, marker = self._cancel, self.tokenizer, sampling.stop_after_block

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                rows = input_ids.shape[0]
                if cancel.is_set():
                    return torch.ones(rows, dtype=torch.bool, device=input_ids.device)
                done = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
                if marker is None:
                    return done
                for row in range(rows):
                    last = tokenizer.decode(input_ids[row, -2:])
                    if "`" not in last:  # a block can only close on a fence token
                        continue
                    text = tokenizer.decode(input_ids[row, prompt_width:])
                    done[row] = end_of_block_after(text, marker) is not None
                return done

        return StoppingCriteriaList([_Stop()])

    async def stream(self, jobs: Sequence[SampleJob]) -> AsyncIterator[SampleOutput]:
        for batch in self._batches(jobs):
            for output in await asyncio.to_thread(self._generate_batch, batch):
                yield output
