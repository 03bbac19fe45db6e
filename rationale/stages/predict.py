"""The predict stage: a trained student answers BIRD dev, with self-consistency voting.

Each question is asked in exactly the format the student was trained on (the export's
template and token budget, found through the model folder's training manifest; see
`rationale.prompting.task`), once greedily and, with `samples` > 0, `samples` more times at a
temperature. From every output the SQL is taken (`rationale.chain.format.extract_final_sql`: the
assembled CTE chain of a CoT answer, the SQL block of a plain one). Every candidate runs
in the sandbox (worker processes, time-limited) and the candidates vote:

    1. candidates whose SQL is missing or fails to execute do not vote;
    2. the others form groups by result, compared as the official EX does (set of rows);
    3. the largest group wins; a tie goes to the group holding the earliest candidate
       (the greedy one is first), so the vote never depends on arrival order;
    4. when no candidate executes, the greedy candidate's SQL is the answer.

Writes into `out`:

    predictions.jsonl          per question: every raw output, every candidate's SQL, result
                               signature and error, the vote, tokens; for CoT the step record
                               of the greedy output (steps parsed, executed, first failure)
    predict_dev.json           the official BIRD prediction file (voted): keys are positions
                               in the split's json, values "SQL\\t----- bird -----\\tdb_id"
    predict_dev_greedy.json    the same for the greedy candidates
    summary.json               EX and soft-F1 by difficulty, greedy and voted (through
                               `bird.evaluation`, as `bird evaluate` scores them)
    manifest.json              model, template hash, prompt settings, sampling, versions

Resumable: records are appended per question as they are done; a re-run skips done
questions and every answered sample comes from the response cache.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample, load_split
from bird.evaluation import TOTAL, EvaluationOptions, EvaluationSummary, evaluate_many
from bird.executor import ExecutionPool, ExecutionRequest, ExecutionResult
from bird.files import write_text_atomic
from bird.gold_cache import GoldCache
from bird.predictions import OFFICIAL_SEPARATOR
from rationale.chain.format import (
    FINAL_HEADING,
    ParseFailure,
    Rationale,
    extract_final_sql,
    parse_rationale,
)
from rationale.config import OUTPUT_FOLDER, SplitDir, StageConfig
from rationale.llm import GenerationRequest, GenerationResult, GenerationStats, iter_generate
from rationale.llm.settings import BackendConfig
from rationale.llm.types import SamplingParams
from rationale.prompting.task import (
    PromptOptions,
    PromptSettings,
    TaskKind,
    prompter_for,
    task_template_hash,
)
from rationale.run_dir import (
    JsonlAppender,
    RunConfigError,
    exclusive,
    input_file,
    now_iso,
    read_jsonl,
    software_versions,
)

NAME = "predict"
StudentKind = Literal["cot", "nocot"]
_TASK: dict[str, TaskKind] = {"cot": "student-cot", "nocot": "student-nocot"}
OFFICIAL_FILE = "predict_dev.json"
GREEDY_FILE = "predict_dev_greedy.json"


class PredictConfig(BackendConfig, PromptOptions, StageConfig):
    """A student answers a split's questions; candidates vote by execution result."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers", "batch"})

    data: SplitDir = Field(description="The split to answer (BIRD dev, mini-dev, demo:dev, ...).")
    kind: StudentKind = Field(description="cot: the student writes steps; nocot: SQL only.")
    out: Path = Field(
        description="Folder for the predictions, official files and summary.",
        json_schema_extra={"output": OUTPUT_FOLDER},
    )
    samples: int = Field(
        default=0,
        ge=0,
        description="Sampled candidates per question on top of the greedy one "
        "(self-consistency); 0: greedy only.",
    )
    temperature: float = Field(default=0.8, ge=0.0, description="For the sampled candidates.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per answer at most; default: fitted to the answers the student "
        "was trained on (1.5 x their 95th percentile, at most the longest, + 16), else 1024. "
        "Answers cut at it are counted.",
    )
    stop_at_answer_end: bool = Field(
        default=True,
        description="End an answer once its SQL block is complete (for CoT: the block after "
        "'### Final answer'); small models seldom emit their end token.",
    )
    seed: int = Field(default=0, description="Sampling seed (sample i uses seed + i).")
    db_ids: list[str] = Field(
        default_factory=list,
        description="Only these databases; repeat for several.",
        json_schema_extra={"flag": "db"},
    )
    limit: int | None = Field(default=None, ge=1, description="Only the first N questions.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds per candidate query.")
    workers: int = Field(default=2, ge=1, description="Processes executing candidates.")
    batch: int = Field(default=32, ge=1, description="Questions executed and written together.")

    @field_validator("out")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def answer_end(self) -> str | None:
        """Where an answer of this kind is complete (SamplingParams.stop_after_block)."""
        if not self.stop_at_answer_end:
            return None
        return FINAL_HEADING if self.kind == "cot" else ""

    def greedy(self, max_tokens: int) -> SamplingParams:
        return SamplingParams(
            n=1, temperature=0.0, max_tokens=max_tokens, stop_after_block=self.answer_end()
        )

    def sampled(self, max_tokens: int) -> SamplingParams:
        return SamplingParams(
            n=self.samples,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=max_tokens,
            seed=self.seed,
            stop_after_block=self.answer_end(),
        )


DEFAULT_MAX_TOKENS = 1024


def fitted_max_tokens(config: PredictConfig, settings: PromptSettings) -> tuple[int, str]:
    """(max tokens per answer, why): the config's, else fitted to the completions the
    student was trained on (its dataset's export.json): 1.5 x their 95th percentile, at most
    the longest, plus 16. Not the longest alone: on a static batch one answer that never
    ends holds every row until the limit, and a few outliers would set it."""
    if config.max_tokens is not None:
        return config.max_tokens, "max_tokens"
    source = Path(settings.source)
    if source.name == "export.json" and source.is_file():
        lengths = json.loads(source.read_text(encoding="utf-8")).get("completion_tokens")
        if lengths:
            fitted = min(lengths["max"], int(1.5 * lengths["p95"])) + 16
            return fitted, (
                f"fitted to the training answers: 1.5 x their 95th percentile "
                f"({lengths['p95']} tokens), at most the longest ({lengths['max']}), + 16"
            )
    return DEFAULT_MAX_TOKENS, "default (the training data's answer lengths are unknown)"


class Candidate(BaseModel):
    """One answer of the student, its SQL and what that SQL returned."""

    index: int  # 0: the greedy answer; 1..: the samples
    text: str
    finish_reason: str | None = None  # "length": cut at max_tokens
    sql: str | None
    error: str | None = None  # no SQL, or the execution error
    rows: int | None = None
    signature: str | None = None  # hash of the result's row set: equal sets, equal hashes
    completion_tokens: int | None = None


class StepRecord(BaseModel):
    """Where a CoT answer's reasoning holds and where it breaks (the greedy answer)."""

    parsed: bool
    parse_error: str | None = None
    steps: int = 0
    executed: int = 0  # steps that ran, in order, before the first failure
    first_failure: str | None = None  # "step3: no such column: x"


class Prediction(BaseModel):
    """One line of predictions.jsonl."""

    question_id: int
    db_id: str
    position: int  # in the split's json: the official file's key
    candidates: list[Candidate]
    chosen: int  # index of the voted candidate
    votes: dict[str, int]  # result signature -> candidates that returned it
    sql: str  # the voted SQL
    greedy_sql: str
    prompt_tokens: int | None = None
    steps: StepRecord | None = None


class PredictReport(BaseModel):
    questions: int
    greedy: EvaluationSummary
    voted: EvaluationSummary
    no_sql: int
    failing: int  # greedy candidates whose SQL fails to execute
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_tokens_reason: str = ""
    cut_at_max_tokens: int = 0  # greedy answers that hit max_tokens (incomplete)
    samples: int = 0  # sampled candidates per question: 0 means voted = greedy
    prompts_cut: int  # prompts of this pass whose schema was cut to the token budget
    prompts_over_budget: int  # prompts of this pass over it even with the shortest schema
    seconds: float
    out: str

    def summary(self) -> str:
        voted = (
            "voted = greedy (no samples)"
            if not self.samples
            else f"voted {self.voted.metrics['ex'][TOTAL]:.2f}"
        )
        parts = [
            f"{self.questions} questions, EX greedy {self.greedy.metrics['ex'][TOTAL]:.2f}, "
            f"{voted}",
            f"{self.cut_at_max_tokens} cut at {self.max_tokens} tokens",
        ]
        if self.prompts_cut:
            parts.append(f"{self.prompts_cut} schemas cut")
        return "; ".join(parts)


def result_signature(result: ExecutionResult) -> str:
    """A short hash of a result's row set: two results have the same signature exactly when
    the official EX rule (set equality) calls them equal."""
    rows = sorted({repr(row) for row in result.rows})
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def vote(candidates: Sequence[Candidate]) -> tuple[int, dict[str, int]]:
    """(index of the chosen candidate, votes per signature); see the module docstring."""
    votes: dict[str, int] = {}
    first: dict[str, int] = {}
    for candidate in candidates:
        if candidate.signature is None:
            continue
        votes[candidate.signature] = votes.get(candidate.signature, 0) + 1
        first.setdefault(candidate.signature, candidate.index)
    if not votes:
        return 0, votes
    winner = min(votes, key=lambda signature: (-votes[signature], first[signature]))
    return first[winner], votes


def official_file(predictions: Sequence[Prediction], voted: bool) -> str:
    """The official prediction file: `{"<position>": "SQL\\t----- bird -----\\tdb_id"}`."""
    entries = {
        str(p.position): f"{(p.sql if voted else p.greedy_sql)}{OFFICIAL_SEPARATOR}{p.db_id}"
        for p in sorted(predictions, key=lambda p: p.position)
    }
    return json.dumps(entries, indent=2, ensure_ascii=False) + "\n"


class _Answers(BaseModel):
    """The results of one question's requests, gathered as they arrive."""

    greedy: GenerationResult | None = None
    sampled: GenerationResult | None = None


class Predictor:
    """One prediction run: prompts, generation, candidate execution, votes, records."""

    def __init__(self, config: PredictConfig, progress: ProgressCallback) -> None:
        self.config = config
        self.progress = progress
        self.split = load_split(config.data)
        self.examples = self.split.select(config.db_ids, config.limit)
        self.positions = {e.question_id: i for i, e in enumerate(self.split.examples)}
        self.settings = config.prompt_settings(config.model, _TASK[config.kind])
        self.max_tokens, self.max_tokens_reason = fitted_max_tokens(config, self.settings)
        self.records_path = config.out / "predictions.jsonl"
        self.stats = GenerationStats()
        self.answered = 0  # questions judged and written in this pass
        self.prompts_cut = self.over_budget = 0  # prompts of this pass

    def done(self) -> list[Prediction]:
        return read_jsonl(self.records_path, Prediction, key=lambda p: p.question_id)

    def requests(self, todo: Sequence[BirdExample]) -> list[GenerationRequest]:
        prompter = prompter_for(self.settings, self.split, self.config.model)
        requests = []
        for example in todo:
            messages = tuple(prompter.prompt(example).messages)
            requests.append(
                GenerationRequest(
                    id=f"{example.question_id}:greedy",
                    messages=messages,
                    sampling=self.config.greedy(self.max_tokens),
                )
            )
            if self.config.samples:
                requests.append(
                    GenerationRequest(
                        id=f"{example.question_id}:sampled",
                        messages=messages,
                        sampling=self.config.sampled(self.max_tokens),
                    )
                )
        self.prompts_cut, self.over_budget = prompter.cut, prompter.over_budget
        return requests

    def run(self) -> list[Prediction]:
        done = self.done()
        finished = {p.question_id for p in done}
        todo = [e for e in self.examples if e.question_id not in finished]
        if done:
            self.progress.log(f"resuming: {len(done)} questions already answered")
        if not todo:
            return done
        by_id = {e.question_id: e for e in todo}
        requests = self.requests(todo)
        answers: dict[int, _Answers] = {}
        ready: list[tuple[BirdExample, _Answers]] = []
        appender = JsonlAppender(self.records_path)
        backend = self.config.make_backend()
        new: list[Prediction] = []
        try:
            with ExecutionPool(self.config.workers) as pool:
                self.progress("predict", 0, len(todo), "")
                for result in iter_generate(
                    backend,
                    requests,
                    self.config.response_cache(),
                    self.stats,
                    on_wait=lambda s: self.progress(
                        "predict", self.answered, len(todo), f"waiting {s:.0f} s for the model"
                    ),
                ):
                    question_id, which = result.id.rsplit(":", 1)
                    entry = answers.setdefault(int(question_id), _Answers())
                    setattr(entry, which, result)
                    if entry.greedy is not None and (
                        entry.sampled is not None or not self.config.samples
                    ):
                        ready.append((by_id[int(question_id)], answers.pop(int(question_id))))
                    if len(ready) >= self.config.batch:
                        new += self._judge(ready, pool, appender)
                        ready = []
                        self.progress("predict", len(new), len(todo), self._rates())
                if ready:
                    new += self._judge(ready, pool, appender)
                self.progress("predict", len(new), len(todo), self._rates())
        finally:
            appender.close()
            backend.close()
        return done + new

    def _rates(self) -> str:
        return f"{self.stats.tokens_per_second():.1f} tok/s  cache hits {self.stats.cache_hits}"

    def _judge(
        self,
        ready: list[tuple[BirdExample, _Answers]],
        pool: ExecutionPool,
        appender: JsonlAppender,
    ) -> list[Prediction]:
        """Execute every candidate (and the greedy CoT answer's steps) of a batch, vote,
        and append the records."""
        drafts: list[tuple[BirdExample, list[Candidate], Rationale | ParseFailure | None]] = []
        queries: dict[tuple[Path, str], int] = {}
        for example, answer in ready:
            assert answer.greedy is not None
            completions = answer.greedy.completions + (
                answer.sampled.completions if answer.sampled is not None else []
            )
            candidates = [
                Candidate(
                    index=index,
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    sql=extract_final_sql(completion.text),
                    completion_tokens=completion.completion_tokens,
                )
                for index, completion in enumerate(completions)
            ]
            db_path = self.split.database_path(example.db_id)
            for candidate in candidates:
                if candidate.sql:
                    queries.setdefault((db_path, candidate.sql), len(queries))
            parsed = parse_rationale(candidates[0].text) if self.config.kind == "cot" else None
            if isinstance(parsed, Rationale):
                for name in parsed.step_names():
                    queries.setdefault((db_path, parsed.step_query(name)), len(queries))
            drafts.append((example, candidates, parsed))
        ordered = sorted(queries, key=queries.__getitem__)
        results = pool.execute_many(
            [ExecutionRequest(db_path=path, sql=sql) for path, sql in ordered],
            timeout=self.config.timeout,
        )
        by_query = dict(zip(ordered, results, strict=True))
        predictions = []
        for (example, candidates, parsed), (_, answer) in zip(drafts, ready, strict=True):
            db_path = self.split.database_path(example.db_id)
            for candidate in candidates:
                if not candidate.sql:
                    candidate.error = "no SQL in the answer"
                    continue
                result = by_query[(db_path, candidate.sql)]
                if result.ok:
                    candidate.rows = len(result.rows)
                    candidate.signature = result_signature(result)
                else:
                    candidate.error = f"{result.error_kind}: {result.error}"
            chosen, votes = vote(candidates)
            assert answer.greedy is not None
            predictions.append(
                Prediction(
                    question_id=example.question_id,
                    db_id=example.db_id,
                    position=self.positions[example.question_id],
                    candidates=candidates,
                    chosen=chosen,
                    votes=votes,
                    sql=candidates[chosen].sql or "",
                    greedy_sql=candidates[0].sql or "",
                    prompt_tokens=answer.greedy.usage.prompt_tokens or None,
                    steps=_step_record(parsed, db_path, by_query) if parsed is not None else None,
                )
            )
        appender.append(predictions)
        self.answered += len(predictions)
        return predictions


def _step_record(
    parsed: Rationale | ParseFailure,
    db_path: Path,
    results: dict[tuple[Path, str], ExecutionResult],
) -> StepRecord:
    if isinstance(parsed, ParseFailure):
        where = f" ({parsed.step})" if parsed.step else ""
        return StepRecord(parsed=False, parse_error=f"{parsed.reason}{where}: {parsed.message}")
    record = StepRecord(parsed=True, steps=len(parsed.steps))
    for name in parsed.step_names():
        result = results[(db_path, parsed.step_query(name))]
        if not result.ok:
            record.first_failure = f"{name}: {result.error_kind}: {result.error}"
            break
        record.executed += 1
    return record


def _jsonl_predictions(predictions: Sequence[Prediction], voted: bool) -> str:
    return "".join(
        json.dumps(
            {
                "question_id": p.question_id,
                "db_id": p.db_id,
                "sql": p.sql if voted else p.greedy_sql,
            }
        )
        + "\n"
        for p in sorted(predictions, key=lambda p: p.position)
    )


def run(config: PredictConfig, *, progress: ProgressCallback = no_progress) -> PredictReport:
    """Answer the split's selected questions into `config.out` (resumable; one process at
    a time per folder)."""
    config.out.mkdir(parents=True, exist_ok=True)
    with exclusive(config.out / ".lock", f"prediction folder {config.out}"):
        return _run(config, progress)


def _run(config: PredictConfig, progress: ProgressCallback) -> PredictReport:
    clock = time.perf_counter()
    config.check_model()
    predictor = Predictor(config, progress)
    _check_settings(config, predictor)
    predictions = predictor.run()
    write_text_atomic(config.out / OFFICIAL_FILE, official_file(predictions, voted=True))
    write_text_atomic(config.out / GREEDY_FILE, official_file(predictions, voted=False))
    # Scored on the selected questions only, paired by question id: a --db or --limit run is
    # not diluted by the questions it did not answer.
    for voted, name in ((True, "predict_dev.jsonl"), (False, "predict_dev_greedy.jsonl")):
        write_text_atomic(config.out / name, _jsonl_predictions(predictions, voted))
    selected = replace(predictor.split, examples=predictor.examples)
    voted_report, greedy_report = evaluate_many(
        selected,
        [config.out / "predict_dev.jsonl", config.out / "predict_dev_greedy.jsonl"],
        options=EvaluationOptions(timeout=config.timeout, workers=config.workers),
        gold_cache=GoldCache(),
    )
    report = PredictReport(
        questions=len(predictions),
        greedy=greedy_report.summary,
        voted=voted_report.summary,
        no_sql=sum(not p.greedy_sql for p in predictions),
        failing=sum(p.candidates[0].error is not None for p in predictions),
        max_tokens=predictor.max_tokens,
        max_tokens_reason=predictor.max_tokens_reason,
        cut_at_max_tokens=sum(p.candidates[0].finish_reason == "length" for p in predictions),
        samples=config.samples,
        prompts_cut=predictor.prompts_cut,
        prompts_over_budget=predictor.over_budget,
        seconds=round(time.perf_counter() - clock, 3),
        out=str(config.out),
    )
    write_text_atomic(config.out / "summary.json", report.model_dump_json(indent=2) + "\n")
    return report


class _Settings(BaseModel):
    """What the outputs of a prediction folder depend on (manifest.json)."""

    model: str
    kind: StudentKind
    data: str
    prompt: PromptSettings
    template_hash: str
    greedy: SamplingParams
    sampled: SamplingParams | None


def _check_settings(config: PredictConfig, predictor: Predictor) -> None:
    """Refuse to complete a folder made with other settings (answers would be mixed);
    record them on the first run, with inputs and versions."""
    settings = _Settings(
        model=config.model,
        kind=config.kind,
        data=str(config.data),
        prompt=predictor.settings,
        template_hash=task_template_hash(predictor.settings.kind),
        greedy=config.greedy(predictor.max_tokens),
        sampled=config.sampled(predictor.max_tokens) if config.samples else None,
    )
    manifest = config.out / "manifest.json"
    if manifest.exists() and predictor.records_path.exists():
        recorded = json.loads(manifest.read_text(encoding="utf-8")).get("settings")
        if recorded != settings.model_dump(mode="json"):
            raise RunConfigError(
                f"{config.out} holds predictions made with other settings ({manifest}): use "
                "another --out, or delete it to start over"
            )
        return
    write_text_atomic(
        manifest,
        json.dumps(
            {
                "settings": settings.model_dump(mode="json"),
                "inputs": [
                    input_file(predictor.split.root / f"{predictor.split.name}.json").model_dump()
                ],
                "backend": config.model_dump(
                    mode="json", include=set(BackendConfig.model_fields) - {"model"}
                ),
                "versions": software_versions(),
                "started": now_iso(),
            },
            indent=2,
        )
        + "\n",
    )
