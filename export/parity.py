"""Parity: does the shipped graph still answer like the model it came from?

Two comparisons, on a calibration sample of real passages and queries made from them:

* export check: the torch model against the FP32 ONNX graph on a few texts (catches a wrong
  export: a traced branch, a dropped input, a dynamic axis that was not);
* quantisation: the FP32 graph against the INT8 graph: embedding cosine (mean and min),
  overlap of the top-10 passages each retrieves for the same queries, and for the reranker
  Spearman's rank correlation of the pair scores and agreement on each query's top passage.

Each number is gated; the defaults (:class:`Gates`) are issue #5's.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from lexedge.runtime.datasets import iter_corpus
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.storage import sha256_file


@dataclass
class Gates:
    """Thresholds a bundle must meet; a miss stops the export unless forced."""

    min_mean_cosine: float = 0.99      # embedder, INT8 vs FP32
    min_top10_overlap: float = 0.90    # embedder retrieval, INT8 vs FP32
    min_spearman: float = 0.98         # reranker scores, INT8 vs FP32
    min_export_cosine: float = 0.9999  # embedder, FP32 ONNX vs torch
    max_export_logit_error: float = 1e-3  # reranker, FP32 ONNX vs torch, relative to the scale


@dataclass
class Calibration:
    """Passages, and queries each made from one of them (``query_sources``)."""

    source: str
    sha256: str | None
    passages: list[str]
    queries: list[str]
    query_sources: list[int]

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "passages": len(self.passages),
                "queries": len(self.queries)}


def default_calibration_file() -> Path:
    return Path(str(files("lexedge.runtime") / "samples" / "ja_statutes_sample.jsonl.gz"))


def load_calibration(path: str | Path | None = None, passages: int = 200, queries: int = 50,
                     seed: int = 0) -> Calibration:
    """Sample ``passages`` documents (reservoir sampling: one streaming pass) from a BEIR
    folder or ``corpus.jsonl[.gz]`` (default: the Japanese statutes shipped with lexedge), and
    make ``queries`` queries from their titles or first sentences."""
    path = Path(path) if path is not None else default_calibration_file()
    if path.is_dir():
        candidates = [path / "corpus.jsonl", path / "corpus.jsonl.gz"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    rng = random.Random(seed)
    reservoir: list = []
    for seen, document in enumerate(iter_corpus(path)):
        if len(reservoir) < passages:
            reservoir.append((seen, document))
        elif (slot := rng.randint(0, seen)) < passages:
            reservoir[slot] = (seen, document)
    documents = [document for _, document in sorted(reservoir, key=lambda item: item[0])]
    if len(documents) < 2:
        raise LexedgeError(f"{path}: a calibration sample needs at least 2 documents")
    sources = sorted(rng.sample(range(len(documents)), min(queries, len(documents))))
    made = [_query_from(documents[i], use_title=n % 2 == 0) for n, i in enumerate(sources)]
    return Calibration(str(path), sha256_file(path), [d.indexed_text for d in documents], made,
                       sources)


def _query_from(document, use_title: bool) -> str:
    if use_title and document.title:
        return document.title
    first = re.split(r"(?<=[。．！？!?])|(?<=\.)\s|\n", document.text.strip(), maxsplit=1)[0]
    return (first or document.title or document.text)[:80]


class Remembered:
    """A runtime model whose answers are kept, so one FP32 reference serves several
    candidates (the shipped INT8 graph, the per-tensor comparison) at the cost of one run."""

    def __init__(self, model):
        self.model, self._answers = model, {}

    def encode(self, texts, kind="passage"):
        key = ("encode", kind, tuple(texts))
        if key not in self._answers:
            self._answers[key] = self.model.encode(texts, kind=kind)
        return self._answers[key]

    def score(self, query, passages):
        key = ("score", query, tuple(passages))
        if key not in self._answers:
            self._answers[key] = self.model.score(query, passages)
        return self._answers[key]


def embedding_parity(reference, candidate, calibration: Calibration, k: int = 10) -> dict:
    """Compare two embedders (runtime ``OnnxEmbedder``\\s) on the calibration sample."""
    passages_ref = reference.encode(calibration.passages, kind="passage")
    passages_new = candidate.encode(calibration.passages, kind="passage")
    queries_ref = reference.encode(calibration.queries, kind="query")
    queries_new = candidate.encode(calibration.queries, kind="query")
    cosine = _row_cosine(np.vstack([passages_ref, queries_ref]),
                         np.vstack([passages_new, queries_new]))
    k = min(k, len(calibration.passages))
    scores_ref, scores_new = queries_ref @ passages_ref.T, queries_new @ passages_new.T
    top_ref = np.argsort(-scores_ref, axis=1, kind="stable")[:, :k]
    top_new = np.argsort(-scores_new, axis=1, kind="stable")[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ref, top_new)]
    # How close the FP32 scores at ranks k and k+1 are: when they are nearly tied, any
    # perturbation swaps them, so a low overlap there says little about retrieval quality.
    ranked = -np.sort(-scores_ref, axis=1)
    gap = np.median(ranked[:, k - 1] - ranked[:, k]) if ranked.shape[1] > k else None
    noise = float(np.std(scores_new - scores_ref))
    tied = tie_aware_overlap(scores_ref, top_new, k, tolerance=2 * noise)
    return {"texts": len(cosine), "cosine_mean": _round(cosine.mean()),
            "cosine_min": _round(cosine.min()), "k": k, "top10_overlap": _round(np.mean(overlap)),
            "top10_overlap_tie_aware": _round(tied), "score_noise_std": _round(noise),
            "top1_agreement": _round(np.mean(top_ref[:, 0] == top_new[:, 0])),
            f"fp32_rank{k}_gap_median": _round(gap)}


def tie_aware_overlap(scores_ref: np.ndarray, top_new: np.ndarray, k: int,
                      tolerance: float) -> float:
    """Top-k overlap that counts a candidate passage as agreeing when its reference score is
    within ``tolerance`` of the reference's k-th score: a swap of passages the reference itself
    cannot tell apart (a near-tie smaller than the quantisation noise) is not a disagreement.

    Example:
        >>> ref = np.array([[0.9, 0.5, 0.499, 0.1]])
        >>> tie_aware_overlap(ref, np.array([[0, 2]]), k=2, tolerance=0.002)
        1.0
    """
    kth = -np.sort(-scores_ref, axis=1)[:, k - 1]
    rows = np.arange(len(top_new))[:, None]
    agreeing = scores_ref[rows, top_new] >= (kth[:, None] - tolerance)
    return float(agreeing.mean())


def reranker_pairs(calibration: Calibration, per_query: int = 10, seed: int = 0) -> list:
    """Each query with its own passage and ``per_query - 1`` others drawn at random."""
    rng = random.Random(seed)
    everyone = range(len(calibration.passages))
    groups = []
    for query, own in zip(calibration.queries, calibration.query_sources):
        others = rng.sample([i for i in everyone if i != own],
                            min(per_query - 1, len(calibration.passages) - 1))
        groups.append((query, [calibration.passages[i] for i in [own, *others]]))
    return groups


def reranker_parity(reference, candidate, calibration: Calibration, per_query: int = 10) -> dict:
    """Compare two rerankers (runtime ``OnnxReranker``\\s) over the same query/passage groups."""
    from scipy.stats import spearmanr

    groups = reranker_pairs(calibration, per_query)
    scores_ref = [reference.score(query, passages) for query, passages in groups]
    scores_new = [candidate.score(query, passages) for query, passages in groups]
    flat_ref, flat_new = np.concatenate(scores_ref), np.concatenate(scores_new)
    per_group = [spearmanr(a, b).statistic for a, b in zip(scores_ref, scores_new)
                 if np.ptp(a) > 0 and np.ptp(b) > 0]
    return {"pairs": len(flat_ref), "spearman": _round(spearmanr(flat_ref, flat_new).statistic),
            "spearman_per_query_mean": _round(np.mean(per_group)) if per_group else None,
            "top1_agreement": _round(np.mean([a.argmax() == b.argmax()
                                              for a, b in zip(scores_ref, scores_new)])),
            "max_abs_diff": _round(np.abs(flat_ref - flat_new).max())}


def torch_parity(module, onnx_model, inputs: list, batch_size: int = 8) -> dict:
    """Run the exported torch ``module`` and the ONNX graph on the same padded batches.

    ``inputs`` are texts, or ``(query, passage)`` pairs for a reranker, prefixes applied.
    """
    import torch

    encodings = onnx_model.tokenize(inputs)
    expected, found = [], []
    with torch.no_grad():
        for _rows, feeds in onnx_model.batches(encodings, batch_size):
            arguments = [torch.from_numpy(feeds[name]) for name in onnx_model.inputs]
            expected.append(module(*arguments).numpy())
            found.append(onnx_model.session.run([onnx_model.output], feeds)[0])
    expected, found = np.concatenate(expected), np.concatenate(found)
    result = {"texts": len(expected), "max_abs_diff": _round(np.abs(expected - found).max(), 8)}
    if expected.ndim == 2:
        result["cosine_min"] = _round(_row_cosine(expected, found).min(), 8)
    else:
        result["scale"] = _round(max(1.0, float(np.abs(expected).max())))
    return result


def evaluate_gates(kind: str, parity: dict, gates: Gates) -> list[dict]:
    """The gates that apply to what was measured, each with value, threshold and outcome."""
    checks = []
    export = parity.get("export_check") or {}
    if kind == "embedder":
        checks.append(("export_cosine_min", export.get("cosine_min"), ">=", gates.min_export_cosine))
    else:
        limit = gates.max_export_logit_error * export.get("scale", 1.0)
        checks.append(("export_max_abs_diff", export.get("max_abs_diff"), "<=", limit))
    quantization = parity.get("quantization")
    if quantization and kind == "embedder":
        checks.append(("cosine_mean", quantization["cosine_mean"], ">=", gates.min_mean_cosine))
        # Gate on the tie-aware overlap (the raw one stays in the manifest beside it); parity
        # files written before it existed fall back to the raw overlap.
        overlap = quantization.get("top10_overlap_tie_aware", quantization.get("top10_overlap"))
        checks.append(("top10_overlap_tie_aware", overlap, ">=", gates.min_top10_overlap))
    elif quantization:
        checks.append(("spearman", quantization["spearman"], ">=", gates.min_spearman))
    results = []
    for name, value, comparison, threshold in checks:
        if value is None or np.isnan(value):
            passed = False
        else:
            passed = value >= threshold if comparison == ">=" else value <= threshold
        results.append({"gate": f"{kind}.{name}", "value": value, "comparison": comparison,
                        "threshold": threshold, "passed": bool(passed)})
    return results


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def _round(value, digits: int = 6):
    return None if value is None else round(float(value), digits)
