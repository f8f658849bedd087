"""The embedder as a curriculum *model family*: how it loads, which examples and negatives each
stage trains on, how a batch becomes a loss, and how it is saved and evaluated.

The curriculum (:mod:`lexedge.trainer.curriculum`) owns everything else — stage order, LoRA
stacking, checkpoints, resume, progress, devices — so the reranker of issue #4 is another
family with the same methods (:mod:`lexedge.trainer.reranker.family`: a cross-encoder
backbone with a one-logit head, pairs scored jointly, a listwise loss) and reuses all of it.

Negatives per stage (2602.00805, section 2; 2412.13205's BM25 then model-mined phases):

* ``bm25``: the lexical top ranks of the query (lexedge's own BM25 and analyzer), judged
  positives removed.
* ``model``: ranks ``rank_window`` of the previous stage's model, judged positives and
  candidates scoring within ``false_negative_margin`` of the positive removed.
* ``model-refresh``: the same, re-mined with the current model before every epoch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lexedge.runtime.evaluation import EvalConfig
from lexedge.trainer.backbone import load_backbone, load_tokenizer
from lexedge.trainer.data import Example, TrainingData
from lexedge.trainer.embedder.model import Embedder, tokenize
from lexedge.trainer.embedder.retriever import embedder_rankings
from lexedge.trainer.family import Family
from lexedge.trainer.losses import InfoNCELoss
from lexedge.trainer.stage import EncoderSettings


class EmbedderFamily(Family):
    """Bi-encoder retriever trained with InfoNCE over in-batch and hard negatives.

    Args:
        config: the run's :class:`~lexedge.trainer.config.TrainEmbedderConfig`.
        data: corpus, queries and training judgments.
        device: where models live.
    """

    name = "embedder"

    def __init__(self, config, data: TrainingData, device):
        super().__init__(config, data, device)
        self.settings: EncoderSettings | None = None
        self.tokenizer = None

    # -- models ---------------------------------------------------------------------------
    def load_backbone(self, folder: Path, *, load_in_4bit: bool = False, device=None):
        return load_backbone(folder, load_in_4bit=load_in_4bit, device=device or self.device)

    def wrap(self, backbone, chain: list[Path]) -> Embedder:
        """The trainable module around a (possibly peft-wrapped) backbone."""
        self.settings = EncoderSettings.read(chain)
        self.tokenizer = load_tokenizer(chain)
        return Embedder(backbone, self.settings).to(self.device)

    # -- negatives ------------------------------------------------------------------------
    def model_rankings(self, examples, stage, model, model_key):
        return embedder_rankings(self.data, self.runtime, model, self.tokenizer, examples,
                                 depth=stage.rank_window[1],
                                 query_length=stage.max_query_length,
                                 passage_length=stage.max_passage_length, model_key=model_key)

    # -- batches and loss -----------------------------------------------------------------
    def _batch(self, group: list[Example], stage, rng) -> dict:
        passages, passage_ids = [], []
        for example in group:
            passages.append(self.data.passage(example.positive, example.kind))
            passage_ids.append(example.positive)
        for example in group:
            for doc_id in self.sample_negatives(example, stage.hard_negatives,
                                                stage.random_negatives, rng):
                passages.append(self.data.passage(doc_id, example.kind))
                passage_ids.append(doc_id)
        exclude = [[doc_id in example.judged for doc_id in passage_ids] for example in group]
        return {"queries": [e.query for e in group], "passages": passages,
                "targets": list(range(len(group))), "exclude": exclude,
                "kind": group[0].kind}

    def compute_loss(self, model, batch: dict, stage) -> torch.Tensor:
        settings, tokenizer = self.settings, self.tokenizer
        queries = tokenize(tokenizer, [settings.query_prefix + q for q in batch["queries"]],
                           stage.max_query_length, self.device)
        passages = tokenize(tokenizer, [settings.passage_prefix + p for p in batch["passages"]],
                            stage.max_passage_length, self.device)
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            # DDP synchronises gradients of one forward: run queries and passages together.
            vectors = model(**_stack(queries, passages, tokenizer.pad_token_id))
            query_vectors, passage_vectors = vectors[:len(batch["queries"])], \
                vectors[len(batch["queries"]):]
        else:
            query_vectors, passage_vectors = model(**queries), model(**passages)
        loss = InfoNCELoss(stage.temperature)
        return loss(query_vectors, passage_vectors,
                    torch.tensor(batch["targets"], device=self.device),
                    torch.tensor(batch["exclude"], dtype=torch.bool, device=self.device))

    # -- saving and evaluation ------------------------------------------------------------
    def save_full(self, module: Embedder, out_dir: Path) -> None:
        module.backbone.save_pretrained(str(out_dir), safe_serialization=True)

    def peft_model(self, module: Embedder):
        return module.backbone

    def evaluation_config(self, model_dir: Path):
        """Exact dense retrieval with the stage in torch (``lexedge eval --method dense
        --model DIR``)."""
        evaluation = self.config.evaluation
        return EvalConfig(data_dir=self.config.data_dir, split=evaluation.split, method="dense",
                          model=str(model_dir), extra={
                              "device": str(self.device.type),
                              "batch_size": self.runtime.encode_batch_size,
                              "max_query_length": evaluation.max_query_length,
                              "max_passage_length": evaluation.max_passage_length,
                              "progress": self.runtime.progress})


def _stack(first: dict, second: dict, pad_id: int) -> dict:
    width = max(first["input_ids"].shape[1], second["input_ids"].shape[1])

    def pad(batch, key, value):
        tensor = batch[key]
        return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)

    return {"input_ids": torch.cat([pad(first, "input_ids", pad_id),
                                    pad(second, "input_ids", pad_id)]),
            "attention_mask": torch.cat([pad(first, "attention_mask", 0),
                                         pad(second, "attention_mask", 0)])}
