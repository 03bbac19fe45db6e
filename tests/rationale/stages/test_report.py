"""`rationale report`: two systems with known per-question outcomes on real BIRD dev."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rationale.analysis.significance import mcnemar_exact, paired_bootstrap
from rationale.cli import app
from rationale.stages.report import ReportConfig
from rationale.stages.report import run as report

WRONG = "SELECT 'surely not the answer' AS wrong"


def _system(dev_dir: Path, path: Path, right: range, total: int) -> Path:
    """An official prediction file answering the first `total` dev questions: the gold SQL
    for the positions in `right`, a wrong query for the others."""
    questions = json.loads((dev_dir / "dev.json").read_text())[:total]
    entries = {
        str(i): f"{q['SQL'] if i in right else WRONG}\t----- bird -----\t{q['db_id']}"
        for i, q in enumerate(questions)
    }
    path.write_text(json.dumps(entries))
    return path


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_counts_scores_tests_and_plots(dev_dir: Path, tmp_path: Path) -> None:
    # A right on positions 0-35, B on 12-39: 24 both, 12 A only, 4 B only, 0 neither
    a = _system(dev_dir, tmp_path / "a.json", range(0, 36), 40)
    b = _system(dev_dir, tmp_path / "b.json", range(12, 40), 40)
    config = ReportConfig(
        data=dev_dir, predictions=[f"cot={a}", f"nocot={b}"], out=tmp_path / "out"
    )
    result = report(config)
    of_split = len(json.loads((dev_dir / "dev.json").read_text()))
    assert (result.questions, result.of_split) == (40, of_split)
    ex = {s.name: s.summary.metrics["ex"]["total"] for s in result.systems}
    assert ex == {"cot": pytest.approx(90.0), "nocot": pytest.approx(70.0)}
    assert result.gold_ceiling.metrics["ex"]["total"] == pytest.approx(100.0)
    [paired] = result.comparisons
    assert (paired.a, paired.b) == ("cot", "nocot")
    assert (paired.both_right, paired.a_only, paired.b_only, paired.both_wrong) == (24, 12, 4, 0)
    assert paired.ex_difference == pytest.approx(20.0)
    exact = 2 * sum(math.comb(16, i) for i in range(5)) / 2**16  # computed independently
    assert paired.mcnemar_p == pytest.approx(exact) == pytest.approx(0.0768, abs=1e-4)
    assert paired.ci_low < 20.0 < paired.ci_high and paired.ci_low > 0  # a real difference
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (
        saved["split_file_sha256"] == result.split_file_sha256
        and len(saved["split_file_sha256"]) == 64
    )
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| cot vs nocot | 24 | 12 | 4 | 0 | +20.00 |" in markdown
    assert "| gold (ceiling) |" in markdown
    for name in result.plots:
        width, height = _png_size(tmp_path / "out" / name)
        assert width > 300 and height > 200
    assert set(result.plots) == {
        "ex_by_difficulty.png",
        "soft_f1_by_difficulty.png",
        "paired_cot_vs_nocot.png",
    }


def test_significance_helpers() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 2**10)
    low, high = paired_bootstrap([1] * 50 + [0] * 50, [0] * 50 + [1] * 50, resamples=2000)
    assert low < 0 < high  # the same EX: the interval covers zero


def test_report_command_names_bad_pairs(dev_dir: Path, tmp_path: Path) -> None:
    a = _system(dev_dir, tmp_path / "a.json", range(0, 5), 5)
    result = CliRunner().invoke(
        app,
        ["report", "--data", str(dev_dir), "--predictions", f"a={a}", "--predictions",
         f"b={a}", "--compare", "a,c", "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert result.exit_code == 2 and "--compare 'a,c'" in result.output
    result = CliRunner().invoke(
        app, ["report", "--data", str(dev_dir), "--predictions", str(a), "--out", "o"]
    )
    assert result.exit_code == 2 and "is not NAME=FILE" in result.output
