"""The whole pipeline in one run directory, from one YAML file: `rationale run`.

    audit -> seed -> distill -> export rationalizer -> train rationalizer -> annotate
    -> export student-cot / student-nocot -> train both students -> predict (cot, nocot)
    [-> export grpo -> train student-cot-grpo (from the CoT student) -> predict cot-grpo]
    -> report

The steps are data (`PLAN`): each names its stage in `rationale.registry`, the section of
the pipeline file whose keys it takes (the stage's own keys), and what the pipeline fills
in: the train and dev splits, the run directory's paths, and the models the earlier steps
trained; the steps of a trained model (its export, its training, its predictions) are made
once per trainee (the rationalizer, each student of `train_students`, the GRPO student).

`run/pipeline.json` records every finished step's config hash: a re-run skips finished steps
whose config is unchanged, re-runs a step whose section changed and every step after it
(saying so), and resumes an interrupted step (every stage resumes its own work). Whenever a
step runs, the records of the steps after it are dropped, so that they run again even if
this invocation stops before them (`--only`). Shipped pipeline files are found by name
(`--config demo`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from bird.console import ProgressCallback, no_progress
from bird.data import load_split
from bird.files import write_text_atomic
from rationale.config import (
    ConfigError,
    SeedFile,
    SplitDir,
    StageConfig,
    closest_key,
    describe_error,
    read_config_file,
)
from rationale.logs import LogLevel, logger, stage_log
from rationale.registry import Stage, run_stage, stage, summary
from rationale.run_dir import RunDir, now_iso
from rationale.stages import export, predict, train

PIPELINE_FILE = "pipeline.json"


class PipelineConfig(BaseModel):
    """A pipeline file: the splits, then one section per stage (the stage's own keys)."""

    model_config = ConfigDict(extra="forbid")

    train: SplitDir = Field(description="The train split (demo:train for the demo dataset).")
    dev: SplitDir = Field(description="The split the students answer (demo:dev, BIRD dev).")
    seeds: SeedFile | None = Field(default=None, description="Seed file (default: shipped).")
    audit: dict[str, Any] = Field(default_factory=dict)
    seed: dict[str, Any] = Field(default_factory=dict)
    distill: dict[str, Any] | None = Field(
        default=None,
        description="The teacher's section; absent or null: no teacher step (the pool is the "
        "seeds and the seed step's bootstrap).",
    )
    export: dict[str, Any] = Field(default_factory=dict)
    train_rationalizer: dict[str, Any]
    annotate: dict[str, Any]
    train_students: dict[str, dict[str, Any]] = Field(
        description="One entry per student, named student-*: its recipe and recipe keys, and "
        "optionally kind (student-cot / student-nocot; default from the name) and questions "
        "(covered: the questions the pool and annotation cover; all: every train question)."
    )
    predict: dict[str, Any]
    grpo: dict[str, Any] | None = Field(
        default=None,
        description="Reinforcement learning after SFT; absent or null: no GRPO steps. Its "
        "recipe and recipe keys, and optionally from (the student it starts from, default "
        "student-cot) and questions (all, the default, or covered).",
    )
    report: dict[str, Any] = Field(default_factory=dict)

    _source: str = PrivateAttr(default="the pipeline")
    _set_by_flag: set[tuple[str, ...]] = PrivateAttr(default_factory=set)

    def origin(self, section: str, key: str) -> str:
        """Where a section's key came from: `--set section.key` or the file."""
        return f"--set {section}.{key}" if (section, key) in self._set_by_flag else "the file"

    @property
    def source(self) -> str:
        """Where it was read from, for error messages."""
        return self._source


@dataclass(frozen=True)
class Step:
    """One step: its name, its stage and that stage's config (built)."""

    name: str
    stage: Stage
    config: StageConfig
    section: str  # the pipeline file's section it comes from


class StepState(BaseModel):
    config_hash: str
    finished: str
    seconds: float
    summary: str


class PipelineState(BaseModel):
    steps: dict[str, StepState] = Field(default_factory=dict)


def shipped_pipelines() -> dict[str, Path]:
    folder = resources.files("rationale.pipeline") / "files"
    return {Path(e.name).stem: Path(str(e)) for e in folder.iterdir() if e.name.endswith(".yaml")}


def find_pipeline(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = shipped_pipelines()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise ConfigError(
        f"pipeline {name_or_path!r} not found: give a YAML file or a shipped pipeline name "
        f"({', '.join(sorted(shipped))})"
    )


class Problems:
    """Every problem of a pipeline file, collected so that one run names them all."""

    def __init__(self, pipeline: PipelineConfig, earlier: list[str] | None = None) -> None:
        self.pipeline = pipeline
        self.found: list[str] = list(earlier or [])

    def add(self, section: str, problem: str) -> None:
        self.found.append(f"{self.pipeline.source}: section {section!r}: {problem}")

    def build(
        self, model: type[StageConfig], section: str, given: dict[str, Any], filled: dict[str, Any]
    ) -> Any:
        """`model` from the section's `given` keys and what the pipeline `filled` in, or None
        (the problems noted) when it does not validate."""
        try:
            return model.model_validate({**given, **filled})
        except ValidationError as error:
            origins = {key: f"from {self.pipeline.origin(section, key)}" for key in given}
            for problem in error.errors():
                self.add(section, describe_error(problem, model, origins))
            return None

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError.listing(self.found)


@dataclass(frozen=True)
class Trainee:
    """A model the pipeline trains: the rationalizer, each student of `train_students`, and
    the GRPO student. Its values fill the `{...}` fields of the plan's steps."""

    name: str  # rationalizer, student-cot, student-nocot-all, student-cot-grpo, ...
    section: str  # the pipeline file's section of its recipe keys
    kind: str  # the export kind of its dataset
    questions: str  # covered or all
    recipe_values: dict[str, Any]
    dataset: str = ""  # its dataset folder's name under export/ (default: its name)
    answers: str = ""  # predict's kind: cot or nocot ("" for the rationalizer)

    @property
    def system(self) -> str:
        """Its name in predictions and the report (cot, nocot, nocot-all, cot-grpo)."""
        return self.name.removeprefix("student-")

    def fields(self) -> dict[str, str]:
        return {
            "trainee": self.name,
            "dataset": self.dataset or self.name,
            "kind": self.kind,
            "questions": self.questions,
            "system": self.system,
            "answers": self.answers,
        }


def students(pipeline: PipelineConfig) -> list[Trainee]:
    """The students of `train_students`, in the file's order, checked."""
    found = []
    for name, entry in pipeline.train_students.items():
        values = dict(entry)
        kind = values.pop("kind", None) or (
            "student-nocot" if name.startswith("student-nocot") else "student-cot"
        )
        questions = values.pop("questions", "covered")
        where = f"pipeline section 'train_students', entry {name!r}"
        if not name.startswith("student-") or not name.removeprefix("student-"):
            raise ConfigError(f"{where}: a student's name starts with 'student-'")
        if kind not in ("student-cot", "student-nocot"):
            raise ConfigError(f"{where}: kind {kind!r} is not student-cot or student-nocot")
        if questions not in ("covered", "all"):
            raise ConfigError(f"{where}: questions {questions!r} is not covered or all")
        if questions == "all" and kind != "student-nocot":
            raise ConfigError(
                f"{where}: questions: all needs kind student-nocot (a CoT student trains on "
                "the covered questions only: the others have no rationale)"
            )
        answers = "cot" if kind == "student-cot" else "nocot"
        found.append(Trainee(name, "train_students", kind, questions, values, answers=answers))
    if not found:
        raise ConfigError("pipeline section 'train_students' names no student")
    return found


def trainees(pipeline: PipelineConfig, models: Path) -> dict[str, list[Trainee]]:
    """Who each group of the plan trains: the rationalizer, the students, the GRPO student
    (none without a `grpo` section)."""
    rationalizer = Trainee(
        "rationalizer", "train_rationalizer", "rationalizer", "covered", pipeline.train_rationalizer
    )
    groups = {"rationalizer": [rationalizer], "student": students(pipeline), "grpo": []}
    if pipeline.grpo is not None:  # reinforcement learning after SFT, from a CoT student
        values = dict(pipeline.grpo)
        start = values.pop("from", "student-cot")
        questions = values.pop("questions", "all")
        values.setdefault("model_name_or_path", str(models / start))
        groups["grpo"] = [
            Trainee(f"{start}-grpo", "grpo", "grpo", questions, values, "grpo", "cot")
        ]
    return groups


@dataclass(frozen=True)
class StepPlan:
    """One step of the pipeline, as data.

    `fills` are the keys the pipeline sets (the splits, the run's paths, the models earlier
    steps trained); `defaults` are keys the stage's section may override. `{train}`, `{dev}`,
    `{root}`, `{models}` and, for a step made per trainee of `each`, the trainee's fields
    (`{trainee}`, `{dataset}`, `{kind}`, `{questions}`, `{system}`, `{answers}`) are filled in.
    A `train` step takes its trainee's recipe and recipe keys instead of a section."""

    name: str
    stage: str
    section: str = ""  # default: the stage's name
    fills: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    each: str = ""  # a group of `trainees`: one step per trainee
    when: str = ""  # a pipeline section that must be present (not null)


TRAINEE_STEPS = (  # a model's dataset, its training, and what uses it, in this order
    ("export-{dataset}", "export", {"data": "{train}", "kind": "{kind}",
     "out": "{root}/export/{dataset}", "questions": "{questions}"}),
    ("train-{trainee}", "train", {}),
)  # fmt: skip
PLAN: tuple[StepPlan, ...] = (
    StepPlan("audit", "audit", fills={"data": "{train}"}),
    StepPlan("seed", "seed", fills={"data": "{train}"}),
    StepPlan("distill", "distill", fills={"data": "{train}"}, when="distill"),
    *(StepPlan(n, s, fills=f, each="rationalizer") for n, s, f in TRAINEE_STEPS),
    StepPlan("annotate", "annotate", fills={"data": "{train}"},
             defaults={"model": "{models}/rationalizer"}),
    *(StepPlan(n, s, fills=f, each="student") for n, s, f in TRAINEE_STEPS),
    StepPlan("predict-{system}", "predict", each="student",
             fills={"data": "{dev}", "kind": "{answers}", "out": "{root}/predict/{system}"},
             defaults={"model": "{models}/{trainee}"}),
    *(StepPlan(n, s, fills=f, each="grpo", when="grpo") for n, s, f in TRAINEE_STEPS),
    StepPlan("predict-{system}", "predict", each="grpo", when="grpo",
             fills={"data": "{dev}", "kind": "{answers}", "out": "{root}/predict/{system}"},
             defaults={"model": "{models}/{trainee}"}),
    StepPlan("report", "report", fills={"data": "{dev}", "out": "{root}/report",
             "run": "{root}", "train": "{train}"}),
)  # fmt: skip
# (training step, its dataset's export, the step that generates with the model, its section):
# the training's max_length must leave room after the prompt budget for the answers.
ROOM_CHECKS = (
    ("train-{trainee}", "export-{dataset}", "annotate", "rationalizer"),
    ("train-{trainee}", "export-{dataset}", "predict-{system}", "student"),
)


def build_steps(
    pipeline: PipelineConfig, run_dir: RunDir, earlier: list[str] | None = None
) -> list[Step]:
    """Every step of `PLAN` with its resolved config. Every bad key of every section is
    named at once (with the closest valid key, after the `earlier` problems), before
    anything runs."""
    problems = Problems(pipeline, earlier)
    root = run_dir.root.resolve()
    base = {"train": str(pipeline.train), "dev": str(pipeline.dev), "root": str(root),
            "models": str(root / "models")}  # fmt: skip
    groups = trainees(pipeline, root / "models")
    steps: dict[str, Step | None] = {}
    for plan in PLAN:
        if plan.when and getattr(pipeline, plan.when) is None:
            continue
        if plan.each == "grpo" and plan.stage == "export":
            _check_grpo_start(groups, problems)
        for trainee in groups[plan.each] if plan.each else [None]:
            fields = {**base, **(trainee.fields() if trainee else {})}
            name = plan.name.format(**fields)
            steps[name] = _build_step(plan, name, fields, trainee, groups, pipeline, problems)
            for training, exported, generating, group in ROOM_CHECKS:
                if generating != plan.name or plan.each not in ("", group):
                    continue
                for checked in [trainee] if trainee else groups[group]:
                    known = {**base, **checked.fields()}
                    check_room(*(steps.get(n.format(**known)) for n in (training, exported, name)),
                               plan.stage, problems)  # fmt: skip
    problems.raise_any()
    return [step for step in steps.values() if step is not None]  # in PLAN's order


def _check_grpo_start(groups: dict[str, list[Trainee]], problems: Problems) -> None:
    start = groups["grpo"][0].name.removesuffix("-grpo")
    if not any(s.name == start and s.kind == "student-cot" for s in groups["student"]):
        problems.add("grpo", f"from: {start!r} is not a CoT student of train_students")


def _build_step(
    plan: StepPlan,
    name: str,
    fields: dict[str, str],
    trainee: Trainee | None,
    groups: dict[str, list[Trainee]],
    pipeline: PipelineConfig,
    problems: Problems,
) -> Step | None:
    """One step of `plan`; the few keys no template can say are filled in here."""
    declared = stage(plan.stage)
    if plan.stage == "train":
        assert trainee is not None
        return _train_step(declared, name, fields, trainee, pipeline, problems)
    section = plan.section or plan.stage
    given = {key: value.format(**fields) for key, value in plan.defaults.items()}
    given |= getattr(pipeline, section)
    if plan.stage == "seed" and pipeline.seeds is not None:
        given = {"seeds": pipeline.seeds, **given}
    filled: dict[str, Any] = {key: value.format(**fields) for key, value in plan.fills.items()}
    if plan.stage == "export":
        assert trainee is not None
        if trainee.questions == "covered":  # the export's default: its section may say all
            del filled["questions"]
        filled |= _tokenizer_source(pipeline.export, trainee.recipe_values)
    if plan.stage == "report":
        systems = [trainee.system for trainee in groups["student"] + groups["grpo"]]
        filled["predictions"] = [
            f"{s}={Path(fields['root']) / 'predict' / s / predict.OFFICIAL_FILE}" for s in systems
        ]
        filled["models"] = [f"rationalizer={fields['models']}/rationalizer"]
    config = problems.build(declared.config, section, given, filled)
    return None if config is None else Step(name, declared, config, section)


def _train_step(
    declared: Stage,
    name: str,
    fields: dict[str, str],
    trainee: Trainee,
    pipeline: PipelineConfig,
    problems: Problems,
) -> Step | None:
    values = dict(trainee.recipe_values)
    recipe = values.pop("recipe", None)
    section = trainee.section
    if recipe is None:
        problems.add(section, f"{trainee.name} needs a recipe (a shipped recipe name or a file)")
        return None
    filled = {
        "recipe": recipe,
        "dataset": f"{fields['root']}/export/{fields['dataset']}",
        "output_dir": f"{fields['models']}/{trainee.name}",
        "recipe_overrides": values,
    }
    config = problems.build(declared.config, section, {}, filled)
    if config is None:
        return None
    try:  # a misspelt recipe key fails here, not when the step starts an hour later
        config = train.with_recipe_hash(config)
        where = f"{section}.{trainee.name}" if section == "train_students" else section
        train.check_recipe_keys(config, f"{where} ({pipeline.origin(section, trainee.name)})")
    except train.TrainingRefused as error:
        problems.add(section, str(error))
        return None
    return Step(name, declared, config, section)


def _tokenizer_source(export_section: dict[str, Any], trained_by: dict[str, Any]) -> dict:
    """What tells an export step which tokenizer budgets its prompts: the export section's
    own `tokenizer` when it names one, else the model the step's training entry overrides,
    else that entry's recipe (its model)."""
    if export_section.get("tokenizer") or export_section.get("recipe"):
        return {}
    if trained_by.get("model_name_or_path"):
        return {"tokenizer": trained_by["model_name_or_path"]}
    return {"recipe": trained_by["recipe"]} if trained_by.get("recipe") else {}


def check_room(
    training: Step | None,
    exported: Step | None,
    generating: Step | None,
    stage: str,
    problems: Problems,
) -> None:
    """Refuse a training step whose `max_length` leaves less room after the export's prompt
    budget than the answers the model will be asked for: a long-schema prompt would fill the
    row and truncation (or packing) would cut the completion it is trained on."""
    if training is None or exported is None or generating is None:
        return  # a section with its own problems, already named
    config, export_config = training.config, exported.config
    assert isinstance(config, train.TrainConfig) and isinstance(export_config, export.ExportConfig)
    prompt_tokens = export_config.max_prompt_tokens
    answer_tokens = getattr(generating.config, "max_tokens", None)
    if prompt_tokens is None or answer_tokens is None:
        return
    max_length = train.recipe_max_length(config)
    if max_length - prompt_tokens >= answer_tokens:
        return
    problems.add(
        training.section,
        f"step {training.name}: max_length {max_length} (recipe {config.recipe}) leaves "
        f"{max_length - prompt_tokens} tokens after export.max_prompt_tokens {prompt_tokens}, "
        f"less than the {answer_tokens} tokens {stage}.max_tokens allows an answer: set "
        f"max_length to at least {prompt_tokens + answer_tokens} or lower "
        f"export.max_prompt_tokens to at most {max_length - answer_tokens}",
    )


def load_pipeline(name_or_path: str, overrides: list[str]) -> PipelineConfig:
    """The pipeline file, with `SECTION.KEY=VALUE` overrides (values read as YAML)."""
    path = find_pipeline(name_or_path)
    values = read_config_file(path, "")
    set_by_flag: set[tuple[str, ...]] = set()  # (section, key) given by --set
    for override in overrides:
        target, separator, raw = override.partition("=")
        keys = target.split(".")
        if not separator or not all(keys):
            raise ConfigError(f"--set {override!r}: expected SECTION.KEY=VALUE")
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {override!r}: {key!r} is not a section")
        node[keys[-1]] = yaml.safe_load(raw)
        set_by_flag.add(tuple(keys[:2]))
    problems: list[str] = []
    for key in [key for key in values if key not in PipelineConfig.model_fields]:
        close = closest_key(key, PipelineConfig)
        hint = f"; did you mean {close!r}?" if close else ""
        problems.append(f"{path}: unknown section {key!r}{hint}")
        del values[key]  # named now; the sections are still checked below
    try:
        pipeline = PipelineConfig.model_validate(values)
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(map(str, problem["loc"]))
            message = str(problem["msg"]).removeprefix("Value error, ")
            if problem["type"] == "missing":
                message = "missing"
            problems.append(f"{path}: section {where!r}: {message}")
        raise ConfigError.listing(problems) from None
    pipeline._source = str(path)
    pipeline._set_by_flag = {keys for keys in set_by_flag if len(keys) == 2}
    # every section's keys, checked now (the run directory only fills in paths)
    build_steps(pipeline, RunDir(Path("RUN")), problems)
    return pipeline


def select(steps: list[Step], only: list[str], start: str | None) -> list[Step]:
    """The steps `--only` names (a name or its prefix: `predict` is both predict steps),
    or those from `--from` on; every step by default."""
    names = [step.name for step in steps]

    def matching(wanted: str) -> list[str]:
        found = [n for n in names if n == wanted or n.startswith(f"{wanted}-")]
        if not found:
            raise ConfigError(f"no step {wanted!r}; the steps are: {', '.join(names)}")
        return found

    if only:
        chosen = {name for wanted in only for name in matching(wanted)}
        return [step for step in steps if step.name in chosen]
    if start is not None:
        first = names.index(matching(start)[0])
        return steps[first:]
    return steps


class StepOutcome(BaseModel):
    name: str
    status: str  # "ran", "skipped (unchanged)", "re-ran (config changed)"
    seconds: float
    summary: str


def run_pipeline(
    pipeline: PipelineConfig,
    run_dir: RunDir,
    *,
    only: list[str] | None = None,
    start: str | None = None,
    progress: ProgressCallback = no_progress,
    log_level: LogLevel = "info",
) -> list[StepOutcome]:
    """Walk the steps; see the module docstring for what is skipped and what re-runs. Each
    step logs into `logs/<step>.log`, and the whole run into `logs/run.log`."""
    load_split(pipeline.train)  # the data must be there before anything runs
    load_split(pipeline.dev)
    steps = build_steps(pipeline, run_dir)
    chosen = select(steps, only or [], start)
    outcomes: list[StepOutcome] = []
    with run_dir.locked(), stage_log(run_dir.root, "run", log_level, pipeline):
        state_path = run_dir.root / PIPELINE_FILE
        state = (
            PipelineState.model_validate_json(state_path.read_text())
            if state_path.exists()
            else PipelineState()
        )
        stale = False  # an earlier step re-ran with a changed config: everything after too
        for step in chosen:
            recorded = state.steps.get(step.name)
            current = step.config.config_hash()
            changed = recorded is not None and recorded.config_hash != current
            if recorded is not None and not changed and not stale:
                logger.info("%s: skipped, unchanged since it ran", step.name)
                outcomes.append(
                    StepOutcome(
                        name=step.name,
                        status="skipped (unchanged)",
                        seconds=0.0,
                        summary=recorded.summary,
                    )
                )
                continue
            if changed:
                progress.log(
                    f"{step.name}: its '{step.section}' section changed since it ran: re-running "
                    "it and every step after it"
                )
            stale = stale or changed
            # what follows was built on this step's old outputs: it must run again, now or
            # in a later invocation (with --only, the later steps are not run now)
            later = [s.name for s in steps[steps.index(step) + 1 :]]
            for name in later:
                state.steps.pop(name, None)
            progress.log(f"--- {step.name}")
            clock = time.perf_counter()
            result = run_stage(
                step.stage,
                step.config,
                run_dir,
                force=changed or stale,
                progress=progress,
                log_name=step.name,
                log_level=log_level,
            )
            seconds = round(time.perf_counter() - clock, 1)
            said = summary(result)
            state.steps[step.name] = StepState(
                config_hash=current, finished=now_iso(), seconds=seconds, summary=said
            )
            write_text_atomic(state_path, state.model_dump_json(indent=2) + "\n")
            status = "re-ran (config changed)" if changed or stale else "ran"
            outcomes.append(
                StepOutcome(name=step.name, status=status, seconds=seconds, summary=said)
            )
    return outcomes
