"""A real tiny SFT run: SmolLM2-135M, TRL, BIRD train questions with decomposer rationales.

One run (the session fixture `trained_rationalizer`) is shared by the tests that inspect it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.data import load_training_data
from training.manifest import MANIFEST_NAME, RECIPE_NAME, read_manifest
from training.sft import build_trainer, prepare_run, train

FAST_STEPS = 8


def _completion_loss(model_dir: Path, records: list[dict]) -> float:
    """Mean NLL per completion token, the prompt masked: computed here, not by the trainer."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for record in records:
        prompt = tokenizer.apply_chat_template(
            record["prompt"], add_generation_prompt=True, tokenize=True
        )["input_ids"]
        full = tokenizer.apply_chat_template(
            record["prompt"] + record["completion"], tokenize=True
        )["input_ids"]
        assert full[: len(prompt)] == prompt
        labels = [-100] * len(prompt) + full[len(prompt) :]
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([full]), labels=torch.tensor([labels])).loss
        tokens = len(full) - len(prompt)
        total += float(loss) * tokens
        count += tokens
    return total / count


def _trainer_state(output_dir: Path) -> dict:
    return json.loads((output_dir / "trainer_state.json").read_text())


def test_training_loss_goes_down(trained_rationalizer) -> None:
    state = _trainer_state(trained_rationalizer.output_dir)
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == FAST_STEPS
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    manifest = trained_rationalizer.manifest
    assert manifest.eval_loss is not None and manifest.eval_loss_start is not None
    assert manifest.eval_loss < manifest.eval_loss_start


def test_held_out_loss_is_lower_than_the_base_model(trained_rationalizer, tiny_model: Path) -> None:
    validation = load_from_disk(str(trained_rationalizer.dataset / "hf" / "validation")).to_list()
    assert validation and not {r["question_id"] for r in validation} & set(
        load_from_disk(str(trained_rationalizer.dataset / "hf" / "train"))["question_id"]
    )
    base = _completion_loss(tiny_model, validation)
    trained = _completion_loss(trained_rationalizer.output_dir, validation)
    assert trained < base - 0.1, (base, trained)
    # The trainer's own evaluation measures the same thing (completion tokens only).
    assert trained == pytest.approx(trained_rationalizer.manifest.eval_loss, rel=0.05)


def test_output_folder_holds_model_tokenizer_recipe_and_manifest(trained_rationalizer) -> None:
    out = trained_rationalizer.output_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", RECIPE_NAME, MANIFEST_NAME):
        assert (out / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000

    recipe = yaml.safe_load((out / RECIPE_NAME).read_text())
    assert recipe["max_steps"] == FAST_STEPS and recipe["dataset_kind"] == "rationalizer"
    assert Path(recipe["model_name_or_path"]).is_dir()  # the local name, resolved
    assert recipe["use_cpu"] is True and recipe["activation_checkpointing"] is False
    assert recipe["train_sampling_strategy"] == "group_by_length"

    manifest = read_manifest(out)
    assert manifest == trained_rationalizer.manifest
    data = load_training_data(trained_rationalizer.dataset)
    assert manifest.dataset.fingerprint == data.fingerprint
    assert not list(trained_rationalizer.dataset.rglob("cache-*"))  # the export is left as it was
    assert manifest.dataset.kind == "rationalizer"
    assert (manifest.dataset.train_rows, manifest.dataset.validation_rows) == (
        len(data.train),
        len(data.validation),
    )
    assert manifest.steps == manifest.max_steps == FAST_STEPS
    assert manifest.resumed_from_step is None and manifest.lora_merged is False
    assert manifest.batching == "length-grouped padding"
    assert manifest.padding_waste is not None and manifest.padding_waste < 0.05
    # Every training example fits max_length: nothing was cut or dropped.
    assert manifest.truncated_examples == 0 and manifest.dropped_examples == 0
    # Real tokens of batches of 4 of the export's records, over 3 a step on average (an
    # epoch's last batch may hold fewer): bounded by the shortest and the longest record.
    tokenizer = AutoTokenizer.from_pretrained(out)
    lengths = sorted(
        len(
            tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True)["input_ids"]
        )
        for r in data.train
    )
    assert FAST_STEPS * 3 * lengths[0] <= manifest.tokens_seen <= FAST_STEPS * 4 * lengths[-1]
    assert {"torch", "transformers", "trl", "datasets"} <= manifest.versions.keys()


def test_progress_lines_on_stderr(trained_rationalizer) -> None:
    lines = [line for line in trained_rationalizer.stderr.splitlines() if "] step " in line]
    assert lines[0].startswith(f"[train] step 1/{FAST_STEPS}")
    last = lines[-1]
    assert last.startswith(f"[train] step {FAST_STEPS}/{FAST_STEPS}  100%")
    for part in ("loss ", "lr ", " tok/s", "elapsed ", "left 0:00"):
        assert part in last, last


def test_rerunning_a_finished_run_changes_nothing(
    trained_rationalizer, model_resolver: Callable[[str], str], capsys: pytest.CaptureFixture
) -> None:
    weights = trained_rationalizer.output_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    manifest = train(
        "rationalizer-tiny", resolve_model=model_resolver, **trained_rationalizer.overrides
    )
    assert manifest == trained_rationalizer.manifest
    assert weights.stat().st_mtime_ns == before
    assert "already holds this run" in capsys.readouterr().err


def test_trained_folder_generates_through_the_hf_backend(trained_rationalizer) -> None:
    from rationale.llm import ChatMessage, GenerationRequest, SamplingParams, generate
    from rationale.llm.backends.hf import HFBackend

    record = load_from_disk(str(trained_rationalizer.dataset / "hf" / "validation"))[0]
    request = GenerationRequest(
        id="held-out",
        messages=tuple(ChatMessage(**message) for message in record["prompt"]),
        sampling=SamplingParams(max_tokens=16),
    )
    backend = HFBackend(str(trained_rationalizer.output_dir), device="cpu", batch_size=1)
    (result,) = generate(backend, [request])
    # The tiny base model answers in prose; eight steps teach it the rationale format.
    assert result.completions[0].text.startswith("### Step 1"), result.completions[0].text


def test_prompt_tokens_are_masked_in_a_real_training_batch(
    short_rationalizer_export: Path, tmp_path: Path, model_resolver: Callable[[str], str]
) -> None:
    run = prepare_run(
        "rationalizer-tiny",
        resolve_model=model_resolver,
        dataset=str(short_rationalizer_export),
        output_dir=str(tmp_path),
        max_length=512,
    )
    trainer = build_trainer(run)
    tokenizer = trainer.processing_class
    completions = {
        tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False): r[
            "completion"
        ][0]["content"]
        for r in run.data.train
    }
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 4
    for ids, labels, mask in zip(
        batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        length = int(mask.sum())  # padding is on the right
        start = int((labels != -100).nonzero()[0])
        prompt = tokenizer.decode(ids[:start])
        assert prompt in completions  # everything masked is exactly one whole prompt
        assert (labels[:start] == -100).all()
        assert torch.equal(labels[start:length], ids[start:length])  # all completion tokens count
        assert (labels[length:] == -100).all()  # padding does not
        assert tokenizer.decode(ids[start:length]) == completions[prompt] + "<|im_end|>\n"
