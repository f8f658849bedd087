"""The multi-stage curriculum, generic over a model family (2602.00805, section 2: the same
model is refined through stages of increasingly difficult supervision, and every stage is
evaluated so that each component can use its best one).

Run folder::

    <output_dir>/
      train_config.json        the resolved configuration
      mlm/                     phase 0 (a full model folder), when run
      stage1/ stage2/ stage3/  stage folders (format: :mod:`lexedge.trainer.stage`)
      metrics/<name>.json      dev metrics of base, mlm, stage1..3 (``lexedge eval``'s JSON)
      curriculum.json          per-stage metrics and wall times
      recall_vs_budget.png     Recall@K against K, one line per stage
      .work/<stage>/           in-progress stage: examples, checkpoint (removed when done)

A stage folder appears in one rename once its stage finished, so "is this stage done" is
"does its folder hold ``lexedge_stage.json``". ``resume`` continues the unfinished stage
from its checkpoint and skips finished ones.

A family (:class:`lexedge.trainer.family.Family`: the embedder's and the reranker's) provides
``name``, ``lora_options``, ``prepare_base``, ``load_backbone``, ``wrap``,
``attach_negatives``, ``make_batches``, ``compute_loss``, ``save_full``, ``peft_model`` and
``evaluation_config``. Every stage is measured through ``lexedge eval``'s engine, with the
methods :mod:`lexedge.trainer.eval_methods` registers.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.evaluation import run_evaluation
from lexedge.runtime.provenance import PROVENANCE, provenance
from lexedge.runtime.storage import atomic_directory, sha256_file, write_json_atomic
from lexedge.trainer import eval_methods
from lexedge.trainer.backbone import resolve_device
from lexedge.trainer.config import STAGES
from lexedge.trainer.config_loader import config_to_dict
from lexedge.trainer.data import (TrainingData, base_examples, epoch_rng, read_examples,
                                  write_examples)
from lexedge.trainer.lora import (attach_lora, default_model_cache, load_stage_backbone,
                                  resolve_model, save_stage_adapter)
from lexedge.trainer.mlm import run_mlm
from lexedge.trainer.plots import plot_recall_vs_budget
from lexedge.trainer.provenance import dataset_hashes, hardware, training_inputs
from lexedge.trainer.stage import (copy_model_files, has_config, hard_negatives_path,
                                   is_complete, kind_of, record_model_settings, write_card,
                                   write_config, write_manifest, write_metrics)
from lexedge.trainer.training import (TrainingPlan, barrier, distributed, from_rank0,
                                      run_training, steps_for)


class Curriculum:
    """Runs phases ``mlm``, ``1``, ``2``, ``3`` of one model family into ``output_dir``.

    Args:
        config: a :class:`~lexedge.trainer.config.TrainEmbedderConfig` (or a reranker
            config with the same stage fields).
        family_factory: ``(config, data, device) -> family`` (a
            :class:`~lexedge.trainer.family.Family`).
        resume: continue an interrupted run in ``output_dir``.
        hooks: called with the step number after every optimizer step.
        log: where progress lines go.
    """

    def __init__(self, config, family_factory: Callable, *, resume: bool = False,
                 hooks: list[Callable[[int], None]] = (), log: Callable[[str], None] = print):
        self.config, self.resume, self.hooks, self.log = config, resume, list(hooks), log
        self.output = Path(config.output_dir)
        # Under torchrun every rank trains (DDP) and mines (deterministically, so alike);
        # rank 0 alone writes folders and evaluates.
        self.rank, self.world = distributed()
        if self.rank != 0:  # one voice: rank 0 says what the run does
            self.log = lambda line: None
        _check_shares(config, self.world)
        if has_config(self.output) and not resume:
            raise LexedgeError(f"{self.output}: holds a run already; pass --resume to continue "
                               "it or choose another output_dir")
        if config.runtime.threads:
            torch.set_num_threads(config.runtime.threads)
        self.device = resolve_device(config.runtime.device)
        self.cache = Path(config.model_cache) if config.model_cache else default_model_cache()
        self.data = TrainingData.load(config.data_dir, config.train_split)
        self.family = family_factory(config, self.data, self.device)
        self.base = resolve_model(config.base_model, self.cache)
        if self.rank == 0:
            self.base = self.family.prepare_base(self.base, self.output)
        barrier(self.world)
        if self.rank != 0:
            self.base = self.family.prepare_base(self.base, self.output)
        splits = [config.train_split, config.evaluation.split]
        self.inputs = training_inputs(self.data.dataset, splits)
        # hashed now, before any training: a missing or unreadable file fails here, and every
        # stage's manifest reuses the memoised hashes (lexedge.runtime.provenance.file_sha256)
        dataset_hashes(self.data.dataset, splits)
        self.timings: dict[str, dict] = {}
        eval_methods.register()
        if self.rank == 0:
            write_config(self.output, config)
        barrier(self.world)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> dict:
        """Run the configured phases; return the summary written to ``curriculum.json``."""
        phases = self.config.phases
        if self.family.evaluate_base:
            self.evaluate("base", self.base)
        below = self.base
        mlm_dir = self.output / "mlm"
        if "mlm" in phases and not is_complete(mlm_dir):
            started = time.perf_counter()
            run_mlm(self, below, mlm_dir)
            self.timings.setdefault("mlm", {})["train_seconds"] = _since(started)
        if is_complete(mlm_dir):
            below = mlm_dir
            self.evaluate("mlm", mlm_dir)
        for index, name in enumerate(STAGES, start=1):
            stage_dir = self.output / name
            if str(index) in phases and not is_complete(stage_dir):
                started = time.perf_counter()
                self.train_stage(name, index, below)
                self.timings.setdefault(name, {})["train_seconds"] = _since(started)
            if is_complete(stage_dir):
                self.evaluate(name, stage_dir)
                below = stage_dir
        return self.summarise()

    def train_stage(self, name: str, index: int, below: Path) -> Path:
        """Train stage ``name`` on top of ``below``; return its folder."""
        config, stage = self.config, getattr(self.config, name)
        work = self.output / ".work" / name
        if work.exists() and not self.resume:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        self.log(f"{name}: training on {_display(below)} ({stage.mode}, negatives from "
                 f"{stage.negative_source})")
        torch.manual_seed(config.seed + index)  # adapter initialisation, then dropout
        backbone, chain = load_stage_backbone(
            below, cache_dir=self.cache, device=self.device,
            load_in_4bit=config.runtime.load_in_4bit, loader=self.family.load_backbone)
        if stage.mode == "lora":
            trainable = attach_lora(backbone, config.lora, **self.family.lora_options)
        else:
            trainable = backbone
            for parameter in trainable.parameters():
                parameter.requires_grad_(True)
        if config.runtime.gradient_checkpointing:
            backbone.gradient_checkpointing_enable()
            if stage.mode == "lora":
                trainable.enable_input_require_grads()
        module = self.family.wrap(trainable, chain)

        mining: list[dict] = _read_json(work / "mining.json", [])
        refresh = stage.negative_source == "model-refresh"
        if refresh:  # mined per epoch, in epoch_batches
            examples = base_examples(self.data, train_qrels=stage.train_qrels,
                                     weak_pairs=stage.weak_pairs, seed=config.seed)
        else:
            examples = self._stage_examples(work, stage, module, below, mining)
        accumulation = max(1, config.runtime.accumulation)
        steps, per_epoch = steps_for(len(examples), stage.batch_size * accumulation,
                                     stage.steps, stage.epochs, stage.examples_per_epoch)
        current = {"examples": examples, "trained": examples}

        def epoch_batches(epoch: int) -> list:
            rng = epoch_rng(config.seed, index, epoch)
            # The epoch's examples are drawn first, so stage 3 re-mines only those.
            order = rng.permutation(len(examples))[:stage.examples_per_epoch or None]
            if refresh:
                current["examples"] = self._epoch_examples(work, epoch, stage, module, below,
                                                           mining, order)
                # hard_negatives.jsonl: what the last epoch trained on
                current["trained"] = [current["examples"][i] for i in sorted(order)]
            batches = self.family.make_batches(current["examples"], stage, rng, order)
            if self.world > 1:  # every rank built the same global batches: take our share
                batches = [self.family.shard(b, self.rank, self.world) for b in batches]
            return batches

        plan = TrainingPlan(steps=steps, steps_per_epoch=per_epoch,
                            learning_rate=stage.learning_rate, warmup_ratio=stage.warmup_ratio,
                            head_learning_rate=stage.head_learning_rate,
                            head_modules=tuple(self.family.lora_options.get(
                                "modules_to_save", ())),
                            weight_decay=stage.weight_decay,
                            checkpoint_every=config.runtime.checkpoint_every,
                            description=name, bf16=config.runtime.bf16,
                            progress=config.runtime.progress, accumulation=accumulation,
                            unused_parameters=self.family.unused_parameters)
        result = run_training(module, plan=plan, work_dir=work, resume=self.resume,
                              epoch_batches=epoch_batches,
                              compute_loss=lambda model, batch: self.family.compute_loss(
                                  model, batch, stage), hooks=self.hooks,
                              count=self.family.count)
        stage_dir = self.output / name
        if self.rank != 0:
            barrier(self.world)
            return stage_dir
        with atomic_directory(stage_dir, kind="stage") as staging:
            if stage.mode == "lora":
                save_stage_adapter(self.family.peft_model(module), staging, chain)
            else:
                self.family.save_full(module, staging)
            copy_model_files(chain, staging)
            record_model_settings(staging, self.family.model_settings())
            write_config(staging, config)
            write_examples(hard_negatives_path(staging), current["trained"])
            write_manifest(staging, self._manifest(
                name, stage, staging, stage_dir, chain, result, plan, len(examples), mining))
            write_card(staging)
        shutil.rmtree(work, ignore_errors=True)
        barrier(self.world)
        self.log(f"{name}: saved {stage_dir} ({result.steps} steps, {result.seconds:.0f} s, "
                 f"loss {result.losses[0]:.3f} → {result.losses[-1]:.3f})")
        return stage_dir

    # -- examples -------------------------------------------------------------------------
    def _stage_examples(self, work, stage, module, below, mining) -> list:
        path = work / "examples.jsonl"
        if path.is_file():
            return read_examples(path)
        started = time.perf_counter()
        examples = base_examples(self.data, train_qrels=stage.train_qrels,
                                 weak_pairs=stage.weak_pairs, seed=self.config.seed)
        stats = self.family.attach_negatives(examples, stage, model=module, model_key=below)
        stats["seconds"] = _since(started)
        _record_mining(work, mining, stats)
        write_examples(path, examples)
        return examples

    def _epoch_examples(self, work, epoch, stage, module, below, mining, order) -> list:
        """Stage 3: negatives re-mined with the current model before every epoch (at epoch 0
        the model still equals the stage below: a fresh adapter adds exactly zero), for the
        examples the epoch trains on (``order``) only; the others keep none."""
        path = work / f"examples-epoch{epoch}.jsonl"
        if path.is_file():
            return read_examples(path)
        started = time.perf_counter()
        examples = base_examples(self.data, train_qrels=stage.train_qrels,
                                 weak_pairs=stage.weak_pairs, seed=self.config.seed)
        stats = self.family.attach_negatives([examples[i] for i in order], stage, model=module,
                                             model_key=below if epoch == 0 else None)
        stats.update(epoch=epoch, seconds=_since(started))
        _record_mining(work, mining, stats)
        self.log(f"  epoch {epoch}: mined {stats['mean_negatives']} negatives per example "
                 f"({stats['skipped_above_positive']} skipped as likely false negatives)")
        write_examples(path, examples)
        return examples

    # -- evaluation and reports -----------------------------------------------------------
    def evaluate(self, name: str, model_dir: Path) -> dict | None:
        """Dev metrics of one stage through ``lexedge eval``'s engine; cached on disk."""
        evaluation = self.config.evaluation
        if not evaluation.enabled:
            return None
        path = self.output / "metrics" / f"{name}.json"
        # Every rank evaluates (each encodes its share of the corpus: no rank idles at a
        # barrier), so all must agree whether it was done before: rank 0's files decide.
        if from_rank0(path.is_file(), self.world):
            return json.loads(path.read_text(encoding="utf-8")) if self.rank == 0 else None
        started = time.perf_counter()
        metrics, _run = run_evaluation(self.family.evaluation_config(model_dir))
        if self.rank != 0:
            return None
        metrics["stage"] = name
        metrics["eval_seconds"] = _since(started)
        self.timings.setdefault(name, {})["eval_seconds"] = metrics["eval_seconds"]
        write_json_atomic(path, metrics)
        if is_complete(model_dir):
            write_metrics(model_dir, metrics)
        self.log(f"{name}: recall@10 {metrics['recall@10']:.4f}  recall@100 "
                 f"{metrics['recall@100']:.4f}  mrr@10 {metrics['mrr@10']:.4f}  ndcg@10 "
                 f"{metrics['ndcg@10']:.4f}")
        return metrics

    def summarise(self) -> dict:
        rows = {}
        for name in ("base", "mlm", *STAGES):
            path = self.output / "metrics" / f"{name}.json"
            if path.is_file():
                rows[name] = json.loads(path.read_text(encoding="utf-8"))
        if self.rank != 0:
            return {"metrics": rows}
        summary = {"family": self.family.name, "data_dir": self.config.data_dir,
                   "split": self.config.evaluation.split, "metrics": rows,
                   "timings": self.timings, "config": config_to_dict(self.config)}
        write_json_atomic(self.output / "curriculum.json", summary)
        if rows:
            plot_recall_vs_budget(rows, self.output / "recall_vs_budget.png",
                                  title=f"{self.family.name} on {Path(self.config.data_dir).name}"
                                        f" [{self.config.evaluation.split}]")
        return summary

    def _manifest(self, name, stage, staging, final, chain, result, plan, examples,
                  mining) -> dict:
        weights = {p.name: sha256_file(p) for p in sorted(staging.glob("*.safetensors"))}
        below = [{"path": str(p), "kind": kind_of(p)} for p in chain]
        curve_every = max(1, len(result.losses) // 50)
        return {
            "family": self.family.name, "stage": name,
            "mode": stage.mode, "weights_sha256": weights,
            "chain": [{"path": str(final.resolve()), "kind": "lora-adapter"
                       if stage.mode == "lora" else "model"}] + below,
            "seed": self.config.seed, "stage_settings": config_to_dict(stage),
            "lora": config_to_dict(self.config.lora) if stage.mode == "lora" else None,
            "data": {"dir": self.config.data_dir, "train_split": self.config.train_split,
                     "examples": examples},
            "mining": mining,
            "training": {"steps": result.steps, "steps_per_epoch": plan.steps_per_epoch,
                         "epochs": round(result.steps / plan.steps_per_epoch, 3),
                         "resumed_from": result.resumed_from, "seconds": result.seconds,
                         "loss_first": result.losses[0], "loss_last": result.losses[-1],
                         "loss_curve": result.losses[::curve_every],
                         "processes": self.world, "accumulation": plan.accumulation,
                         "examples_first_epoch": result.examples_first_epoch},
            PROVENANCE: provenance(f"lexedge train {self.family.name}", inputs=self.inputs),
            "hardware": hardware(),
        }


def _check_shares(config, world: int) -> None:
    """Before any loading: each of ``world`` processes takes an equal share of every batch."""
    stages = [("mlm", config.mlm.batch_size)] if "mlm" in config.phases else []
    stages += [(f"stage{phase}", getattr(config, f"stage{phase}").batch_size)
               for phase in config.phases if phase != "mlm"]
    for name, size in stages:
        if size % world:
            raise LexedgeError(f"config: {name}.batch_size = {size} does not divide among "
                               f"{world} processes; use a multiple of {world}")


def _record_mining(work: Path, mining: list, stats: dict) -> None:
    """Mining statistics survive a resume: they are kept beside the examples."""
    mining.append(stats)
    write_json_atomic(work / "mining.json", mining)


def _read_json(path: Path, default):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)


def _display(path: Path) -> str:
    return Path(path).name
