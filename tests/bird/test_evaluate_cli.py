"""`bird evaluate` as a user meets it: files whose keys are not positions, null values,
where the reports go, several files at once. Real dev data, real files, the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bird.cli import app
from bird.evaluation import SUMMARY_FILE
from bird.predictions import OFFICIAL_SEPARATOR


def dev_records(dev_dir: Path) -> list[dict]:
    return json.loads((dev_dir / "dev.json").read_text(encoding="utf-8"))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["evaluate", "--no-disk-cache", *args])
    return result.exit_code, result.stdout, result.stderr


def permuted_split(dev_dir: Path, root: Path) -> list[dict]:
    """12 superhero questions whose question_ids are the positions reversed."""
    chosen = [r for r in dev_records(dev_dir) if r["db_id"] == "superhero"][:12]
    for position, record in enumerate(chosen):
        record["question_id"] = len(chosen) - 1 - position
    root.mkdir()
    (root / "dev.json").write_text(json.dumps(chosen))
    (root / "dev_databases").symlink_to((dev_dir / "dev_databases").resolve())
    return chosen


def test_a_file_keyed_by_question_id_is_not_scored_against_the_wrong_questions(
    dev_dir: Path, tmp_path: Path
) -> None:
    """The defect: keys that were question_ids (a permutation of the positions) were read as
    positions: EX 0.00, exit 0, no warning. One database, so db_ids cannot tell."""
    records = permuted_split(dev_dir, tmp_path / "dev")
    path = tmp_path / "by_id.json"
    by_id = {str(r["question_id"]): f"{r['SQL']}{OFFICIAL_SEPARATOR}{r['db_id']}" for r in records}
    path.write_text(json.dumps(by_id))
    code, out, err = run("--data", str(tmp_path / "dev"), "--predictions", str(path))
    assert code == 0, err
    assert "paired by question_id, which the file order agrees with" in err
    summary = json.loads((tmp_path / "by_id_eval" / SUMMARY_FILE).read_text())
    assert summary["metrics"]["ex"]["total"] == 100.0 and summary["paired_by"] == "question_id"

    shuffled = dict(sorted(by_id.items(), key=lambda item: (int(item[0]) * 7) % 12))
    path.write_text(json.dumps(shuffled))
    code, out, err = run("--data", str(tmp_path / "dev"), "--predictions", str(path))
    assert code == 2 and "cannot tell how to pair this file" in err and "Traceback" not in err
    code, out, err = run(
        "--data", str(tmp_path / "dev"), "--predictions", str(path), "--pair-by", "question_id"
    )
    assert code == 0 and "EX" in out
    code, _, err = run("--data", str(tmp_path / "dev"), "--predictions", str(path),
                       "--pair-by", "keys")  # fmt: skip
    assert code == 2 and "--pair-by 'keys'" in err


def test_null_predictions_score_as_wrong_and_the_file_is_scored(
    dev_dir: Path, tmp_path: Path
) -> None:
    records = dev_records(dev_dir)
    predictions: dict[str, str | None] = {
        str(i): f"{r['SQL']}{OFFICIAL_SEPARATOR}{r['db_id']}" for i, r in enumerate(records)
    }
    predictions["0"] = None
    path = tmp_path / "with_null.json"
    path.write_text(json.dumps(predictions))
    output = tmp_path / "report"
    code, _, err = run("--data", str(dev_dir), "--predictions", str(path), f"--output={output}")
    assert code == 0, err
    assert "1 value(s) are not SQL strings" in err and "key '0': null" in err
    first = json.loads((output / "per_question.jsonl").read_text().splitlines()[0])
    assert (first["ex"], first["error"]) == (0, "null_prediction")
    summary = json.loads((output / SUMMARY_FILE).read_text())
    # every other prediction is the gold query: all right but the null one
    assert summary["counts"]["total"] == len(records)
    assert summary["metrics"]["ex"]["total"] == pytest.approx(
        (len(records) - 1) / len(records) * 100
    )


def test_reports_go_beside_each_file_by_default_and_the_path_is_said(
    dev_dir: Path, tmp_path: Path
) -> None:
    """Summaries used to be written only with --output."""
    records = dev_records(dev_dir)
    paths = []
    for name in ("model_a", "model_b"):
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "predict_dev.jsonl"
        path.write_text("".join(
            json.dumps({"question_id": r["question_id"], "sql": r["SQL"]}) + "\n" for r in records
        ))  # fmt: skip
        paths.append(path)
    code, out, err = run("--data", str(dev_dir), *(f"--predictions={p}" for p in paths))
    assert code == 0, err
    for path in paths:
        report = path.parent / "predict_dev_eval"
        assert f"wrote {report / SUMMARY_FILE}" in out.replace("\n", "")
        assert json.loads((report / SUMMARY_FILE).read_text())["metrics"]["ex"]["total"] == 100
    assert out.count("gold ceiling 100.00%") == 2
    # --output with several files: a folder per file, named after it (made unique)
    code, out, err = run("--data", str(dev_dir), *(f"--predictions={p}" for p in paths),
                         "--output", str(tmp_path / "all"))  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "predict_dev", "predict_dev_2"
    ]  # fmt: skip
