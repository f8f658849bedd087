"""Export benchmark (issue #5): torch FP32 vs ONNX FP32 vs ONNX INT8, measured side by side in
one run, for the embedder (passages/s) and the reranker (scored pairs/s).

* Two bundles are exported from the same stages, one ``--fp32`` and one ``--int8``
  (reused when they already exist with the same sources).
* Throughput at the corpus's real length distribution (the bundle's max length, dynamic
  padding, length-sorted batches of 32) and at exactly 128 tokens (articles of at least 128
  tokens, truncated to 128). The three engines run in interleaved rounds and each ratio is
  the median over rounds, so a noisy neighbour hits all three alike.
* File sizes, and the parity measured by the INT8 export (its gates).
* Retrieval quality of the served path: dense Recall@100 on STARD dev with the FP32 and
  the INT8 embedder over the same corpus (``--quality-corpus`` articles: every dev-judged
  article plus seeded random distractors; the full 58,513 takes over an hour per precision
  on 2 cores).

    python bench/export_int8.py [--reranker RUN/stageN | --selection selection.json]
        [--work work-out/export_int8] [--rounds 3] [--quality-corpus 4000]

Writes ``bench/results/export_int8.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STARD = REPO.parent / "shared" / "data" / "stard"


def export(out: Path, precision: str, embedder: str, reranker: str | None,
           calibration: Path) -> Path:
    from lexedge.export.bundle import ExportConfig, export_bundle

    manifest = out / "manifest.json"
    wanted = {"embedder": embedder, "reranker": reranker, "precision": precision}
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())["export"]["config"]
        if all(str(recorded.get(k)) == str(v) for k, v in wanted.items()):
            return out
        raise SystemExit(f"{out}: holds another export; remove it or pass another --work")
    export_bundle(ExportConfig(out=out, embedder=embedder, reranker=reranker,
                               precision=precision, calibration=calibration),
                  log=lambda line: print(line, flush=True))
    return out


def sample_articles(count: int, seed: int) -> list[str]:
    from lexedge.runtime.datasets import BeirDataset

    documents = [doc.indexed_text for doc in BeirDataset(STARD).corpus()]
    rng = np.random.default_rng(seed)
    return [documents[i] for i in sorted(rng.choice(len(documents), count, replace=False))]


def long_articles(texts: list[str], tokenizer, prefix: str, count: int,
                  length: int = 128) -> list[str]:
    """The first ``count`` texts of at least ``length`` tokens (with the prefix)."""
    return [t for t in texts if len(tokenizer.encode(prefix + t).ids) >= length][:count]


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", default="default")
    parser.add_argument("--reranker", help="reranker stage folder")
    parser.add_argument("--selection", type=Path, help="selection.json naming both stages")
    parser.add_argument("--work", type=Path, default=REPO / "work-out" / "export_int8")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quality-corpus", type=int, default=4000,
                        help="articles in the Recall@100 corpus (0: skip the quality check)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from tokenizers import Tokenizer

    from lexedge.export.merge import EMBEDDER, RERANKER
    from lexedge.runtime.bundle import Bundle
    from lexedge.trainer.provenance import hardware

    torch.set_num_threads(os.cpu_count() or 1)
    embedder, reranker = args.embedder, args.reranker
    if args.selection:
        from lexedge.trainer.selection.select import read_selection

        selection = read_selection(args.selection)
        embedder = selection["embedder"]["path"]
        reranker = (selection["reranker"] or {}).get("path")
    started = time.perf_counter()
    bundles = {p: Bundle.load(export(args.work / f"bundle-{p}", p, embedder, reranker, STARD))
               for p in ("fp32", "int8")}
    export_seconds = round(time.perf_counter() - started, 1)

    texts = sample_articles(max(args.passages * 4, 1024), args.seed)
    results: dict = {"embedder": {}, "reranker": {}}
    kinds = [(EMBEDDER, embedder)] + ([(RERANKER, reranker)] if reranker else [])
    for kind, spec in kinds:
        settings = bundles["fp32"].manifest[kind]  # prefixes and lengths, as exported
        forward = torch_forward(spec, kind)
        measure = Tokenizer.from_file(str(bundles["fp32"].path / settings["tokenizer"]))
        prefix = settings["passage_prefix"] or ""
        long_texts = long_articles(texts, measure, prefix,
                                   args.passages if kind == EMBEDDER else args.pairs)
        if kind == EMBEDDER:
            items = {"real": texts[:args.passages], "128": long_texts}
        else:
            queries = sample_queries(args.pairs, args.seed)
            items = {"real": list(zip(queries, texts[:args.pairs])),
                     "128": list(zip(queries, long_texts))}
        for setting, batch in items.items():
            length = int(settings["max_length"]) if setting == "real" else 128
            models = {name: onnx_model(bundles[name.split("-")[1]], kind, length)
                      for name in ("onnx-fp32", "onnx-int8")}
            runs = {name: [] for name in ("torch-fp32", *models)}
            for _ in range(args.rounds):
                runs["torch-fp32"].append(len(batch) / timed(lambda: torch_run(
                    forward, models["onnx-fp32"], kind, batch)))
                for name, model in models.items():
                    runs[name].append(len(batch) / timed(lambda: onnx_run(model, kind, batch)))
            row = {name: round(statistics.median(v), 2) for name, v in runs.items()}
            row["int8_vs_torch"] = round(statistics.median(
                i / t for i, t in zip(runs["onnx-int8"], runs["torch-fp32"])), 2)
            row["int8_vs_onnx_fp32"] = round(statistics.median(
                i / f for i, f in zip(runs["onnx-int8"], runs["onnx-fp32"])), 2)
            row["items"] = len(batch)
            row["max_length"] = length
            results[kind][setting] = row
            print(kind, setting, row, flush=True)
            del models
        del forward
    sizes = {}
    for kind in ("embedder", "reranker"):
        entries = {p: b.manifest.get(kind) for p, b in bundles.items()}
        if entries["int8"]:
            fp32 = (bundles["fp32"].path / entries["fp32"]["file"]).stat().st_size
            int8 = (bundles["int8"].path / entries["int8"]["file"]).stat().st_size
            sizes[kind] = {"fp32_bytes": fp32, "int8_bytes": int8,
                           "smaller": round(fp32 / int8, 2)}
            results[kind]["parity"] = entries["int8"]["parity"]
    results["sizes"] = sizes
    if args.quality_corpus:
        results["quality"] = quality(bundles, args.work, args.quality_corpus, args.seed)
    results["setup"] = {"embedder": embedder, "reranker": reranker,
                        "bundles": {p: str(b.path) for p, b in bundles.items()},
                        "rounds": args.rounds, "hardware": hardware(),
                        "export_seconds": export_seconds,
                        "command": "python bench/export_int8.py" + (
                            f" --selection {args.selection}" if args.selection else
                            (f" --reranker {reranker}" if reranker else ""))}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_result(args.out / "export_int8.json", results)
    markdown = render(results)
    write_markdown_result(args.out / "export_int8.md", markdown)
    print(markdown)
    return 0


def sample_queries(count: int, seed: int) -> list[str]:
    from lexedge.runtime.datasets import BeirDataset

    queries = list(BeirDataset(STARD).queries().values())
    rng = np.random.default_rng(seed)
    return [queries[int(i)] for i in rng.integers(len(queries), size=count)]


def torch_forward(spec: str, kind: str):
    """The model as the trainer runs it in torch FP32 (default SDPA attention), as a
    function of ``(input_ids, attention_mask, token_type_ids)``."""
    from lexedge.trainer.embedder.model import Embedder
    from lexedge.trainer.lora import load_stage_backbone
    from lexedge.trainer.stage import EncoderSettings

    if kind == "embedder":
        backbone, chain = load_stage_backbone(spec)
        module = Embedder(backbone, EncoderSettings.read(chain)).eval()
        return lambda ids, mask, types: module(ids, mask)
    from lexedge.trainer.reranker.model import CrossEncoder, load_cross_encoder

    model, chain = load_stage_backbone(spec, loader=load_cross_encoder)
    module = CrossEncoder(model, EncoderSettings.read(chain)).eval()
    return lambda ids, mask, types: module(input_ids=ids, attention_mask=mask,
                                           token_type_ids=types)


def torch_run(forward, served, kind: str, items: list) -> None:
    """Torch FP32 on exactly the batches the runtime makes (``served``'s tokenizer, prefixes
    and length-sorted dynamic batching): 32 passages or 16 pairs per batch."""
    import torch

    from lexedge.runtime.onnx_models import SORT_WINDOW

    query_prefix = served.config.get("query_prefix") or ""
    passage_prefix = served.config.get("passage_prefix") or ""
    if kind == "embedder":
        inputs, size = [passage_prefix + t for t in items], 32
    else:
        inputs, size = [(query_prefix + q, passage_prefix + p) for q, p in items], 16
    with torch.inference_mode():
        for window in range(0, len(inputs), SORT_WINDOW):
            encodings = served.tokenize(inputs[window:window + SORT_WINDOW])
            for _rows, feeds in served.batches(encodings, size):
                tensors = {name: torch.from_numpy(array) for name, array in feeds.items()}
                forward(tensors["input_ids"], tensors["attention_mask"],
                        tensors.get("token_type_ids"))


def onnx_model(bundle, kind: str, length: int):
    from lexedge.runtime.onnx_models import OnnxEmbedder, OnnxReranker

    entry = dict(bundle.manifest[kind])
    entry["max_length"] = length
    cls = OnnxEmbedder if kind == "embedder" else OnnxReranker
    return cls(bundle.path / entry["file"], bundle.path / entry["tokenizer"], entry)


def onnx_run(model, kind: str, items: list) -> None:
    if kind == "embedder":
        model.encode(items, kind="passage", batch_size=32)
    else:
        by_query: dict[str, list[str]] = {}
        for query, passage in items:
            by_query.setdefault(query, []).append(passage)
        for query, passages in by_query.items():
            model.score(query, passages, batch_size=16)


def quality(bundles: dict, work: Path, corpus_size: int, seed: int) -> dict:
    """Dense Recall@100 (served path: index + Searcher) with each precision's embedder over
    the same corpus sample."""
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.evaluation import EvalConfig, run_evaluation
    from lexedge.runtime.index import Index
    from lexedge.runtime.storage import atomic_directory

    dataset = BeirDataset(STARD)
    dev = dataset.qrels("dev")
    judged = {d for rels in dev.values() for d in rels}
    folder = work / f"stard-dev-{corpus_size}"
    if not (folder / "corpus.jsonl").is_file():
        lines = [line for line in dataset.corpus_path.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
        ids = [json.loads(line)["id"] for line in lines]
        others = [i for i, d in enumerate(ids) if d not in judged]
        rng = np.random.default_rng(seed)
        picked = set(rng.choice(others, max(0, corpus_size - len(judged)), replace=False))
        with atomic_directory(folder) as staging:
            (staging / "corpus.jsonl").write_text(
                "".join(line + "\n" for i, line in enumerate(lines)
                        if ids[i] in judged or i in picked), encoding="utf-8")
            (staging / "queries.jsonl").write_text(
                dataset.root.joinpath("queries.jsonl").read_text(encoding="utf-8"),
                encoding="utf-8")
            (staging / "qrels").mkdir()
            (staging / "qrels" / "dev.tsv").write_text(
                dataset.qrels_path("dev").read_text(encoding="utf-8"), encoding="utf-8")
    out = {}
    for precision, bundle in bundles.items():
        index_dir = work / f"index-{precision}-{corpus_size}"
        started = time.perf_counter()
        if not (index_dir / "manifest.json").is_file():
            Index.build(folder / "corpus.jsonl", index_dir, bundle=bundle, progress=True)
        metrics, _ = run_evaluation(EvalConfig(data_dir=str(folder), split="dev",
                                               method="dense", index=str(index_dir),
                                               bundle=str(bundle.path)))
        out[precision] = {k: metrics[k] for k in ("recall@10", "recall@100", "mrr@10",
                                                  "ndcg@10", "queries")}
        out[precision]["seconds"] = round(time.perf_counter() - started, 1)
    out["corpus"] = {"articles": sum(1 for _ in (folder / "corpus.jsonl").open()),
                     "dev_judged": len(judged), "seed": seed}
    out["recall@100_difference_points"] = round(
        100 * (out["int8"]["recall@100"] - out["fp32"]["recall@100"]), 2)
    return out


def render(results: dict) -> str:
    lines = ["# Export: torch FP32 vs ONNX FP32 vs ONNX INT8", "",
             "Measured side by side in one run (interleaved rounds, median); throughput in "
             "items/s on this machine's "
             f"{results['setup']['hardware']['cpu_count']} cores. Targets: INT8 >= 2x torch "
             "FP32, >= 3.5x smaller, parity gates met.", "",
             "| model | inputs | torch FP32 | ONNX FP32 | ONNX INT8 | INT8 / torch | "
             "INT8 / ONNX FP32 |", "|---|---|---|---|---|---|---|"]
    for kind, unit in (("embedder", "passages/s"), ("reranker", "pairs/s")):
        for setting, row in results[kind].items():
            if setting == "parity":
                continue
            label = "real lengths" if setting == "real" else "128 tokens"
            lines.append(f"| {kind} ({unit}) | {label}, {row['items']} | {row['torch-fp32']} | "
                         f"{row['onnx-fp32']} | {row['onnx-int8']} | **{row['int8_vs_torch']}x**"
                         f" | {row['int8_vs_onnx_fp32']}x |")
    lines += ["", "| model | FP32 MB | INT8 MB | smaller |", "|---|---|---|---|"]
    for kind, size in results["sizes"].items():
        lines.append(f"| {kind} | {size['fp32_bytes'] / 1e6:.1f} | {size['int8_bytes'] / 1e6:.1f}"
                     f" | **{size['smaller']}x** |")
    lines += ["", "Parity of the INT8 export against its FP32 graph (calibration: STARD):", ""]
    for kind in ("embedder", "reranker"):
        parity = results[kind].get("parity")
        if parity:
            for gate in parity["gates"]:
                value = "not measured" if gate["value"] is None else f"{gate['value']:.4f}"
                lines.append(f"- {kind}: {gate['gate']} {value} "
                             f"{gate['comparison']} {gate['threshold']} — "
                             f"{'passed' if gate['passed'] else 'FAILED'}")
    quality_row = results.get("quality")
    if quality_row:
        corpus = quality_row["corpus"]
        lines += ["", f"Served dense retrieval on STARD dev over {corpus['articles']:,} "
                  f"articles (all {corpus['dev_judged']} dev-judged + seeded distractors):", "",
                  "| embedder | R@10 | R@100 | MRR@10 | nDCG@10 |", "|---|---|---|---|---|"]
        for precision in ("fp32", "int8"):
            row = quality_row[precision]
            lines.append(f"| {precision} | {row['recall@10']:.4f} | {row['recall@100']:.4f} | "
                         f"{row['mrr@10']:.4f} | {row['ndcg@10']:.4f} |")
        lines += ["", f"INT8 - FP32 Recall@100: "
                  f"**{quality_row['recall@100_difference_points']:+.2f} points**."]
    lines += ["", f"Reproduce: `{results['setup']['command']}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
