"""LoRA runs end as ordinary checkpoints: the adapter is merged into the base weights.

vLLM, `transformers serve` and the hf backend then load the folder like any model, with no
adapter support needed. The adapter is merged into a freshly loaded base model rather than
into the trained one, which is the same on one device and also works where the trained
weights are sharded (DeepSpeed ZeRO-3, FSDP): the trainer gathers the small adapter when
saving it, and the merge happens on the main process alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def merge_adapter(base_model: str, adapter_dir: Path, output_dir: Path, dtype: str | None) -> None:
    """Load `base_model`, apply the adapter saved in `adapter_dir`, merge it and save the
    result (with the adapter folder's tokenizer) to `output_dir`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype) if dtype and dtype != "auto" else "auto"
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(output_dir)


def has_adapter_files(folder: Path) -> bool:
    return any((folder / name).exists() for name in ADAPTER_FILES)


def remove_adapter(adapter_dir: Path) -> None:
    shutil.rmtree(adapter_dir, ignore_errors=True)
