"""The tiny default model: converted from the real GGUF file to an ordinary checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rationale.llm.models import (
    TINY_MODEL_NAME,
    ModelPreparationError,
    is_prepared,
    model_dir,
    model_identity,
    prepare_model,
    resolve_model,
)


def test_prepared_folder_is_a_plain_float_checkpoint(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert (tiny_model_dir / "model.safetensors").stat().st_size > 100_000_000
    assert (tiny_model_dir / "tokenizer.json").exists()
    assert is_prepared(TINY_MODEL_NAME)


def test_name_resolves_to_the_prepared_folder(tiny_model_dir: Path) -> None:
    assert resolve_model(TINY_MODEL_NAME) == str(tiny_model_dir)
    assert prepare_model(TINY_MODEL_NAME) == tiny_model_dir  # prepared once, then reused
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)  # a folder is itself


def test_a_hub_id_is_kept_when_the_hub_can_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the model hub answers cannot be arranged for real on a machine without
    network (nor, with network, be turned off): the reachability probe is replaced here,
    which is the one fault-injection in these tests. The id is then passed through for
    transformers or vLLM to download; unreachable, it is a clear error at once instead of a
    minute of download retries."""
    from rationale.llm import models

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: True)
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelPreparationError, match="hub cannot be reached"):
        resolve_model("Qwen/Qwen2.5-7B-Instruct")
    with pytest.raises(ModelPreparationError, match="does not exist"):
        resolve_model("./no/such/model")


def test_unknown_local_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelPreparationError, match="unknown local model 'nope'"):
        prepare_model("nope", tmp_path)
    assert model_dir(TINY_MODEL_NAME, tmp_path) == tmp_path / "models" / TINY_MODEL_NAME


def _model_folder(root: Path, weights: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "tokenizer.json").write_text('{"version": "1.0"}')
    (root / "model.safetensors").write_bytes(weights)
    return root


def test_a_model_folder_is_cached_under_its_weights_not_its_path(tmp_path: Path) -> None:
    first = _model_folder(tmp_path / "a" / "rationalizer", b"\x01" * 1000)
    identity = model_identity(str(first))
    assert identity.startswith("rationalizer#") and model_identity(str(first)) == identity
    # the same files elsewhere: the same answers; retrained in place: new answers
    same = _model_folder(tmp_path / "b" / "rationalizer", b"\x01" * 1000)
    assert model_identity(str(same)) == identity
    (first / "model.safetensors").write_bytes(b"\x02" * 1000)
    assert model_identity(str(first)) != identity
    # another chat template on the same weights also answers otherwise
    (same / "tokenizer.json").write_text('{"version": "2.0"}')
    assert model_identity(str(same)) not in (identity, model_identity(str(first)))
    assert model_identity("smollm2-135m") == "smollm2-135m"
