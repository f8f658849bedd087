"""Zero-shot check behind the reranker's ``segments`` head: multilingual-e5-small's first N
layers, untrained, score a pair by the cosine of the mean of the query's tokens and the mean of
the passage's tokens in one joint encoding (``lexedge.trainer.reranker.model``'s own
``segment_cosine_logits``), re-ranking BM25's top 20 for the first Q dev queries of the STARD
subset of ``bench/embedder_curriculum_stard.py``.

    python bench/segments_zero_shot_stard.py --layers 4 --queries 30

Prints MRR@10 / nDCG@10 of that order and of BM25's own order, measured on the same queries.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUBSET = REPO / "work-out" / "embedder_curriculum_stard_full" / "stard_subset"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--data", type=Path, default=SUBSET)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--split-layer", type=int, default=0,
                        help="encode the query and the passage apart through the first N "
                             "layers and jointly through the rest (PreTTR-style; N = --layers "
                             "is the bi-encoder itself); 0: joint throughout")
    parser.add_argument("--encoder", type=Path, default=None,
                        help="a trained embedder stage folder, merged and used instead of the "
                             "untrained base (its first --layers layers)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from lexedge.runtime.analysis import get_analyzer
    from lexedge.runtime.bm25 import BM25Index
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.metrics import evaluate
    from lexedge.trainer.lora import resolve_model
    from lexedge.trainer.reranker.model import segment_cosine_logits
    from lexedge.trainer.stage import EncoderSettings

    torch.set_num_threads(2)
    base = resolve_model("default")
    if args.encoder is None:
        config = AutoConfig.from_pretrained(str(base))
        config.num_hidden_layers = args.layers
        encoder = AutoModel.from_pretrained(str(base), config=config,
                                            add_pooling_layer=False).eval()
    else:
        from lexedge.export.merge import load_merged

        encoder = load_merged(args.encoder, "embedder").model
        encoder.encoder.layer = encoder.encoder.layer[:args.layers]
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    settings = EncoderSettings.read([base])  # E5's "query: " / "passage: " prefixes
    dataset = BeirDataset(args.data)
    documents = {doc.id: doc for doc in dataset.corpus()}
    queries = dataset.queries()
    qrels = dataset.qrels("dev", query_ids=queries, doc_ids=documents)
    query_ids = sorted(qrels)[:args.queries]
    bm25 = BM25Index.build(iter(documents.values()), get_analyzer("zh"))
    reranked, lexical = {}, {}
    with torch.no_grad():
        for query_id in query_ids:
            candidates = [doc for doc, _ in bm25.search(queries[query_id], args.candidates)]
            batch = tokenizer([settings.query_prefix + queries[query_id]] * len(candidates),
                              [settings.passage_prefix + documents[d].indexed_text
                               for d in candidates],
                              max_length=128, truncation="longest_first", padding=True,
                              return_tensors="pt")
            if args.split_layer:
                scores = split_scores(encoder, tokenizer, settings, queries[query_id],
                                      [documents[d].indexed_text for d in candidates],
                                      args.split_layer)
            else:
                scores = segment_cosine_logits(encoder, batch["input_ids"],
                                               batch["attention_mask"],
                                               sep_token_id=tokenizer.sep_token_id,
                                               temperature=1.0)
            reranked[query_id] = sorted(zip(candidates, scores.tolist()), key=lambda x: -x[1])
            lexical[query_id] = [(d, float(-rank)) for rank, d in enumerate(candidates)]
    judged = {q: qrels[q] for q in query_ids}
    shown = ("mrr@10", "ndcg@10")
    print(json.dumps({"layers": args.layers, "split_layer": args.split_layer,
                      "encoder": str(args.encoder or "multilingual-e5-small"),
                      "queries": len(query_ids),
                      "segments_zero_shot": {m: round(evaluate(reranked, judged)[m], 4)
                                             for m in shown},
                      "bm25_order": {m: round(evaluate(lexical, judged)[m], 4) for m in shown}}))
    return 0


def split_scores(encoder, tokenizer, settings, query: str, passages: list[str], split: int):
    """Cosine of the query's and the passage's token means (special tokens included, as the
    embedder pools) after ``split`` layers apart (query 32, passage 96 tokens) and the
    remaining layers over the two joined."""
    import torch

    from lexedge.trainer.backbone import masked_mean

    def encode(texts, length):
        return tokenizer(texts, max_length=length, truncation=True, padding=True,
                         return_tensors="pt")

    def run(layers, hidden, mask):
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * \
            torch.finfo(hidden.dtype).min
        for layer in layers:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    q = encode([settings.query_prefix + query] * len(passages), 32)
    p = encode([settings.passage_prefix + text for text in passages], 96)
    lower, upper = encoder.encoder.layer[:split], encoder.encoder.layer[split:]
    hq = run(lower, encoder.embeddings(input_ids=q["input_ids"]), q["attention_mask"])
    hp = run(lower, encoder.embeddings(input_ids=p["input_ids"]), p["attention_mask"])
    mask = torch.cat([q["attention_mask"], p["attention_mask"]], dim=1)
    joint = run(upper, torch.cat([hq, hp], dim=1), mask)
    width = q["input_ids"].shape[1]
    return torch.nn.functional.cosine_similarity(
        masked_mean(joint[:, :width], q["attention_mask"]),
        masked_mean(joint[:, width:], p["attention_mask"]), dim=-1)


if __name__ == "__main__":
    raise SystemExit(main())
