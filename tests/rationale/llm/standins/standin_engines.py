"""Stand-in vLLM engines: what vLLM's `LLM` does to the process that holds it, without a GPU.

The real failure modes cannot be caused on a CPU machine (vLLM's wheel is CUDA-only), so
these classes reproduce their effect on the engine process, which is what the backend must
handle: an engine that starts a process of its own (vLLM's EngineCore; impossible from a
daemonic process), one that dies before it is ready (out of memory, a CUDA error), one that
never becomes ready (a hung model load), and one that dies while generating.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from typing import Any


def _sleep_forever() -> None:
    while True:
        time.sleep(60)


class EchoWithChild:
    """Starts a helper process as vLLM starts its EngineCore, then echoes prompts."""

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        self.helper = multiprocessing.get_context("spawn").Process(target=_sleep_forever)
        self.helper.start()  # AssertionError here if this process were daemonic
        with open(os.environ["STANDIN_CHILD_PIDS"], "a") as handle:
            handle.write(f"{self.helper.pid}\n")
        self.options = options
        print(f"stand-in engine ready, options {sorted(options.items())}", flush=True)

    def generate(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "request_id": item["request_id"],
                "sample_index": item["sample_index"],
                "text": f"echo {item['messages'][-1]['content']} #{item['sample_index']} "
                f"on {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}",
                "finish_reason": "stop",
                "prompt_tokens": 3,
                "completion_tokens": 4,
            }
            for item in items
        ]


class DiesBeforeReady:
    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        print("torch.OutOfMemoryError: CUDA out of memory (stand-in)", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)


class HangsBeforeReady:
    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        print("loading weights (stand-in that never finishes)", flush=True)
        _sleep_forever()


class DiesWhileGenerating(EchoWithChild):
    def generate(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        print("segfault while generating (stand-in)", flush=True)
        os.kill(os.getpid(), 9)
        return []
