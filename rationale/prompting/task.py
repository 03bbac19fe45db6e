"""Prompts of the models the pipeline trains: the rationalization model and the students.

One template pair per kind in `rationale/prompting/prompts/`, rendered by
`rationale.prompting.templates`:

    rationalizer    (schema, evidence, question, gold SQL) -> rationale
    student-cot     (schema, evidence, question)           -> rationale; its steps assemble
                                                              into the answer
    student-nocot   (schema, evidence, question)           -> SQL (the paper's baseline)

The export builds training data with `TaskPrompter`, and annotation and prediction ask the
trained models with the same `TaskPrompter` and the same token budget, so a model is asked
exactly what it was trained on. The schema text is cut to fit the budget (details first,
then trailing tables, as `bird.schema.render_schema` does); how many prompts were cut is
counted for the dataset card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from bird.data import BirdExample, BirdSplit
from bird.schema import DatabaseSchema, SchemaStyle, load_schema, render_schema
from rationale.chain.format import Rationale, render_rationale
from rationale.llm.models import ModelPreparationError
from rationale.prompting.templates import RenderedChat, render_chat, sql_block, template_hash

TaskKind = Literal["rationalizer", "student-cot", "student-nocot"]
TASK_KINDS: tuple[TaskKind, ...] = get_args(TaskKind)

TEMPLATES: dict[TaskKind, tuple[str, str]] = {
    "rationalizer": ("_rationalizer_system.j2", "rationalizer.j2"),
    "student-cot": ("_student_cot_system.j2", "student_cot.j2"),
    "student-nocot": ("_student_nocot_system.j2", "student_nocot.j2"),
}
# Room left for the shortest schema rendering before a budget is declared too small.
_MIN_SCHEMA_CHARS = 200


def task_template_hash(kind: TaskKind, prompts_dir: Path | None = None) -> str:
    return template_hash(TEMPLATES[kind], prompts_dir)


def task_prompt(
    kind: TaskKind,
    example: BirdExample,
    schema_text: str,
    *,
    prompts_dir: Path | None = None,
) -> RenderedChat:
    """The chat a model of `kind` is asked for `example` (gold SQL shown to the
    rationalization model only)."""
    system, user = TEMPLATES[kind]
    variables: dict[str, object] = {
        "db_id": example.db_id,
        "schema_text": schema_text.strip(),
        "question": example.question.strip(),
        "evidence": example.evidence.strip(),
    }
    if kind == "rationalizer":
        variables["gold_sql"] = example.sql.strip()
    return render_chat(system, user, variables, prompts_dir=prompts_dir)


def completion_text(kind: TaskKind, gold_sql: str, rationale: Rationale | None) -> str:
    """What a model of `kind` should answer: the rendered rationale, or the gold SQL."""
    if kind == "student-nocot":
        return sql_block(gold_sql)
    if rationale is None:
        raise ValueError(f"a {kind} completion needs a rationale")
    return render_rationale(rationale)


class PromptSettingsError(ValueError):
    """A model would be asked in another format than the one it was trained on."""


@dataclass
class TaskPrompter:
    """Renders prompts of one kind for one split, the schema cut to `max_prompt_tokens`.

    `tokenizer` is a transformers tokenizer (the prompt is counted as the model sees it:
    chat template and generation prompt included); without one, or without a budget, the
    schema is only cut to `schema_max_chars`.
    """

    kind: TaskKind
    split: BirdSplit
    tokenizer: Any | None = None
    max_prompt_tokens: int | None = None
    schema_max_chars: int | None = 12000
    sample_values: int = 3
    schema_style: SchemaStyle = "sql"
    prompts_dir: Path | None = None
    cut: int = 0  # prompts whose schema was cut to fit the token budget
    over_budget: int = 0  # prompts over the budget even with the shortest schema
    _schemas: dict[str, DatabaseSchema] = field(default_factory=dict)
    _texts: dict[tuple[str, int | None], str] = field(default_factory=dict)

    def schema_text(self, db_id: str, max_chars: int | None) -> str:
        key = (db_id, max_chars)
        if key not in self._texts:
            if db_id not in self._schemas:
                self._schemas[db_id] = load_schema(
                    self.split, db_id, sample_values=self.sample_values
                )
            self._texts[key] = render_schema(
                self._schemas[db_id], max_chars=max_chars, style=self.schema_style
            )
        return self._texts[key]

    def tokens(self, prompt: RenderedChat) -> int:
        assert self.tokenizer is not None
        messages = [message.model_dump() for message in prompt.messages]
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # some versions return an encoding
            ids = ids["input_ids"]
        return len(ids)

    def prompt(self, example: BirdExample) -> RenderedChat:
        """The prompt for `example`, its schema as long as the budget allows (or as short as
        it gets, when even that is over: see `fitted`)."""
        return self.fitted(example)[0]

    def fitted(self, example: BirdExample) -> tuple[RenderedChat, bool]:
        """(prompt, whether it fits the budget). The longest schema rendering that fits is
        found by binary search on its character budget; a question whose prompt is over the
        budget even with the shortest schema gets that shortest one, counted in
        `over_budget` (the export leaves such examples out)."""
        full = self.schema_text(example.db_id, self.schema_max_chars)
        prompt = task_prompt(self.kind, example, full, prompts_dir=self.prompts_dir)
        if self.tokenizer is None or self.max_prompt_tokens is None:
            return prompt, True
        if self.tokens(prompt) <= self.max_prompt_tokens:
            return prompt, True
        low, high = _MIN_SCHEMA_CHARS, len(full)
        best: RenderedChat | None = None
        while low <= high:
            middle = (low + high) // 2
            text = self.schema_text(example.db_id, middle)
            candidate = task_prompt(self.kind, example, text, prompts_dir=self.prompts_dir)
            if self.tokens(candidate) <= self.max_prompt_tokens:
                best, low = candidate, middle + 1
            else:
                high = middle - 1
        if best is None:
            self.over_budget += 1
            shortest = self.schema_text(example.db_id, _MIN_SCHEMA_CHARS)
            return task_prompt(self.kind, example, shortest, prompts_dir=self.prompts_dir), False
        self.cut += 1
        return best, True


class PromptSettings(BaseModel):
    """How a trained model's prompts were built: the same settings ask it at inference."""

    kind: TaskKind
    tokenizer: str | None = None  # None: the model's own
    max_prompt_tokens: int | None = 2048
    schema_max_chars: int | None = 12000
    schema_sample_values: int = 3
    schema_style: SchemaStyle = "sql"
    source: str = "config"  # where the settings were read

    def prompter(
        self, split: BirdSplit, tokenizer: Any | None, prompts_dir: Path | None = None
    ) -> TaskPrompter:
        """The prompter that builds prompts as these settings say, `tokenizer` (a loaded
        one, of `self.tokenizer` or the model) counting the budget."""
        return TaskPrompter(
            kind=self.kind,
            split=split,
            tokenizer=tokenizer,
            max_prompt_tokens=self.max_prompt_tokens,
            schema_max_chars=self.schema_max_chars,
            sample_values=self.schema_sample_values,
            schema_style=self.schema_style,
            prompts_dir=prompts_dir,
        )


EXPORT_MANIFEST = "export.json"
TRAINING_MANIFEST = "training_manifest.json"


def trained_prompt_settings(model: str, kind: TaskKind) -> PromptSettings | None:
    """The prompt settings of the dataset a model folder was trained on (its training
    manifest names the dataset folder, whose export.json holds them), or None when the
    model is not a folder written by `rationale train` on an exported dataset."""
    manifest = Path(model).expanduser() / TRAINING_MANIFEST
    if not manifest.is_file():
        return None
    dataset = json.loads(manifest.read_text(encoding="utf-8")).get("dataset", {}).get("path")
    return dataset_prompt_settings(Path(dataset), kind) if dataset else None


def dataset_prompt_settings(dataset: Path, kind: TaskKind) -> PromptSettings | None:
    """The prompt settings recorded in an exported dataset folder (None: not an export)."""
    path = dataset / EXPORT_MANIFEST
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text(encoding="utf-8"))
    # a GRPO dataset holds the CoT student's prompts (rationale export --kind grpo)
    asked = "student-cot" if recorded.get("kind") == "grpo" else recorded.get("kind")
    if asked != kind:
        raise PromptSettingsError(
            f"{dataset} is a {recorded.get('kind')!r} dataset, not {kind!r}: a model is asked "
            "in the format it was trained on; give the matching dataset or model"
        )
    return PromptSettings(
        kind=kind,
        tokenizer=recorded.get("tokenizer"),
        max_prompt_tokens=recorded.get("max_prompt_tokens"),
        schema_max_chars=recorded.get("schema_max_chars"),
        schema_sample_values=recorded.get("schema_sample_values", 3),
        schema_style=recorded.get("schema_style", "sql"),
        source=str(path),
    )


def load_tokenizer(name: str) -> Any:
    """A model's tokenizer by local name, folder or hub id (loaded on the CPU, no weights)."""
    from transformers import AutoTokenizer

    from rationale.llm.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(name))


def prompter_for(
    settings: PromptSettings, split: BirdSplit, model: str, prompts_dir: Path | None = None
) -> TaskPrompter:
    """The prompter that asks `model` as `settings` say (its tokenizer counts the budget)."""
    tokenizer = None
    if settings.max_prompt_tokens:
        name = settings.tokenizer or model
        try:
            tokenizer = load_tokenizer(name)
        except (ModelPreparationError, OSError, ValueError) as error:
            raise PromptSettingsError(
                f"prompts are cut to {settings.max_prompt_tokens} tokens of {name!r}, whose "
                f"tokenizer cannot be loaded here ({error}); name it with --tokenizer (the "
                "trained model's folder or a local model name)"
            ) from None
    return settings.prompter(split, tokenizer, prompts_dir)


class PromptBudget(BaseModel):
    """The config keys that shape a prompt: export builds its dataset with them (and
    records them), annotate and predict fall back on them when no dataset says."""

    CLI_PANEL: ClassVar[str] = "Prompt"

    max_prompt_tokens: int | None = Field(
        default=2048,
        ge=64,
        description="Prompt tokens at most, chat template included (empty: no budget).",
    )
    schema_max_chars: int | None = Field(
        default=12000, ge=200, description="Schema characters at most per prompt."
    )
    schema_sample_values: int = Field(default=3, ge=0, description="Sample values per column.")
    schema_style: SchemaStyle = Field(
        default="sql",
        description="sql: CREATE TABLE statements with descriptions and samples as comments; "
        "compact: one line per table (columns, types, keys), about half the tokens, for "
        "small models with short contexts.",
    )

    def budget_settings(self, kind: TaskKind, tokenizer: str | None) -> PromptSettings:
        """These keys as the settings of `kind` prompts, `tokenizer` counting the budget."""
        budget = self.model_dump(include=set(PromptBudget.model_fields))
        return PromptSettings(kind=kind, tokenizer=tokenizer, **budget)


class PromptOptions(PromptBudget):
    """How a stage asks a trained model (annotate, predict): as its training data did."""

    model_config = ConfigDict(extra="forbid")

    CLI_PANEL: ClassVar[str] = "Prompt"

    prompts: Path | None = Field(
        default=None,
        description="Exported dataset folder whose prompt settings to use (default: the "
        "dataset named in the model folder's training manifest, else the prompt keys given "
        "here).",
    )
    tokenizer: str | None = Field(
        default=None, description="Tokenizer counting the prompt budget (default: the model)."
    )

    def prompt_settings(self, model: str, kind: TaskKind) -> PromptSettings:
        """The settings `model` was trained with (dataset given, or named by the model's
        training manifest), else these keys."""
        if self.prompts is not None:
            found = dataset_prompt_settings(self.prompts, kind)
            if found is None:
                raise PromptSettingsError(
                    f"{self.prompts} is not an exported dataset (no export.json)"
                )
            return found
        trained = trained_prompt_settings(model, kind)
        if trained is not None:
            return trained
        return self.budget_settings(kind, self.tokenizer)
