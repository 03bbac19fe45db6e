"""A plain (non-editable) install works from another directory: templates and seeds are
package data found through importlib.resources, not files beside a source checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEEDS = "rationale/prompting/prompts/seeds.jsonl"


@pytest.mark.slow
def test_wheel_install_runs_seed_and_decompose_elsewhere(train_dir: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("sql_rationale-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rationale/prompting/prompts/seeds.jsonl" in names
    assert "rationale/prompting/prompts/teacher_free.j2" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    with zipfile.ZipFile(wheel) as archive:  # what pip does for a pure-Python wheel
        archive.extractall(site)
    # The dependencies come from this environment's site-packages, put on the path as a plain
    # folder: its editable-install hooks (.pth files) are not run, so `rationale` can only be
    # the copy installed from the wheel.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        code = "import sys; from rationale.cli import app; sys.argv[0] = 'rationale'; app()"
        return subprocess.run(
            [str(venv / "bin" / "python"), "-c", code, *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    where = run("--help")
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import rationale; print(rationale.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0 and located.stdout.startswith(str(site)), located.stdout
    seeded = run("seed", "--data", str(train_dir), "--run", str(tmp_path / "run"), "--workers", "1")
    assert seeded.returncode == 0, seeded.stderr
    # The pool holds the shipped seeds that can be checked here: those naming a question of
    # this train split whose database is present (counted from the files, not the subset's).
    seeds = [json.loads(line) for line in (REPO / SEEDS).read_text().splitlines() if line]
    questions = json.loads((train_dir / "train.json").read_text(encoding="utf-8"))
    db_of = {q["question_id"]: q["db_id"] for q in questions}
    checkable = [
        seed for seed in seeds
        if db_of.get(seed["question_id"]) == seed["db_id"]
        and (train_dir / "train_databases" / seed["db_id"] / f"{seed['db_id']}.sqlite").is_file()
    ]  # fmt: skip
    assert checkable  # beer_factory's seeds at least
    pool = (tmp_path / "run" / "pool" / "iteration_0.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["question_id"] for line in pool) == sorted(
        seed["question_id"] for seed in checkable
    )
    decomposed = run(
        "decompose", "--data", str(train_dir), "--db", "beer_factory", "--limit", "3",
        "--validate", "--output", str(tmp_path / "d.jsonl"),
    )  # fmt: skip
    assert decomposed.returncode == 0, decomposed.stderr
    assert (tmp_path / "d.jsonl").read_text().count("\n") == 3


def test_a_gpu_nodes_torch_is_kept_and_only_the_cpu_install_pins_torch(tmp_path: Path) -> None:
    """`pip install -e '.[llm,train,report]'` on a node that has another torch (here a CUDA
    build, 2.7.1+cu128, as an installed distribution ahead on the path) resolves without
    touching it: pip's own dry run, offline. The exact CPU pin lives in constraints/cpu.txt
    and satisfies every extra's range."""
    from packaging.requirements import Requirement

    node = tmp_path / "node-site"
    info = node / "torch-2.7.1+cu128.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.7.1+cu128\n")
    (info / "RECORD").write_text("")
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
         "--quiet", "--report", str(report), "-e", f"{REPO}[llm,train,report]"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(node)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    would_install = {item["metadata"]["name"] for item in json.loads(report.read_text())["install"]}
    assert would_install == {"sql-rationale"}, would_install  # torch 2.7.1+cu128 is kept

    lines = (REPO / "constraints" / "cpu.txt").read_text().splitlines()
    pins = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    (torch_pin,) = [pin for pin in pins if pin.name == "torch"]
    pinned = next(iter(torch_pin.specifier)).version

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    ranges = [Requirement(r) for extra in extras.values() for r in extra if r.startswith("torch")]
    assert ranges and all("==" not in str(r.specifier) for r in ranges)  # ranges, not pins
    assert all(r.specifier.contains(pinned) for r in ranges)
    assert all(r.specifier.contains("2.7.1+cu128") for r in ranges)
