"""Chat prompts rendered from the Jinja2 templates in the package's `prompts/` folder.

Every model of the pipeline (the teacher, the rationalization model, the students) is
prompted through `render_chat`, so what a model is trained on is exactly what it is asked
at inference, and every prompt carries the hash of the template files it came from.

The folder is package data (found through `importlib.resources`), so a plain
`pip install .` finds it as well as an editable install; `prompts_dir=` points at a copy
to edit.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
import jinja2.meta
from pydantic import BaseModel, ConfigDict

from rationale.chain.markdown import fence_for
from rationale.llm.types import ChatMessage

PROMPTS_DIR = Path(str(resources.files("rationale.prompting") / "prompts"))


class PromptTemplateError(RuntimeError):
    """A template is missing, does not parse, or uses a variable it is not given."""


class RenderedChat(BaseModel):
    """A chat rendered from templates, and where its text came from."""

    model_config = ConfigDict(frozen=True)

    messages: list[ChatMessage]
    template: str  # the user template's file name, e.g. "teacher_free.j2"
    template_hash: str  # sha256 over every template file used (partials included)


def sql_block(sql: str) -> str:
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
                f"restore it from the package's prompts/ folder ({PROMPTS_DIR})"
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
    environment.filters["sql_block"] = sql_block
    return environment


def sources_hash(sources: dict[str, str]) -> str:
    """sha256 over (name, source) of every template, in name order."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()


def template_files(templates: Sequence[str], prompts_dir: Path | None = None) -> list[Path]:
    """The files of `templates` and of every template they use, in name order."""
    folder = (prompts_dir or PROMPTS_DIR).resolve()
    return [folder / name for name in sorted(_read_sources(folder, templates))]


def template_hash(templates: Sequence[str], prompts_dir: Path | None = None) -> str:
    """The hash `render_chat` records for prompts made from `templates` (partials included)."""
    return sources_hash(_read_sources((prompts_dir or PROMPTS_DIR).resolve(), templates))


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
            f"is not passed to {name!r} (given: {', '.join(variables) or 'none'}): "
            "remove it from the template or pass it from the code that renders it"
        ) from error
    except jinja2.TemplateError as error:
        raise PromptTemplateError(f"{_template_line(error)}: {error}") from error


def render_chat(
    system_template: str,
    user_template: str,
    variables: dict[str, object],
    *,
    prompts_dir: Path | None = None,
) -> RenderedChat:
    """A system message (rendered without variables: static, so a prefix cache shares it)
    and a user message rendered with `variables`."""
    folder = (prompts_dir or PROMPTS_DIR).resolve()
    sources = _read_sources(folder, [system_template, user_template])
    environment = _environment(folder, tuple(sorted(sources.items())))
    messages = [
        ChatMessage(role="system", content=_render(environment, folder, system_template, {})),
        ChatMessage(role="user", content=_render(environment, folder, user_template, variables)),
    ]
    return RenderedChat(
        messages=messages, template=user_template, template_hash=sources_hash(sources)
    )
