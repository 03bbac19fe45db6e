"""Prefix reuse of the teacher prompts: how much of each request a prefix cache can skip.

    python benchmarks/prefix_reuse.py [--bird ../shared/bird] [--shots 3] [--model smollm2-135m]

For every executable example of the BIRD data (dev, and the beer_factory train questions)
the teacher prompts are built as the distill stage builds them: the top-3 shots from
`rationale.prompting.retrieval` (SQL signature) over a pool of validated rationales, the schema
rendered with the stage's defaults (12,000 characters, 3 sample values). The train pool is
the validated beer_factory seeds plus the decomposer's validated structured chains of the
beer_factory questions; the dev pool holds the dev chains (the retriever never returns the
query itself). Skeleton mode hands over the example's own decomposition.

Each chat goes through the tiny model's chat template and tokenizer. In the order the
requests are sent, a request reuses the longest common prefix of its tokens with the
previous request's; the share is reused tokens / prompt tokens over the whole stream.
"block-aligned" counts only whole 16-token blocks, as vLLM's prefix cache stores them.

Rows: our layout in the order `prefix_reuse_order` sends (grouped by database), the
split's file order, a shuffled order (requests of several databases interleaved), and the
naive layout with the schema after the shots. Target: at least 60% (ours).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bird.data import BirdExample, BirdSplit, load_split
from bird.schema import load_schema, render_schema
from rationale.chain.format import Rationale
from rationale.llm.models import resolve_model
from rationale.prompting.retrieval import ShotQuery, build_retriever
from rationale.prompting.teacher import (
    PromptMode,
    TeacherPrompt,
    build_teacher_prompt,
    prefix_reuse_order,
)
from rationale.prompting.templates import PROMPTS_DIR
from rationale.records.rationales import PoolEntry
from rationale.stages.decompose import DecompositionRecord, decompose_examples
from rationale.stages.seed import read_seed_file
from rationale.validation.checks import ValidationItem, validate_many

TARGET = 60.0  # % of prompt tokens equal to the previous request's prefix
BLOCK = 16  # vLLM's default KV-cache block size
SCHEMA_MAX_CHARS = 12000  # the distill stage's defaults
SCHEMA_SAMPLE_VALUES = 3


@dataclass(frozen=True)
class Target:
    """One split's requests: examples with their shots, skeletons and schemas."""

    split: BirdSplit
    examples: list[BirdExample]
    shots: dict[int, list[PoolEntry]]
    skeletons: dict[int, Rationale]
    schemas: dict[str, str]


def _validated_seeds(train: BirdSplit, seeds_path: Path) -> list[PoolEntry]:
    """Seeds whose database is here and whose rationale reproduces the gold result."""
    candidates = [
        (train.example(seed.question_id), seed.rationale())
        for seed in read_seed_file(seeds_path)
        if train.has_database(seed.db_id)
    ]
    reports = validate_many(
        [
            ValidationItem(
                rationale=rationale,
                db_path=train.database_path(example.db_id),
                gold_sql=example.sql,
                question_id=example.question_id,
                db_id=example.db_id,
            )
            for example, rationale in candidates
        ]
    )
    return [
        PoolEntry.from_example(example, "train", rationale, "seed")
        for (example, rationale), report in zip(candidates, reports, strict=True)
        if report.outcome("ex_equal").passed
    ]


def _target(
    split: BirdSplit, extra_pool: list[PoolEntry], shots: int, progress: Progress
) -> Target:
    examples = split.executable_examples()
    task = progress.add_task(f"decompose + validate {split.name}", total=None)

    class Report:
        def __call__(self, phase: str, done: int, total: int | None, note: str = "") -> None:
            description = f"{phase} {split.name}"
            progress.update(task, description=description, completed=done, total=total)

        def log(self, message: str) -> None:
            progress.console.print(message)

    records, _ = decompose_examples(split, examples, validate=True, progress=Report())
    by_id: dict[int, DecompositionRecord] = {record.question_id: record for record in records}
    seeded = {entry.question_id for entry in extra_pool}  # a seed wins over its chain
    pool = extra_pool + [
        PoolEntry.from_example(
            split.example(record.question_id), split.name, record.rationale(), "decompose"
        )
        for record in records
        if record.structured
        and record.validation == "ex_equal"
        and record.question_id not in seeded
    ]
    retriever = build_retriever(pool, "sql", target_split=split.name)
    chosen = retriever.retrieve_many(
        [
            ShotQuery(
                split=split.name,
                question_id=e.question_id,
                db_id=e.db_id,
                question=e.question,
                sql=e.sql,
            )
            for e in examples
        ],
        shots,
    )
    schemas = {
        db_id: render_schema(
            load_schema(split, db_id, sample_values=SCHEMA_SAMPLE_VALUES), SCHEMA_MAX_CHARS
        )
        for db_id in dict.fromkeys(e.db_id for e in examples)
    }
    return Target(
        split=split,
        examples=examples,
        shots={e.question_id: s for e, s in zip(examples, chosen, strict=True)},
        skeletons={qid: record.rationale() for qid, record in by_id.items()},
        schemas=schemas,
    )


def _prompt(
    target: Target, example: BirdExample, mode: PromptMode, prompts_dir: Path
) -> TeacherPrompt:
    skeleton = target.skeletons.get(example.question_id)
    return build_teacher_prompt(
        example,
        target.schemas[example.db_id],
        target.shots[example.question_id],
        mode=mode if skeleton is not None else "free",  # no chain: the stage asks freely
        skeleton=skeleton,
        prompts_dir=prompts_dir,
    )


def naive_prompts_dir(folder: Path) -> Path:
    """A copy of prompts/ whose user message puts the schema after the shots."""
    shutil.copytree(PROMPTS_DIR, folder, dirs_exist_ok=True)
    layout = folder / "_teacher_user.j2"
    source = layout.read_text(encoding="utf-8")
    block = re.compile(r"\{% block (schema|shots) %\}.*?\{% endblock %\}\n", re.DOTALL)
    found = {match[1]: match[0] for match in block.finditer(source)}
    if set(found) != {"schema", "shots"}:
        raise SystemExit(f"{layout}: expected a schema and a shots block to swap")
    swapped = block.sub(lambda m: found["shots" if m[1] == "schema" else "schema"], source)
    layout.write_text(swapped, encoding="utf-8")
    return folder


def _tokens(tokenizer, prompt: TeacherPrompt) -> list[int]:
    messages = [message.model_dump() for message in prompt.messages]
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


@dataclass(frozen=True)
class Reuse:
    requests: int
    tokens: int
    reused: int
    reused_blocks: int

    @property
    def share(self) -> float:
        return 100.0 * self.reused / self.tokens if self.tokens else 0.0

    @property
    def block_share(self) -> float:
        return 100.0 * self.reused_blocks / self.tokens if self.tokens else 0.0


def prefix_reuse(stream: Sequence[Sequence[int]]) -> Reuse:
    """Tokens each request shares with the previous request's prefix, summed over `stream`."""
    reused = blocks = 0
    for previous, current in zip([[], *stream], stream, strict=False):
        common = _common_prefix(previous, current)
        # The last token is always computed, so a full match reuses one token less.
        common = min(common, len(current) - 1)
        reused += common
        blocks += common // BLOCK * BLOCK
    return Reuse(len(stream), sum(map(len, stream)), reused, blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bird", type=Path, default=Path("../shared/bird"))
    parser.add_argument("--seeds", type=Path, default=PROMPTS_DIR / "seeds.jsonl")
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m", help="tokenizer: a local model name")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    console = Console(width=170)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model))
    train, dev = load_split(args.bird / "train"), load_split(args.bird / "dev")
    with Progress(console=console, transient=True) as progress:
        targets = [
            _target(train, _validated_seeds(train, args.seeds), args.shots, progress),
            _target(dev, [], args.shots, progress),
        ]
    prepared = time.perf_counter() - started

    rows: list[tuple[str, str, PromptMode, list[Reuse], float]] = []
    with tempfile.TemporaryDirectory() as temp:
        layouts = {"ours": PROMPTS_DIR, "naive": naive_prompts_dir(Path(temp) / "p")}
        plans = [
            ("ours", "grouped by db", prefix_reuse_order),
            ("ours", "file order", list),
            ("ours", "shuffled", lambda es: random.Random(0).sample(es, len(es))),
            ("naive", "grouped by db", prefix_reuse_order),
        ]
        for layout, order_name, order in plans:
            for mode in ("free", "skeleton"):
                tick = time.perf_counter()
                streams = [
                    [
                        _tokens(tokenizer, _prompt(t, e, mode, layouts[layout]))
                        for e in order(t.examples)
                    ]
                    for t in targets
                ]
                elapsed = time.perf_counter() - tick
                # All: one stream, the train target's requests and then dev's.
                reuses = [prefix_reuse(s) for s in streams]
                reuses.append(prefix_reuse([tokens for s in streams for tokens in s]))
                rows.append((layout, order_name, mode, reuses, elapsed))

    table = Table(title=f"Prefix reuse of teacher prompts ({args.model} tokenizer)")
    for column in ("layout", "order", "mode"):
        table.add_column(column)
    split_names = [t.split.name for t in targets]
    for column in (
        "requests",
        "mean prompt tokens",
        *(f"reused {name}" for name in split_names),
        "reused all",
        "block-aligned all",
        "vs ours",
        "target",
        "met",
        "build+tokenize s",
    ):
        table.add_column(column, justify="right")
    ours = {mode: reuses[-1].share for layout, order, mode, reuses, _ in rows[:2]}
    for layout, order_name, mode, reuses, elapsed in rows:
        whole = reuses[-1]
        is_ours = layout == "ours" and order_name == "grouped by db"
        table.add_row(
            layout,
            order_name,
            mode,
            str(whole.requests),
            f"{whole.tokens / whole.requests:.0f}",
            *(f"{reuse.share:.1f}%" for reuse in reuses[:-1]),
            f"{whole.share:.1f}%",
            f"{whole.block_share:.1f}%",
            f"{whole.share / ours[mode]:.2f}x" if ours[mode] else "-",
            f">= {TARGET:.0f}%" if is_ours else "",
            ("yes" if whole.share >= TARGET else "NO") if is_ours else "",
            f"{elapsed:.1f}",
        )
    console.print(table)
    counts = ", ".join(f"{t.split.name}: {len(t.examples)}" for t in targets)
    console.print(f"requests {counts}; pools, schemas and shots prepared in {prepared:.0f} s")


if __name__ == "__main__":
    main()
