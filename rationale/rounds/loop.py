"""Stages that ask a model about train examples in rounds: distillation (the teacher) and
annotation (the rationalization model).

Each round k (1, 2, ...):

1. candidates are the executable examples in scope that no accepted rationale covers yet
   (what "covered" means is the stage's: the pool of rounds before k, plus for annotation
   what it accepted itself);
2. each is asked with the stage's prompt; round 1 is one greedy sample (with
   `greedy_first`), later rounds draw `samples` at `temperature`;
3. every sample is judged (`rationale.rounds.judge`: parsed once, validated once against
   the gold query, in worker processes: model SQL is untrusted) and written to attempts.jsonl;
4. one valid sample per example is accepted (`rationale.records.rationales.accept`) and written to
   the stage's outputs (rationales.jsonl, and for distillation the pool file of round k).

The loop stops when a round's coverage gain falls under `min_gain` points (from
`min_iterations` on), when nothing is left to cover, or after `iterations`.

Resume: attempts.jsonl is the source of truth. An example whose samples for round k are
all recorded is done; its acceptance is re-derived from those records and written to the
outputs if a kill came between the writes. Records of an example cut short by a kill are
dropped and redone; their samples come from the response cache, so no request that was
answered is sent again. Timings are appended per written batch, so a report's traffic and
wall time cover every pass, a killed one included.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from bird.console import ProgressCallback
from bird.data import BirdExample, load_split
from bird.executor import ExecutionPool
from bird.gold_cache import GoldCache
from rationale.chain.format import FINAL_HEADING
from rationale.config import SplitDir, StageConfig
from rationale.llm import (
    ChatBackend,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    SamplingParams,
    iter_generate,
)
from rationale.llm.settings import BackendConfig, RoundSampling
from rationale.prompting.teacher import prefix_reuse_order
from rationale.records.leakage import refuse_evaluation_split
from rationale.records.rationales import (
    AcceptedRationale,
    AcceptRule,
    AttemptRecord,
    ExampleRationale,
    accept,
)
from rationale.rounds.judge import Judge, PromptedExample, Refusal
from rationale.run_dir import JsonlAppender, RunDir, read_jsonl, rewrite_jsonl


class RoundConfig(BackendConfig, RoundSampling, StageConfig):
    """Keys every round-based stage shares (round k uses the sampling of round k)."""

    def sampling_for(self, round_number: int) -> SamplingParams:
        sampling = super().sampling_for(round_number)
        if not self.stop_at_answer_end:
            return sampling
        return sampling.model_copy(update={"stop_after_block": FINAL_HEADING})

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "validation_workers",
            "validation_batch",
            "iterations",
            "min_gain",
            "min_iterations",
            "allow_eval_split",
        }
    )

    data: SplitDir = Field(description="Train split folder (holds train.json).")
    stop_at_answer_end: bool = Field(
        default=True,
        description="End each sample once the SQL block after its '### Final answer' "
        "heading is complete (small models seldom emit their end token); off: generate to "
        "the end token or max_tokens.",
    )
    accept: AcceptRule = Field(
        default="most_steps", description="Which valid sample to keep per example."
    )
    iterations: int = Field(default=3, ge=1, description="At most this many rounds.")
    min_gain: float = Field(
        default=0.5,
        ge=0.0,
        description="Stop when a round adds fewer coverage points than this.",
    )
    min_iterations: int = Field(
        default=2, ge=1, description="Rounds run before min_gain may stop the loop."
    )
    validation_timeout: float = Field(
        default=30.0, gt=0, description="Seconds per SQL statement during validation."
    )
    db_ids: list[str] = Field(
        default_factory=list,
        description="Only these databases; repeat for several.",
        json_schema_extra={"flag": "db"},
    )
    limit: int | None = Field(
        default=None, ge=1, description="Only the first N executable examples."
    )
    validation_workers: int = Field(
        default=2, ge=1, description="SQL worker processes for validation."
    )
    validation_batch: int = Field(
        default=64, ge=1, description="Examples validated (and written) together."
    )
    allow_eval_split: bool = Field(
        default=False,
        description="Run on a dev or test split anyway (its results must never train a model).",
    )
    strict_explanations: bool = Field(
        default=False,
        description="Reject a rationale whose explanation names a number, date, quoted value "
        "or `name` its SQL does not use (default: accept it, flagged in its report).",
    )


class PassTiming(BaseModel):
    """Wall time and traffic of one written batch of a round (timings.jsonl)."""

    iteration: int
    seconds: float
    requests: int
    samples_generated: int
    cache_hits: int


class IterationRow(BaseModel):
    """One round's figures, all derived from the files."""

    iteration: int
    candidates: int
    attempted: int
    samples: int
    parsed: int
    valid: int
    examples_with_valid: int
    accepted: int
    pool_size: int  # entries that cover examples after this round (in scope or not)
    covered: int
    coverage: float
    gain: float
    prompt_tokens: int
    completion_tokens: int
    samples_generated: int  # sent to the backend (not from the cache), over every pass
    wall_seconds: float  # over every pass


def rounds_summary(iterations: Sequence[IterationRow], coverage: float, covered: int) -> str:
    """One line of what a round loop (distill, annotate) accepted."""
    accepted = sum(row.accepted for row in iterations)
    return f"{accepted} accepted, coverage {coverage:.1f}% ({covered})"


def _attempt_key(record: AttemptRecord) -> tuple[int, int, int]:
    return (record.iteration, record.question_id, record.sample_index)


def read_attempts(path: Path, samples_per_iteration: Sequence[int]) -> list[AttemptRecord]:
    """Attempts of complete examples only: an example whose samples a kill cut short is
    dropped (and the file rewritten) so that it is redone as a whole."""
    records = read_jsonl(path, AttemptRecord, key=_attempt_key)
    by_example: dict[tuple[int, int], int] = defaultdict(int)
    for record in records:
        by_example[(record.iteration, record.question_id)] += 1
    kept = [
        record
        for record in records
        if record.iteration < len(samples_per_iteration)
        and by_example[(record.iteration, record.question_id)]
        >= samples_per_iteration[record.iteration]
    ]
    if len(kept) != len(records):
        rewrite_jsonl(path, kept)
    return kept


def _append(path: Path, records: Sequence[BaseModel]) -> None:
    appender = JsonlAppender(path)
    try:
        appender.append(records)
    finally:
        appender.close()


@dataclass(frozen=True)
class Output:
    """A file accepted rationales are written to, and the record form they take there."""

    path: Path
    record: type[ExampleRationale]
    form: Callable[[AcceptedRationale], ExampleRationale]


class RoundLoop(ABC):
    """The state of one round-based stage in one run directory."""

    name: ClassVar[str]
    retrieval: str = "none"  # how few-shot examples were chosen (provenance)

    def __init__(
        self,
        config: RoundConfig,
        run_dir: RunDir,
        *,
        backend: ChatBackend | None,
        progress: ProgressCallback,
        refuse: Refusal | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.split = load_split(config.data)
        refuse_evaluation_split(self.split, config.allow_eval_split, self.name)
        self.scope = self.split.select(config.db_ids)
        self.executable = self.split.select(config.db_ids, config.limit, executable=True)
        self.by_id = {example.question_id: example for example in self.executable}
        self.cache = config.response_cache()
        self.backend = backend if backend is not None else config.make_backend()
        self.stats = GenerationStats()
        # One pool for the whole run: model SQL is untrusted, so it runs in worker processes
        # whose watchdog stops any query, and starting them per batch would cost more than
        # the validation itself. One gold cache: each gold query runs once.
        self.execution_pool = ExecutionPool(config.validation_workers)
        self.judge = Judge(
            split=self.split,
            model=config.model,
            backend=config.backend,
            gold=GoldCache(),
            pool=self.execution_pool,
            timeout=config.validation_timeout,
            refuse=refuse,
            strict_explanations=config.strict_explanations,
        )
        self.stage_dir = run_dir.stage_dir(self.name)
        self.attempts_path = self.stage_dir / "attempts.jsonl"
        self.rationales_path = self.stage_dir / "rationales.jsonl"
        self.timings_path = self.stage_dir / "timings.jsonl"

    def close(self) -> None:
        self.backend.close()
        self.execution_pool.close()

    # --- what each stage says -------------------------------------------------------------

    @abstractmethod
    def covered(self, iteration: int) -> set[tuple[str, int]]:
        """Keys (split, question_id) of the examples covered before round `iteration`."""

    @abstractmethod
    def prompts(self, todo: list[BirdExample], iteration: int) -> dict[str, PromptedExample]:
        """The prompt of every example to ask in round `iteration`, by request id."""

    @abstractmethod
    def outputs(self, iteration: int) -> list[Output]:
        """Where round `iteration`'s accepted rationales go, and in which form."""

    # --- one round ------------------------------------------------------------------------

    def samples_per_iteration(self) -> list[int]:
        return [0] + [self.config.sampling_for(k).n for k in range(1, self.config.iterations + 1)]

    def run_iteration(self, iteration: int, attempts: list[AttemptRecord]) -> list[AttemptRecord]:
        """Process round `iteration`; returns its attempt records (old and new)."""
        sampling = self.config.sampling_for(iteration)
        covered = self.covered(iteration)
        candidates = [e for e in self.executable if (self.split.name, e.question_id) not in covered]
        done = {record.question_id for record in attempts}
        self._reconcile(iteration, attempts)
        todo = prefix_reuse_order([e for e in candidates if e.question_id not in done])
        if not todo:
            return attempts
        timing = _TimingLog(self, iteration)
        prompted = self.prompts(todo, iteration)
        requests = [
            GenerationRequest(id=rid, messages=tuple(asked.prompt.messages), sampling=sampling)
            for rid, asked in prompted.items()
        ]
        phase = f"{self.name} round {iteration}"
        new: list[AttemptRecord] = []
        batch: list[GenerationResult] = []
        self.progress(phase, 0, len(todo), "")

        def waiting(seconds: float) -> None:
            done_now = len(new) // sampling.n + len(batch)
            self.progress(phase, done_now, len(todo), f"waiting {seconds:.0f} s for the model")

        for result in iter_generate(
            self.backend, requests, self.cache, self.stats, on_wait=waiting
        ):
            batch.append(result)
            if len(batch) >= self.config.validation_batch:
                new += self._judge_and_write(iteration, batch, prompted)
                timing.write(len(batch))
                batch = []
                self.progress(phase, len(new) // sampling.n, len(todo), "")
        if batch:
            new += self._judge_and_write(iteration, batch, prompted)
            timing.write(len(batch))
        self.progress(phase, len(todo), len(todo), "")
        return attempts + new

    def _judge_and_write(
        self,
        iteration: int,
        results: list[GenerationResult],
        prompted: dict[str, PromptedExample],
    ) -> list[AttemptRecord]:
        """Judge a batch, accept one sample per example, and write attempts first, then
        acceptances (the outputs are derived from attempts: `_reconcile` completes them
        after a kill between the writes)."""
        per_example = self.judge(iteration, results, prompted)
        accepted = [
            found
            for result, records in zip(results, per_example, strict=True)
            if (found := self._accept(prompted[result.id].example, records, iteration))
        ]
        records = [record for records in per_example for record in records]
        _append(self.attempts_path, records)
        for output in self.outputs(iteration):
            _append(output.path, [output.form(a) for a in accepted])
        return records

    def _accept(
        self, example: BirdExample, records: Sequence[AttemptRecord], iteration: int
    ) -> AcceptedRationale | None:
        return accept(
            example,
            records,
            rule=self.config.accept,
            retrieval=self.retrieval,
            sampling=self.config.sampling_for(iteration),
        )

    def _reconcile(self, iteration: int, attempts: list[AttemptRecord]) -> None:
        """Write acceptances a kill left out of the outputs."""
        if not attempts:
            return
        by_example: dict[int, list[AttemptRecord]] = defaultdict(list)
        for record in attempts:
            by_example[record.question_id].append(record)
        accepted: list[AcceptedRationale] = []
        for question_id, records in by_example.items():
            records.sort(key=lambda r: r.sample_index)
            found = self._accept(self.by_id[question_id], records, iteration)
            if found is not None:
                accepted.append(found)
        for output in self.outputs(iteration):
            present = {r.key for r in read_jsonl(output.path, output.record, key=lambda r: r.key)}
            _append(output.path, [output.form(a) for a in accepted if a.key not in present])

    # --- reporting ------------------------------------------------------------------------

    def row(
        self, iteration: int, attempts: list[AttemptRecord], timings: list[PassTiming]
    ) -> IterationRow:
        """A round's figures, all derived from the files (timings from timings.jsonl)."""
        scope = {(self.split.name, e.question_id) for e in self.executable}
        covered_after = self.covered(iteration + 1)
        before = self.covered(iteration) & scope
        after = covered_after & scope
        prompt_tokens: dict[int, int] = {}
        for record in attempts:
            prompt_tokens.setdefault(record.question_id, record.prompt_tokens or 0)
        total = max(len(scope), 1)
        return IterationRow(
            iteration=iteration,
            candidates=len(scope - before),
            attempted=len({r.question_id for r in attempts}),
            samples=len(attempts),
            parsed=sum(r.parsed for r in attempts),
            valid=sum(r.valid for r in attempts),
            examples_with_valid=len({r.question_id for r in attempts if r.valid}),
            accepted=len(after - before),
            pool_size=len(covered_after),
            covered=len(after),
            coverage=round(100.0 * len(after) / total, 2),
            gain=round(100.0 * len(after - before) / total, 2),
            prompt_tokens=sum(prompt_tokens.values()),
            completion_tokens=sum(r.completion_tokens or 0 for r in attempts),
            samples_generated=sum(t.samples_generated for t in timings),
            wall_seconds=round(sum(t.seconds for t in timings), 3),
        )

    def loop(self) -> tuple[list[IterationRow], str]:
        """The rounds, until nothing is left, the gain is too small, or the last one."""
        attempts = read_attempts(self.attempts_path, self.samples_per_iteration())
        by_iteration: dict[int, list[AttemptRecord]] = defaultdict(list)
        for record in attempts:
            by_iteration[record.iteration].append(record)
        rows: list[IterationRow] = []
        config = self.config
        for iteration in range(1, config.iterations + 1):
            covered = self.covered(iteration)
            if all((self.split.name, e.question_id) in covered for e in self.executable):
                return rows, "every executable example is covered"
            records = self.run_iteration(iteration, by_iteration[iteration])
            for output in self.outputs(iteration):
                output.path.parent.mkdir(parents=True, exist_ok=True)
                output.path.touch()  # a round that accepted nothing has its files too
            timings = [
                t for t in read_jsonl(self.timings_path, PassTiming) if t.iteration == iteration
            ]
            row = self.row(iteration, records, timings)
            rows.append(row)
            self.progress.log(
                f"{self.name} round {iteration}: {row.accepted} accepted, "
                f"coverage {row.coverage:.1f}%"
            )
            if iteration >= config.min_iterations and row.gain < config.min_gain:
                return rows, (
                    f"coverage gain {row.gain:.2f} points < min_gain {config.min_gain} "
                    f"in round {iteration}"
                )
        return rows, f"reached {config.iterations} rounds"


class _TimingLog:
    """Appends the wall time and traffic of each written batch to timings.jsonl, so the
    report's totals cover every pass, a killed one included (up to its last batch)."""

    def __init__(self, loop: RoundLoop, iteration: int) -> None:
        self.loop = loop
        self.iteration = iteration
        self._mark()

    def _mark(self) -> None:
        stats = self.loop.stats
        self.clock = time.perf_counter()
        self.generated = stats.samples_generated
        self.hits = stats.cache_hits

    def write(self, requests: int) -> None:
        stats = self.loop.stats
        timing = PassTiming(
            iteration=self.iteration,
            seconds=round(time.perf_counter() - self.clock, 3),
            requests=requests,
            samples_generated=stats.samples_generated - self.generated,
            cache_hits=stats.cache_hits - self.hits,
        )
        _append(self.loop.timings_path, [timing])
        self._mark()
