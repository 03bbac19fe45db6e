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
from typing import Literal

from pydantic import BaseModel, Field

from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample, load_split
from bird.schema import load_schema, render_schema
from rationale.chain.format import Rationale
from rationale.decomposer.builder import DecompositionError, database_schema, decompose_sql
from rationale.llm import ChatBackend
from rationale.prompting.retrieval import ShotQuery, build_retriever
from rationale.prompting.teacher import (
    MODE_TEMPLATES,
    SKELETON_PLACEHOLDER,
    SYSTEM_TEMPLATE,
    TeacherPrompt,
    build_teacher_prompt,
)
from rationale.prompting.templates import template_files
from rationale.records.leakage import refuse_evaluation_split
from rationale.records.rationales import AcceptedRationale, PoolEntry, ShotRef
from rationale.rounds.judge import PromptedExample
from rationale.rounds.loop import (
    IterationRow,
    Output,
    PassTiming,
    RoundConfig,
    RoundLoop,
    rounds_summary,
)
from rationale.run_dir import RunConfigError, RunDir, read_jsonl, write_text_atomic

NAME = "distill"
PromptModeName = Literal["free", "skeleton"]
RetrievalName = Literal["sql", "question", "hybrid"]

__all__ = ["DistillConfig", "DistillReport", "IterationRow", "PassTiming", "run"]


class DistillConfig(RoundConfig):
    """Stage 2: the teacher loop. Iteration k uses the sampling of round k."""

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

    def summary(self) -> str:
        return rounds_summary(self.iterations, self.coverage, self.covered)


def _unfinished(rationale: Rationale) -> str | None:
    """Why a parsed rationale cannot be accepted whatever its SQL: it still holds the
    skeleton's placeholder instead of an explanation (validation checks SQL only)."""
    texts = [step.explanation for step in rationale.steps] + [rationale.final_explanation]
    if any(SKELETON_PLACEHOLDER in text for text in texts):
        return f"explanation left as the skeleton placeholder {SKELETON_PLACEHOLDER!r}"
    return None


class Distiller(RoundLoop):
    """The teacher loop in one run directory: prompts with few-shot rationales retrieved
    from the pool of earlier iterations, which grows by each iteration's acceptances."""

    name = NAME

    def __init__(
        self,
        config: DistillConfig,
        run_dir: RunDir,
        *,
        backend: ChatBackend | None = None,
        progress: ProgressCallback = no_progress,
    ) -> None:
        super().__init__(config, run_dir, backend=backend, progress=progress, refuse=_unfinished)
        self.config: DistillConfig = config
        self.retrieval = config.retrieval
        self.schema_texts: dict[str, str] = {}
        self.table_columns: dict[str, dict[str, list[str]] | None] = {}  # for skeletons
        self._pool_files: dict[int, tuple[tuple[int, int] | None, list[PoolEntry]]] = {}

    # --- the pool -------------------------------------------------------------------------

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

    def covered(self, iteration: int) -> set[tuple[str, int]]:
        return {entry.key for entry in self.pool_before(iteration)}

    def outputs(self, iteration: int) -> list[Output]:
        return [
            Output(self.rationales_path, AcceptedRationale, lambda accepted: accepted),
            Output(
                self.run_dir.pool_path(iteration),
                PoolEntry,
                lambda accepted: accepted.pool_entry("teacher"),
            ),
        ]

    # --- prompts --------------------------------------------------------------------------

    def prompts(self, todo: list[BirdExample], iteration: int) -> dict[str, PromptedExample]:
        shots = self._shots(self.pool_before(iteration), todo)
        return {
            f"{self.split.name}:{example.question_id}:it{iteration}": self.prompt_for(
                example, example_shots
            )
            for example, example_shots in zip(todo, shots, strict=True)
        }

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
    clock = time.perf_counter()
    # the mistakes users make most, first: an evaluation split, then a model name
    refuse_evaluation_split(load_split(config.data), config.allow_eval_split, NAME)
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
            *template_files([SYSTEM_TEMPLATE, *MODE_TEMPLATES.values()]),
        ]
        manifest = run_dir.begin_stage(NAME, config, inputs, force=force, resumes=True)
        if force:
            _clear_outputs(run_dir)
        rows, stop_reason = distiller.loop()
    finally:
        distiller.close()
    scope = {(distiller.split.name, e.question_id) for e in distiller.executable}
    covered_keys = distiller.covered(len(rows) + 1) & scope
    no_database = {
        db_id: count
        for db_id, count in distiller.split.missing_databases().items()
        if any(e.db_id == db_id for e in distiller.scope)
    }
    report = DistillReport(
        split=distiller.split.name,
        teacher_model=config.model,
        backend=config.backend,
        mode=config.mode,
        examples_in_scope=len(distiller.scope),
        executable=len(distiller.executable),
        no_database=no_database,
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
