# The teacher: vLLM's OpenAI-compatible server. Model and parallelism are arguments:
#   docker build -f docker/teacher.Dockerfile -t sql-rationale-teacher .
#   docker run --gpus all -p 8000:8000 -v hf-cache:/cache/huggingface sql-rationale-teacher \
#       --model meta-llama/Llama-3.3-70B-Instruct --tensor-parallel-size 4
# The image runs as a non-root user; model weights go to the /cache volume.
FROM vllm/vllm-openai:v0.11.0

ENV HF_HOME=/cache/huggingface \
    VLLM_NO_USAGE_STATS=1

RUN groupadd --system --gid 10001 teacher \
    && useradd --system --uid 10001 --gid teacher --home-dir /home/teacher --create-home teacher \
    && mkdir -p /cache/huggingface \
    && chown -R teacher:teacher /cache

USER 10001:10001
WORKDIR /home/teacher
VOLUME ["/cache"]
EXPOSE 8000

# vLLM answers /health with 200 once the model is loaded (loading a 70B model takes minutes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["python3", "-m", "vllm.entrypoints.openai.api_server", "--host", "0.0.0.0", "--port", "8000", "--enable-prefix-caching"]
CMD ["--model", "meta-llama/Llama-3.3-70B-Instruct", "--tensor-parallel-size", "4", "--max-model-len", "16384"]
