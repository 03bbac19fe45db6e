"""The rationale format: a chain of CTE steps plus a final SELECT, and its Markdown text.

A rationale always has at least one step: even a one-table question is written as one
step and a final `SELECT ... FROM step1`, so that every rationale a model learns from has
the same shape and every intermediate result can be checked by execution.

Models normalize on construction (titles on one line, surrounding whitespace and
trailing semicolons dropped, a WITH clause that only repeats step CTEs unwrapped), so
that `parse_rationale(render_rationale(r)) == r` holds for every rationale.

The text form, exactly as `render_rationale` writes it:

    ### Step 1: <title>

    <explanation>

    ```sql
    <step SQL>
    ```

    ### Final answer

    <explanation>

    ```sql
    <final SELECT>
    ```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlglot.tokens import TokenType

from rationale.chain.markdown import (
    Fence,
    FinalHeading,
    ProseLine,
    StepHeading,
    clean_title,
    escape_prose,
    fence_for,
    lex,
)
from rationale.chain.sql_text import (
    split_with_clause,
    statement_count,
    strip_trailing_semicolons,
    tokenize,
    unwrap_step_ctes,
)

_STEP_NAME = re.compile(r"step(\d+)", re.IGNORECASE)
_SQL_FENCE_INFOS = ("sql", "sqlite", "")
_BARE_SQL_LINE = re.compile(r"^\s*(?:sql\s*:\s*)?(?=(?:select|with)\b)", re.IGNORECASE)
_INLINE_SELECT = re.compile(r"\bSELECT\b")


def _normalize_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _normalize_sql(sql: str) -> str:
    return strip_trailing_semicolons(_normalize_text(sql))


class RationaleStep(BaseModel):
    """One step: the body of one CTE named `step<k>`, with a title and an explanation."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description='"step1", "step2", ...')
    title: str = ""
    explanation: str = ""
    sql: str = Field(description="body of one CTE: a SELECT without semicolon or WITH of its own")

    @field_validator("name")
    @classmethod
    def _canonical_name(cls, name: str) -> str:
        match = _STEP_NAME.fullmatch(name.strip())
        if match is None:
            raise ValueError(f"step name must look like 'step1', got {name!r}")
        return f"step{int(match[1])}"

    @field_validator("title")
    @classmethod
    def _one_line_title(cls, title: str) -> str:
        return clean_title(title)

    @field_validator("explanation")
    @classmethod
    def _stripped_explanation(cls, explanation: str) -> str:
        return _normalize_text(explanation)

    @model_validator(mode="after")
    def _normalized_sql(self) -> RationaleStep:
        sql = unwrap_step_ctes(_normalize_sql(self.sql), self.name)
        object.__setattr__(self, "sql", sql)
        return self

    @property
    def number(self) -> int:
        return int(self.name.removeprefix("step"))


class Rationale(BaseModel):
    """Ordered steps and a final SELECT that may read any step (and any table)."""

    model_config = ConfigDict(frozen=True)

    steps: list[RationaleStep] = Field(min_length=1)
    final_explanation: str = ""
    final_sql: str

    @field_validator("final_explanation")
    @classmethod
    def _stripped_explanation(cls, explanation: str) -> str:
        return _normalize_text(explanation)

    @field_validator("final_sql")
    @classmethod
    def _normalized_final_sql(cls, sql: str) -> str:
        return unwrap_step_ctes(_normalize_sql(sql), None)

    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    def assembled_sql(self) -> str:
        """The whole rationale as one query: `WITH step1 AS (...), ... SELECT ...`."""
        return _with_query(self.steps, self.final_sql)

    def step_query(self, name: str, *, projection: str = "*") -> str:
        """The executable query of step `name`: its CTE chain, then `SELECT * FROM name`.

        `projection` replaces `*` (the validator counts rows with `COUNT(*)`).
        """
        for index, step in enumerate(self.steps):
            if step.name == name:
                return _with_query(self.steps[: index + 1], f"SELECT {projection} FROM {step.name}")
        raise KeyError(f"rationale has no step {name!r}; it has {self.step_names()}")


class QuestionRationale(BaseModel):
    """A question's rationale as a JSONL record holds it: the question's id and database,
    then the rationale's steps and final query as fields of their own."""

    question_id: int
    db_id: str
    steps: list[RationaleStep]
    final_explanation: str
    final_sql: str

    def rationale(self) -> Rationale:
        return Rationale(
            steps=self.steps, final_explanation=self.final_explanation, final_sql=self.final_sql
        )


def _with_query(steps: list[RationaleStep], main: str) -> str:
    """`WITH <steps> <main>`, merging a WITH clause that `main` itself starts with.

    Bodies go on their own lines (unindented) so that a trailing `-- comment` cannot
    swallow the closing parenthesis and multi-line string literals keep their text.
    """
    ctes = [f"{step.name} AS (\n{step.sql}\n)" for step in steps]
    keyword = "WITH"
    own = split_with_clause(main)
    if own is not None and own.main:
        ctes.append(own.ctes_text)
        main = own.main
        keyword = "WITH RECURSIVE" if own.recursive else "WITH"
    return f"{keyword} " + ",\n".join(ctes) + "\n" + main


# The heading before the final query: once the SQL block after it closes, the answer is
# complete (generation may stop there: SamplingParams.stop_after_block).
FINAL_HEADING = "### Final answer"


def render_rationale(rationale: Rationale) -> str:
    """The Markdown text a model reads and writes (see the module docstring)."""
    sections = [
        _render_section(
            f"### Step {step.number}" + (f": {step.title}" if step.title else ""),
            step.explanation,
            step.sql,
        )
        for step in rationale.steps
    ]
    sections.append(
        _render_section(FINAL_HEADING, rationale.final_explanation, rationale.final_sql)
    )
    return "\n\n".join(sections) + "\n"


def _render_section(heading: str, explanation: str, sql: str) -> str:
    fence = fence_for(sql)
    parts = [heading]
    if explanation:
        parts.append(escape_prose(explanation))
    parts.append(f"{fence}sql\n{sql}\n{fence}")
    return "\n\n".join(parts)


ParseFailureReason = Literal[
    "no_steps",
    "no_final_sql",
    "unterminated_fence",
    "empty_step",
    "bad_step_sql",
]


class ParseFailure(BaseModel):
    """Why a text could not be read as a rationale, and where."""

    model_config = ConfigDict(frozen=True)

    reason: ParseFailureReason
    message: str
    step: str | None = None  # "step2", "final"
    line: int | None = None  # 1-based line of the text


@dataclass(frozen=True)
class _Section:
    """The blocks between one heading and the next."""

    heading: StepHeading | FinalHeading
    blocks: list[ProseLine | Fence]


def _sections(
    blocks: list[StepHeading | FinalHeading | Fence | ProseLine],
) -> tuple[list[_Section], _Section | None]:
    """Step sections, and the final section: the first final heading after the last step."""
    step_positions = [i for i, block in enumerate(blocks) if isinstance(block, StepHeading)]
    if not step_positions:
        return [], None
    last_step = step_positions[-1]
    final_position = next(
        (i for i in range(last_step + 1, len(blocks)) if isinstance(blocks[i], FinalHeading)),
        None,
    )
    ends = [*step_positions[1:], final_position if final_position is not None else len(blocks)]
    steps = [
        _Section(
            heading=blocks[start],
            blocks=[b for b in blocks[start + 1 : end] if isinstance(b, ProseLine | Fence)],
        )
        for start, end in zip(step_positions, ends, strict=True)
    ]
    final = None
    if final_position is not None:
        final = _Section(
            heading=blocks[final_position],
            blocks=[b for b in blocks[final_position + 1 :] if isinstance(b, ProseLine | Fence)],
        )
    return steps, final


def _sql_fences(blocks: list[ProseLine | Fence]) -> list[Fence]:
    """Fences that hold SQL: tagged sql/sqlite, or untagged (```)."""
    return [b for b in blocks if isinstance(b, Fence) and b.info in _SQL_FENCE_INFOS]


def _prose(blocks: list[ProseLine | Fence]) -> str:
    return "\n".join(b.text for b in blocks if isinstance(b, ProseLine)).strip()


def _bare_sql(lines: list[ProseLine]) -> tuple[int, str] | None:
    """Unfenced SQL in prose: from a line starting with SELECT/WITH to the next blank line."""
    for index, line in enumerate(lines):
        match = _BARE_SQL_LINE.match(line.text)
        if match is None:
            continue
        body = [line.text[match.end() :]]
        for following in lines[index + 1 :]:
            if not following.text.strip():
                break
            body.append(following.text)
        return index, "\n".join(body)
    return None


@dataclass(frozen=True)
class _Piece:
    explanation: str
    sql: str
    line: int


def _step_name(heading: StepHeading | FinalHeading, position: int) -> str:
    """`step<k>` from the heading's number, or from the position when it has none."""
    number = heading.number if isinstance(heading, StepHeading) else None
    return f"step{number if number is not None else position}"


def _unterminated(fence: Fence, label: str) -> ParseFailure:
    return ParseFailure(
        reason="unterminated_fence",
        message=f"{label}: the code fence opened on line {fence.line} is never closed "
        "(the output may have been cut off)",
        step=label,
        line=fence.line,
    )


def _read_section(section: _Section, label: str) -> _Piece | ParseFailure:
    """The explanation and SQL of one section (step or final)."""
    blocks = section.blocks
    fences = _sql_fences(blocks)
    tagged = [f for f in fences if f.info in ("sql", "sqlite")]
    chosen = (tagged or fences or [None])[0]
    if chosen is not None:
        position = blocks.index(chosen)
        explanation = _prose(blocks[:position]) or _prose(blocks[position + 1 :])
        return _Piece(explanation=explanation, sql=chosen.content, line=chosen.line)
    prose = [b for b in blocks if isinstance(b, ProseLine)]
    if isinstance(section.heading, FinalHeading) and section.heading.rest:
        prose = [ProseLine(section.heading.line, section.heading.rest), *prose]
    bare = _bare_sql(prose)
    if bare is None:
        return ParseFailure(
            reason="no_final_sql" if label == "final" else "empty_step",
            message=f"{label} (line {section.heading.line}) has no SQL: expected a ```sql "
            "fenced block after its explanation",
            step=label,
            line=section.heading.line,
        )
    index, sql = bare
    return _Piece(
        explanation="\n".join(p.text for p in prose[:index]).strip(),
        sql=sql,
        line=prose[index].line,
    )


def _check_sql(piece: _Piece, label: str, heading_line: int) -> ParseFailure | None:
    sql = _normalize_sql(piece.sql)
    if not sql:
        return ParseFailure(
            reason="no_final_sql" if label == "final" else "empty_step",
            message=f"{label} (line {heading_line}) has an empty SQL block",
            step=label,
            line=piece.line,
        )
    if statement_count(sql) > 1:
        return ParseFailure(
            reason="bad_step_sql",
            message=f"{label}: the SQL block on line {piece.line} holds several statements; "
            "a step is one SELECT",
            step=label,
            line=piece.line,
        )
    return None


def _split_trailing_final(section: _Section) -> tuple[_Section, _Section] | None:
    """A last step section holding two SQL fences: the second one is the final query."""
    fences = _sql_fences(section.blocks)
    if len(fences) < 2:
        return None
    cut = section.blocks.index(fences[-1])
    previous = section.blocks.index(fences[-2])
    step = _Section(heading=section.heading, blocks=section.blocks[:cut])
    final = _Section(
        heading=FinalHeading(fences[-1].line, ""),
        blocks=section.blocks[previous + 1 :],
    )
    return step, final


def parse_rationale(text: str) -> Rationale | ParseFailure:
    """Read rationale text back into a `Rationale`, or say why it cannot be read.

    Tolerates prose before the first step and after the final SQL, ``` or ```sql
    fences, heading variants (`##`, `**Step 1.**`, `Step 1 -`, `### 1.`), missing
    titles, trailing semicolons, steps that repeat earlier steps in their own WITH
    clause, and a missing final heading when the last step carries a second SQL block
    or is titled "Final ...". Step names come from the heading numbers (the SQL refers
    to them), or from the position when a heading has no number.
    """
    step_sections, final_section = _sections(lex(text))
    if not step_sections:
        return ParseFailure(
            reason="no_steps",
            message="no step headings found: expected '### Step 1: <title>' before each step",
        )
    labelled = [(_step_name(s.heading, i), s) for i, s in enumerate(step_sections, start=1)]
    if final_section is not None:
        labelled.append(("final", final_section))
    for label, section in labelled:
        for block in section.blocks:
            if isinstance(block, Fence) and not block.closed:
                return _unterminated(block, label)
    if final_section is None:
        split = _split_trailing_final(step_sections[-1])
        last = step_sections[-1].heading
        if split is not None:
            step_sections[-1], final_section = split
        elif (
            len(step_sections) > 1
            and isinstance(last, StepHeading)
            and re.match(r"(final|answer)\b", last.title, re.IGNORECASE)
        ):
            final_section = step_sections.pop()
        else:
            return ParseFailure(
                reason="no_final_sql",
                message="no final answer found: expected '### Final answer' and a ```sql "
                "block after the last step",
                line=last.line,
            )
    steps: list[RationaleStep] = []
    for position, section in enumerate(step_sections, start=1):
        heading = section.heading
        name = _step_name(heading, position)
        piece = _read_section(section, name)
        if isinstance(piece, ParseFailure):
            return piece
        if failure := _check_sql(piece, name, heading.line):
            return failure
        steps.append(
            RationaleStep(
                name=name, title=heading.title, explanation=piece.explanation, sql=piece.sql
            )
        )
    final = _read_section(final_section, "final")
    if isinstance(final, ParseFailure):
        return final
    if failure := _check_sql(final, "final", final_section.heading.line):
        return failure
    return Rationale(steps=steps, final_explanation=final.explanation, final_sql=final.sql)


def extract_final_sql(text: str) -> str | None:
    """The SQL to execute for a model output, for evaluation.

    Chain-of-thought output (it has step headings): the assembled query of the parsed
    rationale, steps included (a final SQL block left open at the end of the output, as
    when generation stops early, is closed first); when it does not parse, the last SQL
    block as written.
    Plain output: the last SQL code block, or else unfenced SQL (from a line starting
    with SELECT/WITH, or an inline SELECT, to the first semicolon or blank line).
    None when there is no SQL at all.
    """
    blocks = lex(text)
    if any(isinstance(block, StepHeading) for block in blocks):
        parsed = parse_rationale(text)
        if isinstance(parsed, ParseFailure) and parsed.reason == "unterminated_fence":
            last = blocks[-1]
            if parsed.step == "final" and isinstance(last, Fence):
                parsed = parse_rationale(f"{text.rstrip()}\n{last.marker}\n")
        if isinstance(parsed, Rationale):
            return parsed.assembled_sql()
    fences = [
        fence
        for fence in _sql_fences([b for b in blocks if isinstance(b, ProseLine | Fence)])
        if re.search(r"\b(select|with)\b", fence.content, re.IGNORECASE)
    ]
    if fences:
        return _normalize_sql(_first_statement(fences[-1].content)) or None
    prose = [b for b in blocks if isinstance(b, ProseLine)]
    bare = _bare_sql(prose)
    if bare is not None:
        return _normalize_sql(_first_statement(bare[1])) or None
    for line in prose:
        if match := _INLINE_SELECT.search(line.text):
            return _normalize_sql(_first_statement(line.text[match.start() :])) or None
    return None


def _first_statement(sql: str) -> str:
    """`sql` up to its first statement-ending semicolon (string literals respected)."""
    tokens = tokenize(sql)
    if tokens is None:
        return sql
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            return sql[: token.start]
    return sql
