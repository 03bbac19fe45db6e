"""`rationale run --config demo`: the whole pipeline on the embedded demo dataset with the
tiny model everywhere (real generation, real TRL training, real execution), at CI size."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bird.data import load_split
from bird.evaluation import evaluate
from bird.gold_cache import GoldCache
from rationale.pipeline.steps import build_steps, find_pipeline, load_pipeline
from rationale.records.rationales import AcceptedRationale, PoolEntry
from rationale.run_dir import RunDir, read_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]
RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]
# The demo pipeline, smaller still: a few questions for the generating stages, two training
# steps per model; the students still answer every dev question.
CI_SIZE = [
    "distill.limit=4", "distill.max_tokens=48", "annotate.limit=4", "annotate.max_tokens=48",
    # compact schemas cut to 320 tokens: prefill is most of the students' prediction time
    "export.max_prompt_tokens=320", "export.schema_style=compact",
    "predict.max_tokens=16", "predict.batch_size=39",
    "train_rationalizer.max_steps=2", "train_rationalizer.save_steps=1",
    "train_rationalizer.max_length=640",
    "train_students.student-cot.max_steps=2", "train_students.student-cot.save_steps=1",
    "train_students.student-cot.max_length=640",
    "train_students.student-nocot.max_steps=2", "train_students.student-nocot.save_steps=1",
    "train_students.student-nocot.max_length=640",
]  # fmt: skip
STEPS = [
    "audit", "seed", "distill", "export-rationalizer", "train-rationalizer", "annotate",
    "export-student-cot", "export-student-nocot", "train-student-cot", "train-student-nocot",
    "predict-cot", "predict-nocot", "report",
]  # fmt: skip


def _args(run: Path, *extra: str) -> list[str]:
    sets = [part for value in [*CI_SIZE, *extra] for part in ("--set", value)]
    return [*RATIONALE, "run", "--config", "demo", "--run", str(run), *sets]


def _run(run: Path, *extra: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    command = [*_args(run, *extra), *flags]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)


def _artifacts(run: Path) -> dict[str, str]:
    """What a run produced, by relative path: record files as sorted lines (appends arrive in
    any order; the run's own folder, which model paths hold, written as <run>), model weights
    and official prediction files by hash; timings, manifests and clocks left out."""
    found: dict[str, str] = {}
    for path in sorted(run.rglob("*")):
        relative = str(path.relative_to(run))
        if not path.is_file() or "checkpoint-" in relative:
            continue
        if path.suffix == ".jsonl" and "timings" not in path.name:
            text = path.read_text().replace(str(run.resolve()), "<run>")  # models are paths
            found[relative] = "\n".join(sorted(text.splitlines()))
        elif path.name == "model.safetensors" or path.name.startswith("predict_dev"):
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One uninterrupted run, and its artifacts as it left them."""
    run = tmp_path_factory.mktemp("pipeline") / "demo"
    result = _run(run)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, _artifacts(run)


@pytest.fixture
def demo_run(demo_outputs: tuple[Path, dict[str, str]]) -> Path:
    return demo_outputs[0]


@pytest.mark.slow
def test_every_stage_produced_and_the_artifacts_agree(demo_run: Path) -> None:
    state = json.loads((demo_run / "pipeline.json").read_text())
    assert list(state["steps"]) == STEPS
    pool = {
        entry.key: entry
        for path in sorted((demo_run / "pool").glob("iteration_*.jsonl"))
        for entry in read_jsonl(path, PoolEntry)
    }
    annotated = read_jsonl(demo_run / "annotate" / "rationales.jsonl", AcceptedRationale)
    train = load_split("demo:train")
    expected = {key for key in pool if train.has_database(train.example(key[1]).db_id)}
    expected |= {a.key for a in annotated}

    def questions(kind: str) -> set[tuple[str, int]]:
        folder = demo_run / "export" / kind
        rows = [
            json.loads(line)
            for name in ("train.jsonl", "validation.jsonl")
            if (folder / name).exists()
            for line in (folder / name).read_text().splitlines()
        ]
        return {(row["split"], row["question_id"]) for row in rows}

    def left_out(kind: str) -> int:
        counts = json.loads((demo_run / "export" / kind / "export.json").read_text())["counts"]
        return sum(count for reason, count in counts.items() if reason.startswith("left out"))

    # pool + annotations = the CoT dataset (but for prompts over the budget, counted); the
    # no-CoT dataset holds the same questions
    cot = questions("student-cot")
    assert cot == questions("student-nocot") and cot <= expected
    assert len(cot) + left_out("student-cot") == len(expected)
    rationalizer = questions("rationalizer")
    assert rationalizer <= set(pool) & expected
    assert len(rationalizer) + left_out("rationalizer") == len(set(pool) & expected)
    for kind in ("rationalizer", "student-cot", "student-nocot"):
        manifest = json.loads((demo_run / "models" / kind / "training_manifest.json").read_text())
        assert manifest["steps"] == 2 and manifest["dataset"]["kind"] == kind
    dev = load_split("demo:dev")
    report = json.loads((demo_run / "report" / "report.json").read_text())
    for system in report["systems"]:
        file = demo_run / "predict" / system["name"] / "predict_dev.json"
        positions = {int(key) for key in json.loads(file.read_text())}
        assert positions == set(range(len(dev.examples)))  # every dev question answered
        again = evaluate(dev, file, gold_cache=GoldCache())  # an independent re-evaluation
        assert system["summary"]["metrics"]["ex"] == pytest.approx(again.summary.metrics["ex"])
    assert report["gold_ceiling"]["metrics"]["ex"]["total"] == pytest.approx(100.0)
    assert (demo_run / "report" / "ex_by_difficulty.png").stat().st_size > 0


@pytest.mark.slow
def test_outputs_say_what_limits_their_numbers_and_cards_tell_the_truth(demo_run: Path) -> None:
    """Every output states cut answers, training rows and voted = greedy; dataset cards name
    the demo data (not BIRD) and its license; model cards name their base model."""
    import safetensors

    report = json.loads((demo_run / "report" / "report.json").read_text())
    markdown = (demo_run / "report" / "report.md").read_text()
    assert "## What limits these numbers" in markdown
    for system in report["systems"]:
        name = system["name"]
        summary = json.loads((demo_run / "predict" / name / "summary.json").read_text())
        records = (demo_run / "predict" / name / "predictions.jsonl").read_text()
        predictions = [json.loads(line) for line in records.splitlines()]
        cut = sum(p["candidates"][0]["finish_reason"] == "length" for p in predictions)
        assert summary["cut_at_max_tokens"] == cut  # counted from the answers themselves
        assert f"{name}: voted = greedy: no samples were drawn" in markdown
        if cut:
            assert f"{name}: {cut} of {len(predictions)} greedy answers stopped at the" in markdown
        model = demo_run / "models" / f"student-{name}"
        manifest = json.loads((model / "training_manifest.json").read_text())
        rows = manifest["dataset"]["train_rows"]
        assert f"{name}: trained {manifest['steps']} steps" in markdown and f"{rows} rows" in (
            markdown
        )
    assert (demo_run / "report" / "learning_curves.png").stat().st_size > 0
    assert "## Coverage of the train split by source" in markdown
    for kind in ("rationalizer", "student-cot", "student-nocot"):
        card = (demo_run / "export" / kind / "README.md").read_text()
        metadata = yaml.safe_load(card.split("---")[1])
        assert metadata["license"] == "apache-2.0"  # the project's: the demo is invented here
        assert not any("BIRD" in name for name in metadata["source_datasets"])
        assert "from BIRD" not in card and "sql-rationale demo dataset" in card
        assert "smollm2-135m" in card  # the model whose tokenizer budgeted the prompts
        model = demo_run / "models" / kind
        model_card = (model / "README.md").read_text()
        assert "None" not in model_card and "SmolLM2-135M-Instruct" in model_card
        assert str(demo_run / "export" / kind) in model_card and "sql-rationale demo" in model_card
        manifest = json.loads((model / "training_manifest.json").read_text())
        assert manifest["saved_dtype"] == "bfloat16" and manifest["weights_dtype"] == "float32"
        with safetensors.safe_open(str(model / "model.safetensors"), "pt") as weights:
            first = next(iter(weights.keys()))
            assert str(weights.get_tensor(first).dtype) == "torch.bfloat16"


@pytest.mark.slow
def test_the_page_of_the_run_shows_every_question_and_each_students_answers(
    demo_run: Path, browser: Any, tmp_path: Path
) -> None:
    """`rationale view` over the finished run, in headless Chromium: the train split's
    questions, one tab per prediction folder, and EX as `bird evaluate` scores the official
    prediction file."""
    page = tmp_path / "demo.html"
    result = subprocess.run(
        [*RATIONALE, "view", "--run", str(demo_run), "--out", str(page)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    browser.open(page)
    assert browser.errors() == [] and browser.requests() == [page.resolve().as_uri()]
    train = load_split(RunDir(demo_run).stored_config("seed")["data"])
    assert browser.text("#count") == f"{len(train.examples)} questions"
    assert browser.listed() == [f"train/{e.question_id}" for e in train.examples]
    tabs = browser.run(
        "return [...document.querySelectorAll('#tabs button')].map(b => b.dataset.view)"
    )
    systems = sorted(path.parent.name for path in demo_run.glob("predict/*/predictions.jsonl"))
    assert tabs == ["rationales", *(f"s-{name}" for name in systems)] and systems
    for name in systems:
        folder = demo_run / "predict" / name
        browser.run(f"document.querySelector('#tabs button[data-view=\"s-{name}\"]').click()")
        records = [
            json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()
        ]
        assert sorted(browser.listed()) == sorted(f"dev/{r['question_id']}" for r in records)
        manifest = json.loads((folder / "manifest.json").read_text())
        official = evaluate(load_split(manifest["settings"]["data"]), folder / "predict_dev.json")
        offered = browser.run(
            "return [...document.getElementById('f-voted').options].map(o => o.value)"
        )
        for outcome, ex in (("right", 1), ("wrong", 0)):
            expected = sorted(f"dev/{q.question_id}" for q in official.questions if q.ex == ex)
            assert (outcome in offered) == bool(expected)  # a filter offers what occurs
            if expected:
                browser.choose("f-voted", outcome)
                assert sorted(browser.listed()) == expected
            browser.run("document.getElementById('f-clear').click()")
        broken = [r for r in records if (r.get("steps") or {}).get("first_failure")]
        if broken:  # a CoT answer whose steps break: the page names the step
            key = f"dev/{broken[0]['question_id']}"
            browser.run(f"document.querySelector('#rows tr[data-key=\"{key}\"]').click()")
            assert broken[0]["steps"]["first_failure"] in browser.text("#first-failure")


@pytest.mark.slow
def test_a_second_run_skips_and_a_changed_section_reruns_what_follows(demo_run: Path) -> None:
    before = _artifacts(demo_run)
    again = _run(demo_run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("skipped (unchanged)") == len(STEPS)
    assert _artifacts(demo_run) == before
    changed = _run(demo_run, "report.resamples=500")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "report: its 'report' section changed since it ran" in changed.stderr
    rows = {
        line.split("│")[1].strip(): line
        for line in changed.stderr.splitlines()
        if line.count("│") >= 4 and line.split("│")[1].strip() in STEPS
    }
    assert all("skipped" in rows[step] for step in STEPS[:-1]) and "re-ran" in rows["report"]
    # a step that runs again drops the records of every step after it, even with --only
    subprocess.run(
        [*_args(demo_run, "report.resamples=500", "seed.keep_unverified=true"), "--only", "seed"],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    state = json.loads((demo_run / "pipeline.json").read_text())["steps"]
    assert list(state) == ["audit", "seed"]


@pytest.mark.slow
def test_killed_in_the_middle_a_run_ends_with_the_same_artifacts(
    demo_outputs: tuple[Path, dict[str, str]], tmp_path: Path, live_processes: Any
) -> None:
    # the steps up to the rationalizer's training (what follows only reads their artifacts)
    early = STEPS[: STEPS.index("train-rationalizer") + 1]
    only = [part for step in early for part in ("--only", step)]
    later = ("annotate/", "export/student-", "models/student-", "predict/", "report/")
    reference = {
        path: digest for path, digest in demo_outputs[1].items() if not path.startswith(later)
    }
    assert any(path.startswith("models/rationalizer/") for path in reference)
    run = tmp_path / "killed"
    process = subprocess.Popen(
        [*_args(run), *only], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = run / "models" / "rationalizer" / "checkpoint-1" / "trainer_state.json"
    deadline = time.monotonic() + 900
    while not checkpoint.exists():  # in the middle of training the rationalizer
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)

    def training_processes() -> list[int]:  # their command line names the run's folder
        return [
            p.pid for p in live_processes() if "training.sft" in p.command and str(run) in p.command
        ]

    trainers = training_processes()
    assert trainers, "the training step runs in a child process"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    deadline = time.monotonic() + 30  # the kernel sends the child SIGTERM (PDEATHSIG)
    while training_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not training_processes(), "training outlived the killed pipeline"
    assert not (run / "models" / "rationalizer" / "model.safetensors").exists()
    resumed = _run(run, flags=tuple(only))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint-1" in resumed.stderr, resumed.stderr[-3000:]
    assert _artifacts(run) == reference


def test_a_bad_pipeline_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from rationale.config import ConfigError
    from rationale.pipeline.steps import build_steps, find_pipeline, select
    from rationale.run_dir import RunDir

    run = RunDir(tmp_path / "r")
    with pytest.raises(ConfigError, match=(
        r"demo\.yaml: section 'distill': unknown config key limitt \(from --set "
        r"distill\.limitt\); did you mean 'limit'\?"
    )):  # fmt: skip
        load_pipeline("demo", ["distill.limitt=3"])
    with pytest.raises(ConfigError, match="pipeline 'nope' not found"):
        load_pipeline("nope", [])
    with pytest.raises(ConfigError, match=r"expected SECTION\.KEY=VALUE"):
        load_pipeline("demo", ["distill.limit"])
    steps = build_steps(load_pipeline("demo", []), run)
    assert [step.name for step in steps] == STEPS
    with pytest.raises(ConfigError, match="no step 'predicts'"):
        select(steps, ["predicts"], None)
    assert [s.name for s in select(steps, ["predict"], None)] == ["predict-cot", "predict-nocot"]
    assert [s.name for s in select(steps, [], "annotate")] == STEPS[5:]
    config = yaml.safe_load(find_pipeline("demo").read_text())
    broken = tmp_path / "pipeline.yaml"
    broken.write_text(yaml.safe_dump({**config, "train": str(tmp_path / "nowhere")}))
    result = subprocess.run(
        [*RATIONALE, "run", "--config", str(broken), "--run", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "nowhere" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_every_typo_of_a_pipeline_file_is_named_at_once_with_the_key_meant(
    tmp_path: Path,
) -> None:
    """Two typos in sections, one in a student's recipe keys and an unknown section: one
    error names all four, each with the file, the section and the closest valid key; and a
    key written as its flag's name (`db` for `db_ids`, `max-tokens`) is the key."""
    from rationale.config import ConfigError

    config = yaml.safe_load(find_pipeline("demo").read_text())
    config["distill"]["limt"] = 3
    config["predict"]["max_tokns"] = 40
    config["train_students"]["student-cot"]["num_train_epoch"] = 2
    config["reprot"] = {}
    typos = tmp_path / "typos.yaml"
    typos.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as refused:
        load_pipeline(str(typos), [])
    lines = str(refused.value).splitlines()
    assert lines[0] == "4 problems:"
    expected = {
        "unknown section 'reprot'; did you mean 'report'?",
        "section 'distill': unknown config key limt (from the file); did you mean 'limit'?",
        "section 'predict': unknown config key max_tokns (from the file); did you mean "
        "'max_tokens'?",
        "section 'train_students': unknown recipe key 'num_train_epoch' (did you mean "
        "'num_train_epochs'?) in train_students.student-cot (the file)",
    }
    found = {line.removeprefix(f"  - {typos}: ").split(": not a TRL")[0] for line in lines[1:]}
    assert found == expected
    # the CLI says the same in one go, and leaves no run directory behind
    result = subprocess.run(
        [*RATIONALE, "run", "--config", str(typos), "--run", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "4 problems:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()

    flags = dict(yaml.safe_load(find_pipeline("demo").read_text()))
    flags["audit"] = {"db": ["beer_factory"]}
    flags["predict"] = {**flags["predict"], "max-tokens": 40}
    flags["predict"].pop("max_tokens")
    spelled = tmp_path / "flags.yaml"
    spelled.write_text(yaml.safe_dump(flags))
    steps = {step.name: step for step in build_steps(load_pipeline(str(spelled), []),
                                                     RunDir(tmp_path / "r"))}  # fmt: skip
    assert steps["audit"].config.db_ids == ["beer_factory"]
    assert steps["predict-cot"].config.max_tokens == 40


def test_the_readme_commands_are_what_this_file_and_ci_run() -> None:
    """The README's first command installs as CI does and runs the pipeline tested here (at
    full demo size); its test command is the one CI runs."""
    readme = (REPO_ROOT / "README.md").read_text()
    install_and_run, test_command = re.findall(r"```bash\n(.*?)\n```", readme, re.S)[:2]
    parts = [part.strip() for part in install_and_run.split("&&")]
    assert parts[:3] == ["python3 -m venv .venv", ". .venv/bin/activate", "bash scripts/install.sh"]
    assert parts[3].split() == ["rationale", "run", "--config", "demo", "--run", "runs/demo"]
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "bash scripts/install.sh" in ci and test_command.strip() in ci.splitlines()


def test_students_are_data_and_max_length_must_leave_room_for_the_answers(tmp_path: Path) -> None:
    from rationale.config import ConfigError
    from rationale.pipeline.steps import build_steps
    from rationale.run_dir import RunDir

    run = RunDir(tmp_path / "r")
    demo_data = ["train=demo:train", "dev=demo:dev"]
    # the shipped GPU pipeline fits: 3,072 prompt tokens + 1,024 answer tokens = max_length
    assert build_steps(load_pipeline("bird-full", demo_data), run)
    with pytest.raises(ConfigError, match=(
        r"step train-rationalizer: max_length 4096 \(recipe rationalizer-qwen2.5-coder-7b\) "
        r"leaves 0 tokens after export.max_prompt_tokens 4096, less than the 1024 tokens "
        r"annotate.max_tokens allows"
    )):  # fmt: skip
        build_steps(load_pipeline("bird-full", [*demo_data, "export.max_prompt_tokens=4096"]), run)
    with pytest.raises(ConfigError, match=r"step train-student-cot: max_length 700 .* predict"):
        build_steps(load_pipeline("demo", ["train_students.student-cot.max_length=700"]), run)
    # a third student: every train question without rationales, compared in the report
    third = "train_students.student-nocot-all={recipe: student-nocot-tiny, questions: all}"
    steps = {step.name: step for step in build_steps(load_pipeline("demo", [third]), run)}
    assert steps["export-student-nocot-all"].config.questions == "all"
    assert steps["export-student-nocot-all"].config.kind == "student-nocot"
    assert steps["predict-nocot-all"].config.kind == "nocot"
    assert str(steps["train-student-nocot-all"].config.output_dir).endswith("student-nocot-all")
    assert any(p.startswith("nocot-all=") for p in steps["report"].config.predictions)
    wrong = "train_students.student-cot-all={recipe: student-cot-tiny, questions: all}"
    with pytest.raises(ConfigError, match="questions: all needs kind student-nocot"):
        build_steps(load_pipeline("demo", [wrong]), run)
    # without a distill section there is no teacher step
    steps = build_steps(load_pipeline("demo", ["distill=null"]), run)
    assert "distill" not in [step.name for step in steps]


def test_one_set_adds_grpo_after_the_cot_student_and_the_report_compares_it(
    tmp_path: Path,
) -> None:
    """Off in the demo; `--set grpo.recipe=...` adds export, GRPO from the trained CoT
    student, and its predictions, which the report compares with the SFT student's."""
    assert "grpo" not in yaml.safe_load(find_pipeline("demo").read_text())
    run = RunDir(tmp_path / "run")
    plain = [step.name for step in build_steps(load_pipeline("demo", []), run)]
    pipeline = load_pipeline("demo", ["grpo.recipe=student-cot-grpo-tiny", "grpo.max_steps=2"])
    steps = {step.name: step for step in build_steps(pipeline, run)}
    added = [name for name in steps if name not in plain]
    assert added == ["export-grpo", "train-student-cot-grpo", "predict-cot-grpo"]
    assert list(steps).index("export-grpo") > list(steps).index("predict-cot")
    exported = steps["export-grpo"].config
    assert exported.kind == "grpo" and exported.questions == "all"
    trained = steps["train-student-cot-grpo"].config
    root = run.root.resolve()
    assert trained.recipe_overrides["model_name_or_path"] == str(root / "models" / "student-cot")
    assert (
        trained.dataset == root / "export" / "grpo" and trained.recipe_overrides["max_steps"] == 2
    )
    predicted = steps["predict-cot-grpo"].config
    assert predicted.kind == "cot" and predicted.model == str(root / "models" / "student-cot-grpo")
    reporting = steps["report"].config
    assert any(value.startswith("cot-grpo=") for value in reporting.predictions)
    assert reporting.pairs() == [("cot", "nocot"), ("cot-grpo", "cot")]
    with pytest.raises(Exception, match="not a CoT student"):
        load_pipeline("demo", ["grpo.recipe=student-cot-grpo-tiny", "grpo.from=student-nocot"])
