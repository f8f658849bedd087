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

A ``model`` stage may mine with an exported bundle instead (``mining_bundle``): onnxruntime
INT8, so a large model trained on CPU borrows a small model's fast mining.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lexedge.runtime.evaluation import EvalConfig
from lexedge.trainer.backbone import load_backbone, load_tokenizer
from lexedge.trainer.data import Example, TrainingData
from lexedge.trainer.embedder.model import Embedder, tokenize
from lexedge.trainer.embedder.retriever import bundle_rankings, embedder_rankings
from lexedge.trainer.family import Family
from lexedge.trainer.gradient_cache import cached_backward, row_chunks
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
        if stage.mining_bundle:
            return bundle_rankings(self.data, stage.mining_bundle, examples,
                                   depth=stage.rank_window[1], progress=self.runtime.progress)
        return embedder_rankings(self.data, self.runtime, model, self.tokenizer, examples,
                                 depth=stage.rank_window[1],
                                 query_length=stage.max_query_length,
                                 passage_length=stage.max_passage_length, model_key=model_key)

    # -- batches and loss -----------------------------------------------------------------
    def _batch(self, group: list[Example], stage, rng) -> dict:
        negatives = [self.sample_negatives(example, stage.hard_negatives,
                                           stage.random_negatives, rng) for example in group]
        return {"examples": group, "negatives": negatives, "kind": group[0].kind,
                "shard": (0, 1)}

    def shard(self, batch: dict, rank: int, world: int) -> dict:
        """Rank ``rank``'s share of a global batch: ``len / world`` of its queries; the
        passages of every share are gathered back into the loss (:func:`_layout`). The
        curriculum checked that the batch divides among the processes."""
        return {**batch, "shard": (rank, world)}

    def count(self, batch: dict) -> int:
        return len(batch["examples"]) // batch["shard"][1]

    def compute_loss(self, model, batch: dict, stage) -> torch.Tensor:
        settings, tokenizer = self.settings, self.tokenizer
        layout = _layout(batch, lambda doc_id: self.data.passage(doc_id, batch["kind"]))
        queries = tokenize(tokenizer, [settings.query_prefix + q for q in layout["queries"]],
                           stage.max_query_length, self.device)
        passages = tokenize(tokenizer, [settings.passage_prefix + p for p in layout["passages"]],
                            stage.max_passage_length, self.device)
        targets = torch.tensor(layout["targets"], device=self.device)
        exclude = torch.tensor(layout["exclude"], dtype=torch.bool, device=self.device)
        loss = InfoNCELoss(stage.temperature)
        world = batch["shard"][1]
        chunk = self.runtime.gradient_cache_chunk
        if chunk:  # GradCache: the same gradient, activations of `chunk` texts at a time
            parts = row_chunks(queries, chunk)

            def cached_loss(vectors: list) -> torch.Tensor:
                return loss(torch.cat(vectors[:len(parts)]),
                            _gathered(torch.cat(vectors[len(parts):]), world), targets, exclude)

            return cached_backward(model, parts + row_chunks(passages, chunk), cached_loss)
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            # DDP synchronises gradients of one forward: run queries and passages together.
            vectors = model(**_stack(queries, passages, tokenizer.pad_token_id))
            query_vectors, passage_vectors = vectors[:len(layout["queries"])], \
                vectors[len(layout["queries"]):]
        else:
            query_vectors, passage_vectors = model(**queries), model(**passages)
        return loss(query_vectors, _gathered(passage_vectors, world), targets, exclude)

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


def _layout(batch: dict, passage_text) -> dict:
    """The loss of one shard of a global batch.

    The passages are laid out share by share — each share's positives, then its negatives,
    padded to the longest share with columns no query may pick — which is the order in which
    the shares' vectors are gathered; one process (one share) gives the familiar layout of
    all positives, then all negatives. ``targets`` and ``exclude`` are this shard's queries'
    rows over all the passages; ``passages`` are the texts this shard encodes.
    """
    rank, world = batch["shard"]
    examples, negatives = batch["examples"], batch["negatives"]
    per = len(examples) // world
    shares = []
    for share in range(world):
        members = range(share * per, (share + 1) * per)
        shares.append([examples[i].positive for i in members]
                      + [doc_id for i in members for doc_id in negatives[i]])
    width = max(len(ids) for ids in shares)
    columns = [doc_id for ids in shares for doc_id in ids + [None] * (width - len(ids))]
    mine = range(rank * per, (rank + 1) * per)
    own = shares[rank] + [None] * (width - len(shares[rank]))
    return {"queries": [examples[i].query for i in mine],
            "passages": [passage_text(doc_id) if doc_id else "" for doc_id in own],
            "targets": [rank * width + row for row in range(per)],
            "exclude": [[doc_id is None or doc_id in examples[i].judged for doc_id in columns]
                        for i in mine]}


def _gathered(passage_vectors: torch.Tensor, world: int) -> torch.Tensor:
    """Every rank's passages, gradients flowing back to each (one process: its own)."""
    return gather_with_gradients(passage_vectors) if world > 1 else passage_vectors


def gather_with_gradients(vectors: torch.Tensor) -> torch.Tensor:
    """Every rank's ``vectors``, concatenated in rank order, with gradients flowing back to
    the rank that computed each (all_gather's backward sums them across ranks), as
    sentence-transformers' ``gather_across_devices`` and Tevatron's
    ``negatives_x_device`` do."""
    import warnings

    import torch.distributed.nn.functional as collective

    with warnings.catch_warnings():  # deprecated for a private successor; still the API
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(collective.all_gather(vectors.contiguous()), dim=0)
