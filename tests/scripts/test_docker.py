"""The Docker files as a real Compose parser reads them (Debian's docker-compose, which
.ci/run installs): GPUs pinned per service, one shared model cache, a configurable start
period; both images from one pinned vLLM release. No image is built here (no engine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"


def _config(**env: str) -> dict:
    if shutil.which("docker-compose") is None:
        if os.environ.get("BIRD_REQUIRED") == "1":  # CI installs it: its absence is a failure
            pytest.fail("docker-compose is not installed (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, **env},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _gpus(service: dict) -> list[str]:
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    return [gpu for ids in device["device_ids"] for gpu in ids.split(",")]


def test_each_service_has_its_own_gpus_and_both_share_the_model_cache() -> None:
    services = _config()["services"]
    teacher, pipeline = services["teacher"], services["pipeline"]
    assert _gpus(teacher) == ["0", "1", "2", "3"] and _gpus(pipeline) == ["4", "5", "6", "7"]
    for service in (teacher, pipeline):
        assert any(str(volume).startswith("cache:/cache") or "/cache" in str(volume)
                   for volume in service["volumes"])  # fmt: skip
    assert pipeline["depends_on"]["teacher"]["condition"] == "service_healthy"
    assert teacher["healthcheck"]["start_period"] in ("3600s", "1h")  # as the parser normalises it
    moved = _config(TEACHER_GPUS="2,3", PIPELINE_GPUS="0,1", TEACHER_START_PERIOD="7200s")
    assert _gpus(moved["services"]["teacher"]) == ["2", "3"]
    assert _gpus(moved["services"]["pipeline"]) == ["0", "1"]
    assert moved["services"]["teacher"]["healthcheck"]["start_period"] in ("7200s", "2h")


def test_both_images_come_from_one_pinned_vllm_release() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    pins = re.findall(r"^ARG VLLM_IMAGE=(\S+)$", dockerfile, re.M)
    assert len(pins) == 1 and re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", pins[0])
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", dockerfile, re.M)
    assert stages == [("${VLLM_IMAGE}", "teacher"), ("${VLLM_IMAGE}", "pipeline")]
    # the project installs under the image's own torch/vLLM, with DeepSpeed (the gpu extra)
    assert "-c /opt/image-constraints.txt" in dockerfile and "gpu" in dockerfile
    assert "deepspeed" in dockerfile and "build-essential" in dockerfile
