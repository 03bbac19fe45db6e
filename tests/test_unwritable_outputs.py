"""Every command of `bird` and `rationale` asked to write where nothing can be written: one
line naming the place, a non-zero exit, and no work done first (nothing printed before the
error, no cache or run folder touched, nothing left behind).

Two real unwritable places: a folder under a regular file (refused for everyone) and a
folder under /sys (refused even for root, for whom permission bits mean nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bird.cli import app as bird_app
from rationale.cli import app as rationale_app

# Commands that write nothing but their output on the terminal.
PRINT_ONLY = {("bird", "schema"), ("bird", "exec")}


def _commands(tmp: Path, place: Path) -> dict[tuple[str, str], list[str]]:
    """Each writing command with everything it needs but a writable output place."""
    cache = ["--cache-dir", str(tmp / "responses")]
    requests = tmp / "requests.jsonl"
    requests.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]}))
    rationales = tmp / "rationales.jsonl"
    rationales.write_text("")
    predictions = tmp / "predictions.json"
    predictions.write_text("{}")
    hf = ["--backend", "hf", "--model", "smollm2-135m"]
    return {
        ("rationale", "run"): ["run", "--config", "demo", "--run", str(place)],
        ("rationale", "audit"): ["audit", "--data", "demo:train", "--run", str(place)],
        ("rationale", "seed"): ["seed", "--data", "demo:train", "--run", str(place)],
        ("rationale", "distill"): [
            "distill",
            "--data",
            "demo:train",
            *hf,
            *cache,
            "--run",
            str(place),
        ],
        ("rationale", "annotate"): [
            "annotate",
            "--data",
            "demo:train",
            *hf,
            *cache,
            "--run",
            str(place),
        ],
        ("rationale", "export"): [
            "export",
            "--run",
            str(tmp / "run"),
            "--kind",
            "student-cot",
            "--recipe",
            "student-cot-tiny",
            "--out",
            str(place),
        ],
        ("rationale", "train"): [
            "train",
            "--recipe",
            "student-cot-tiny",
            "--dataset",
            str(tmp / "dataset"),
            "--output-dir",
            str(place),
        ],
        ("rationale", "predict"): [
            "predict",
            "--data",
            "demo:dev",
            *hf,
            *cache,
            "--kind",
            "cot",
            "--out",
            str(place),
        ],
        ("rationale", "report"): [
            "report",
            "--data",
            "demo:dev",
            "--predictions",
            f"a={predictions}",
            "--out",
            str(place),
        ],
        ("rationale", "decompose"): [
            "decompose",
            "--data",
            "demo:dev",
            "--output",
            str(place / "records.jsonl"),
        ],
        ("rationale", "validate"): [
            "validate",
            "--data",
            "demo:dev",
            "--input",
            str(rationales),
            "--output",
            str(place / "reports.jsonl"),
        ],
        ("rationale", "generate"): [
            "generate",
            *hf,
            *cache,
            "--input",
            str(requests),
            "--output",
            str(place / "out.jsonl"),
        ],
        ("rationale", "reward"): [
            "reward",
            "--data",
            "demo:dev",
            "--input",
            str(rationales),
            "--output",
            str(place / "rewards.jsonl"),
        ],
        ("rationale", "view"): [
            "view",
            "--input",
            str(rationales),
            "--out",
            str(place / "page.html"),
        ],
        ("rationale", "models"): ["models", "prepare-tiny", "--force", "--cache-dir", str(place)],
        ("bird", "evaluate"): [
            "evaluate",
            "--data",
            "demo:dev",
            "--predictions",
            str(predictions),
            "--cache-dir",
            str(tmp / "gold"),
            "--output",
            str(place),
        ],
        ("bird", "audit"): [
            "audit",
            "--data",
            "demo:dev",
            "--output",
            str(place / "audit.json"),
        ],
    }


def _registered() -> set[tuple[str, str]]:
    commands = set()
    for program, app in (("bird", bird_app), ("rationale", rationale_app)):
        commands |= {
            (program, command.name or command.callback.__name__)
            for command in app.registered_commands
        }
        commands |= {(program, group.name) for group in app.registered_groups}
    return commands


def test_every_writing_command_is_covered_here(tmp_path: Path) -> None:
    """A new command must say here where it writes, or that it writes nothing."""
    assert set(_commands(tmp_path, tmp_path)) | PRINT_ONLY == _registered()


def _unwritable(kind: str, tmp: Path) -> Path:
    if kind == "under a file":
        blocker = tmp / "a-file"
        blocker.write_text("not a folder")
        return blocker / "out"
    if not Path("/sys").is_dir():
        pytest.skip("no /sys on this system")
    return Path("/sys/sql-rationale-test/out")


@pytest.mark.parametrize("kind", ["under a file", "under /sys"])
def test_each_command_refuses_an_unwritable_place_in_one_line_before_any_work(
    kind: str, tmp_path: Path
) -> None:
    place = _unwritable(kind, tmp_path)
    runner = CliRunner()
    for (program, name), args in _commands(tmp_path, place).items():
        app = bird_app if program == "bird" else rationale_app
        result = runner.invoke(app, args, terminal_width=400)
        where = f"{program} {name}"
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, (where, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: "), (where, result.output)
        assert str(place).split("/out")[0] in lines[0], (where, lines[0])
        assert "Traceback" not in result.output
        # no work: no response cache, gold cache or run folder was started
        for started in ("responses", "gold", "run"):
            assert not (tmp_path / started).exists(), (where, started)
        assert not place.exists()


def test_a_refused_command_leaves_no_run_directory_behind(tmp_path: Path) -> None:
    """The run directory a refused command created (with its lock) is taken back; one
    that held something before keeps it."""
    run = tmp_path / "new" / "run"
    result = CliRunner().invoke(rationale_app, ["seed", "--data", "demo:dev", "--run", str(run)])
    assert result.exit_code == 2 and "evaluation split" in result.output
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    result = CliRunner().invoke(rationale_app, ["seed", "--data", "demo:dev", "--run", str(kept)])
    assert result.exit_code == 2
    assert sorted(path.name for path in kept.iterdir()) == ["notes.txt"]
