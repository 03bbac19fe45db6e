"""How good is the tiny rationalizer a CPU user trains? Base vs trained, on held-out questions.

The number a CPU user sees: of train questions the model never trained on, the share whose
generated rationale parses, passes every validation check, and whose assembled query is
EX-equal to gold; for SmolLM2-135M as shipped (base) and after `rationale train --recipe
rationalizer-tiny`, with the training time. Everything goes through the project's own
commands, as a user would run them:

1. `rationale seed --bootstrap decompose`: the hand-written seeds plus the symbolic
   decomposer's validated chains for every train question with a database (the pool);
2. `rationale export --kind rationalizer --eval-fraction F`: a hash-chosen share of the
   questions goes to the validation split and is never trained on;
3. `rationale generate` (hf, greedy) on the validation prompts with the base model;
4. `rationale train --recipe rationalizer-tiny --max-steps N`;
5. `rationale generate` with the trained model folder on the same prompts;
6. `rationale validate` on both sets of outputs against the gold queries.

    python benchmarks/rationalizer_quality.py --data ../shared/bird/train --steps 48
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table

from bird.console import table_console

RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]
CHECKS = ("parses", "steps_execute", "ex_equal")


def rationale(*args: str) -> float:
    """Run one command; its wall time in seconds. Its output goes to this terminal."""
    started = time.monotonic()
    subprocess.run([*RATIONALE, *args], check=True)
    return time.monotonic() - started


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def generate_and_validate(
    work: Path, name: str, model: str, data: str, prompts: Path, max_tokens: int
) -> dict[str, float]:
    outputs = work / f"{name}.outputs.jsonl"
    seconds = rationale(
        "generate", "--input", str(prompts), "--output", str(outputs), "--backend", "hf",
        "--model", model, "--device", "cpu", "--batch-size", "8",
        "--max-tokens", str(max_tokens), "--no-cache",
    )  # fmt: skip
    rationales = work / f"{name}.rationales.jsonl"
    lines = []
    for record in read_jsonl(outputs):
        question_id, db_id = str(record["id"]).split(":", 1)
        text = record["outputs"][0]["text"]
        lines.append(json.dumps({"question_id": int(question_id), "db_id": db_id, "text": text}))
    rationales.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report_path = work / f"{name}.validated.jsonl"
    rationale("validate", "--data", data, "--input", str(rationales), "--output", str(report_path))
    checks = {check: 0 for check in CHECKS}
    valid = 0
    for record in read_jsonl(report_path):
        outcomes = {outcome["name"]: outcome["status"] for outcome in record["outcomes"]}
        for check in CHECKS:
            checks[check] += outcomes.get(check) == "passed"
        valid += bool(record["valid"])
    return {**checks, "valid": valid, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/bird/train", help="Train split folder.")
    parser.add_argument("--steps", type=int, default=48, help="Training steps (batch of 4).")
    parser.add_argument("--eval-fraction", type=float, default=0.1, help="Held-out share.")
    parser.add_argument("--max-tokens", type=int, default=384, help="Tokens per rationale.")
    parser.add_argument("--max-prompt-tokens", type=int, default=1024, help="Prompt budget.")
    parser.add_argument("--work", type=Path, help="Working folder (default: a temporary one).")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="rationalizer-quality-"))
    run = work / "run"
    rationale("seed", "--data", args.data, "--run", str(run), "--bootstrap", "decompose")
    dataset = run / "export" / "rationalizer"
    rationale(
        "export", "--run", str(run), "--kind", "rationalizer", "--tokenizer", "smollm2-135m",
        "--max-prompt-tokens", str(args.max_prompt_tokens),
        "--eval-fraction", str(args.eval_fraction),
    )  # fmt: skip
    held_out = read_jsonl(dataset / "validation.jsonl")
    trained_on = read_jsonl(dataset / "train.jsonl")
    assert not {r["question_id"] for r in held_out} & {r["question_id"] for r in trained_on}
    prompts = work / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": f"{r['question_id']}:{r['db_id']}", "messages": r["prompt"]}) + "\n"
            for r in held_out
        ),
        encoding="utf-8",
    )
    base = generate_and_validate(work, "base", "smollm2-135m", args.data, prompts, args.max_tokens)
    model_dir = work / "rationalizer"
    train_seconds = rationale(
        "train", "--recipe", "rationalizer-tiny", "--dataset", str(dataset),
        "--output-dir", str(model_dir), "--max-steps", str(args.steps),
        "--max_length", str(args.max_prompt_tokens + args.max_tokens),
    )  # fmt: skip
    trained = generate_and_validate(
        work, "trained", str(model_dir), args.data, prompts, args.max_tokens
    )

    total = len(held_out)
    table = Table(
        title=f"tiny rationalizer on {total} held-out questions of {args.data} "
        f"(trained on {len(trained_on)}: seeds + decomposer chains; {args.steps} steps in "
        f"{train_seconds / 60:.1f} min)"
    )
    table.add_column("model")
    for column in ("parses", "steps execute", "EX-equal", "valid (all checks)", "generation s"):
        table.add_column(column, justify="right")
    for name, counts in (("SmolLM2-135M (base)", base), ("trained rationalizer", trained)):
        table.add_row(
            name,
            *(f"{counts[check]}/{total}" for check in CHECKS),
            f"{counts['valid']}/{total}",
            f"{counts['seconds']:.0f}",
        )
    table_console().print(table)
    print(f"files in {work}")


if __name__ == "__main__":
    main()
