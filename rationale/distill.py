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
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from bird.data import BirdExample, load_split
from bird.executor import ExecutionPool, ExecutionRequest, ExecutionResult, execute_many
from bird.schema import load_schema, render_schema
from rationale.decompose import DecompositionError, decompose_sql
from rationale.decompose_split import database_schema
from rationale.distill_config import AcceptRule, DistillConfig
from rationale.format import ParseFailure, Rationale, parse_rationale, render_rationale
from rationale.llm import (
    ChatBackend,
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    ResponseCache,
    SamplingParams,
    default_cache_dir,
    iter_generate,
    make_backend,
)
from rationale.llm.types import SampleJob, SampleOutput
from rationale.pool import PoolEntry
from rationale.prompts import (
    DEFAULT_PROMPTS_DIR,
    SKELETON_PLACEHOLDER,
    TeacherPrompt,
    build_teacher_prompt,
    prefix_reuse_order,
)
from rationale.retrieval import ShotQuery, build_retriever
from rationale.run_dir import (
    JsonlAppender,
    RunConfigError,
    RunDir,
    StageManifest,
    input_file,
    now_iso,
    read_jsonl,
    rewrite_jsonl,
    software_versions,
    write_text_atomic,
)
from rationale.validate import ValidationItem, ValidationReport, validate_many

STAGE = "distill"
ProgressCallback = Callable[[int, int, int], None]  # (iteration, examples done, total)


class ShotRef(BaseModel):
    split: str
    question_id: int
    db_id: str
    source: str


class AttemptRecord(BaseModel):
    """One teacher sample with its parse and validation outcome (attempts.jsonl)."""

    iteration: int
    split: str
    question_id: int
    db_id: str
    request_id: str
    sample_index: int
    teacher_model: str
    backend: str
    mode: str
    template: str
    template_hash: str
    shots: list[ShotRef]
    text: str
    finish_reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    parsed: bool
    parse_error: str | None = None
    rejected: str | None = None  # parsed but refused before validation (see _unfinished)
    rationale: Rationale | None = None
    validation: ValidationReport | None = None
    valid: bool
    steps: int | None = None


class Provenance(BaseModel):
    teacher_model: str
    backend: str
    mode: str
    template: str
    template_hash: str
    shot_ids: list[int]
    shots: list[ShotRef]
    retrieval: str
    iteration: int
    sample_index: int
    sampling: SamplingParams
    acceptance_rule: AcceptRule
    samples: int
    valid_samples: int


class AcceptedRationale(BaseModel):
    """One accepted rationale with everything needed to trust and reproduce it."""

    split: str
    question_id: int
    db_id: str
    question: str
    evidence: str
    gold_sql: str
    rationale: Rationale
    text: str
    provenance: Provenance
    validation: ValidationReport
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class PassTiming(BaseModel):
    """Wall time and traffic of one process's work on one iteration (timings.jsonl)."""

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


def choose_sample(attempts: Sequence[AttemptRecord], rule: AcceptRule) -> AttemptRecord | None:
    """The accepted sample among an example's attempts, or None when none is valid.

    `most_steps` (default): validation already proves every step runs, feeds the answer and
    returns rows, so extra steps are real intermediate results, and longer chains teach the
    decomposition students need on moderate and challenging questions. `fewest_steps`
    prefers the most compact valid chain. Ties go to the lowest sample index (the greedy
    sample first), so the choice does not depend on the order samples arrived in.
    """
    valid = [attempt for attempt in attempts if attempt.valid and attempt.steps is not None]
    if not valid:
        return None
    sign = -1 if rule == "most_steps" else 1
    return min(valid, key=lambda a: (sign * (a.steps or 0), a.sample_index))


class _LazyBackend:
    """Builds the real backend on the first request that misses the cache: a fully cached
    pass never loads a model or needs a server."""

    def __init__(self, model: str, factory: Callable[[], ChatBackend]) -> None:
        self.model = model
        self._factory = factory
        self._backend: ChatBackend | None = None

    @property
    def retried_errors(self) -> int:
        return self._backend.retried_errors if self._backend is not None else 0

    def stream(self, jobs: Sequence[SampleJob]) -> AsyncIterator[SampleOutput]:
        if self._backend is None:
            self._backend = self._factory()
        return self._backend.stream(jobs)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def _backend_for(config: DistillConfig) -> ChatBackend:
    def build() -> ChatBackend:
        return make_backend(
            config.backend,
            config.model,
            base_urls=config.base_urls,
            served_model=config.served_model,
            max_in_flight=config.max_in_flight,
            timeout=config.request_timeout,
            batch_size=config.batch_size,
            device=config.device,
            tensor_parallel_size=config.tensor_parallel_size,
            data_parallel_size=config.data_parallel_size,
        )

    return _LazyBackend(config.model, build)


def _read_attempts(path: Path, samples_per_iteration: Callable[[int], int]) -> list[AttemptRecord]:
    """Attempts with complete examples only: an example whose samples a kill cut short is
    dropped (and the file rewritten) so that it is redone as a whole."""
    records = read_jsonl(path, AttemptRecord)
    by_example: dict[tuple[int, int], set[int]] = defaultdict(set)
    for record in records:
        by_example[(record.iteration, record.question_id)].add(record.sample_index)
    complete = {
        key for key, indices in by_example.items() if len(indices) >= samples_per_iteration(key[0])
    }
    seen: set[tuple[int, int, int]] = set()
    kept: list[AttemptRecord] = []
    for record in records:
        identity = (record.iteration, record.question_id, record.sample_index)
        if (record.iteration, record.question_id) in complete and identity not in seen:
            seen.add(identity)
            kept.append(record)
    if len(kept) != len(records):
        rewrite_jsonl(path, kept)
    return kept


class Distiller:
    """The loop's state for one run directory; `run_distill` is the entry point."""

    def __init__(
        self,
        config: DistillConfig,
        run: RunDir,
        *,
        backend: ChatBackend | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.config = config
        self.run = run
        self.split = load_split(config.data)
        self.progress = progress
        wanted = {db.lower() for db in config.db_ids}
        self.scope = [e for e in self.split.examples if not wanted or e.db_id.lower() in wanted]
        present = {db for db in {e.db_id for e in self.scope} if self.split.has_database(db)}
        executable = [e for e in self.scope if e.db_id in present]
        self.executable = executable[: config.limit] if config.limit is not None else executable
        self.no_database: dict[str, int] = {}
        for example in self.scope:
            if example.db_id not in present:
                self.no_database[example.db_id] = self.no_database.get(example.db_id, 0) + 1
        self.by_id = {example.question_id: example for example in self.executable}
        cache_root = config.cache_dir or default_cache_dir() / "responses"
        self.cache = ResponseCache(cache_root)
        self.backend = backend if backend is not None else _backend_for(config)
        self.stats = GenerationStats()
        self.gold: dict[tuple[Path, str], ExecutionResult] = {}
        self.schema_texts: dict[str, str] = {}
        self.table_columns: dict[str, dict[str, list[str]] | None] = {}  # for skeletons
        self._pool_files: dict[int, tuple[tuple[int, int] | None, list[PoolEntry]]] = {}
        # One pool for the whole run: teacher SQL is untrusted, so it runs in worker
        # processes whose watchdog stops any query, and starting them per batch would cost
        # more than the validation itself.
        self.execution_pool = ExecutionPool(config.validation_workers)
        self.distill_dir = run.stage_dir(STAGE)
        self.attempts_path = self.distill_dir / "attempts.jsonl"
        self.rationales_path = self.distill_dir / "rationales.jsonl"
        self.timings_path = self.distill_dir / "timings.jsonl"

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
        path = self.run.pool_path(iteration)
        stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path.exists() else None
        cached = self._pool_files.get(iteration)
        if cached is None or cached[0] != stamp:
            cached = (stamp, read_jsonl(path, PoolEntry))
            self._pool_files[iteration] = cached
        return cached[1]

    def schema_text(self, db_id: str) -> str:
        if db_id not in self.schema_texts:
            schema = load_schema(self.split, db_id, sample_values=self.config.schema_sample_values)
            self.schema_texts[db_id] = render_schema(schema, max_chars=self.config.schema_max_chars)
        return self.schema_texts[db_id]

    def prompt_for(self, example: BirdExample, shots: list[PoolEntry]) -> TeacherPrompt:
        if self.config.mode == "skeleton":
            if example.db_id not in self.table_columns:
                self.table_columns[example.db_id] = database_schema(self.split, example.db_id)
            try:
                skeleton = decompose_sql(example.sql, self.table_columns[example.db_id]).rationale
            except DecompositionError:
                skeleton = None  # the gold query does not parse: the free prompt still works
            if skeleton is not None:
                return build_teacher_prompt(
                    example, self.schema_text(example.db_id), shots, "skeleton", skeleton
                )
        return build_teacher_prompt(example, self.schema_text(example.db_id), shots, "free")

    # --- one iteration --------------------------------------------------------------------

    def run_iteration(self, iteration: int, attempts: list[AttemptRecord]) -> list[AttemptRecord]:
        """Process iteration `iteration`; returns its attempt records (old and new)."""
        config = self.config
        sampling = config.sampling_for(iteration)
        pool = self.pool_before(iteration)
        covered = {entry.key for entry in pool}
        candidates = [e for e in self.executable if (self.split.name, e.question_id) not in covered]
        done = {record.question_id for record in attempts}
        self._reconcile(iteration, attempts)
        todo = prefix_reuse_order([e for e in candidates if e.question_id not in done])
        if not todo:
            return attempts
        started = time.perf_counter()
        generated_before = self.stats.samples_generated
        hits_before = self.stats.cache_hits
        self._gold_results(todo)
        shots_per = self._shots(pool, todo)
        requests: list[GenerationRequest] = []
        meta: dict[str, tuple[BirdExample, TeacherPrompt, list[PoolEntry]]] = {}
        for example, shots in zip(todo, shots_per, strict=True):
            prompt = self.prompt_for(example, shots)
            request_id = f"{self.split.name}:{example.question_id}:it{iteration}"
            requests.append(
                GenerationRequest(id=request_id, messages=tuple(prompt.messages), sampling=sampling)
            )
            meta[request_id] = (example, prompt, shots)
        appenders = [
            JsonlAppender(path)
            for path in (self.attempts_path, self.rationales_path, self.run.pool_path(iteration))
        ]
        new: list[AttemptRecord] = []
        buffer: list[GenerationResult] = []
        try:
            for result in iter_generate(self.backend, requests, self.cache, self.stats):
                buffer.append(result)
                if len(buffer) >= config.validation_batch:
                    new += self._process(iteration, sampling, buffer, meta, appenders)
                    buffer = []
                    self._report_progress(iteration, len(new), len(todo), sampling.n)
            if buffer:
                new += self._process(iteration, sampling, buffer, meta, appenders)
            self._report_progress(iteration, len(new), len(todo), sampling.n)
        finally:
            for appender in appenders:
                appender.close()
        timing = PassTiming(
            iteration=iteration,
            seconds=round(time.perf_counter() - started, 3),
            requests=len(requests),
            samples_generated=self.stats.samples_generated - generated_before,
            cache_hits=self.stats.cache_hits - hits_before,
        )
        appender = JsonlAppender(self.timings_path)
        appender.append([timing])
        appender.close()
        return attempts + new

    def _report_progress(self, iteration: int, records: int, total: int, n: int) -> None:
        if self.progress is not None:
            self.progress(iteration, records // n, total)

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

    def _gold_results(self, examples: list[BirdExample]) -> None:
        """Execute each distinct gold query once per run; later iterations reuse the result.

        Gold queries come from the dataset, not the teacher, so they run in this process
        (starting worker processes costs more than most gold queries take)."""
        missing = list(
            dict.fromkeys(
                (self.split.database_path(e.db_id), e.sql)
                for e in examples
                if (self.split.database_path(e.db_id), e.sql) not in self.gold
            )
        )
        if not missing:
            return
        results = execute_many(
            [ExecutionRequest(db_path=path, sql=sql) for path, sql in missing],
            timeout=self.config.validation_timeout,
        )
        self.gold.update(zip(missing, results, strict=True))

    def _process(
        self,
        iteration: int,
        sampling: SamplingParams,
        results: list[GenerationResult],
        meta: dict[str, tuple[BirdExample, TeacherPrompt, list[PoolEntry]]],
        appenders: list[JsonlAppender],
    ) -> list[AttemptRecord]:
        """Parse and validate a batch of results; write attempts, acceptances, pool entries."""
        self._gold_results([meta[result.id][0] for result in results])
        parsed: list[list[Rationale | ParseFailure]] = [
            [parse_rationale(text) for text in result.texts] for result in results
        ]
        items: list[ValidationItem] = []
        for result, samples in zip(results, parsed, strict=True):
            example = meta[result.id][0]
            db_path = self.split.database_path(example.db_id)
            for sample in samples:
                if isinstance(sample, Rationale) and _unfinished(sample) is None:
                    items.append(
                        ValidationItem(
                            rationale=sample,
                            db_path=db_path,
                            gold_sql=example.sql,
                            question_id=example.question_id,
                            db_id=example.db_id,
                            gold_result=self.gold[(db_path, example.sql)],
                        )
                    )
        reports = iter(
            validate_many(
                items,
                timeout=self.config.validation_timeout,
                pool=self.execution_pool,
            )
            if items
            else []
        )
        records: list[AttemptRecord] = []
        accepted: list[AcceptedRationale] = []
        for result, samples in zip(results, parsed, strict=True):
            example, prompt, shots = meta[result.id]
            example_records = []
            for completion, sample in zip(result.completions, samples, strict=True):
                rejected = _unfinished(sample) if isinstance(sample, Rationale) else None
                report = next(reports) if isinstance(sample, Rationale) and not rejected else None
                example_records.append(
                    AttemptRecord(
                        iteration=iteration,
                        split=self.split.name,
                        question_id=example.question_id,
                        db_id=example.db_id,
                        request_id=result.id,
                        sample_index=completion.sample_index,
                        teacher_model=self.config.model,
                        backend=self.config.backend,
                        mode="skeleton" if prompt.template.endswith("skeleton.j2") else "free",
                        template=prompt.template,
                        template_hash=prompt.template_hash,
                        shots=[
                            ShotRef(
                                split=s.split,
                                question_id=s.question_id,
                                db_id=s.db_id,
                                source=s.source,
                            )
                            for s in shots
                        ],
                        text=completion.text,
                        finish_reason=completion.finish_reason,
                        prompt_tokens=result.usage.prompt_tokens or None,
                        completion_tokens=completion.completion_tokens,
                        parsed=isinstance(sample, Rationale),
                        parse_error=None
                        if isinstance(sample, Rationale)
                        else f"{sample.reason}: {sample.message}",
                        rejected=rejected,
                        rationale=sample if isinstance(sample, Rationale) else None,
                        validation=report,
                        valid=report is not None and report.valid,
                        steps=len(sample.steps) if isinstance(sample, Rationale) else None,
                    )
                )
            records += example_records
            chosen = choose_sample(example_records, self.config.accept)
            if chosen is not None:
                accepted.append(self._accepted(example, chosen, example_records, sampling))
        attempts_out, rationales_out, pool_out = appenders
        attempts_out.append(records)
        rationales_out.append(accepted)
        pool_out.append([self._pool_entry(record, iteration) for record in accepted])
        return records

    def _accepted(
        self,
        example: BirdExample,
        chosen: AttemptRecord,
        attempts: Sequence[AttemptRecord],
        sampling: SamplingParams,
    ) -> AcceptedRationale:
        assert chosen.rationale is not None and chosen.validation is not None
        return AcceptedRationale(
            split=self.split.name,
            question_id=example.question_id,
            db_id=example.db_id,
            question=example.question,
            evidence=example.evidence,
            gold_sql=example.sql,
            rationale=chosen.rationale,
            text=render_rationale(chosen.rationale),
            provenance=Provenance(
                teacher_model=chosen.teacher_model,
                backend=chosen.backend,
                mode=chosen.mode,
                template=chosen.template,
                template_hash=chosen.template_hash,
                shot_ids=[shot.question_id for shot in chosen.shots],
                shots=chosen.shots,
                retrieval=self.config.retrieval,
                iteration=chosen.iteration,
                sample_index=chosen.sample_index,
                sampling=sampling,
                acceptance_rule=self.config.accept,
                samples=len(attempts),
                valid_samples=sum(a.valid for a in attempts),
            ),
            validation=chosen.validation,
            prompt_tokens=chosen.prompt_tokens,
            completion_tokens=chosen.completion_tokens,
        )

    @staticmethod
    def _pool_entry(record: AcceptedRationale, iteration: int) -> PoolEntry:
        return PoolEntry(
            question_id=record.question_id,
            db_id=record.db_id,
            split=record.split,
            question=record.question,
            evidence=record.evidence,
            gold_sql=record.gold_sql,
            rationale=record.rationale,
            source="teacher",
            iteration=iteration,
        )

    def _reconcile(self, iteration: int, attempts: list[AttemptRecord]) -> None:
        """Write acceptances a kill left out: rationales.jsonl and the pool file are derived
        from attempts.jsonl, written after it."""
        if not attempts:
            return
        sampling = self.config.sampling_for(iteration)
        accepted_keys = {
            r.question_id
            for r in read_jsonl(self.rationales_path, AcceptedRationale)
            if r.provenance.iteration == iteration
        }
        pool_keys = {e.question_id for e in read_jsonl(self.run.pool_path(iteration), PoolEntry)}
        by_example: dict[int, list[AttemptRecord]] = defaultdict(list)
        for record in attempts:
            by_example[record.question_id].append(record)
        missing_rationales: list[AcceptedRationale] = []
        missing_pool: list[PoolEntry] = []
        for question_id, records in by_example.items():
            records.sort(key=lambda r: r.sample_index)
            chosen = choose_sample(records, self.config.accept)
            if chosen is None:
                continue
            accepted = self._accepted(self.by_id[question_id], chosen, records, sampling)
            if question_id not in accepted_keys:
                missing_rationales.append(accepted)
            if question_id not in pool_keys:
                missing_pool.append(self._pool_entry(accepted, iteration))
        for path, missing in (
            (self.rationales_path, missing_rationales),
            (self.run.pool_path(iteration), missing_pool),
        ):
            appender = JsonlAppender(path)
            appender.append(missing)
            appender.close()

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
        examples_with_valid = {r.question_id for r in attempts if r.valid}
        total = max(len(scope), 1)
        return IterationRow(
            iteration=iteration,
            candidates=len(scope - before),
            attempted=len({r.question_id for r in attempts}),
            samples=len(attempts),
            parsed=sum(r.parsed for r in attempts),
            valid=sum(r.valid for r in attempts),
            examples_with_valid=len(examples_with_valid),
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


def _check_seed_pool(run: RunDir, force: bool) -> None:
    seed_pool = run.pool_path(0)
    if not seed_pool.exists():
        raise RunConfigError(
            f"{seed_pool} is missing: run `rationale seed --data TRAIN_DIR --run {run.root}` first"
        )
    manifest = run.read_manifest(STAGE)
    if manifest is None or force:
        return
    recorded = {item.path: item.sha256 for item in manifest.inputs}
    current = input_file(seed_pool)
    if current.path in recorded and recorded[current.path] != current.sha256:
        raise RunConfigError(
            f"{seed_pool} changed since distillation started in {run.root}; its results were "
            "built on the old pool. Use a new run directory, or --force to start distillation over."
        )


def _clear_outputs(run: RunDir) -> None:
    shutil.rmtree(run.stage_dir(STAGE), ignore_errors=True)
    for path in run.pool_dir.glob("iteration_*.jsonl"):
        if path.name != "iteration_0.jsonl":
            path.unlink()


def run_distill(
    config: DistillConfig,
    run: RunDir,
    *,
    force: bool = False,
    backend: ChatBackend | None = None,
    progress: ProgressCallback | None = None,
    on_iteration: Callable[[IterationRow], None] | None = None,
) -> DistillReport:
    """Run (or resume) the loop in `run`; writes attempts, rationales, pool files, report."""
    started, clock = now_iso(), time.perf_counter()
    _check_seed_pool(run, force)
    if force:
        _clear_outputs(run)
    run.record_config(STAGE, config, force=force)
    distiller = Distiller(config, run, backend=backend, progress=progress)
    seed_pool = run.pool_path(0)
    manifest = StageManifest(
        stage=STAGE,
        config_hash=config.config_hash(),
        inputs=[
            input_file(seed_pool),
            input_file(distiller.split.root / f"{distiller.split.name}.json"),
            *(input_file(path) for path in sorted(DEFAULT_PROMPTS_DIR.glob("*.j2"))),
        ],
        versions=software_versions(),
        started=started,
    )
    run.write_manifest(manifest)
    attempts = _read_attempts(distiller.attempts_path, lambda k: config.sampling_for(k).n)
    by_iteration: dict[int, list[AttemptRecord]] = defaultdict(list)
    for record in attempts:
        by_iteration[record.iteration].append(record)
    rows: list[IterationRow] = []
    stop_reason = f"reached {config.iterations} iterations"
    try:
        for iteration in range(1, config.iterations + 1):
            covered = {e.key for e in distiller.pool_before(iteration)}
            if all((distiller.split.name, e.question_id) in covered for e in distiller.executable):
                stop_reason = "every executable example is covered"
                break
            records = distiller.run_iteration(iteration, by_iteration[iteration])
            run.pool_path(iteration).touch()  # an iteration that accepted nothing has a file too
            timings = [
                t
                for t in read_jsonl(distiller.timings_path, PassTiming)
                if t.iteration == iteration
            ]
            row = distiller.row(iteration, records, timings)
            rows.append(row)
            if on_iteration is not None:
                on_iteration(row)
            if iteration >= config.min_iterations and row.gain < config.min_gain:
                stop_reason = (
                    f"coverage gain {row.gain:.2f} points < min_gain {config.min_gain} "
                    f"in iteration {iteration}"
                )
                break
    finally:
        distiller.backend.close()
        distiller.execution_pool.close()
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
    write_text_atomic(
        distiller.distill_dir / "report.json", report.model_dump_json(indent=2) + "\n"
    )
    manifest.counts = {
        "executable": report.executable,
        "no_database": sum(report.no_database.values()),
        "covered": report.covered,
        "iterations": len(rows),
        "attempts": sum(r.samples for r in rows),
        "accepted": sum(r.accepted for r in rows),
        "samples_generated_this_pass": distiller.stats.samples_generated,
        "cache_misses_this_pass": distiller.stats.cache_misses,
    }
    manifest.timings = {"seconds_this_pass": report.this_pass["seconds"]}
    manifest.finished = now_iso()
    run.write_manifest(manifest)
    return report
