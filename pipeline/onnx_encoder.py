"""A sentence-transformers model run by ONNX Runtime on a CPU: the same vectors in about half the time.

PyTorch's eager mode spends much of a small forward pass dispatching operators; ONNX Runtime runs the
same graph with fused kernels. On the 2-core machines here MiniLM encodes demo tickets 1.7-1.9x faster
in batches, and one search query in a third of the CPU time (measured in ``docs/benchmarks.md``).

The model's own forward pass (transformer, pooling, any dense layers) is traced once with
``torch.onnx.export`` and kept in a cache folder under a fingerprint of the weights and the module
stack, so a process loads it in well under a second. Every load then checks the exported graph
against the PyTorch model on probe texts of several lengths and batch sizes; a model whose graph does
not reproduce its vectors (to 1e-4) is not used.

Search queries may run in a second graph made from that one, its weight matrices stored as int8
(:func:`quantized_encoder`): about half the CPU of a query, with the same relevance of what search finds
(``benchmarks.query_precision``). Stored vectors always come from the float32 graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.embedding import embedding_dimension, fast_tokenizer, padded_batch, token_ids

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the exported graph's inputs or outputs change
TOLERANCE = 1e-4  # largest difference allowed between an exported vector and the PyTorch one
QUANTIZED_FORMAT = 1  # bump when what quantized_encoder stores as int8 changes
# Lowest cosine allowed between a probe's int8 and float32 vectors. MiniLM's int8 query vectors sit at 0.99 on
# average and at 0.965 at worst over 1,500 queries (docs/benchmarks.md; the probe "sso": 0.975); a graph below
# this on the probes is broken (a CPU whose int8 kernels saturate, say), and queries then run in float32.
AGREEMENT = 0.95
PROBES = (
    "export to csv",
    "The dashboard takes forever to load when we filter by region, and the export times out.",
    "sso",
    "Our finance team needs invoices in EUR and a purchase-order field on every invoice, "
    "otherwise procurement rejects them and renewals slip by weeks.",
)


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime cannot run this model here; the caller falls back to PyTorch."""


def default_cache_dir() -> Path:
    """``GROUNDSWELL_MODEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/groundswell/onnx`` (``~/.cache`` by default)."""
    configured = os.environ.get("GROUNDSWELL_MODEL_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "groundswell" / "onnx"


def fingerprint(st: Any) -> str:
    """Names one exported graph: the weights, the module stack, the truncation length and the exporter."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for part in (str(FORMAT), repr(st), str(getattr(st[0], "max_seq_length", "")), torch.__version__):
        digest.update(part.encode())
    for name, tensor in st.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def _export(st: Any, path: Path) -> None:
    """Trace ``st``'s forward pass (token ids and mask in, unit-length sentence vectors out) into ``path``."""
    import torch

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            out = self.st.forward({"input_ids": input_ids, "attention_mask": attention_mask})
            return torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=1)

    sample = {"input_ids": torch.tensor([[101, 2000, 2001, 102], [101, 2002, 102, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    with _written_whole(path) as tmp, warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about traced shape logic
        torch.onnx.export(
            Forward().eval(), (sample["input_ids"], sample["attention_mask"]), tmp,
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )


@contextlib.contextmanager
def _written_whole(path: Path) -> Iterator[str]:
    """A temporary file beside ``path`` to write, which then replaces ``path`` at once: a concurrent process sees
    no file or a whole one, and a failure leaves neither behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class OnnxEncoder:
    """Encodes like ``SentenceTransformer.encode(normalize_embeddings=True)`` with an exported graph.

    Texts are tokenized by the model's own Rust tokenizer (truncated like the model), sorted by token
    count and run in batches of ``batch_size``, so a batch carries little padding.
    """

    def __init__(self, session: Any, tokenizer: Any, *, pad_id: int, dim: int, batch_size: int,
                 path: Path | None = None) -> None:
        self.session = session
        self.path = path  # the graph's file
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.dim = dim
        self.batch_size = max(1, batch_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Returns: ``(len(texts), dim)`` float32, rows of unit length, in input order."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        ids = token_ids(self.tokenizer, [str(t) for t in texts])
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            input_ids, mask = padded_batch(ids, lengths, rows, self.pad_id)
            out[rows] = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return out


def onnx_encoder(st: Any, *, threads: int, batch_size: int, cache_dir: Path | None = None) -> OnnxEncoder:
    """An :class:`OnnxEncoder` for the loaded SentenceTransformer ``st``, exporting it on first use.

    Raises:
        OnnxUnavailable: onnxruntime is not installed, the model has no fast tokenizer, the cache
            folder cannot be written, or the exported graph does not reproduce the model's vectors.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise OnnxUnavailable("onnxruntime is not installed") from exc
    tokenizer = fast_tokenizer(st)
    if tokenizer is None:
        raise OnnxUnavailable("the model has no fast tokenizer")
    path = (cache_dir or default_cache_dir()) / f"{fingerprint(st)}.onnx"
    # An exporter or file-system error: PyTorch still works.
    _make_once(path, lambda p: _export(st, p), "exporting the embedding model to ONNX", "could not export the model to")
    session = _session(ort, path, threads)
    encoder = OnnxEncoder(session, tokenizer, pad_id=st[0].tokenizer.pad_token_id or 0,
                          dim=embedding_dimension(st), batch_size=batch_size, path=path)
    probes = list(PROBES)
    expected = st.encode(probes, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    got = np.concatenate([encoder.encode(probes[:1]), encoder.encode(probes[1:])])
    error = float(np.abs(got - expected).max())
    if not error <= TOLERANCE:
        raise OnnxUnavailable(f"the exported graph differs from the model by {error:.2g} (allowed {TOLERANCE})")
    return encoder


def quantized_encoder(exact: OnnxEncoder, *, threads: int) -> OnnxEncoder:
    """``exact``'s graph with every weight matrix of a ``MatMul`` in int8, for search queries.

    Weights are quantized per output channel and activations per call (ONNX Runtime's dynamic
    quantization); attention's products of activations, layer norms and pooling stay in float32. Made
    from the float32 graph :func:`onnx_encoder` exported, once, and kept beside it.

    It encodes one text per call: an activation's int8 scale is set by the whole batch, so in a batch a
    query's vector would depend on the queries beside it, and the same search could rank differently.
    Alone, a query costs a little more than in a batch of four (1.4-1.6 ms of CPU against 1.1-1.4 for
    MiniLM), still about half of float32 in a batch.

    Raises:
        OnnxUnavailable: the graph cannot be quantized or loaded here, or its vectors of the probe texts
            are further than :data:`AGREEMENT` from the float32 ones.
    """
    import onnxruntime as ort

    source = exact.path
    assert source is not None, "the float32 encoder of onnx_encoder(), which knows its file"
    path = source.with_name(f"{source.stem}.int8-{QUANTIZED_FORMAT}.onnx")
    # A quantizer or file-system error: float32 still works.
    _make_once(path, lambda p: _quantize(source, p), "quantizing the query model's weights to int8",
               f"could not quantize {source} to")
    encoder = OnnxEncoder(_session(ort, path, threads), exact.tokenizer, pad_id=exact.pad_id, dim=exact.dim,
                          batch_size=1, path=path)
    probes = list(PROBES)
    agreement = float(np.min(np.sum(encoder.encode(probes) * exact.encode(probes), axis=1)))
    if not agreement >= AGREEMENT:
        raise OnnxUnavailable(f"the int8 graph's vectors reach a cosine of only {agreement:.3f} with the float32 "
                              f"ones (at least {AGREEMENT} needed)")
    return encoder


def _make_once(path: Path, make: Callable[[Path], None], doing: str, failing: str) -> None:
    """``make(path)`` unless ``path`` exists; any error it raises becomes :class:`OnnxUnavailable`."""
    if path.exists():
        return
    log.info("%s at %s (once per model)", doing, path)
    try:
        make(path)
    except Exception as exc:
        raise OnnxUnavailable(f"{failing} {path}: {exc}") from exc


def _quantize(source: Path, path: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    weights = {tensor.name for tensor in graph.initializer}
    matmuls = [node.name for node in graph.node
               if node.op_type == "MatMul" and any(name in weights for name in node.input)]
    quiet = _QuantizerChatter()
    logging.getLogger().addFilter(quiet)
    try:
        with _written_whole(path) as tmp:
            quantize_dynamic(source, tmp, weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=matmuls)
    finally:
        logging.getLogger().removeFilter(quiet)


class _QuantizerChatter(logging.Filter):
    """Drops what the quantizer logs on the root logger below ERROR while it runs (a line per tensor, and
    advice for image models). A logger's filters see only the records logged on that logger itself, so the
    records of this project's modules, which log on loggers of their own, never reach it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _session(ort: Any, path: Path, threads: int) -> Any:
    """An ONNX Runtime session of ``path``; a file it cannot load is removed, to be made again next time."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning, so they leave the cores to the API's other requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a truncated or foreign file: export again next time
        path.unlink(missing_ok=True)
        raise OnnxUnavailable(f"could not load {path}: {exc}") from exc
