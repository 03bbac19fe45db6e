"""A deterministic "teacher": a real OpenAI-compatible HTTP server that answers a teacher
prompt with the symbolic decomposer's rationale for the question it asks about.

It also answers a student's prompt (question and evidence, no gold SQL) with that
question's rationale, as a student that always knows the answer: prediction tests use it to
check the whole path from answer to official file to score over real HTTP.

Distillation tests and benchmarks need a teacher whose answers are cheap, reproducible and
often valid, so that the accepting path, the pool growth and the cache are exercised for
real (the tiny LLM is too weak to produce valid rationales). This is not a mock: the
distill loop talks to it over real HTTP through the `openai` backend, and its answers go
through the real parser and validator. It knows the BIRD splits it is given and finds the
asked question as the last gold query that appears in the prompt (the few-shot examples
come before the question to explain), or else as the question text that appears last.

    python -m rationale.decomposer.teacher_server --data ../shared/bird/train --port 8011

GET /stats returns {"requests": ..., "samples": ...}: how many requests and samples it
answered (tests check that a resumed run sends nothing twice).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bird.data import load_split
from rationale.chain.format import render_rationale
from rationale.decomposer.builder import DecompositionError, database_schema, decompose_sql

REFUSAL = "I cannot decompose this query."


class SymbolicTeacher:
    """Gold SQL -> rendered decomposition, for every example of the given splits."""

    def __init__(self, split_dirs: list[Path], db_ids: list[str] | None = None) -> None:
        self.answers: dict[str, str] = {}
        self.by_question: dict[str, str] = {}
        for split_dir in split_dirs:
            split = load_split(split_dir)
            wanted = set(db_ids or split.db_ids())
            schemas = {db: database_schema(split, db) for db in split.db_ids() if db in wanted}
            for example in split.examples:
                if example.db_id not in wanted:
                    continue
                key = example.sql.strip()
                if key in self.answers:
                    continue
                try:
                    decomposition = decompose_sql(example.sql, schemas[example.db_id])
                except DecompositionError:
                    continue
                self.answers[key] = render_rationale(decomposition.rationale)
                self.by_question.setdefault(
                    f"Question: {example.question.strip()}\n", self.answers[key]
                )
        self.requests = 0
        self.samples = 0
        self.lock = threading.Lock()

    def answer(self, prompt: str) -> str:
        for table in (self.answers, self.by_question):  # gold SQL first: a teacher prompt
            best, position = REFUSAL, -1
            for key, text in table.items():
                found = prompt.rfind(key)
                if found > position:
                    best, position = text, found
            if position >= 0:
                return best
        return REFUSAL


def make_handler(teacher: SymbolicTeacher, delay: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            return

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/stats"):
                self._send(200, {"requests": teacher.requests, "samples": teacher.samples})
            elif self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": "symbolic", "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            messages = body.get("messages") or []
            prompt = "\n".join(m.get("content", "") for m in messages if m.get("role") == "user")
            n = int(body.get("n") or 1)
            if delay:
                time.sleep(delay)
            text = teacher.answer(prompt)
            with teacher.lock:
                teacher.requests += 1
                teacher.samples += n
            choices = [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
                for index in range(n)
            ]
            words = len(prompt.split())
            self._send(
                200,
                {
                    "id": f"symbolic-{teacher.requests}",
                    "object": "chat.completion",
                    "model": body.get("model", "symbolic"),
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": words,
                        "completion_tokens": len(text.split()) * n,
                        "total_tokens": words + len(text.split()) * n,
                    },
                },
            )

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append", required=True, help="Split folder.")
    parser.add_argument("--db", action="append", help="Only these databases (default: all).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="Seconds before each answer.")
    args = parser.parse_args()
    teacher = SymbolicTeacher(args.data, args.db)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(teacher, args.delay))
    print(
        f"ready on http://{args.host}:{args.port}/v1 ({len(teacher.answers)} answers)", flush=True
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
