"""The bundle's two ONNX models as the laptop runs them: onnxruntime, numpy and tokenizers only.

* :class:`OnnxEmbedder` turns queries or passages into L2-normalised vectors; pooling and
  normalisation live inside the graph (see ``lexedge.export``), so this module only tokenises,
  pads and runs it.
* :class:`OnnxReranker` scores ``(query, passage)`` pairs with a cross-encoder.

Both pad each batch only to its own longest text, after sorting texts by token count, and put
the rows back in the caller's order. Padding is what a CPU pays for: a batch of 16-token
queries runs roughly ten times faster than the same batch padded to 128 tokens
(``../shared/OFFLINE-MODELS.md``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import blas
from .errors import LexedgeError

# Texts tokenised at once: length sorting happens inside such a window, so memory stays
# bounded on a large corpus while batches are still nearly uniform in length.
SORT_WINDOW = 4096

# Texts per batch when embedding on the CPU. Small batches of length-sorted texts are the
# fastest there: 1,000 random STARD articles on 2 cores, 4 texts per batch gave 1.21x-1.24x
# the articles/s of 32 for e5-small INT8 and 1.09x-1.23x for the built-in student (two runs of
# bench/encode_batch.py; on the first 5,000 articles 1.16x and 1.11x); one text per batch
# is slower than 4 in every run. A GPU provider keeps larger batches. (INT8 dynamic
# quantisation scales activations per batch, so a vector depends slightly on its batch mates,
# cosine > 0.999; the same corpus always gives the same batches.)
CPU_BATCH = 4
ACCELERATOR_BATCH = 32


# A search runs two sessions one after the other on the same cores: the embedder on the query,
# then the reranker on 20 candidates. onnxruntime's threads spin for a while after their work
# by default, so the embedder's took the cores from the reranker. Waiting without spinning,
# full STARD index, 124 dev questions, 2 AVX2 cores: search with the top 20 re-ranked p50
# 122.8 -> 92.3 ms, p95 176.7 -> 138.6; without re-ranking p50 12.5 -> 13.5, p95 15.0 -> 16.9
# (``bench/session_spinning.py``).
ALLOW_SPINNING = "0"


def session_options(threads: int | None = None):
    """onnxruntime options: all graph optimisations, one thread per core unless told
    otherwise, threads that wait without spinning (:data:`ALLOW_SPINNING`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", ALLOW_SPINNING)
    return options


# On the CPU, a long run of batches (an index build) goes to one worker per core, each
# running whole batches on a session of one thread, instead of every core sharing each small
# batch: the cores no longer wait for each other inside every operator. 2,000 random STARD
# articles, 2 cores, each bundle in a process of its own: the built-in 956 -> 1,163
# articles/s, e5-small INT8 185 -> 211 (``bench/cpu_encoding.py``). A few texts (a query, 20
# pairs to re-rank) keep the session that spreads one batch over every core, and the
# one-thread session is only made when a long run first needs it. ``workers`` (set per model)
# is the number of those workers: every core, 1 with another provider or ``threads=1``.
BULK_BATCHES = 8

# onnxruntime's own graph optimiser would fuse each residual ``Add`` and its
# ``LayerNormalization`` into ``SkipLayerNormalization``, whose CPU kernel took 453 us where
# the pair takes 72 (a [4, 76, 384] batch, one thread, onnxruntime 1.32): a third of the
# 3-layer built-in's encoding time. The export leaves them apart (``export/onnx_export.py``);
# this keeps the runtime from joining them again on the CPU (``bench/cpu_encoding.py``).
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def disabled_optimizers(providers: Sequence[str]) -> list[str]:
    """The onnxruntime graph optimisers to switch off for ``providers`` (in order of
    preference): the fusions that are slower on the CPU when the CPU runs the model."""
    return list(CPU_DISABLED_OPTIMIZERS) if providers[0] == "CPUExecutionProvider" else []


# Short names a user types, for onnxruntime's execution providers (issue 21).
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider", "coreml": "CoreMLExecutionProvider",
             "directml": "DmlExecutionProvider", "openvino": "OpenVINOExecutionProvider",
             "rocm": "ROCMExecutionProvider"}


def resolve_providers(names: Sequence[str] | None) -> list[str]:
    """onnxruntime provider names for ``names`` (``cuda``, ``coreml``, ``directml``, … or
    the full names), in that order of preference, the CPU last (for the operators a provider
    lacks). A provider this onnxruntime build lacks is refused, not silently replaced.

    Raises:
        LexedgeError: a name this onnxruntime build does not have (the error lists those it
            has: a GPU provider comes with ``onnxruntime-gpu``, CoreML with macOS builds,
            DirectML with ``onnxruntime-directml``).
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = []
    for name in names or ():
        full = PROVIDERS.get(name.lower(), name)
        if full not in available:
            named = name if full == name else f"{name} ({full})"
            raise LexedgeError(f"--providers: {named} is not in this onnxruntime build; "
                               f"it has {', '.join(available)} (a GPU provider comes with "
                               "onnxruntime-gpu, DirectML with onnxruntime-directml)")
        if full not in chosen:
            chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class SharedTokenizer:
    """One loaded ``tokenizers`` file, shared by the models that use it.

    A large vocabulary is expensive to hold: multilingual-e5-small's 250k-piece tokenizer takes
    about 280 MB resident, and the embedder and the reranker usually ship the same file. The
    truncation length is per model, so it is set under a lock just before each use.
    """

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise LexedgeError(f"{path}: not a tokenizers JSON file ({exc})") from None
        # The model batches do their own padding; a padding rule saved in tokenizer.json
        # (often to max_length) would undo the point of sorting by length.
        self.tokenizer.no_padding()
        self._lock = threading.Lock()

    def encode_batch(self, inputs: Sequence, max_length: int) -> list:
        inputs = list(inputs)
        # For single texts, encode_batch_fast leaves out the character offsets (nothing here
        # reads them): the same ids with a quarter less tokenizer time (0.56 -> 0.42 s of CPU
        # per 8,192 STARD articles, the built-in's and e5-small's tokenizers alike). Pairs keep
        # encode_batch: the fast one gives every token of a pair type id 0 (tokenizers 0.23).
        single = all(isinstance(text, str) for text in inputs)
        with self._lock:
            self.tokenizer.enable_truncation(max_length)
            return (self.tokenizer.encode_batch_fast if single
                    else self.tokenizer.encode_batch)(inputs)


class _OnnxModel:
    """Shared loading, tokenisation and length-sorted dynamic batching."""

    def __init__(self, model_path: str | Path, tokenizer: str | Path | SharedTokenizer,
                 config: dict, threads: int | None = None,
                 providers: Sequence[str] | None = None, bulk: bool = False):
        self.model_path, self.config = Path(model_path), config
        for field in ("inputs", "output", "max_length"):
            if field not in config:
                raise LexedgeError(f"{self.model_path}: model settings lack {field!r}")
        self.tokenizer = tokenizer if isinstance(tokenizer, SharedTokenizer) \
            else SharedTokenizer(tokenizer)
        self.max_length = int(config["max_length"])
        self.providers = resolve_providers(providers)  # refused by itself, before the model
        self.threads = threads
        on_cpu = self.providers[0] == "CPUExecutionProvider"
        self.workers = (threads or os.cpu_count() or 1) if on_cpu else 1
        # A bulk model (an index build) runs every batch on the workers' one-thread session
        # and never makes the all-core one: one copy of the model in memory, not two.
        self.bulk = bulk and self.workers > 1
        self._all_core_session = self._bulk_session = None
        self._sessions_lock = threading.Lock()
        self.inputs = list(config["inputs"])
        first = self._one_thread_session() if self.bulk else self.session
        graph_inputs = sorted(i.name for i in first.get_inputs())
        if graph_inputs != sorted(self.inputs):
            raise LexedgeError(f"{self.model_path}: graph inputs {graph_inputs} differ from the "
                               f"manifest's {sorted(self.inputs)}")
        self.output = config["output"]
        self.pad_id = int(config.get("pad_id", 0))

    def _session(self, threads: int | None):
        import onnxruntime as ort

        try:
            return ort.InferenceSession(str(self.model_path), session_options(threads),
                                        providers=self.providers,
                                        disabled_optimizers=disabled_optimizers(self.providers))
        except Exception as exc:
            raise LexedgeError(f"{self.model_path}: onnxruntime cannot load it ({exc})") from None

    @property
    def session(self):
        """The session that spreads each batch over every core (``threads``), made on first
        use."""
        with self._sessions_lock:
            if self._all_core_session is None:
                self._all_core_session = self._session(self.threads)
            return self._all_core_session

    def active_providers(self) -> list[str]:
        """The execution providers onnxruntime runs this model on (those of the session made
        first: the one-thread one of a bulk model)."""
        return (self._bulk_session if self.bulk else self.session).get_providers()

    def _one_thread_session(self):
        with self._sessions_lock:
            if self._bulk_session is None:
                self._bulk_session = self._session(1)
            return self._bulk_session

    def tokenize(self, inputs: Sequence, max_length: int | None = None) -> list:
        """``tokenizers`` encodings of texts (or ``(query, passage)`` pairs), truncated to
        ``max_length`` (default: the model's; pairs longest first), unpadded."""
        return self.tokenizer.encode_batch(inputs, max_length or self.max_length)

    def batches(self, encodings: Sequence, batch_size: int) -> Iterator[tuple[np.ndarray, dict]]:
        """Yield ``(rows, feeds)``: the positions of a batch's texts in ``encodings`` and its
        input arrays, padded to the batch's longest text. Batches follow token count."""
        if batch_size < 1:
            raise LexedgeError(f"batch size must be at least 1, got {batch_size}")
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = max(len(encodings[r].ids) for r in rows)
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for line, row in enumerate(rows):
                encoding = encodings[row]
                length = len(encoding.ids)
                ids[line, :length] = encoding.ids
                mask[line, :length] = 1
                types[line, :length] = encoding.type_ids
            arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            yield rows, {name: arrays[name] for name in self.inputs}

    def _outputs(self, inputs: Sequence, outputs: Sequence[str], batch_size: int,
                 progress: bool = False, description: str = "", on_batch=None,
                 max_length: int | None = None) -> Iterator[tuple[np.ndarray, dict, list]]:
        """Run ``inputs`` in length-sorted batches; yield ``(rows, feeds, arrays)`` per batch:
        the rows' positions in ``inputs``, the batch's input arrays and the ``outputs``
        asked for. A long run goes to the workers' one-thread sessions."""
        from tqdm import tqdm

        workers = self.workers if self.bulk or len(inputs) >= BULK_BATCHES * batch_size else 1
        session = self._one_thread_session() if workers > 1 else self.session

        def run(batch):
            rows, feeds = batch
            return rows, feeds, session.run(list(outputs), feeds)

        pool = ThreadPoolExecutor(workers) if workers > 1 else None
        try:
            with tqdm(total=len(inputs), desc=description, unit="text",
                      disable=None if progress else True) as bar:
                for window in range(0, len(inputs), SORT_WINDOW):
                    encodings = self.tokenize(inputs[window:window + SORT_WINDOW], max_length)
                    batches = self.batches(encodings, batch_size)
                    for rows, feeds, arrays in (pool.map if pool else map)(run, batches):
                        yield window + rows, feeds, arrays
                        bar.update(len(rows))
                        if on_batch is not None:
                            on_batch(len(rows))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _run(self, inputs: Sequence, width: tuple[int, ...], batch_size: int,
             progress: bool, description: str, on_batch=None) -> np.ndarray:
        result = np.zeros((len(inputs), *width), dtype=np.float32)
        for rows, _, (output,) in self._outputs(inputs, [self.output], batch_size, progress,
                                                description, on_batch):
            result[rows] = output
        return result


class OnnxEmbedder(_OnnxModel):
    """A bi-encoder: text in, unit vector out (``sentence_embedding`` [batch, dim]).

    Args:
        model_path: the ``embedder.onnx`` file.
        tokenizer: its ``tokenizers`` JSON file, or a :class:`SharedTokenizer` already loaded.
        config: the bundle manifest's ``embedder`` section (inputs, output, dimension,
            prefixes, max_length, pad_id).
        threads: onnxruntime intra-op threads (default: every core).

    Example:
        >>> embedder = Bundle.load("bundle").embedder()  # doctest: +SKIP
        >>> embedder.encode(["民法 第九十条"], kind="query").shape  # doctest: +SKIP
        (1, 384)
    """

    @property
    def dimension(self) -> int:
        return int(self.config["dimension"])

    @property
    def batch_size(self) -> int:
        """Texts per batch by default: :data:`CPU_BATCH` on the CPU, :data:`ACCELERATOR_BATCH`
        when a GPU (or other) provider runs the session."""
        return CPU_BATCH if self.active_providers()[0] == "CPUExecutionProvider" \
            else ACCELERATOR_BATCH

    def encode(self, texts: Sequence[str], kind: str = "passage", batch_size: int | None = None,
               progress: bool = False, on_batch=None) -> np.ndarray:
        """Embed ``texts`` as queries or passages; returns float32 [len(texts), dimension]
        in the order given. E5-style models need the prefix their kind names
        (Wang et al., 2022, arXiv:2212.03533); the manifest records it. ``on_batch(n)`` is
        called after each batch of ``n`` texts (an index build's progress); ``batch_size``
        defaults to :attr:`batch_size`."""
        if kind not in ("query", "passage"):
            raise LexedgeError(f"embedding kind must be 'query' or 'passage', got {kind!r}")
        if isinstance(texts, str):
            texts = [texts]
        prefix = self.config.get(f"{kind}_prefix") or ""
        return self._run([prefix + text for text in texts], (self.dimension,),
                         batch_size or self.batch_size, progress, f"embedding {kind}s",
                         on_batch)


class OnnxReranker(_OnnxModel):
    """A cross-encoder: ``query [SEP] passage`` in, one relevance logit out (``logits`` [batch]).

    Arguments as for :class:`OnnxEmbedder`, with the manifest's ``reranker`` section.
    Pairs use the tokenizer's own pair template and are truncated longest-first; the
    manifest's prefixes, if any, are put before the query and the passage.
    """

    def score(self, query: str, passages: Sequence[str], batch_size: int = 16,
              progress: bool = False) -> np.ndarray:
        """Relevance logits of ``passages`` for ``query`` (float32 [len(passages)], higher is
        more relevant), in the order given."""
        query_prefix = self.config.get("query_prefix") or ""
        passage_prefix = self.config.get("passage_prefix") or ""
        pairs = [(query_prefix + query, passage_prefix + passage) for passage in passages]
        return self._run(pairs, (), batch_size, progress, "reranking")


class OnnxLateInteraction(_OnnxModel):
    """A late-interaction reranker (ColBERT's MaxSim, Khattab and Zaharia, 2020,
    arXiv:2004.12832): each text in, one unit vector per token out (``token_states`` [batch,
    seq, dim]) with a weight per token (``token_weights`` [batch, seq], 0 on padding).

    A passage scores ``sum_i w_i max_j q_i . p_j / sum_i w_i`` over the query's tokens ``i``
    and the passage's tokens ``j``. The graph is the bundle's own embedder up to its last
    layer plus a small trained head (``lexedge late-interaction``), so re-ranking 20
    candidates costs one pass of the 3-layer embedder over them, not a 12-layer
    cross-encoder over 20 pairs. Arguments as for :class:`OnnxEmbedder`, with the manifest's
    ``reranker`` section (``kind = "late_interaction"``, ``weights_output``, and
    ``passage_max_length``: the tokens of a passage read when re-ranking, unless a call names
    its own; ``passage_max_length_by_analyzer`` holds those chosen per index language, which
    the searcher passes).
    """

    KIND = "late_interaction"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weights_output = self.config.get("weights_output", "token_weights")
        self.passage_max_length = self.checked_passage_length(int(self.config.get(
            "passage_max_length", self.max_length)))

    def checked_passage_length(self, tokens: int) -> int:
        """``tokens``, when a passage may be read that far: at least 1 and at most the
        model's ``max_length`` (beyond it the graph has no positions, and onnxruntime fails
        with a shape error)."""
        if not 1 <= tokens <= self.max_length:
            raise LexedgeError(f"{self.model_path}: passages can be read to 1-{self.max_length} "
                               f"tokens (the model's max_length), not {tokens}")
        return tokens

    def token_states(self, texts: Sequence[str], kind: str = "passage",
                     batch_size: int = CPU_BATCH, passage_max_length: int | None = None,
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(states [tokens, dim], weights [tokens])`` of each text, padding left out, in
        the order given; ``kind`` picks the manifest's prefix and, for passages, the tokens
        read: ``passage_max_length``, by default the manifest's."""
        if kind not in ("query", "passage"):
            raise LexedgeError(f"token states kind must be 'query' or 'passage', got {kind!r}")
        if passage_max_length is not None:
            self.checked_passage_length(passage_max_length)
        prefix = self.config.get(f"{kind}_prefix") or ""
        result: list = [None] * len(texts)
        for rows, feeds, (states, weights) in self._outputs(
                [prefix + text for text in texts], [self.output, self.weights_output],
                batch_size, max_length=(passage_max_length or self.passage_max_length)
                if kind == "passage" else None):
            for line, (row, tokens) in enumerate(zip(rows, feeds["attention_mask"].sum(1))):
                result[row] = (states[line, :tokens], weights[line, :tokens])
        return result

    def score(self, query: str, passages: Sequence[str], batch_size: int = CPU_BATCH,
              progress: bool = False, passage_max_length: int | None = None) -> np.ndarray:
        """MaxSim scores of ``passages`` for ``query`` (float32 [len(passages)], higher is
        more relevant), in the order given, each passage read to ``passage_max_length``
        tokens (default: the manifest's). ``progress`` is accepted for the reranker
        interface; 20 passages take a fraction of a second."""
        if not len(passages):
            return np.zeros(0, dtype=np.float32)
        return self.score_states(query, [states for states, _ in self.token_states(
            list(passages), "passage", batch_size, passage_max_length)])

    def score_states(self, query: str, passage_states: Sequence[np.ndarray]) -> np.ndarray:
        """MaxSim scores of passages given by their token states (float32 [len(states)]):
        those stored at index time (:mod:`~lexedge.runtime.passage_states`) or just
        computed; only the query is encoded."""
        if not len(passage_states):
            return np.zeros(0, dtype=np.float32)
        (query_states, query_weights), = self.token_states([query], "query")
        return maxsim(query_states, query_weights, passage_states)


def maxsim(query_states: np.ndarray, query_weights: np.ndarray,
           passages: Sequence[np.ndarray]) -> np.ndarray:
    """Late-interaction scores (float32 [len(passages)]): each query token's best match among
    a passage's tokens (unit vectors, so a cosine), averaged with the query tokens' weights.
    One matrix product for all passages, on one BLAS thread (:mod:`lexedge.runtime.blas`)."""
    scores = np.zeros(len(passages), dtype=np.float32)
    filled = [row for row, states in enumerate(passages) if len(states)]  # empty scores 0
    total = float(query_weights.sum())
    if not filled or total <= 0:
        return scores
    starts = np.cumsum([0] + [len(passages[row]) for row in filled[:-1]])
    with blas.one_blas_thread():
        # [query tokens, every passage token]
        similarity = query_states @ np.concatenate([passages[row] for row in filled]).T
    best = np.maximum.reduceat(similarity, starts, axis=1)  # [query tokens, passages]
    scores[filled] = query_weights @ best / total
    return scores
