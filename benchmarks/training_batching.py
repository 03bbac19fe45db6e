"""Batching for SFT on this machine: padding waste and training speed, side by side.

    python benchmarks/training_batching.py [--bird ../shared/bird] [--steps 4] [--rounds 3]
        [--schema-style compact|sql] [--max-prompt-tokens 512] [--recipe rationalizer-tiny]
        [--packed]

Builds the rationalizer dataset as the training tests do, with the real stages: `rationale
seed` on the BIRD train questions of beer_factory (bootstrap decompose: the validated seeds
and the symbolic decomposer's validated chains), then `rationale export --kind rationalizer`
(prompt: schema, question, evidence, gold SQL, budgeted in the tiny model's tokens;
completion: the pooled rationale). It then trains the tiny recipe from the same start with
each batching below, for --steps timed optimizer steps each, in --rounds alternating rounds
(a round per batching, then again with the next data seed), so that a machine whose load
changes slows every batching alike:

- random-order padding: `train_sampling_strategy: random`, batches padded to their longest;
- the recipe's batching as resolved on this machine (on a CPU: length-grouped padding);
- with --packed also BFD packing (padding-free), the GPU default, for reference.

Padding waste is the share of pad positions in the batches the trainer ran (counted in
`training_step`), and over one whole epoch of its data loader. Training speed is real
(non-pad) tokens per second of optimizer steps; the first step of each round is trained but
not timed (one-time setup).
Targets: the recipe's batching wastes under 5% and trains at least 1.3x the tokens/s of
random-order padding. The speed ratio is given pooled over all rounds and as the median of
the rounds' own ratios (each round's runs follow each other closely, so a load that changes
between rounds cancels out there); "padding bound" is the ratio padding alone allows, (real
share of the recipe's batches) / (real share of random batches). The machine's CPU pressure
is printed after each run: a busy CPU slows every run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from training_datasets import export_builder  # benchmarks/ is on sys.path as the script's folder
from transformers import TrainerCallback

from training.batching import PaddingMeter
from training.sft import build_trainer, prepare_run

WASTE_TARGET = 0.05
SPEEDUP_TARGET = 1.3


class StepClock(TrainerCallback):
    """Wall time and the padding meter's token count at the end of every step."""

    def __init__(self, meter: PaddingMeter) -> None:
        self.meter = meter
        self.marks: list[tuple[float, int, int]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.marks.append((time.perf_counter(), self.meter.tokens, self.meter.positions))


@dataclass(frozen=True)
class Measurement:
    """One batching's counts, summed over rounds."""

    name: str
    epoch_positions: int
    epoch_tokens: int
    run_positions: int
    run_tokens: int
    steps: int
    tokens: int  # real tokens of the timed steps
    seconds: float

    @property
    def epoch_waste(self) -> float:
        return 1 - self.epoch_tokens / self.epoch_positions

    @property
    def run_waste(self) -> float:
        return 1 - self.run_tokens / self.run_positions

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    def __add__(self, other: Measurement) -> Measurement:
        summed = [
            getattr(self, name) + getattr(other, name)
            for name in ("epoch_positions", "epoch_tokens", "run_positions", "run_tokens")
        ]
        return Measurement(
            self.name,
            *summed,
            steps=self.steps + other.steps,
            tokens=self.tokens + other.tokens,
            seconds=self.seconds + other.seconds,
        )


def cpu_pressure() -> str:
    """Share of time runnable tasks waited for a CPU over the last 60 s (Linux PSI)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "unknown"
    fields = dict(part.split("=") for part in line.split()[1:])
    return f"{float(fields['avg60']):.0f}% (load average {os.getloadavg()[0]:.1f})"


def dataset_summary(dataset: Path, builder: Any) -> str:
    """Rows and token lengths (prompt plus completion) of the exported train split."""
    count = builder.token_counter(builder.tiny_model_dir())
    lengths = sorted(count(record) for record in builder.exported_records(dataset, ("train",)))
    return (
        f"{len(lengths)} train records of {lengths[0]}-{lengths[-1]} tokens "
        f"(median {statistics.median(lengths):.0f})"
    )


def measure(
    name: str, recipe: str, dataset: Path, work: Path, steps: int, seed: int, **keys: Any
) -> Measurement:
    run = prepare_run(
        recipe,
        resolve_model=export_builder().resolve_tiny,
        dataset=str(dataset),
        output_dir=str(work / f"{name.replace(' ', '-')}-{seed}"),
        max_steps=steps,
        seed=seed,
        eval_on_start=False,
        save_strategy="no",
        logging_steps=1,
        **keys,
    )
    with contextlib.redirect_stderr(io.StringIO()):
        trainer = build_trainer(run)
    epoch = PaddingMeter()
    for batch in trainer.get_train_dataloader():
        epoch.add(batch)
    clock = StepClock(trainer.padding_meter)
    trainer.add_callback(clock)
    trainer.train()
    (start, tokens0, _), (end, tokens1, _) = clock.marks[0], clock.marks[-1]
    return Measurement(
        name=name,
        epoch_positions=epoch.positions,
        epoch_tokens=epoch.tokens,
        run_positions=trainer.padding_meter.positions,
        run_tokens=trainer.padding_meter.tokens,
        steps=len(clock.marks) - 1,
        tokens=tokens1 - tokens0,
        seconds=end - start,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bird", type=Path, default=Path("../shared/bird"))
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument(
        "--schema-style", choices=["compact", "sql"], default="compact", help="export's schema"
    )
    parser.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        help="export's prompt budget (default: the training tests' full datasets)",
    )
    parser.add_argument("--recipe", default="rationalizer-tiny")
    parser.add_argument("--packed", action="store_true", help="also measure BFD packing")
    args = parser.parse_args()

    console = Console(stderr=False, width=130)
    builder = export_builder()
    settings = replace(
        builder.FULL_EXPORT,
        schema_style=args.schema_style,
        max_prompt_tokens=args.max_prompt_tokens or builder.FULL_EXPORT.max_prompt_tokens,
    )
    with tempfile.TemporaryDirectory(prefix="training-batching-") as folder:
        work = Path(folder)
        with contextlib.redirect_stderr(io.StringIO()):
            run = builder.seeded_run(work / "run", args.bird.resolve() / "train")
            dataset = builder.export_dataset(
                run, "rationalizer", work / "rationalizer", settings, builder.tiny_model_dir()
            )
        console.print(f"dataset: {dataset_summary(dataset, builder)}")
        console.print(f"CPU pressure before: {cpu_pressure()}")
        runs = [("random-order padding", {"train_sampling_strategy": "random"}), ("recipe", {})]
        if args.packed:
            runs.append(("packed (bfd)", {"packing": True, "packing_strategy": "bfd"}))
        totals: dict[str, Measurement] = {}
        ratios: dict[str, list[float]] = {name: [] for name, _ in runs}
        for round_index in range(args.rounds):
            round_results: dict[str, Measurement] = {}
            for name, keys in runs:
                seed = 42 + round_index
                result = measure(name, args.recipe, dataset, work, args.steps + 1, seed, **keys)
                totals[name] = totals[name] + result if name in totals else result
                round_results[name] = result
                console.print(
                    f"  round {round_index + 1} {name}: {result.tokens_per_second:.0f} tokens/s, "
                    f"CPU pressure {cpu_pressure()}"
                )
            baseline_speed = round_results[runs[0][0]].tokens_per_second
            for name, result in round_results.items():
                ratios[name].append(result.tokens_per_second / baseline_speed)
        results = list(totals.values())

    baseline = results[0]
    table = Table(
        title=f"SFT batching, {args.recipe} on the rationalizer dataset "
        f"({settings.schema_style} schema, prompts of at most {settings.max_prompt_tokens} tokens)"
    )
    columns = (
        "batching",
        "waste (epoch)",
        "waste (run)",
        "steps",
        "real tokens",
        "seconds",
        "tokens/s",
        "vs random (pooled)",
        "vs random (median of rounds)",
        "padding bound",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "batching" else "right")
    for result in results:
        table.add_row(
            result.name,
            f"{100 * result.epoch_waste:.1f}%",
            f"{100 * result.run_waste:.1f}%",
            str(result.steps),
            f"{result.tokens:,}",
            f"{result.seconds:.1f}",
            f"{result.tokens_per_second:.0f}",
            f"{result.tokens_per_second / baseline.tokens_per_second:.2f}x",
            f"{statistics.median(ratios[result.name]):.2f}x",
            f"{(1 - result.run_waste) / (1 - baseline.run_waste):.2f}x",
        )
    console.print(table)
    recipe = results[1]
    speedup = statistics.median(ratios[recipe.name])
    waste_ok = recipe.run_waste < WASTE_TARGET
    speed_ok = speedup >= SPEEDUP_TARGET
    verdict = {True: "met", False: "missed"}
    console.print(
        f"recipe batching: waste {100 * recipe.run_waste:.1f}% "
        f"(target < {100 * WASTE_TARGET:.0f}%: {verdict[waste_ok]}), "
        f"{speedup:.2f}x the tokens/s of random-order padding (median of rounds) "
        f"(target >= {SPEEDUP_TARGET}x: {verdict[speed_ok]})"
    )


if __name__ == "__main__":
    main()
