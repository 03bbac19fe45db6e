"""What this machine can do, and the recipe values that follow from it when a recipe is silent.

One recipe should train well on a laptop CPU and on a GPU node, so the settings whose best
value depends on the hardware are chosen here unless the recipe sets them:

- precision: bf16 autocast where the processor computes in bf16 natively (CUDA with bf16
  support; CPUs with AVX512-BF16 or AMX, ~2.3x faster than fp32 there), else fp32;
- activation checkpointing: on for GPUs (memory is the limit), off on CPU (it costs ~56%
  more time there and memory is plentiful);
- batching: see `training.batching.default_batching`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from training.batching import BATCHING_KEYS, default_batching

Accelerator = Literal["cuda", "cpu"]


@dataclass(frozen=True)
class Hardware:
    """The device a run trains on and whether it computes bf16 natively."""

    accelerator: Accelerator
    bf16_native: bool
    description: str


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU instructions that make bf16 autocast faster than fp32."""
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def cuda_problem() -> str | None:
    """Why this process cannot train on a CUDA GPU, or None when it can. Cheap: no model,
    no download, only torch's own view of the machine."""
    import torch

    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is a CPU build (torch.version.cuda is None): install "
            "a CUDA build of torch on this node (e.g. from download.pytorch.org/whl/cu128)"
        )
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"torch {torch.__version__} sees no CUDA device{hint}: no GPU or no driver"
    return None


def visible_gpu_count() -> int:
    """CUDA devices this process may use (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def detect_hardware(force_cpu: bool = False) -> Hardware:
    """The accelerator this process would train on (CUDA unless absent or `use_cpu`)."""
    import torch

    if not force_cpu and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        count = torch.cuda.device_count()
        return Hardware("cuda", torch.cuda.is_bf16_supported(), f"CUDA, {count} x {name}")
    bf16 = cpu_supports_bf16()
    threads = torch.get_num_threads()
    note = "bf16 native" if bf16 else "no native bf16"
    return Hardware("cpu", bf16, f"CPU, {threads} threads, {note}")


def hardware_defaults(
    hardware: Hardware, explicit: dict[str, Any], *, batching: bool = True
) -> dict[str, Any]:
    """The values this machine calls for, for the keys the recipe does not set (`batching`:
    also how SFT batches; GRPO batches its sampled answers itself)."""
    decided: dict[str, Any] = {}
    if hardware.accelerator == "cpu" and "use_cpu" not in explicit:
        decided["use_cpu"] = True
    if "bf16" not in explicit and "fp16" not in explicit:
        decided["bf16"] = hardware.bf16_native
    # transformers 5 renamed gradient_checkpointing (TRL's default: on) to this key.
    if not {"activation_checkpointing", "gradient_checkpointing"} & explicit.keys():
        decided["activation_checkpointing"] = hardware.accelerator == "cuda"
    if batching and not BATCHING_KEYS & explicit.keys():
        decided.update(default_batching(hardware.accelerator))
    return decided
