"""Teacher prompts for distillation, rendered through `rationale.prompting.templates`.

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

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from bird.data import BirdExample
from rationale.chain.format import Rationale, RationaleStep, render_rationale
from rationale.prompting.templates import RenderedChat, render_chat
from rationale.records.rationales import PoolEntry

PromptMode = Literal["free", "skeleton"]

SYSTEM_TEMPLATE = "_teacher_system.j2"
MODE_TEMPLATES: dict[PromptMode, str] = {
    "free": "teacher_free.j2",
    "skeleton": "teacher_skeleton.j2",
}
# What stands in for the explanations of a skeleton's steps: the teacher writes them.
SKELETON_PLACEHOLDER = "[explanation to write]"


class TeacherPrompt(RenderedChat):
    """The chat sent to the teacher for one example, and where its text came from."""

    shot_ids: list[int]  # question_ids of the few-shot entries, in prompt order


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

    chat = render_chat(SYSTEM_TEMPLATE, template, variables, prompts_dir=prompts_dir)
    return TeacherPrompt(**chat.model_dump(), shot_ids=[shot.question_id for shot in shots])


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
