"""The log file each stage writes in its run directory (`rationale.logs`)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from rationale.cli import app
from rationale.stages.seed import read_seed_file


def _lines(path: Path) -> list[str]:
    """The messages, without the time stamp: `LEVEL logger: message`."""
    return [line.split(" ", 2)[2] for line in path.read_text().splitlines() if line[:4].isdigit()]


def test_a_stage_logs_its_config_phases_and_outcome_and_a_rerun_appends(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["seed", "--data", "demo:train", "--seeds", "demo:seeds", "--run", str(run)]
    first = CliRunner().invoke(app, [*args, "--workers", "1"])
    assert first.exit_code == 0, first.output
    log = run / "logs" / "seed.log"
    lines = _lines(log)
    recorded = yaml.safe_load((run / "config.yaml").read_text())["seed"]
    logged = next(line for line in lines if line.startswith("INFO rationale: config: "))
    assert json.loads(logged.removeprefix("INFO rationale: config: ")) == recorded
    seeds = len(read_seed_file(Path(recorded["seeds"])))
    assert f"INFO rationale: validating {seeds} seeds: {seeds} done" in "\n".join(lines)
    report = json.loads((run / "seed" / "report.json").read_text())
    produced = f"INFO rationale: seed produced: {report['valid']}/{seeds} seeds valid"
    assert any(line.startswith(produced) for line in lines), lines
    assert lines[0] == "INFO rationale: seed started" and "seed finished in" in lines[-1]
    assert "seed started" not in first.output  # the console says what it said before

    again = CliRunner().invoke(app, [*args, "--workers", "1", "--log-level", "warning"])
    assert again.exit_code == 0, again.output
    assert _lines(log) == lines  # appended nothing at warning level, lost nothing


def test_a_failure_is_logged_with_its_traceback_and_a_refusal_leaves_nothing(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    seeds = tmp_path / "seeds.jsonl"
    ok = CliRunner().invoke(
        app, ["seed", "--data", "demo:train", "--seeds", "demo:seeds", "--run", str(run)]
    )
    assert ok.exit_code == 0, ok.output
    seeds.write_text('{"question_id": "not a number"}\n')
    failed = CliRunner().invoke(
        app,
        ["seed", "--data", "demo:train", "--seeds", str(seeds), "--run", str(run), "--force"],
    )
    assert failed.exit_code == 2 and "Traceback" not in failed.output
    text = (run / "logs" / "seed.log").read_text()
    assert "ERROR rationale: seed failed after" in text and "Traceback" in text
    assert str(seeds) in text

    fresh = tmp_path / "fresh"
    refused = CliRunner().invoke(app, ["seed", "--data", "demo:dev", "--run", str(fresh)])
    assert refused.exit_code == 2 and "evaluation split" in refused.output
    assert not fresh.exists()
