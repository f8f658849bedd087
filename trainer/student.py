"""A student embedder for laptops: fewer transformer layers at the teacher's width, initialised
from chosen teacher layers, then distilled from the teacher (issue 19, item 2).

The loss of one step, over a batch of (query, positive, hard negative) triples and a batch of
plain passages, teacher vectors computed once beforehand:

- **embedding distillation**: the squared distance between the student's and the teacher's
  unit vectors of every text in the batch (Reimers and Gurevych, 2020, arXiv:2004.09813);
  plain passages from the corpora keep the student close to the teacher on text that has no
  query, in both languages;
- **score distillation**: KL divergence from the teacher's softmax over each query's in-batch
  candidates (every positive and hard negative of the batch) to the student's, at one
  temperature (Hofstätter et al., 2020, arXiv:2010.02666; RocketQAv2 and 2412.13205 distil
  listwise the same way);
- **contrastive**: InfoNCE of each query against its positive among the same candidates, so
  the training judgments teach what the teacher does not know (the curriculum's stage 1 with
  BM25 negatives).

The weights of the three terms are settings; a term with weight 0 is skipped.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.storage import atomic_directory
from lexedge.trainer.embedder.model import encode, load_stage_embedder, tokenize
from lexedge.trainer.ffn_narrowing import narrow_ffn
from lexedge.trainer.stage import (EncoderSettings, copy_model_files, is_adapter,
                                   read_model_settings, record_model_settings)

DISTILLATION_FILE = "distillation.json"


@dataclass
class Triple:
    """A training query with its judged positive and one hard negative (passage texts)."""

    query: str
    positive: str
    negative: str


@dataclass
class DistillSettings:
    """How a student is distilled. ``layers`` are the teacher's layer indices (0-based) whose
    weights initialise the student's layers, in order."""

    layers: tuple[int, ...]
    epochs: int = 1
    batch_size: int = 16
    passages_per_batch: int = 16
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    temperature: float = 0.05
    embedding_weight: float = 1.0
    score_weight: float = 1.0
    contrastive_weight: float = 0.1
    query_length: int = 64
    passage_length: int = 256
    seed: int = 13
    threads: int | None = None

    def validate(self) -> "DistillSettings":
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise LexedgeError(f"student layers {list(self.layers)}: give distinct teacher "
                               "layer indices")
        for name in ("epochs", "batch_size", "query_length", "passage_length"):
            if int(getattr(self, name)) < 1:
                raise LexedgeError(f"distillation {name} must be at least 1")
        if self.temperature <= 0 or self.learning_rate <= 0:
            raise LexedgeError("distillation temperature and learning_rate must be positive")
        return self


def mine_triples(data_dir: str | Path, *, split: str = "train", ranks: tuple[int, int] = (2, 40),
                 seed: int | np.random.Generator = 13) -> tuple[list[Triple], dict]:
    """A (query, positive, BM25 hard negative) triple per judged pair of ``split`` in the BEIR
    folder ``data_dir``: the negative is drawn from the query's BM25 ranks ``ranks`` over the
    whole corpus, never a judged article (the analyzer is detected from the corpus). ``seed``
    may be a generator shared with other draws."""
    from lexedge.runtime.analysis import detect_language, get_analyzer
    from lexedge.runtime.bm25 import BM25Index
    from lexedge.runtime.datasets import BeirDataset

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    dataset = BeirDataset(Path(data_dir))
    documents = {doc.id: doc for doc in dataset.corpus()}
    queries = dataset.queries()
    qrels = dataset.qrels(split, query_ids=queries, doc_ids=documents)
    language = detect_language(doc.indexed_text for doc in documents.values())
    bm25 = BM25Index.build(documents.values(), get_analyzer(language))
    query_ids = sorted(qrels)
    rankings = bm25.search_many([queries[q] for q in query_ids], k=ranks[1])
    triples = []
    for query_id, ranking in zip(query_ids, rankings):
        judged = set(qrels[query_id])
        pool = [doc_id for doc_id, _ in ranking[ranks[0]:ranks[1]] if doc_id not in judged]
        for positive in sorted(judged) if pool else ():
            negative = pool[int(rng.integers(len(pool)))]
            triples.append(Triple(queries[query_id], documents[positive].indexed_text,
                                  documents[negative].indexed_text))
    return triples, {"data": str(data_dir), "split": split, "language": language,
                     "queries": len(query_ids), "triples": len(triples),
                     "corpus": len(documents),
                     "seconds": round(time.perf_counter() - started, 1)}


def triples_from_negatives(path: str | Path, data_dir: str | Path, *, per_row: int = 2,
                           seed: int | np.random.Generator = 13) -> tuple[list[Triple], dict]:
    """Triples from a curriculum stage's ``hard_negatives.jsonl`` (the negatives its model mined
    for the train queries, by document id of the BEIR folder ``data_dir`` it trained on):
    ``per_row`` negatives drawn from each row's list, each a triple with the row's positive.

    Raises:
        LexedgeError: a line that is not a row of that file, or an id ``data_dir`` lacks.
    """
    from lexedge.runtime.datasets import iter_corpus

    rng = np.random.default_rng(seed)
    path, data_dir = Path(path), Path(data_dir)
    texts = {doc.id: doc.indexed_text for doc in iter_corpus(data_dir / "corpus.jsonl")}
    triples, queries = [], set()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
                query, positive, negatives = row["query"], row["positive"], row["negatives"]
                count = min(per_row, len(negatives))
                drawn = rng.choice(len(negatives), count, replace=False) if count else []
                triples += [Triple(query, texts[positive], texts[negatives[i]]) for i in drawn]
            except (ValueError, KeyError, TypeError) as exc:
                raise LexedgeError(f"{path}:{number}: not a hard-negative row of "
                                   f"{data_dir} ({exc})") from None
            queries.add(row.get("query_id", query))
    return triples, {"data": str(data_dir), "negatives": str(path), "queries": len(queries),
                     "triples": len(triples), "corpus": len(texts)}


def sample_passages(corpus: str | Path, count: int, *, seed: int | np.random.Generator = 13,
                    exclude: set[str] = frozenset()) -> list[str]:
    """``count`` passages (title and text, as indexed) drawn at random from a corpus file or
    a BEIR folder, leaving out the texts in ``exclude``."""
    from lexedge.runtime.datasets import iter_corpus

    path = Path(corpus)
    path = path / "corpus.jsonl" if path.is_dir() else path
    texts = [doc.indexed_text for doc in iter_corpus(path) if doc.indexed_text not in exclude]
    rng = np.random.default_rng(seed)
    return [texts[i] for i in sorted(rng.choice(len(texts), min(count, len(texts)),
                                                replace=False))]


def make_student(teacher: str | Path, out: str | Path, layers: Sequence[int], *,
                 ffn_width: int | None = None, calibration: Sequence[str] = (),
                 calibration_length: int = 256) -> Path:
    """Write a model folder ``out`` whose encoder keeps the teacher's embeddings and the
    teacher layers ``layers`` (in that order), with the teacher's tokenizer and settings.
    ``teacher`` may be a stage folder (its adapters merged first).

    With ``ffn_width`` each kept layer's feed-forward block is narrowed to that many units, the
    most important on the ``calibration`` passages (:func:`narrow_ffn`): fewer units cut the
    arithmetic of every token without losing a layer.

    Raises:
        LexedgeError: a layer index outside the teacher's depth, or a width the teacher's
            blocks cannot give.
    """
    teacher, out = Path(teacher), Path(out)
    stage = load_stage_embedder(teacher, torch.device("cpu"))
    source = stage.embedder.backbone
    total = int(source.config.num_hidden_layers)
    layers = [int(i) for i in layers]
    if not layers or any(not 0 <= i < total for i in layers):
        raise LexedgeError(f"student layers {layers}: {teacher} has layers 0..{total - 1}")
    kept = torch.nn.ModuleList([source.encoder.layer[i] for i in layers])
    source.encoder.layer = kept
    source.config.num_hidden_layers = len(layers)
    derived = {"path": str(teacher), "teacher_layers": layers, "layers_total": total}
    if ffn_width is not None:  # narrows ``source`` in place: it is the stage's backbone
        derived["ffn"] = narrow_ffn(stage, int(ffn_width), calibration,
                                    max_length=calibration_length)
    with atomic_directory(out, kind="model") as staging:
        source.save_pretrained(str(staging), safe_serialization=True)
        copy_model_files(stage.chain, staging)
        record_model_settings(staging, {"derived_from": derived})
    return out


def teacher_vectors(teacher: str | Path, queries: Sequence[str], passages: Sequence[str], *,
                    query_length: int, passage_length: int, batch_size: int = 32,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's unit vectors of ``queries`` and ``passages`` (prefixes added here)."""
    stage = load_stage_embedder(teacher, torch.device("cpu"))
    prefix_q, prefix_p = stage.settings.query_prefix, stage.settings.passage_prefix
    with torch.no_grad():
        q = encode(stage.embedder, stage.tokenizer, [prefix_q + t for t in queries],
                   max_length=query_length, batch_size=batch_size, progress=progress,
                   description="teacher queries")
        p = encode(stage.embedder, stage.tokenizer, [prefix_p + t for t in passages],
                   max_length=passage_length, batch_size=batch_size, progress=progress,
                   description="teacher passages")
    return q, p


def distillation_loss(student_q: torch.Tensor, student_p: torch.Tensor,
                      teacher_q: torch.Tensor, teacher_p: torch.Tensor, positives: torch.Tensor,
                      settings: DistillSettings, *, extra_student: torch.Tensor | None = None,
                      extra_teacher: torch.Tensor | None = None) -> dict:
    """The three terms (see the module's docstring) and their weighted sum, ``loss``.

    ``student_q``/``teacher_q`` are ``[B, d]`` query vectors, ``student_p``/``teacher_p``
    ``[C, d]`` candidate vectors (positives and negatives), ``positives`` the index of each
    query's positive among the candidates; ``extra_*`` are plain passages (embedding term only).
    """
    terms = {}
    student_all = [student_q, student_p] + ([extra_student] if extra_student is not None else [])
    teacher_all = [teacher_q, teacher_p] + ([extra_teacher] if extra_teacher is not None else [])
    gap = torch.cat(student_all) - torch.cat(teacher_all)
    terms["embedding"] = gap.pow(2).sum(dim=-1).mean()
    student_scores = student_q @ student_p.T / settings.temperature
    teacher_scores = teacher_q @ teacher_p.T / settings.temperature
    log_student = torch.log_softmax(student_scores, dim=-1)
    terms["score"] = torch.nn.functional.kl_div(
        log_student, torch.log_softmax(teacher_scores, dim=-1), log_target=True,
        reduction="batchmean")
    terms["contrastive"] = torch.nn.functional.nll_loss(log_student, positives)
    weights = {"embedding": settings.embedding_weight, "score": settings.score_weight,
               "contrastive": settings.contrastive_weight}
    terms["loss"] = sum(weights[name] * value for name, value in terms.items() if weights[name])
    return terms


def distill(student: str | Path, teacher: str | Path, triples: Sequence[Triple],
            passages: Sequence[str], out: str | Path, settings: DistillSettings, *,
            teacher_cache: tuple[np.ndarray, np.ndarray] | None = None,
            progress: bool = True) -> dict:
    """Distil ``teacher`` into the ``student`` model folder and write the result to ``out``.

    Args:
        triples: supervised (query, positive, hard negative) passages.
        passages: plain corpus passages, for the embedding term.
        teacher_cache: the teacher's ``(query vectors, passage vectors)`` in the order
            :func:`distillation_texts` lists them, if already computed.

    Returns:
        the statistics also written to ``out/distillation.json``: loss terms per epoch,
        wall times, sizes.
    """
    settings.validate()
    if not triples:
        raise LexedgeError("distillation needs at least one (query, positive, negative)")
    started = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    queries, texts = distillation_texts(triples, passages)
    if teacher_cache is None:
        teacher_cache = teacher_vectors(teacher, queries, texts,
                                        query_length=settings.query_length,
                                        passage_length=settings.passage_length,
                                        progress=progress)
    teacher_q = torch.from_numpy(np.asarray(teacher_cache[0], dtype=np.float32))
    teacher_p = torch.from_numpy(np.asarray(teacher_cache[1], dtype=np.float32))
    teacher_seconds = time.perf_counter() - started

    stage = load_stage_embedder(student, torch.device("cpu"))
    model, tokenizer, encoder_settings = stage.embedder, stage.tokenizer, stage.settings
    model.train()
    model.requires_grad_(True)  # a stage's merged weights come frozen, as LoRA left its base
    prefix_q, prefix_p = encoder_settings.query_prefix, encoder_settings.passage_prefix
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    batches_per_epoch = (len(triples) + settings.batch_size - 1) // settings.batch_size
    total_steps = batches_per_epoch * settings.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    warmup = max(1, int(total_steps * settings.warmup_ratio))
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay
        optimizer, lambda step: (step + 1) / warmup if step < warmup
        else max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    plain = np.arange(2 * len(triples), len(texts))

    def embed(rows_text: list[str], length: int) -> torch.Tensor:
        return model(**tokenize(tokenizer, rows_text, length, torch.device("cpu")))

    from tqdm import tqdm

    epochs = []
    with tqdm(total=total_steps, desc="distilling", unit="step",
              disable=None if progress else True) as bar:
        for epoch in range(settings.epochs):
            sums: dict[str, float] = {}
            order = rng.permutation(len(triples))
            for start in range(0, len(order), settings.batch_size):
                rows = order[start:start + settings.batch_size]
                candidates = np.concatenate([2 * rows, 2 * rows + 1])  # positives, negatives
                extra = rng.choice(plain, size=min(len(plain), settings.passages_per_batch),
                                   replace=False) if len(plain) else np.empty(0, dtype=int)
                student_q = embed([prefix_q + queries[r] for r in rows], settings.query_length)
                student_p = embed([prefix_p + texts[c] for c in candidates],
                                  settings.passage_length)
                student_x = embed([prefix_p + texts[c] for c in extra],
                                  settings.passage_length) if len(extra) else None
                terms = distillation_loss(
                    student_q, student_p, teacher_q[rows], teacher_p[candidates],
                    torch.arange(len(rows)), settings, extra_student=student_x,
                    extra_teacher=teacher_p[extra] if len(extra) else None)
                optimizer.zero_grad()
                terms["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{float(terms['loss'].detach()):.4f}")
                done = schedule.last_epoch  # a disabled bar does not count
                if progress and bar.disable and (done % 20 == 0 or done == total_steps):
                    # not a terminal: a line now and then
                    print(f"distilling: step {done}/{total_steps}, loss "
                          f"{float(terms['loss'].detach()):.4f}, "
                          f"{time.perf_counter() - started - teacher_seconds:.0f} s",
                          file=sys.stderr, flush=True)
            epochs.append({name: round(value / batches_per_epoch, 6)
                           for name, value in sums.items()})
    stats = {"settings": asdict(settings),
             "triples": len(triples), "plain_passages": len(texts) - 2 * len(triples),
             "epochs": epochs, "teacher": str(teacher), "student_init": str(student),
             "teacher_seconds": round(teacher_seconds, 1),
             "train_seconds": round(time.perf_counter() - started - teacher_seconds, 1)}
    model.eval()
    save_student(model.backbone, Path(student), Path(out), stats)
    return stats


def distillation_texts(triples: Sequence[Triple], passages: Sequence[str]
                       ) -> tuple[list[str], list[str]]:
    """Queries (one per triple) and passages: each triple's positive and negative at rows
    ``2i`` and ``2i + 1``, then the plain passages."""
    queries = [t.query for t in triples]
    texts = [text for t in triples for text in (t.positive, t.negative)] + list(passages)
    return queries, texts


def save_student(backbone, init: Path, out: Path, stats: dict) -> Path:
    """The distilled encoder as a model folder (tokenizer and settings from ``init``; its
    ``max_length`` is the passage length it was distilled at)."""
    with atomic_directory(out, kind="model") as staging:
        backbone.save_pretrained(str(staging), safe_serialization=True)
        copy_model_files([init], staging)
        recorded = read_model_settings(init).get("derived_from") or {}
        if is_adapter(init) or recorded.get("distilled"):
            # a trained stage, or a student distilled before, distilled further from a new
            # teacher: the chain goes through it
            derived = {"path": str(init), "teacher": str(stats["teacher"])}
        else:  # a student just made from teacher layers: what it was made from
            derived = recorded
        record_model_settings(staging, {
            "derived_from": {**derived, "distilled": True},
            "max_length": int(stats["settings"]["passage_length"])})
        (staging / DISTILLATION_FILE).write_text(json.dumps(stats, ensure_ascii=False,
                                                            indent=2) + "\n", encoding="utf-8")
    return out


def agreement(student: str | Path, teacher_q: np.ndarray, teacher_p: np.ndarray,
              queries: Sequence[str], passages: Sequence[str], *, query_length: int,
              passage_length: int, temperature: float = 0.05) -> dict:
    """How close a model's vectors and scores are to the teacher's on held texts: mean cosine
    of the vectors, and the KL from the teacher's softmax over all ``passages`` to the
    model's, per query. A distilled student has a higher cosine and a lower KL than the
    student it started from."""
    stage = load_stage_embedder(student, torch.device("cpu"))
    settings: EncoderSettings = stage.settings
    with torch.no_grad():
        q = encode(stage.embedder, stage.tokenizer, [settings.query_prefix + t for t in queries],
                   max_length=query_length)
        p = encode(stage.embedder, stage.tokenizer,
                   [settings.passage_prefix + t for t in passages], max_length=passage_length)
    cosine = float(np.mean(np.concatenate([(q * teacher_q).sum(1), (p * teacher_p).sum(1)])))
    student_scores = torch.from_numpy(q @ p.T / temperature)
    teacher_scores = torch.from_numpy(teacher_q @ teacher_p.T / temperature)
    kl = torch.nn.functional.kl_div(torch.log_softmax(student_scores, -1),
                                    torch.log_softmax(teacher_scores, -1), log_target=True,
                                    reduction="batchmean")
    return {"cosine": round(cosine, 6), "score_kl": round(float(kl), 6)}


__all__ = ["DistillSettings", "Triple", "agreement", "distill", "distillation_loss",
           "distillation_texts", "make_student", "mine_triples", "sample_passages",
           "teacher_vectors", "triples_from_negatives"]
