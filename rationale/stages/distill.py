"""Distillation: a teacher LLM decomposes every train query into a validated rationale.

Each iteration k (1, 2, ...):

1. the pool is the union of `pool/iteration_0..k-1.jsonl` (read from the files, so a resumed
   run sees exactly the pool an uninterrupted one saw);
2. candidates are the executable examples the pool does not cover yet;
3. for each, the retriever (built once over that pool) picks few-shot rationales, never the
   example itself, and the teacher prompt is built with schema, evidence, question and
   gold SQL (in skeleton mode also the decomposer's steps);
4. requests go through `rationale.llm` with the on-disk response cache, in
   `prefix_reuse_order`; every sample is parsed and validated by execution (in worker
   processes with a watchdog: teacher SQL is untrusted) and written to attempts.jsonl;
5. one valid sample per example is accepted (see `choose_sample`), appended to
   rationales.jsonl and pool/iteration_k.jsonl.

The loop stops when an iteration's coverage gain falls under `min_gain` points (checked
from `min_iterations` on: a greedy first pass says little about what sampling adds), when
nothing is left to cover, or after `iterations`.

Resume: attempts.jsonl is the source of truth. An example whose samples for iteration k
are all recorded is done; its acceptance is re-derived from those records and written to
rationales.jsonl / the pool file if a kill came between the writes. Records of an example
cut short by a kill are dropped and redone; their samples come from the response cache,
so no request that was answered is sent again.
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample, load_split
from bird.executor import ExecutionPool
from bird.gold_cache import GoldCache
from bird.schema import load_schema, render_schema
from rationale.config import StageConfig
from rationale.decompose import DecompositionError, decompose_sql
from rationale.format import Rationale
from rationale.judge import Judge, PromptedExample
from rationale.leakage import refuse_evaluation_split
from rationale.llm import (
    ChatBackend,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    iter_generate,
)
from rationale.llm.config import BackendConfig, RoundSampling
from rationale.records import (
    AcceptedRationale,
    AcceptRule,
    AttemptRecord,
    PoolEntry,
    ShotRef,
    accept,
)
from rationale.retrieval import ShotQuery, build_retriever
from rationale.run_dir import (
    JsonlAppender,
    RunConfigError,
    RunDir,
    read_jsonl,
    rewrite_jsonl,
    write_text_atomic,
)
from rationale.stages.decompose import database_schema
from rationale.teacher_prompt import (
    SKELETON_PLACEHOLDER,
    TeacherPrompt,
    build_teacher_prompt,
    prefix_reuse_order,
)
from rationale.templates import PROMPTS_DIR

NAME = "distill"
PromptModeName = Literal["free", "skeleton"]
RetrievalName = Literal["sql", "question", "hybrid"]


class DistillConfig(BackendConfig, RoundSampling, StageConfig):
    """Stage 2: the teacher loop. Round k of the sampling settings is iteration k."""

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

    data: Path = Field(description="Train split folder (holds train.json).")
    # what the teacher sees
    mode: PromptModeName = Field(
        default="free",
        description="free: the paper's prompt; skeleton: the decomposer's verified steps are "
        "given and the teacher writes the explanations.",
    )
    shots: int = Field(default=3, ge=0, description="Few-shot rationales per prompt.")
    retrieval: RetrievalName = Field(
        default="sql",
        description="How shots are chosen: sql (keyword signature of the gold SQL), question "
        "(embeddings), hybrid.",
    )
    hybrid_weight: float = Field(
        default=0.5, ge=0.0, le=1.0, description="hybrid retrieval: weight of the SQL score."
    )
    schema_max_chars: int | None = Field(
        default=12000, ge=200, description="Schema text budget per prompt (characters)."
    )
    schema_sample_values: int = Field(
        default=3, ge=0, description="Sample values shown per column."
    )
    # acceptance and stopping
    accept: AcceptRule = Field(
        default="most_steps", description="Which valid sample to keep per example."
    )
    iterations: int = Field(default=3, ge=1, description="At most this many iterations.")
    min_gain: float = Field(
        default=0.5,
        ge=0.0,
        description="Stop when an iteration adds fewer coverage points than this.",
    )
    min_iterations: int = Field(
        default=2, ge=1, description="Iterations run before min_gain may stop the loop."
    )
    validation_timeout: float = Field(
        default=30.0, gt=0, description="Seconds per SQL statement during validation."
    )
    # which examples
    db_ids: list[str] = Field(
        default_factory=list,
        description="Only these databases; repeat for several.",
        json_schema_extra={"flag": "db"},
    )
    limit: int | None = Field(
        default=None, ge=1, description="Only the first N executable examples."
    )
    # runtime only
    validation_workers: int = Field(
        default=2, ge=1, description="SQL worker processes for validation."
    )
    validation_batch: int = Field(
        default=64, ge=1, description="Examples validated (and written) together."
    )
    allow_eval_split: bool = Field(
        default=False,
        description="Distil a dev or test split anyway (its pool must never train a model).",
    )

    @field_validator("data")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class PassTiming(BaseModel):
    """Wall time and traffic of one written batch of an iteration (timings.jsonl)."""

    iteration: int
    seconds: float
    requests: int
    samples_generated: int
    cache_hits: int


class IterationRow(BaseModel):
    iteration: int
    candidates: int
    attempted: int
    samples: int
    parsed: int
    valid: int
    examples_with_valid: int
    accepted: int
    pool_size: int
    covered: int
    coverage: float
    gain: float
    prompt_tokens: int
    completion_tokens: int
    samples_generated: int  # sent to the backend (not from the cache), over every pass
    wall_seconds: float  # over every pass


class DistillReport(BaseModel):
    split: str
    teacher_model: str
    backend: str
    mode: str
    examples_in_scope: int
    executable: int
    no_database: dict[str, int]
    seed_pool: int
    iterations: list[IterationRow]
    stop_reason: str
    covered: int
    coverage: float
    this_pass: dict[str, float] = Field(default_factory=dict)


def _unfinished(rationale: Rationale) -> str | None:
    """Why a parsed rationale cannot be accepted whatever its SQL: it still holds the
    skeleton's placeholder instead of an explanation (validation checks SQL only)."""
    texts = [step.explanation for step in rationale.steps] + [rationale.final_explanation]
    if any(SKELETON_PLACEHOLDER in text for text in texts):
        return f"explanation left as the skeleton placeholder {SKELETON_PLACEHOLDER!r}"
    return None


def _attempt_key(record: AttemptRecord) -> tuple[int, int, int]:
    return (record.iteration, record.question_id, record.sample_index)


def _read_attempts(path: Path, samples_per_iteration: Sequence[int]) -> list[AttemptRecord]:
    """Attempts of complete examples only: an example whose samples a kill cut short is
    dropped (and the file rewritten) so that it is redone as a whole."""
    records = read_jsonl(path, AttemptRecord, key=_attempt_key)
    by_example: dict[tuple[int, int], int] = defaultdict(int)
    for record in records:
        by_example[(record.iteration, record.question_id)] += 1
    kept = [
        record
        for record in records
        if by_example[(record.iteration, record.question_id)]
        >= samples_per_iteration[record.iteration]
    ]
    if len(kept) != len(records):
        rewrite_jsonl(path, kept)
    return kept


class Distiller:
    """The loop's state for one run directory; `run` is the entry point."""

    def __init__(
        self,
        config: DistillConfig,
        run_dir: RunDir,
        *,
        backend: ChatBackend | None = None,
        progress: ProgressCallback = no_progress,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.split = load_split(config.data)
        refuse_evaluation_split(self.split, config.allow_eval_split, "distill")
        self.progress = progress
        self.scope = self.split.select(config.db_ids)
        self.executable = self.split.select(config.db_ids, config.limit, executable=True)
        self.no_database = {
            db_id: count
            for db_id, count in self.split.missing_databases().items()
            if any(e.db_id == db_id for e in self.scope)
        }
        self.by_id = {example.question_id: example for example in self.executable}
        self.cache = config.response_cache()
        self.backend = backend if backend is not None else config.make_backend()
        self.stats = GenerationStats()
        self.schema_texts: dict[str, str] = {}
        self.table_columns: dict[str, dict[str, list[str]] | None] = {}  # for skeletons
        self._pool_files: dict[int, tuple[tuple[int, int] | None, list[PoolEntry]]] = {}
        # One pool for the whole run: teacher SQL is untrusted, so it runs in worker
        # processes whose watchdog stops any query, and starting them per batch would cost
        # more than the validation itself. One gold cache: each gold query runs once.
        self.execution_pool = ExecutionPool(config.validation_workers)
        self.judge = Judge(
            split=self.split,
            model=config.model,
            backend=config.backend,
            gold=GoldCache(),
            pool=self.execution_pool,
            timeout=config.validation_timeout,
            refuse=_unfinished,
        )
        self.stage_dir = run_dir.stage_dir(NAME)
        self.attempts_path = self.stage_dir / "attempts.jsonl"
        self.rationales_path = self.stage_dir / "rationales.jsonl"
        self.timings_path = self.stage_dir / "timings.jsonl"

    def close(self) -> None:
        self.backend.close()
        self.execution_pool.close()

    # --- inputs ---------------------------------------------------------------------------

    def pool_before(self, iteration: int) -> list[PoolEntry]:
        """The pool iteration `iteration` retrieves from: iteration files 0..iteration-1."""
        entries: dict[tuple[str, int], PoolEntry] = {}
        for k in range(iteration):
            for entry in self._pool_file(k):
                entries.setdefault(entry.key, entry)
        return list(entries.values())

    def _pool_file(self, iteration: int) -> list[PoolEntry]:
        """One iteration file's entries, re-read only when the file changed (parsing a
        rationale normalizes its SQL, which is not free)."""
        path = self.run_dir.pool_path(iteration)
        stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path.exists() else None
        cached = self._pool_files.get(iteration)
        if cached is None or cached[0] != stamp:
            cached = (stamp, read_jsonl(path, PoolEntry, key=lambda entry: entry.key))
            self._pool_files[iteration] = cached
        return cached[1]

    def schema_text(self, db_id: str) -> str:
        if db_id not in self.schema_texts:
            schema = load_schema(self.split, db_id, sample_values=self.config.schema_sample_values)
            self.schema_texts[db_id] = render_schema(schema, max_chars=self.config.schema_max_chars)
        return self.schema_texts[db_id]

    def prompt_for(self, example: BirdExample, shots: list[PoolEntry]) -> PromptedExample:
        prompt = self._teacher_prompt(example, shots)
        mode = "skeleton" if prompt.template.endswith("skeleton.j2") else "free"
        refs = tuple(ShotRef.of(shot) for shot in shots)
        return PromptedExample(example=example, prompt=prompt, shots=refs, mode=mode)

    def _teacher_prompt(self, example: BirdExample, shots: list[PoolEntry]) -> TeacherPrompt:
        schema_text = self.schema_text(example.db_id)
        if self.config.mode == "skeleton":
            if example.db_id not in self.table_columns:
                self.table_columns[example.db_id] = database_schema(self.split, example.db_id)
            try:
                skeleton = decompose_sql(example.sql, self.table_columns[example.db_id]).rationale
            except DecompositionError:
                skeleton = None  # the gold query does not parse: the free prompt still works
            if skeleton is not None:
                return build_teacher_prompt(example, schema_text, shots, "skeleton", skeleton)
        return build_teacher_prompt(example, schema_text, shots, "free")

    def _shots(self, pool: list[PoolEntry], todo: list[BirdExample]) -> list[list[PoolEntry]]:
        if not pool or self.config.shots == 0:
            return [[] for _ in todo]
        retriever = build_retriever(
            pool,
            self.config.retrieval,
            target_split=self.split.name,
            hybrid_weight=self.config.hybrid_weight,
        )
        queries = [
            ShotQuery(
                split=self.split.name,
                question_id=e.question_id,
                db_id=e.db_id,
                question=e.question,
                sql=e.sql,
            )
            for e in todo
        ]
        return retriever.retrieve_many(queries, self.config.shots)

    # --- one iteration --------------------------------------------------------------------

    def run_iteration(self, iteration: int, attempts: list[AttemptRecord]) -> list[AttemptRecord]:
        """Process iteration `iteration`; returns its attempt records (old and new)."""
        sampling = self.config.sampling_for(iteration)
        pool = self.pool_before(iteration)
        covered = {entry.key for entry in pool}
        candidates = [e for e in self.executable if (self.split.name, e.question_id) not in covered]
        done = {record.question_id for record in attempts}
        self._reconcile(iteration, attempts)
        todo = prefix_reuse_order([e for e in candidates if e.question_id not in done])
        if not todo:
            return attempts
        timing = _TimingLog(self, iteration)
        prompted: dict[str, PromptedExample] = {}
        for example, shots in zip(todo, self._shots(pool, todo), strict=True):
            prompted[f"{self.split.name}:{example.question_id}:it{iteration}"] = self.prompt_for(
                example, shots
            )
        requests = [
            GenerationRequest(
                id=request_id, messages=tuple(asked.prompt.messages), sampling=sampling
            )
            for request_id, asked in prompted.items()
        ]
        phase = f"iteration {iteration}"
        new: list[AttemptRecord] = []
        batch: list[GenerationResult] = []
        self.progress(phase, 0, len(todo), "")

        def waiting(seconds: float) -> None:
            done = len(new) // sampling.n + len(batch)
            self.progress(phase, done, len(todo), f"waiting {seconds:.0f} s for the model")

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
        """Judge a batch of results, accept one sample per example, and write attempts first,
        then acceptances (rationales.jsonl and the pool file are derived from attempts:
        `_reconcile` completes them after a kill between the writes)."""
        per_example = self.judge(iteration, results, prompted)
        accepted = [
            found
            for result, records in zip(results, per_example, strict=True)
            if (found := self._accept(prompted[result.id].example, records, iteration))
        ]
        records = [record for records in per_example for record in records]
        self._append(self.attempts_path, records)
        self._append(self.rationales_path, accepted)
        self._append(self.run_dir.pool_path(iteration), [a.pool_entry("teacher") for a in accepted])
        return records

    def _accept(
        self, example: BirdExample, records: Sequence[AttemptRecord], iteration: int
    ) -> AcceptedRationale | None:
        return accept(
            example,
            records,
            rule=self.config.accept,
            retrieval=self.config.retrieval,
            sampling=self.config.sampling_for(iteration),
        )

    @staticmethod
    def _append(path: Path, records: Sequence[BaseModel]) -> None:
        appender = JsonlAppender(path)
        try:
            appender.append(records)
        finally:
            appender.close()

    def _reconcile(self, iteration: int, attempts: list[AttemptRecord]) -> None:
        """Write acceptances a kill left out of rationales.jsonl and the pool file."""
        if not attempts:
            return
        accepted_keys = {
            r.question_id
            for r in read_jsonl(self.rationales_path, AcceptedRationale, key=lambda r: r.key)
            if r.provenance.iteration == iteration
        }
        pool_keys = {e.question_id for e in self._pool_file(iteration)}
        by_example: dict[int, list[AttemptRecord]] = defaultdict(list)
        for record in attempts:
            by_example[record.question_id].append(record)
        missing_rationales: list[AcceptedRationale] = []
        missing_pool: list[PoolEntry] = []
        for question_id, records in by_example.items():
            records.sort(key=lambda r: r.sample_index)
            accepted = self._accept(self.by_id[question_id], records, iteration)
            if accepted is None:
                continue
            if question_id not in accepted_keys:
                missing_rationales.append(accepted)
            if question_id not in pool_keys:
                missing_pool.append(accepted.pool_entry("teacher"))
        self._append(self.rationales_path, missing_rationales)
        self._append(self.run_dir.pool_path(iteration), missing_pool)

    # --- reporting ------------------------------------------------------------------------

    def row(
        self, iteration: int, attempts: list[AttemptRecord], timings: list[PassTiming]
    ) -> IterationRow:
        """An iteration's figures, all derived from the files (timings from timings.jsonl)."""
        scope = {(self.split.name, e.question_id) for e in self.executable}
        before = {e.key for e in self.pool_before(iteration)} & scope
        after = {e.key for e in self.pool_before(iteration + 1)} & scope
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
            pool_size=len(self.pool_before(iteration + 1)),
            covered=len(after),
            coverage=round(100.0 * len(after) / total, 2),
            gain=round(100.0 * len(after - before) / total, 2),
            prompt_tokens=sum(prompt_tokens.values()),
            completion_tokens=sum(r.completion_tokens or 0 for r in attempts),
            samples_generated=sum(t.samples_generated for t in timings),
            wall_seconds=round(sum(t.seconds for t in timings), 3),
        )


class _TimingLog:
    """Appends the wall time and traffic of each written batch to timings.jsonl, so the
    report's totals cover every pass, a killed one included (up to its last batch)."""

    def __init__(self, distiller: Distiller, iteration: int) -> None:
        self.distiller = distiller
        self.iteration = iteration
        self._mark()

    def _mark(self) -> None:
        stats = self.distiller.stats
        self.clock = time.perf_counter()
        self.generated = stats.samples_generated
        self.hits = stats.cache_hits

    def write(self, requests: int) -> None:
        stats = self.distiller.stats
        timing = PassTiming(
            iteration=self.iteration,
            seconds=round(time.perf_counter() - self.clock, 3),
            requests=requests,
            samples_generated=stats.samples_generated - self.generated,
            cache_hits=stats.cache_hits - self.hits,
        )
        self.distiller._append(self.distiller.timings_path, [timing])
        self._mark()


def _clear_outputs(run_dir: RunDir) -> None:
    shutil.rmtree(run_dir.stage_dir(NAME), ignore_errors=True)
    for path in run_dir.pool_dir.glob("iteration_*.jsonl"):
        if path.name != "iteration_0.jsonl":
            path.unlink()


def run(
    config: DistillConfig,
    run_dir: RunDir,
    *,
    force: bool = False,
    progress: ProgressCallback = no_progress,
    backend: ChatBackend | None = None,
) -> DistillReport:
    """Run (or resume) the loop in `run_dir`; writes attempts, rationales, pool files, report."""
    with run_dir.locked():
        return _run(config, run_dir, force=force, progress=progress, backend=backend)


def _run(
    config: DistillConfig,
    run_dir: RunDir,
    *,
    force: bool,
    progress: ProgressCallback,
    backend: ChatBackend | None,
) -> DistillReport:
    clock = time.perf_counter()
    config.check_model()
    seed_pool = run_dir.pool_path(0)
    if not seed_pool.exists():
        raise RunConfigError(
            f"{seed_pool} is missing: run `rationale seed --data TRAIN_DIR --run {run_dir.root}` "
            "first"
        )
    distiller = Distiller(config, run_dir, backend=backend, progress=progress)
    try:
        inputs = [
            seed_pool,
            distiller.split.root / f"{distiller.split.name}.json",
            *sorted(PROMPTS_DIR.glob("*.j2")),
        ]
        manifest = run_dir.begin_stage(NAME, config, inputs, force=force, resumes=True)
        if force:
            _clear_outputs(run_dir)
        samples_per_iteration = [0] + [
            config.sampling_for(k).n for k in range(1, config.iterations + 1)
        ]
        attempts = _read_attempts(distiller.attempts_path, samples_per_iteration)
        by_iteration: dict[int, list[AttemptRecord]] = defaultdict(list)
        for record in attempts:
            by_iteration[record.iteration].append(record)
        rows, stop_reason = _loop(config, distiller, by_iteration)
    finally:
        distiller.close()
    scope = {(distiller.split.name, e.question_id) for e in distiller.executable}
    covered_keys = {e.key for e in distiller.pool_before(len(rows) + 1)} & scope
    report = DistillReport(
        split=distiller.split.name,
        teacher_model=config.model,
        backend=config.backend,
        mode=config.mode,
        examples_in_scope=len(distiller.scope),
        executable=len(distiller.executable),
        no_database=distiller.no_database,
        seed_pool=len(read_jsonl(seed_pool, PoolEntry)),
        iterations=rows,
        stop_reason=stop_reason,
        covered=len(covered_keys),
        coverage=round(100.0 * len(covered_keys) / max(len(scope), 1), 2),
        this_pass={
            "seconds": round(time.perf_counter() - clock, 3),
            "samples_generated": distiller.stats.samples_generated,
            "cache_hits": distiller.stats.cache_hits,
            "cache_misses": distiller.stats.cache_misses,
        },
    )
    write_text_atomic(distiller.stage_dir / "report.json", report.model_dump_json(indent=2) + "\n")
    run_dir.finish_stage(
        manifest,
        counts={
            "executable": report.executable,
            "no_database": sum(report.no_database.values()),
            "covered": report.covered,
            "iterations": len(rows),
            "attempts": sum(r.samples for r in rows),
            "accepted": sum(r.accepted for r in rows),
            "samples_generated_this_pass": distiller.stats.samples_generated,
            "cache_misses_this_pass": distiller.stats.cache_misses,
        },
        timings={"seconds_this_pass": report.this_pass["seconds"]},
    )
    return report


def _loop(
    config: DistillConfig,
    distiller: Distiller,
    by_iteration: dict[int, list[AttemptRecord]],
) -> tuple[list[IterationRow], str]:
    """The iterations, until nothing is left, the gain is too small, or the last one."""
    rows: list[IterationRow] = []
    split = distiller.split.name
    for iteration in range(1, config.iterations + 1):
        covered = {e.key for e in distiller.pool_before(iteration)}
        if all((split, e.question_id) in covered for e in distiller.executable):
            return rows, "every executable example is covered"
        records = distiller.run_iteration(iteration, by_iteration[iteration])
        distiller.run_dir.pool_path(iteration).touch()  # an empty iteration has a file too
        timings = [
            t for t in read_jsonl(distiller.timings_path, PassTiming) if t.iteration == iteration
        ]
        row = distiller.row(iteration, records, timings)
        rows.append(row)
        distiller.progress.log(
            f"iteration {iteration}: {row.accepted} accepted, coverage {row.coverage:.1f}%"
        )
        if iteration >= config.min_iterations and row.gain < config.min_gain:
            return rows, (
                f"coverage gain {row.gain:.2f} points < min_gain {config.min_gain} "
                f"in iteration {iteration}"
            )
    return rows, f"reached {config.iterations} iterations"
