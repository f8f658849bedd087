"""Re-ranking from passage states stored at index time, measured before it is built (issue 19,
item 3: "cached lower-layer passage states computed at index time, as in PreTTR, with their
disk cost measured"). The built-in reranker is late interaction over the embedder's own
last-layer token states: a passage's states do not depend on the query, so an index could
hold them and a search would only encode the query. On a **full** index's dev questions
(``lexedge search``'s first stage, its top 20, the bundle's weight and tokens for the index's
language), in one process:

- ``live``: the states computed per search, as ``lexedge search`` does now;
- ``stored``: each candidate's states computed as a build would (all candidates in
  length-sorted batches, not the search's 20), kept as float32 or as int8 with a scale per
  token; ``PCA k``: projected first onto the top k directions of random articles' states
  (the query's states too), then int8; ``residual b-bit`` (``--bits``): ColBERTv2's
  compression as ``lexedge index build --passage-states`` stores it
  (``lexedge.runtime.passage_states``), a centroid id and b bits a dimension, its centroids
  (``--centroids``, 1,024) and buckets fitted on those articles' states
  (``--sample-articles``, 600; at most ``--tokens-per-article`` of each).

Quality (MRR@10, nDCG@10 of the served order), bytes per stored token and the disk that makes
for the whole corpus (its passages' tokens at the cap), and the re-ranking stage's time: the
live pass over the 20 passages against the query's states plus MaxSim over stored int8
states held in memory (a disk read would add to it).

    python bench/stored_states.py --index ja_appi=work-out/idx_ja --index stard=work-out/idx_stard

What an index build stores (``stored_states_bits``)::

    python bench/stored_states.py --index ja_appi=work-out/idx_ja --index stard=work-out/idx_stard \
        --centroids 4096 --sample-articles 2000 --tokens-per-article 64 \
        --tokens-per-centroid 16 --bits 2 4 --dimensions 128 --name stored_states_bits

``--bundle DIR`` takes the reranker from another bundle with the same embedder, e.g. one whose
head projects the states narrower (``lexedge late-interaction --dimension 128``): its
``stored int8`` row is then what an index would store for it.

Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
RERANK = 20
PCA_SAMPLE = 600


def _int8(states: np.ndarray) -> np.ndarray:
    """``states`` as int8 with one float16 scale per token would store them, read back."""
    scale = (np.abs(states).max(axis=1, keepdims=True) / 127.0).astype(np.float16)
    scale = np.where(scale == 0, np.float16(1), scale).astype(np.float32)
    return (np.round(states / scale).astype(np.int8) * scale).astype(np.float32)


class _Residual:
    """The index's codec (``lexedge.runtime.passage_states.ResidualCodec``) as a function:
    states in, what a search reads back out."""

    def __init__(self, codec):
        self.codec = codec

    def __call__(self, states: np.ndarray) -> np.ndarray:
        return self.codec.decode(self.codec.encode(states))

    def bytes_per_token(self, width: int) -> int:
        return self.codec.record_bytes


def measure(index: Path, data: Path, dimensions: list[int], bundle: Path | None = None,
            residual_bits: tuple[int, ...] = (2, 1), centroids: int = 1024,
            sample_articles: int = PCA_SAMPLE, tokens_per_article: int = 1 << 16,
            tokens_per_centroid: int = 1) -> dict:
    from lexedge.runtime.datasets import load_qrels, load_queries
    from lexedge.runtime.fusion import interpolate
    from lexedge.runtime.metrics import mrr_at_k, ndcg_at_k
    from lexedge.runtime.onnx_models import maxsim
    from lexedge.runtime.passage_states import sample_states
    from lexedge.runtime.residual_codec import ResidualCodec
    from lexedge.runtime.searcher import Searcher
    from lexedge.runtime.settings import SearchSettings

    searcher = Searcher(index, bundle=bundle)
    reranker, cap, weight = searcher.reranker, searcher.passage_tokens, searcher.rerank_weight
    if cap is None:
        raise SystemExit(f"{index}: its bundle has no late-interaction reranker")
    queries = load_queries(data / "queries.jsonl")
    dev = load_qrels(data / "qrels" / "dev.tsv", queries)
    settings = SearchSettings()
    first = {query_id: searcher.first_stage(queries[query_id], settings) for query_id in dev}
    candidates = sorted({doc for ranked in first.values() for doc, _, _ in ranked[:RERANK]})
    texts = {doc: searcher.index.document(doc).indexed_text for doc in candidates}
    states = dict(zip(candidates, (found for found, _ in reranker.token_states(
        [texts[doc] for doc in candidates], "passage", passage_max_length=cap))))
    docs = searcher.index.docs
    sample = sample_states(reranker, [docs.get(row).indexed_text for row in range(len(docs))],
                           cap, sample_articles, tokens_per_article)
    _, singular, directions = np.linalg.svd(sample, full_matrices=False)
    width = states[candidates[0]].shape[1]
    variants = {"live": None, "stored float32": (None, False), "stored int8": (None, True),
                **{f"stored PCA {k} int8": (directions[:k].T.astype(np.float32), True)
                   for k in dimensions}}
    bytes_per_token = {"live": 0, "stored float32": 4 * width, "stored int8": width + 2,
                       **{f"stored PCA {k} int8": k + 2 for k in dimensions}}
    codecs = {f"stored residual {bits}-bit": _Residual(ResidualCodec.fit(
        sample, bits, centroids, tokens_per_centroid=tokens_per_centroid))
        for bits in residual_bits}
    for name, codec in codecs.items():
        variants[name] = (None, codec)
        bytes_per_token[name] = codec.bytes_per_token(width)
    kept = {name: {doc: (quantised if callable(quantised) else _int8 if quantised
                         else np.asarray)(found if basis is None else found @ basis)
                   for doc, found in states.items()}
            for name, (basis, quantised) in ((n, v) for n, v in variants.items() if v)}
    quality = {name: {"mrr@10": [], "ndcg@10": [], "same_top10": 0} for name in variants}
    live_ms, stored_ms = [], []
    for query_id, ranked in first.items():
        head, rest = ranked[:RERANK], [doc for doc, _, _ in ranked[RERANK:]]
        started = time.perf_counter()
        live = reranker.score(queries[query_id], [texts[doc] for doc, _, _ in head],
                              passage_max_length=cap)
        live_ms.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        query_states, query_weights = reranker.token_states([queries[query_id]], "query")[0]
        maxsim(query_states, query_weights, [kept["stored int8"][doc] for doc, _, _ in head])
        stored_ms.append((time.perf_counter() - started) * 1e3)
        orders = {}
        for name, variant in variants.items():
            if variant is None:
                scores = live
            else:
                basis = variant[0]
                scores = maxsim(query_states if basis is None else query_states @ basis,
                                query_weights, [kept[name][doc] for doc, _, _ in head])
            orders[name] = [doc for doc, _, _ in interpolate(
                [(doc, score) for doc, score, _ in head], scores, weight)] + rest
            quality[name]["mrr@10"].append(mrr_at_k(orders[name], dev[query_id], 10))
            quality[name]["ndcg@10"].append(ndcg_at_k(orders[name], dev[query_id], 10))
            quality[name]["same_top10"] += orders[name][:10] == orders["live"][:10]
    tokens = sum(len(encoding.ids) for encoding in reranker.tokenize(
        [(reranker.config.get("passage_prefix") or "") + document.indexed_text
         for document in map(searcher.index.docs.get, range(len(searcher.index.docs)))], cap))
    return {"queries": len(dev), "candidates": len(candidates), "tokens_read": cap,
            "rerank_weight": weight, "corpus_documents": len(searcher.index.docs),
            "corpus_tokens": tokens,
            "pca_energy": {str(k): round(float(np.sum(singular[:k] ** 2)
                                               / np.sum(singular ** 2)), 4) for k in dimensions},
            "variants": {name: {"mrr@10": round(float(np.mean(row["mrr@10"])), 4),
                                "ndcg@10": round(float(np.mean(row["ndcg@10"])), 4),
                                "same_top10_as_live": row["same_top10"],
                                "bytes_per_token": bytes_per_token[name],
                                "corpus_mb": round(bytes_per_token[name] * tokens / 1e6, 1)}
                         for name, row in quality.items()},
            "rerank_stage_ms": {
                "live": {f"p{q}": round(float(np.percentile(live_ms, q)), 1) for q in (50, 95)},
                "stored int8": {f"p{q}": round(float(np.percentile(stored_ms, q)), 1)
                                for q in (50, 95)}}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", action="append", required=True, metavar="DATASET=DIR",
                        help="a full index built with the built-in bundle")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--dimensions", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--bundle", type=Path, help="the reranker's bundle (default: the "
                        "index's)")
    parser.add_argument("--centroids", type=int, default=1024,
                        help="the residual compression's centroids")
    parser.add_argument("--sample-articles", type=int, default=PCA_SAMPLE,
                        help="random articles whose states fit the PCA and the centroids")
    parser.add_argument("--tokens-per-article", type=int, default=1 << 16,
                        help="random tokens of each sampled article kept at most (an index "
                             "build keeps 64)")
    parser.add_argument("--tokens-per-centroid", type=int, default=1,
                        help="sampled tokens per centroid at least (an index build: 16)")
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 1],
                        help="the residual compressions' bits a dimension")
    parser.add_argument("--name", default="stored_states")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "bundle": str(args.bundle or "the index's"), "centroids": args.centroids,
               "sample_articles": args.sample_articles, "datasets": {}}
    lines = ["# Re-ranking from passage states stored at index time: quality, disk, time", "",
             f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Each "
             f"dataset's **full** corpus and dev questions, the bundle {results['bundle']}, "
             "the top "
             f"{RERANK} of `lexedge search`'s first stage re-scored; one process. PCA and "
             f"{args.centroids:,} residual centroids fitted on {args.sample_articles:,} "
             "random articles' states."]
    for spec in args.index:
        name, _, path = spec.partition("=")
        row = results["datasets"][name] = measure(
            Path(path), args.data / name, args.dimensions, args.bundle,
            residual_bits=tuple(args.bits), centroids=args.centroids,
            sample_articles=args.sample_articles, tokens_per_article=args.tokens_per_article,
            tokens_per_centroid=args.tokens_per_centroid)
        stage = row["rerank_stage_ms"]
        lines += ["", f"## {name}: {row['queries']} questions, {row['candidates']} distinct "
                  f"candidates, passages read to {row['tokens_read']} tokens, weight "
                  f"{row['rerank_weight']}", "",
                  f"The corpus: {row['corpus_documents']:,} documents, "
                  f"{row['corpus_tokens']:,} tokens at that cap. Re-ranking stage p50 / p95: "
                  f"live {stage['live']['p50']} / {stage['live']['p95']} ms, stored int8 "
                  f"(the query's states and MaxSim) **{stage['stored int8']['p50']} / "
                  f"{stage['stored int8']['p95']} ms**. Share of the states' energy the PCA "
                  f"keeps: {', '.join(f'{k}: {v}' for k, v in row['pca_energy'].items())}.",
                  "", "| states | MRR@10 | nDCG@10 | same top 10 as live | bytes per token | "
                  "the corpus's states, MB |", "|---|---|---|---|---|---|"]
        for variant, cells in row["variants"].items():
            lines.append(f"| {variant} | {cells['mrr@10']:.4f} | {cells['ndcg@10']:.4f} | "
                         f"{cells['same_top10_as_live'] if variant != 'live' else '-'} / "
                         f"{row['queries']} | {cells['bytes_per_token']} | "
                         f"{cells['corpus_mb']:,} |")
    lines += ["", "Reproduce: the command in `bench/stored_states.py`'s docstring."]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
