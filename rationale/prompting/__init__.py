"""Prompts: Jinja2 templates and seed rationales in `prompts/` (`templates` renders them with
their hashes), the teacher's prompt (`teacher`), the rationalizer's and students' prompts
(`task`), and few-shot retrieval (`retrieval`, `embeddings`).
"""
