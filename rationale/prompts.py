"""Teacher prompts for distillation, rendered from the Jinja2 templates in `prompts/`.

Two modes. `free` is the paper's prompt: the teacher sees the question, evidence, schema and
gold SQL plus retrieved few-shot rationales, and decomposes the gold query itself.
`skeleton` goes beyond the paper: the teacher also gets the symbolic decomposer's verified
steps, with placeholder explanations, and writes the explanations (it may restructure).

Layout, chosen for a vLLM prefix cache (requests share their longest common prefix):

    system  static instructions and format rules, no per-request content, the same for
            every request of both modes (`_teacher_system.j2`)
    user    the database schema, then the few-shot examples, then the question to explain
            (and, in skeleton mode, the verified steps), then the request

Consecutive requests on one database therefore share everything up to the first few-shot
example; `prefix_reuse_order` groups requests by database so that they are consecutive.

Few-shot examples are inline in the one user message, not separate user/assistant turns:
- the prefix a cache can reuse is the same either way (system + schema), so turns buy
  nothing there;
- shots come from other questions and often other databases; as earlier chat turns they
  would read as answers about the schema shown, inline each is labelled with its database;
- chat templates may rewrite earlier assistant turns (some drop reasoning blocks or add
  markers), which would change the shots' text; inline, every shot is exactly the
  `render_rationale` text the models learn to write, and the answer is the only assistant
  turn, in the same format as the shots' "Rationale:" parts;
- a small model sees one question and one request at the end of the prompt, right before
  its answer, instead of having to tell past turns from the current one.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import jinja2
import jinja2.meta
from pydantic import BaseModel, ConfigDict

from bird.data import BirdExample
from rationale.format import Rationale, RationaleStep, render_rationale
from rationale.llm.types import ChatMessage
from rationale.markdown import fence_for
from rationale.pool import PoolEntry

PromptMode = Literal["free", "skeleton"]

# The repository's prompts/ folder. Installs are editable (the package runs from the
# checkout), so the templates are read in place and need no package data.
DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

SYSTEM_TEMPLATE = "_teacher_system.j2"
MODE_TEMPLATES: dict[PromptMode, str] = {
    "free": "teacher_free.j2",
    "skeleton": "teacher_skeleton.j2",
}
# What stands in for the explanations of a skeleton's steps: the teacher writes them.
SKELETON_PLACEHOLDER = "[explanation to write]"


class PromptTemplateError(RuntimeError):
    """A teacher template is missing, does not parse, or uses a variable it is not given."""


class TeacherPrompt(BaseModel):
    """The chat sent to the teacher for one example, and where its text came from."""

    model_config = ConfigDict(frozen=True)

    messages: list[ChatMessage]
    template: str  # the mode's template file name, e.g. "teacher_free.j2"
    template_hash: str  # sha256 over every template file used (partials included)
    shot_ids: list[int]  # question_ids of the few-shot entries, in prompt order


def _sql_block(sql: str) -> str:
    """A ```sql fence around `sql`, longer than any backtick run inside it."""
    fence = fence_for(sql)
    return f"{fence}sql\n{sql.strip()}\n{fence}"


def _read_sources(prompts_dir: Path, roots: Sequence[str]) -> dict[str, str]:
    """The source of every template in `roots` and of every template they reference."""
    sources: dict[str, str] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        path = prompts_dir / name
        try:
            sources[name] = path.read_text(encoding="utf-8")
        except OSError as error:
            raise PromptTemplateError(
                f"prompt template {path} cannot be read ({error.strerror}): "
                "restore it from the repository's prompts/ folder"
            ) from error
        try:
            pending.extend(_referenced(sources[name]))
        except jinja2.TemplateSyntaxError as error:
            raise _syntax_error(prompts_dir, name, error) from error
    return sources


@lru_cache(maxsize=64)
def _referenced(source: str) -> tuple[str, ...]:
    """Templates that `source` extends, includes or imports (by literal name)."""
    names = jinja2.meta.find_referenced_templates(jinja2.Environment().parse(source))
    return tuple(sorted(name for name in names if name is not None))


@lru_cache(maxsize=8)
def _environment(prompts_dir: Path, sources: tuple[tuple[str, str], ...]) -> jinja2.Environment:
    """An environment over exactly the sources read (and hashed), keyed by their text, so a
    prompt's text and its template_hash always come from the same version of the files."""
    by_name = dict(sources)

    def load(name: str) -> tuple[str, str, Callable[[], bool]] | None:
        if name not in by_name:
            return None
        return by_name[name], str(prompts_dir / name), lambda: True

    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, never ""
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # plain text for a model, not HTML
    )
    environment.filters["sql_block"] = _sql_block
    return environment


def sources_hash(sources: dict[str, str]) -> str:
    """sha256 over (name, source) of every template, in name order."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()


def _syntax_error(
    prompts_dir: Path, name: str, error: jinja2.TemplateSyntaxError
) -> PromptTemplateError:
    where = error.filename or str(prompts_dir / (error.name or name))
    return PromptTemplateError(
        f"{where}, line {error.lineno}: template syntax error: {error.message}; fix the template"
    )


def _template_line(error: BaseException) -> str:
    """`file, line N` of the innermost template frame of a rendering error, if any."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.endswith(".j2")]
    if not frames:
        return "a prompt template"
    return f"{frames[-1].filename}, line {frames[-1].lineno}"


def _render(
    environment: jinja2.Environment, prompts_dir: Path, name: str, variables: dict[str, object]
) -> str:
    try:
        return environment.get_template(name).render(variables).strip()
    except jinja2.TemplateSyntaxError as error:
        raise _syntax_error(prompts_dir, name, error) from error
    except jinja2.UndefinedError as error:
        raise PromptTemplateError(
            f"{_template_line(error)}: {error.message}; the template uses a variable that "
            f"build_teacher_prompt does not pass to {name!r} (given: {', '.join(variables)}): "
            "remove it from the template or pass it from rationale/prompts.py"
        ) from error
    except jinja2.TemplateError as error:
        raise PromptTemplateError(f"{_template_line(error)}: {error}") from error


def skeleton_rationale(skeleton: Rationale) -> Rationale:
    """The skeleton with every explanation replaced by the placeholder (titles and SQL kept)."""
    steps = [
        RationaleStep(
            name=step.name, title=step.title, explanation=SKELETON_PLACEHOLDER, sql=step.sql
        )
        for step in skeleton.steps
    ]
    return Rationale(
        steps=steps, final_explanation=SKELETON_PLACEHOLDER, final_sql=skeleton.final_sql
    )


def _question_inputs(db_id: str, question: str, evidence: str, gold_sql: str) -> dict[str, str]:
    return {
        "db_id": db_id,
        "question": question.strip(),
        "evidence": evidence.strip(),
        "gold_sql": gold_sql.strip(),
    }


def build_teacher_prompt(
    example: BirdExample,
    schema_text: str,
    shots: Sequence[PoolEntry],
    mode: PromptMode = "free",
    skeleton: Rationale | None = None,
    *,
    prompts_dir: Path | None = None,
) -> TeacherPrompt:
    """The teacher chat for `example`: system instructions, then one user message.

    `shots` appear in the given order (best first), each rationale as `render_rationale`
    writes it. `skeleton` is required in skeleton mode and not used in free mode, so a
    caller may pass what it has and switch with `mode` alone.
    """
    if mode not in MODE_TEMPLATES:
        raise ValueError(f"unknown prompt mode {mode!r}; use one of {sorted(MODE_TEMPLATES)}")
    if mode == "skeleton" and skeleton is None:
        raise ValueError(
            f"skeleton mode needs the decomposer's rationale for question {example.question_id} "
            f"({example.db_id}); pass skeleton=... or use mode='free'"
        )
    for shot in shots:
        if (shot.question_id, shot.db_id, shot.question) == (
            example.question_id,
            example.db_id,
            example.question,
        ):
            raise ValueError(
                f"question {example.question_id} ({example.db_id}) is among its own few-shot "
                "examples: the retriever must exclude the query itself"
            )

    template = MODE_TEMPLATES[mode]
    variables: dict[str, object] = {
        "db_id": example.db_id,
        "schema_text": schema_text.strip(),
        "shots": [
            {
                **_question_inputs(shot.db_id, shot.question, shot.evidence, shot.gold_sql),
                "rationale_text": render_rationale(shot.rationale).strip(),
            }
            for shot in shots
        ],
        "example": _question_inputs(example.db_id, example.question, example.evidence, example.sql),
    }
    if mode == "skeleton" and skeleton is not None:  # checked above: always given here
        variables["skeleton_text"] = render_rationale(skeleton_rationale(skeleton)).strip()
        variables["placeholder"] = SKELETON_PLACEHOLDER

    folder = (prompts_dir or DEFAULT_PROMPTS_DIR).resolve()
    sources = _read_sources(folder, [SYSTEM_TEMPLATE, template])
    environment = _environment(folder, tuple(sorted(sources.items())))
    messages = [
        ChatMessage(role="system", content=_render(environment, folder, SYSTEM_TEMPLATE, {})),
        ChatMessage(role="user", content=_render(environment, folder, template, variables)),
    ]
    return TeacherPrompt(
        messages=messages,
        template=template,
        template_hash=sources_hash(sources),
        shot_ids=[shot.question_id for shot in shots],
    )


def prefix_reuse_order(examples: Sequence[BirdExample]) -> list[BirdExample]:
    """`examples` grouped by database, databases in order of first appearance, the original
    order kept within each database.

    Consecutive requests on one database share the system message and the schema, so a
    prefix cache reuses them. First appearance (not sorted names) leaves an already grouped
    input, such as a BIRD split file, exactly as it is.
    """
    groups: dict[str, list[BirdExample]] = {}
    for example in examples:
        groups.setdefault(example.db_id, []).append(example)
    return [example for group in groups.values() for example in group]
