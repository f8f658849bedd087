"""BM25 on STARD: lexedge's analyzer + index beside plain ``bm25s`` with its default tokenizer,
measured in the same process so the ratios are fair on a noisy machine.

Reports index build time, index size on disk, queries/second (all 1,235 questions) and dev
quality for both, and the ratios lexedge / plain.

    python bench/bm25_stard.py [--data ../shared/data/stard] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import bm25s

from lexedge.runtime.datasets import BeirDataset
from lexedge.runtime.index import Index
from lexedge.runtime.metrics import evaluate

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure_lexedge(dataset: BeirDataset, workdir: Path, queries: dict, qrels: dict) -> dict:
    started = time.perf_counter()
    Index.build(dataset.corpus_path, workdir / "lexedge", progress=False)
    build_seconds = time.perf_counter() - started
    # Size of what search needs: the BM25 arrays and ids (the document store is reported apart).
    bm25_bytes = folder_size(workdir / "lexedge" / "bm25")
    index = Index.load(workdir / "lexedge")
    texts = list(queries.values())
    started = time.perf_counter()
    rankings = index.bm25.search_many(texts, 200)
    search_seconds = time.perf_counter() - started
    run = dict(zip(queries, rankings))
    return {"build_seconds": build_seconds, "index_bytes": bm25_bytes,
            "docstore_bytes": folder_size(workdir / "lexedge") - bm25_bytes,
            "queries_per_second": len(texts) / search_seconds,
            "dev": evaluate({q: run[q] for q in qrels}, qrels),
            "analyzer": index.manifest["analyzer"]}


def measure_plain_bm25s(dataset: BeirDataset, workdir: Path, queries: dict, qrels: dict) -> dict:
    started = time.perf_counter()
    documents = list(dataset.corpus())
    doc_ids = [d.id for d in documents]
    tokens = bm25s.tokenize([d.indexed_text for d in documents], show_progress=False)
    retriever = bm25s.BM25(k1=1.2, b=0.75)
    retriever.index(tokens, show_progress=False)
    retriever.save(workdir / "plain", show_progress=False)
    (workdir / "plain" / "doc_ids.json").write_text(json.dumps(doc_ids))
    build_seconds = time.perf_counter() - started
    del documents
    texts = list(queries.values())
    started = time.perf_counter()
    query_tokens = bm25s.tokenize(texts, show_progress=False, return_ids=False)
    rows, scores = retriever.retrieve(query_tokens, k=200, show_progress=False, n_threads=1)
    search_seconds = time.perf_counter() - started
    run = {q: [(doc_ids[int(i)], float(s)) for i, s in zip(r, sc) if s > 0]
           for q, r, sc in zip(queries, rows, scores)}
    return {"build_seconds": build_seconds, "index_bytes": folder_size(workdir / "plain"),
            "queries_per_second": len(texts) / search_seconds,
            "dev": evaluate({q: run[q] for q in qrels}, qrels),
            "analyzer": "bm25s.tokenize default (\\w\\w+ words, no stopwords)"}


def render_markdown(result: dict) -> str:
    lex, plain, ratio = result["lexedge"], result["plain_bm25s"], result["ratio_lexedge_over_plain"]
    rows = [
        ("index build (s)", f"{lex['build_seconds']:.1f}", f"{plain['build_seconds']:.1f}",
         f"{ratio['build_seconds']:.2f}"),
        ("index size (MB)", f"{lex['index_bytes'] / 1e6:.1f}", f"{plain['index_bytes'] / 1e6:.1f}",
         f"{ratio['index_bytes']:.2f}"),
        ("queries/s", f"{lex['queries_per_second']:.0f}", f"{plain['queries_per_second']:.0f}",
         f"{ratio['queries_per_second']:.2f}"),
    ]
    for metric in ("recall@10", "recall@100", "mrr@10", "ndcg@10"):
        rows.append((f"dev {metric}", f"{lex['dev'][metric]:.4f}", f"{plain['dev'][metric]:.4f}",
                     f"{lex['dev'][metric] / max(plain['dev'][metric], 1e-9):.2f}"))
    lines = [f"# BM25 on STARD ({result['corpus_documents']:,} articles)", "",
             f"Measured in one run on {result['machine']}; "
             f"{result['queries']} queries timed, dev = {result['dev_queries']} judged queries.",
             "", "| | lexedge (zh analyzer) | plain bm25s | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", f"lexedge's document store (for titles and snippets) adds "
                  f"{lex['docstore_bytes'] / 1e6:.1f} MB.",
              "Reproduce: `python bench/bm25_stard.py`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/stard")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    dataset = BeirDataset(args.data)
    queries = dataset.queries()
    qrels = dataset.qrels("dev")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        lexedge = measure_lexedge(dataset, workdir, queries, qrels)
        plain = measure_plain_bm25s(dataset, workdir, queries, qrels)
    keys = ("build_seconds", "index_bytes", "queries_per_second")
    result = {
        "corpus_documents": sum(1 for _ in dataset.corpus()), "queries": len(queries),
        "dev_queries": len(qrels), "machine": f"{platform.machine()}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}, "
        f"bm25s {bm25s.__version__}",
        "lexedge": lexedge, "plain_bm25s": plain,
        "ratio_lexedge_over_plain": {k: lexedge[k] / plain[k] for k in keys},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_result(args.out / "bm25_stard.json", result)
    markdown = render_markdown(result)
    write_markdown_result(args.out / "bm25_stard.md", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
