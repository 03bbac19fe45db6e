"""The same tiny recipe on a CUDA GPU: bf16, packed padding-free batches, activation
checkpointing, all chosen by the entry point because the recipe leaves them open."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from training.sft import train

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="torch sees no CUDA device: the GPU path (bf16, packing) needs one",
)


def test_tiny_recipe_trains_in_bf16_with_packing_on_cuda(
    short_rationalizer_export: Path, tmp_path: Path, model_resolver: Callable[[str], str]
) -> None:
    output_dir = tmp_path / "gpu"
    manifest = train(
        "rationalizer-tiny",
        resolve_model=model_resolver,
        dataset=str(short_rationalizer_export),
        output_dir=str(output_dir),
        max_steps=20,
        max_length=512,
    )
    assert manifest.device.startswith("CUDA") and manifest.precision == "bf16"
    assert manifest.batching.startswith("packed") and manifest.activation_checkpointing
    assert manifest.padding_waste == 0.0  # packed rows carry no padding
    assert manifest.steps == 20
    assert manifest.eval_loss_start is not None and manifest.eval_loss is not None
    assert manifest.eval_loss < manifest.eval_loss_start - 0.1
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    assert model.config.model_type == "llama"
