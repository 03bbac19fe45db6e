"""Teacher prompts: content, layout for prefix caching, template provenance, request order.

Prompts are built from the real BIRD files (schemas of the real databases, real questions)
and real seed rationales from rationale/prompting/prompts/seeds.jsonl as few-shot examples.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bird.data import BirdExample, BirdSplit
from bird.schema import load_schema, render_schema
from rationale.chain.format import Rationale, parse_rationale, render_rationale
from rationale.decomposer.builder import decompose_sql
from rationale.llm.models import TINY_MODEL_NAME, prepare_model
from rationale.prompting.teacher import (
    SKELETON_PLACEHOLDER,
    TeacherPrompt,
    build_teacher_prompt,
    prefix_reuse_order,
)
from rationale.prompting.templates import PROMPTS_DIR, PromptTemplateError
from rationale.records.rationales import PoolEntry


@pytest.fixture(scope="module")
def seed_shots(train: BirdSplit) -> list[PoolEntry]:
    """Three seeds as pool entries, from at least two databases."""
    lines = (PROMPTS_DIR / "seeds.jsonl").read_text(encoding="utf-8").splitlines()
    seeds = [json.loads(line) for line in lines if line]
    beer = [s for s in seeds if s["db_id"] == "beer_factory"][:2]
    other = [s for s in seeds if s["db_id"] != "beer_factory"][:1]
    entries = []
    for seed in [*other, *beer]:
        question = train.example(seed["question_id"])
        entries.append(
            PoolEntry(
                question_id=question.question_id,
                db_id=question.db_id,
                split="train",
                question=question.question,
                evidence=question.evidence,
                gold_sql=question.sql,
                rationale=Rationale(
                    steps=seed["steps"],
                    final_explanation=seed["final_explanation"],
                    final_sql=seed["final_sql"],
                ),
                source="seed",
            )
        )
    return entries


@pytest.fixture(scope="module")
def beer_example(train: BirdSplit, seed_shots: list[PoolEntry]) -> BirdExample:
    """A beer_factory question with evidence and a multi-step decomposition, not a shot."""
    shot_ids = {shot.question_id for shot in seed_shots}
    for example in train.examples:
        if example.db_id != "beer_factory" or example.question_id in shot_ids:
            continue
        if example.evidence and len(decompose_sql(example.sql, None).rationale.steps) >= 2:
            return example
    pytest.fail("no multi-step beer_factory question in train")


@pytest.fixture(scope="module")
def superhero_example(dev: BirdSplit) -> BirdExample:
    return next(e for e in dev.examples if e.db_id == "superhero" and e.evidence)


@pytest.fixture(scope="module")
def beer_schema(train: BirdSplit) -> str:
    return render_schema(load_schema(train, "beer_factory"))


@pytest.fixture(scope="module")
def superhero_schema(dev: BirdSplit) -> str:
    return render_schema(load_schema(dev, "superhero"))


def _user(prompt: TeacherPrompt) -> str:
    assert [m.role for m in prompt.messages] == ["system", "user"]
    return prompt.messages[1].content


def test_free_prompt_holds_the_example_inputs(beer_example, beer_schema, seed_shots):
    prompt = build_teacher_prompt(beer_example, beer_schema, seed_shots)
    user = _user(prompt)
    assert prompt.template == "teacher_free.j2"
    assert beer_example.question.strip() in user
    assert beer_example.evidence.strip() in user
    assert beer_example.sql.strip() in user
    assert beer_schema.strip() in user


def test_shots_appear_verbatim_in_the_given_order(beer_example, beer_schema, seed_shots):
    for shots in (seed_shots, list(reversed(seed_shots))):
        prompt = build_teacher_prompt(beer_example, beer_schema, shots)
        user = _user(prompt)
        positions = [user.find(render_rationale(shot.rationale).strip()) for shot in shots]
        assert all(position >= 0 for position in positions)
        assert positions == sorted(positions)
        assert prompt.shot_ids == [shot.question_id for shot in shots]
        for shot in shots:
            assert shot.question.strip() in user
            assert f"(database: {shot.db_id})" in user


def test_shot_rationales_parse_back_from_the_prompt(beer_example, beer_schema, seed_shots):
    """What the teacher sees of a shot is exactly a rationale text the models learn."""
    user = _user(build_teacher_prompt(beer_example, beer_schema, seed_shots))
    for number, shot in enumerate(seed_shots, start=1):
        block = user.split(f"## Example {number} ")[1]
        block = block.split("\n## ")[0]
        text = block.split("Rationale:\n\n", 1)[1]
        assert parse_rationale(text) == shot.rationale


def test_system_message_is_the_same_for_every_request(
    beer_example, superhero_example, beer_schema, superhero_schema, seed_shots
):
    prompts = [
        build_teacher_prompt(beer_example, beer_schema, seed_shots),
        build_teacher_prompt(superhero_example, superhero_schema, seed_shots[:1]),
        build_teacher_prompt(superhero_example, superhero_schema, []),
        build_teacher_prompt(
            beer_example,
            beer_schema,
            seed_shots,
            mode="skeleton",
            skeleton=decompose_sql(beer_example.sql, None).rationale,
        ),
    ]
    systems = {prompt.messages[0].content for prompt in prompts}
    assert len(systems) == 1
    system = systems.pop()
    for text in (beer_example.question, superhero_example.question, "beer_factory", "superhero"):
        assert text not in system
    assert _user(prompts[0]) != _user(prompts[1])


def test_schema_then_shots_then_example(beer_example, beer_schema, seed_shots):
    user = _user(build_teacher_prompt(beer_example, beer_schema, seed_shots))
    schema_at = user.index(beer_schema.strip())
    first_shot_at = user.index(seed_shots[0].question)
    last_shot_at = user.index(render_rationale(seed_shots[-1].rationale).strip())
    example_at = user.index(beer_example.question.strip())
    assert schema_at < first_shot_at < last_shot_at < example_at
    # Only a fixed header precedes the schema: nothing that varies between questions.
    assert user[:schema_at] == "## Database schema: beer_factory\n\n```sql\n"


def test_skeleton_mode_hands_over_the_steps(beer_example, beer_schema, seed_shots):
    skeleton = decompose_sql(beer_example.sql, None).rationale
    skeleton_prompt = build_teacher_prompt(
        beer_example, beer_schema, seed_shots, mode="skeleton", skeleton=skeleton
    )
    free_prompt = build_teacher_prompt(
        beer_example, beer_schema, seed_shots, mode="free", skeleton=skeleton
    )
    assert skeleton_prompt.template == "teacher_skeleton.j2"
    skeleton_user, free_user = _user(skeleton_prompt), _user(free_prompt)
    for step in skeleton.steps:
        assert step.sql in skeleton_user
        # The decomposer's own explanations are replaced: the teacher writes them.
        if step.explanation:
            assert step.explanation not in skeleton_user
    assert skeleton.final_sql in skeleton_user
    assert skeleton_user.count(SKELETON_PLACEHOLDER) >= len(skeleton.steps) + 1
    assert "restructure" in skeleton_user
    step_sqls_only_in_skeleton = [s.sql for s in skeleton.steps if s.sql not in beer_example.sql]
    assert step_sqls_only_in_skeleton
    for sql in step_sqls_only_in_skeleton:
        assert sql not in free_user
    assert SKELETON_PLACEHOLDER not in free_user
    assert skeleton_prompt.template_hash != free_prompt.template_hash


def test_skeleton_mode_without_a_skeleton_is_refused(beer_example, beer_schema):
    with pytest.raises(ValueError, match="skeleton mode needs"):
        build_teacher_prompt(beer_example, beer_schema, [], mode="skeleton")


def test_the_example_cannot_be_its_own_shot(train, beer_schema, seed_shots):
    shot = next(s for s in seed_shots if s.db_id == "beer_factory")
    with pytest.raises(ValueError, match="among its own few-shot examples"):
        build_teacher_prompt(train.example(shot.question_id), beer_schema, [shot])


def test_no_shots_and_no_evidence(beer_example, beer_schema):
    example = beer_example.model_copy(update={"evidence": ""})
    user = _user(build_teacher_prompt(example, beer_schema, []))
    assert "## Example 1" not in user
    assert "Evidence: (none)" in user


def _copy_prompts(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, target)
    return target


def test_missing_variable_is_a_clear_error(tmp_path, beer_example, beer_schema):
    prompts = _copy_prompts(tmp_path)
    free = prompts / "teacher_free.j2"
    source = free.read_text()
    assert "following the rules." in source
    free.write_text(source.replace("following the rules.", "{{ reviewer_notes }}"))
    line = next(
        number
        for number, text in enumerate(free.read_text().splitlines(), start=1)
        if "reviewer_notes" in text
    )
    with pytest.raises(PromptTemplateError) as raised:
        build_teacher_prompt(beer_example, beer_schema, [], prompts_dir=prompts)
    message = str(raised.value)
    assert "reviewer_notes" in message
    assert f"{free}, line {line}:" in message


def test_template_syntax_error_names_file_and_line(tmp_path, beer_example, beer_schema):
    prompts = _copy_prompts(tmp_path)
    shot = prompts / "_shot.j2"
    shot.write_text("{% if %}\n" + shot.read_text())
    with pytest.raises(PromptTemplateError, match=r"_shot\.j2, line 1"):
        build_teacher_prompt(beer_example, beer_schema, [], prompts_dir=prompts)


@pytest.mark.parametrize(
    ("changed", "old", "new"),
    [
        ("teacher_free.j2", "following the rules.", "following the rules closely."),
        ("_shot.j2", "Gold SQL:", "Gold query:"),
        ("_teacher_user.j2", "## Worked examples", "## Examples"),
        ("_teacher_system.j2", "You write rationales", "You write careful rationales"),
    ],
)
def test_template_hash_follows_every_template_used(
    tmp_path, beer_example, beer_schema, seed_shots, changed, old, new
):
    prompts = _copy_prompts(tmp_path)
    before = build_teacher_prompt(beer_example, beer_schema, seed_shots, prompts_dir=prompts)
    again = build_teacher_prompt(beer_example, beer_schema, seed_shots, prompts_dir=prompts)
    assert again.template_hash == before.template_hash
    path = prompts / changed
    source = path.read_text()
    assert old in source
    path.write_text(source.replace(old, new))
    after = build_teacher_prompt(beer_example, beer_schema, seed_shots, prompts_dir=prompts)
    assert after.template_hash != before.template_hash
    assert after.messages != before.messages


def test_unused_template_does_not_change_the_hash(tmp_path, beer_example, beer_schema):
    prompts = _copy_prompts(tmp_path)
    before = build_teacher_prompt(beer_example, beer_schema, [], prompts_dir=prompts)
    skeleton = prompts / "teacher_skeleton.j2"
    skeleton.write_text(skeleton.read_text().replace("following the rules", "as told"))
    after = build_teacher_prompt(beer_example, beer_schema, [], prompts_dir=prompts)
    assert after.template_hash == before.template_hash


def test_prefix_reuse_order_groups_by_database_and_is_stable(dev, train):
    beer = [e for e in train.examples if e.db_id == "beer_factory"][:5]
    hero = [e for e in dev.examples if e.db_id == "superhero"][:5]
    club = [e for e in dev.examples if e.db_id == "student_club"][:5]
    interleaved = [e for trio in zip(hero, beer, club, strict=True) for e in trio]
    ordered = prefix_reuse_order(interleaved)
    assert sorted(map(id, ordered)) == sorted(map(id, interleaved))
    assert [e.db_id for e in ordered] == ["superhero"] * 5 + ["beer_factory"] * 5 + [
        "student_club"
    ] * 5
    assert ordered == hero + beer + club
    assert prefix_reuse_order(ordered) == ordered
    assert prefix_reuse_order(dev.examples) == dev.examples  # the dev file is already grouped


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_packages: None):
    """The tiny model's real tokenizer and chat template (prepared once into the cache); a
    missing package skips, or fails under BIRD_REQUIRED=1 (tests/conftest.py)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(prepare_model(TINY_MODEL_NAME))


def test_requests_on_one_database_share_system_and_schema_tokens(
    tiny_tokenizer, train, beer_schema, seed_shots
):
    """After the chat template, two questions on one database with different shots share a
    token prefix that holds the whole schema: what a prefix cache reuses."""
    beer = [e for e in train.examples if e.db_id == "beer_factory"]
    first = build_teacher_prompt(beer[10], beer_schema, seed_shots[:2])
    second = build_teacher_prompt(beer[11], beer_schema, seed_shots[1:])

    def tokens(prompt: TeacherPrompt) -> list[int]:
        messages = [message.model_dump() for message in prompt.messages]
        encoded = tiny_tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True
        )
        return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)

    a, b = tokens(first), tokens(second)
    common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    shared_text = tiny_tokenizer.decode(a[:common])
    assert first.messages[0].content in shared_text
    assert beer_schema.strip() in shared_text
    assert beer[10].question not in shared_text
    assert common < len(a) and common < len(b)
