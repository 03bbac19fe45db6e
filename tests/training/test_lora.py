"""The LoRA option: the adapter trains, then is merged into a plain checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from training.lora import ADAPTER_FILES
from training.sft import ADAPTER_DIR, train


def test_lora_adapter_is_merged_into_a_plain_checkpoint(
    short_nocot_export: Path,
    tiny_model: Path,
    tmp_path: Path,
    model_resolver: Callable[[str], str],
) -> None:
    output_dir = tmp_path / "lora"
    manifest = train(
        "student-nocot-tiny",
        resolve_model=model_resolver,
        dataset=str(short_nocot_export / "train.jsonl"),  # no validation split: no evaluation
        output_dir=str(output_dir),
        max_steps=3,
        max_length=512,
        per_device_train_batch_size=2,
        use_peft=True,
        lora_r=8,
        lora_alpha=16,
        lora_target_modules=["q_proj", "v_proj"],
        learning_rate=1e-3,
    )
    assert manifest.lora_merged and manifest.steps == 3
    assert not any((output_dir / name).exists() for name in ADAPTER_FILES)
    assert not (output_dir / ADAPTER_DIR).exists()
    assert (output_dir / "tokenizer.json").is_file()

    merged = AutoModelForCausalLM.from_pretrained(output_dir)  # a plain load, no peft
    names = [name for name, _ in merged.named_parameters()]
    assert not any("lora" in name for name in names)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [
        name
        for name, parameter in merged.named_parameters()
        if not torch.equal(parameter, base.get_parameter(name))
    ]
    # Training moved exactly the adapted projections, in every layer: the merge happened.
    assert changed and all(name.endswith(("q_proj.weight", "v_proj.weight")) for name in changed)
    assert len(changed) == 2 * base.config.num_hidden_layers
