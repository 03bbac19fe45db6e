"""A one-GPU check of every path that only a GPU exercises, prepared to travel to a machine
with no network (scripts/gpu_check.sh is the entry point; see its header).

    python scripts/gpu_check.py prepare            build .gpu_check/ (model, dataset, wheels)
    python scripts/gpu_check.py run OUT_DIR        run the checks, write OUT_DIR/gpu_check.json

The model is SmolLM2's architecture and tokenizer at a small size with random weights (it
must travel: the device machine receives at most 64 MiB and reaches no hub). Each step ends
`ok`, `failed` (with the error) or `skipped` (with the reason: no CUDA, no vLLM), with its
figures; on a CPU machine the CPU-possible steps run and the GPU-only ones are skipped.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# where `prepare` puts what travels (GPU_CHECK_DIR moves it, e.g. for a test)
PREPARED = Path(os.environ.get("GPU_CHECK_DIR") or REPO / ".gpu_check")
# Wheels the device image lacks (Python 3.12, manylinux); the image has torch, transformers,
# accelerate, peft, pyyaml, rich, typer, jinja2, httpx, numpy, pyarrow, pandas.
DEVICE_WHEELS = (
    "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.7.0",
    "typing-inspection==0.4.2", "sqlglot==30.31.0", "trl==1.16.0", "datasets==5.2.0",
    "dill==0.4.0", "multiprocess==0.70.18",
)  # fmt: skip


def tiny_architecture(source: Path, out: Path) -> Path:
    """SmolLM2's config and tokenizer, 4 layers of width 256, random weights, bf16 files."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    config.update(
        {
            "hidden_size": 256,
            "intermediate_size": 768,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "tie_word_embeddings": True,
        }
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def _rationale(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from rationale.cli import app; app()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def _checked(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{what} exited {result.returncode}: {tail}")
    return result.stdout


def prepare(folder: Path = PREPARED, wheels: bool = True) -> dict[str, Any]:
    """The model, a dataset exported with its tokenizer, and the wheels the device lacks."""
    from rationale.llm.models import resolve_model

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model"
    if not (model / "config.json").is_file():
        tiny_architecture(Path(resolve_model("smollm2-135m")), model)
    dataset = folder / "dataset"
    if not (dataset / "export.json").is_file():
        run_dir = folder / "run"
        _checked(
            _rationale("seed", "--data", "demo:train", "--seeds", "demo:seeds",
                       "--run", str(run_dir), "--bootstrap", "decompose"),
            "rationale seed",
        )  # fmt: skip
        _checked(
            _rationale("export", "--run", str(run_dir), "--kind", "student-nocot",
                       "--tokenizer", str(model), "--max-prompt-tokens", "384",
                       "--out", str(dataset)),
            "rationale export",
        )  # fmt: skip
        shutil.rmtree(run_dir)
    found: list[str] = []
    if wheels:
        target = folder / "wheels"
        target.mkdir(exist_ok=True)
        platforms = [f"--platform={p}" for p in (
            "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
        )]  # fmt: skip
        for wheel in DEVICE_WHEELS:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                 *platforms, "-d", str(target), wheel],
                check=True, timeout=600,
            )  # fmt: skip
        found = sorted(path.name for path in target.glob("*.whl"))
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    return {"folder": str(folder), "megabytes": round(size / 2**20, 1), "wheels": found}


# --- the checks ------------------------------------------------------------------------------


class Check:
    """Steps in order, each recorded as ok / failed / skipped with its figures."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.steps: list[dict[str, Any]] = []

    def step(self, name: str, body: Callable[[], dict[str, Any] | str | None]) -> None:
        started = time.monotonic()
        record: dict[str, Any] = {"step": name}
        try:
            result = body()
        except Exception as error:  # a failed step is a finding, not the end of the check
            record.update(status="failed", error=f"{type(error).__name__}: {error}")
            (self.out / f"{name}.traceback.txt").write_text(traceback.format_exc())
        else:
            if isinstance(result, str):
                record.update(status="skipped", reason=result)
            else:
                record.update(status="ok", **(result or {}))
        record["seconds"] = round(time.monotonic() - started, 1)
        self.steps.append(record)
        print(f"[gpu_check] {name}: {record['status']} {json.dumps(record)}", flush=True)
        self.write()

    def write(self) -> None:
        (self.out / "gpu_check.json").write_text(
            json.dumps({"host": platform.node(), "steps": self.steps}, indent=2) + "\n"
        )


def _cuda() -> str | None:
    """Why there is no usable CUDA here, or None."""
    from training.hardware import cuda_problem

    return cuda_problem()


def facts() -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        found["devices"] = [
            {
                "name": torch.cuda.get_device_name(i),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
                "bf16": torch.cuda.is_bf16_supported(),
            }
            for i in range(torch.cuda.device_count())
        ]
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,memory.total"
        result = subprocess.run([smi, query, "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        found["nvidia_smi"] = result.stdout.strip()
    for package in ("transformers", "trl", "accelerate", "datasets", "vllm", "deepspeed"):
        try:
            found[package] = __import__(package).__version__
        except ImportError:
            found[package] = None
    return found


def train(model: Path, dataset: Path, out: Path, steps: int, *extra: str) -> dict[str, Any]:
    """`rationale train` for a few steps; the manifest's figures."""
    result = _rationale(
        "train", "--recipe", "student-nocot-tiny", "--dataset", str(dataset),
        "--output-dir", str(out), "--max-steps", str(steps),
        "--model_name_or_path", str(model), "--max_length", "512",
        "--eval_on_start", "false", "--save_steps", str(steps), *extra,
    )  # fmt: skip
    _checked(result, "rationale train")
    manifest = json.loads((out / "training_manifest.json").read_text())
    seconds = manifest["wall_time_s"]
    return {
        "device": manifest["device"],
        "precision": manifest["precision"],
        "weights_dtype": manifest["weights_dtype"],
        "batching": manifest["batching"],
        "world_size": manifest["world_size"],
        "launch": manifest["launch"],
        "steps": manifest["steps"],
        "loss_first": manifest["train_loss_first"],
        "loss_final": manifest["train_loss_final"],
        "tokens_seen": manifest["tokens_seen"],
        "wall_time_s": seconds,
        "tokens_per_s_with_loading": round(manifest["tokens_seen"] / max(seconds, 1e-9), 1),
    }


def vllm_generate(model: Path, out: Path) -> dict[str, Any] | str:
    """The vllm backend with engine options, on the trained model."""
    if _cuda() is not None:
        return f"no CUDA: {_cuda()}"
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        return f"vLLM is not installed ({error})"
    from rationale.llm import ChatMessage, GenerationRequest, SamplingParams, generate
    from rationale.llm.backends.vllm import VLLMBackend

    backend = VLLMBackend(
        str(model), gpu_memory_utilization=0.3, max_model_len=2048, enforce_eager=True,
        log_dir=out / "vllm-logs",
    )  # fmt: skip
    try:
        started = time.monotonic()
        results = generate(
            backend,
            [
                GenerationRequest(
                    id=str(i),
                    messages=(ChatMessage(role="user", content=f"Count to {i}."),),
                    sampling=SamplingParams(n=4, temperature=0.8, max_tokens=64, seed=1),
                )
                for i in range(64)
            ],
        )
        seconds = time.monotonic() - started
    finally:
        backend.close()
    tokens = sum(c.completion_tokens or 0 for r in results for c in r.completions)
    return {"samples": 256, "completion_tokens": tokens, "tokens_per_s": round(tokens / seconds)}


def train_then_vllm(model: Path, dataset: Path, out: Path) -> dict[str, Any] | str:
    """What a pipeline does: a training step, then a vLLM step in the same parent process
    (the training child must have returned its GPU memory for the engine to start)."""
    if _cuda() is not None:
        return f"no CUDA: {_cuda()}"
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        return f"vLLM is not installed ({error})"
    from rationale.stages import predict
    from rationale.stages import train as train_stage

    train_stage.run(
        train_stage.TrainConfig(
            recipe="student-nocot-tiny",
            dataset=dataset,
            output_dir=out / "pipeline-model",
            recipe_overrides={"model_name_or_path": str(model), "max_steps": 10,
                              "max_length": 512, "eval_on_start": False},
        )
    )  # fmt: skip
    import torch

    free, total = torch.cuda.mem_get_info()
    report = predict.run(
        predict.PredictConfig(
            data="demo:dev", kind="nocot", out=out / "pipeline-predict", backend="vllm",
            model=str(out / "pipeline-model"), gpu_memory_utilization=0.85,
            max_model_len=2048, max_tokens=128, use_cache=False,
        )
    )  # fmt: skip
    return {
        "free_gib_after_training": round(free / 2**30, 1),
        "total_gib": round(total / 2**30, 1),
        "questions": report.questions,
    }


def run_checks(out: Path, folder: Path = PREPARED) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out)
    check.step("facts", facts)
    model, dataset = folder / "model", folder / "dataset"
    if not (model / "config.json").is_file() or not (dataset / "export.json").is_file():
        check.step("prepare", lambda: prepare(folder, wheels=False))
    cuda = _cuda()
    check.step("sft_cpu", lambda: train(model, dataset, out / "sft-cpu", 3, "--use_cpu", "true"))
    check.step(
        "sft_gpu",
        lambda: f"no CUDA: {cuda}" if cuda else train(model, dataset, out / "sft-gpu", 30),
    )
    check.step("vllm_generate", lambda: vllm_generate(out / "sft-gpu", out))
    check.step("train_then_vllm", lambda: train_then_vllm(model, dataset, out))
    return check.steps


def main(argv: list[str]) -> int:
    if argv[:1] == ["prepare"]:
        print(json.dumps(prepare(), indent=2))
        return 0
    if len(argv) == 2 and argv[0] == "run":
        steps = run_checks(Path(argv[1]))
        return 1 if any(step["status"] == "failed" for step in steps) else 0
    print("usage: gpu_check.py prepare | run OUT_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
