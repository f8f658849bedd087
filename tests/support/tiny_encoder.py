"""A tiny random BERT with a word-level tokenizer built over a synthetic legal corpus, and the
BEIR folder it trains on: enough to run every trainer phase in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TOPICS = ["contract", "lease", "tax", "labour", "privacy", "traffic", "inherit", "patent"]
FILLER = [f"w{i}" for i in range(60)]


def _write_jsonl(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")


def build_tiny_dataset(root: Path, documents: int = 48, seed: int = 0) -> Path:
    """Articles about topics; each query shares its article's rare words."""
    rng = np.random.default_rng(seed)
    corpus, queries, train, dev = [], [], [], []
    for i in range(documents):
        topic = TOPICS[i % len(TOPICS)]
        words = list(rng.choice(FILLER, size=12))
        corpus.append({"id": f"d{i}", "title": f"{topic} law article {i}",
                       "text": " ".join([topic] + words)})
        if i < 32:
            query_words = " ".join([topic] + words[:4])
            queries.append({"id": f"q{i}", "text": query_words})
            (dev if i % 4 == 3 else train).append((f"q{i}", f"d{i}"))
            if i % 5 == 0 and i + 8 < documents:  # some queries have two positives
                (dev if i % 4 == 3 else train).append((f"q{i}", f"d{i + 8}"))
    _write_jsonl(root / "corpus.jsonl", corpus)
    _write_jsonl(root / "queries.jsonl", queries)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    for split, pairs in (("train", train), ("dev", dev)):
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in pairs),
            encoding="utf-8")
    return root


def build_tiny_encoder(out_dir: Path, data_dir: Path, seed: int = 0, hidden: int = 32,
                       layers: int = 2) -> Path:
    """A random ``BertModel`` (no pooler) + word-level tokenizer + ``lexedge_model.json``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = set()
    for name in ("corpus.jsonl", "queries.jsonl"):
        for line in (data_dir / name).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            words.update((record.get("title", "") + " " + record["text"]).split())
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "query:", "passage:"]
    vocabulary = {token: i for i, token in enumerate(specials + sorted(words))}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]",
                                   unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   mask_token="[MASK]", model_max_length=64)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocabulary), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2,
                        max_position_embeddings=64, pad_token_id=0)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(out_dir))
    (out_dir / "lexedge_model.json").write_text(json.dumps({
        "format": "lexedge-base-model/1", "name": "tiny-bert", "pooling": "mean",
        "normalize": True, "query_prefix": "query: ", "passage_prefix": "passage: ",
        "max_length": 64}), encoding="utf-8")
    return out_dir


def tiny_config_overrides(data_dir: Path, model_dir: Path, output_dir: Path) -> list[str]:
    """``--set`` overrides for a run of every phase in a few seconds."""
    common = ["batch_size=4", "max_passage_length=32", "max_query_length=16",
              "negatives_pool=4", "learning_rate=0.001"]
    overrides = [f'data_dir="{data_dir}"', f'output_dir="{output_dir}"',
                 f'base_model="{model_dir}"', "seed=7", "lora.r=4", "lora.alpha=8",
                 "runtime.progress=false", "runtime.checkpoint_every=2", "runtime.threads=1",
                 "evaluation.max_passage_length=32", "evaluation.max_query_length=16",
                 "mlm.steps=3", "mlm.batch_size=4", "mlm.max_length=32",
                 "stage1.steps=4", "stage1.weak_pairs=8", "stage1.rank_window=[0, 10]",
                 "stage2.steps=4", "stage2.rank_window=[2, 20]",
                 "stage3.epochs=2", "stage3.examples_per_epoch=8",
                 "stage3.rank_window=[1, 20]"]
    for stage in ("stage1", "stage2", "stage3"):
        overrides += [f"{stage}.{item}" for item in common]
    return overrides


def train_tiny_reranker(data_dir: Path, model_dir: Path, output_dir: Path, *overrides: str):
    """Run the tiny reranker curriculum (no mlm, no stage-3 overrides of the embedder's) with
    ``overrides`` on top; return ``(summary, config)``."""
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.reranker.family import RerankerFamily

    base = [o for o in tiny_config_overrides(data_dir, model_dir, output_dir)
            if not o.startswith(("mlm.", "stage3."))]
    config = load_config(TrainRerankerConfig, None, base + list(overrides))
    return Curriculum(config, RerankerFamily, log=lambda line: None).run(), config
