"""The `hf` backend against plain `model.generate` on the same prompts, side by side.

    python benchmarks/hf_generation.py [--model DIR|smollm2-135m] [--kind nocot|cot]
        [--questions 16] [--max-tokens 256]

Prompts are the demo dev questions as a student is asked them (the student prompt
template). Three ways, one run, the same machine:

    plain generate     transformers' `generate`, one prompt at a time, to max_tokens or the
                       end token (what a script written without this project does)
    plain, batched     the same in batches of 8 (left padding)
    hf backend         `rationale.llm`'s hf backend: batches of 8 grouped by length, and each
                       answer ends once its SQL block closes (`stop_after_block`)

and, for the hf backend, fp32 against bf16 weights (tokens/s, and how many greedy answers
are identical). It prints tokens/s, wall time and ratios. With the base tiny model the
answers rarely close a block; a trained student (`--model runs/NAME/models/student-nocot`)
shows what the stop rule saves.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from bird.data import load_split
from rationale.chain.format import FINAL_HEADING
from rationale.llm import ChatMessage, GenerationRequest, SamplingParams, generate
from rationale.llm.backends.hf import HFBackend
from rationale.llm.models import resolve_model
from rationale.prompting.task import TaskPrompter, load_tokenizer

BATCH = 8


def prompts(kind: str, count: int, model: str) -> list[list[dict[str, str]]]:
    split = load_split("demo:dev")
    prompter = TaskPrompter(
        kind="student-cot" if kind == "cot" else "student-nocot",
        split=split,
        tokenizer=load_tokenizer(model),
        max_prompt_tokens=512,
        schema_style="compact",
    )
    return [
        [message.model_dump() for message in prompter.prompt(example).messages]
        for example in split.examples[:count]
    ]


def plain(path: str, chats: list[list[dict[str, str]]], max_tokens: int, batch: int) -> Any:
    """transformers alone: (tokens generated, seconds, texts)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    texts, tokens = [], 0
    started = time.perf_counter()
    for start in range(0, len(chats), batch):
        rendered = [
            tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            for chat in chats[start : start + batch]
        ]
        encoded = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **encoded, max_new_tokens=max_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )  # fmt: skip
        for row in out[:, encoded["input_ids"].shape[1] :]:
            kept = [t for t in row.tolist() if t != (tokenizer.pad_token_id or -1)]
            tokens += len(kept)
            texts.append(tokenizer.decode(kept, skip_special_tokens=True))
    return tokens, time.perf_counter() - started, texts


def backend(
    model: str, chats: list[list[dict[str, str]]], max_tokens: int, stop: str | None, dtype: str
) -> Any:
    """The project's hf backend: (tokens generated, seconds, texts)."""
    engine = HFBackend(model, device="cpu", batch_size=BATCH, dtype=dtype)
    requests = [
        GenerationRequest(
            id=str(i),
            messages=tuple(ChatMessage(**m) for m in chat),
            sampling=SamplingParams(max_tokens=max_tokens, stop_after_block=stop),
        )
        for i, chat in enumerate(chats)
    ]
    started = time.perf_counter()
    results = generate(engine, requests)
    seconds = time.perf_counter() - started
    engine.close()
    tokens = sum(c.completion_tokens or 0 for r in results for c in r.completions)
    return tokens, seconds, [r.texts[0] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--kind", choices=("nocot", "cot"), default="nocot")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    path = resolve_model(args.model)
    chats = prompts(args.kind, args.questions, args.model)
    stop = FINAL_HEADING if args.kind == "cot" else ""
    runs = {
        "plain generate, one by one": plain(path, chats, args.max_tokens, 1),
        f"plain generate, batches of {BATCH}": plain(path, chats, args.max_tokens, BATCH),
        "hf backend, fp32, stop at the block": backend(
            args.model, chats, args.max_tokens, stop, "float32"
        ),
        "hf backend, fp32, no stop rule": backend(
            args.model, chats, args.max_tokens, None, "float32"
        ),
        "hf backend, bf16, stop at the block": backend(
            args.model, chats, args.max_tokens, stop, "bfloat16"
        ),
    }
    baseline = runs["plain generate, one by one"][1]
    reference = runs["hf backend, fp32, stop at the block"][2]
    table = Table(
        title=f"{len(chats)} demo dev questions, {args.kind} prompts, {args.model}, "
        f"max {args.max_tokens} tokens, greedy"
    )
    for column in ("way", "tokens", "seconds", "tokens/s", "speed-up", "same text as fp32"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for name, (tokens, seconds, texts) in runs.items():
        same = sum(a == b for a, b in zip(texts, reference, strict=True))
        table.add_row(
            name,
            str(tokens),
            f"{seconds:.1f}",
            f"{tokens / seconds:.1f}",
            f"{baseline / seconds:.2f}x",
            f"{same}/{len(texts)}" if name.startswith("hf") else "-",
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
