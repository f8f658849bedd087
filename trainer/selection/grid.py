"""Component-wise stage selection (2602.00805: the embedder and the reranker peak at different
stages, so every pairing is measured end to end and each component takes its own best).

``lexedge grid`` measures, on one split, the pipeline *embedder@K → reranker* for every
embedder stage × reranker stage × budget K, with the first stage dense alone and with BM25
fused in (the runtime's normalised weighted fusion), plus BM25 and each embedder alone.
The reranker re-orders the K candidates; Recall@K is the first stage's, MRR@10 and
nDCG@10 are the re-ordered list's. Every row is ``lexedge eval``'s metrics JSON, keyed
``emb<e>_rr<r>_k<K>`` (``emb<e>+bm25_rr<r>_k<K>`` with BM25 fused; ``…_w<W>`` when the
re-ranked candidates are ordered by ``W x reranker + (1 - W) x first stage``, the runtime's
``rerank_weight``, for each W < 1 in ``rerank_weights``), ``emb<e>`` /
``emb<e>+bm25`` for the first stage alone, ``bm25``, and ``embedder_only`` (the best
embedder alone by MRR@10, naming its row). Stage labels: ``0`` the base model, ``mlm``,
``1``–``3``; a reranker's base is stage ``0`` when it is a reranker before any training (a
``segments`` base the reranker run prepared: it records its head).

Each reranker stage scores every distinct (query, candidate) pair of all first stages at the
largest budget once; the time per query at budget K is K × the measured time per pair.
First-stage rankings and pair scores are kept under ``OUT/.cache`` so an interrupted grid
resumes where it stopped.

``lexedge select --runs OUT`` then reads ``OUT/grid.json``
(:mod:`lexedge.trainer.selection.select`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lexedge.runtime.datasets import BeirDataset
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.evaluation import METHODS, EvalConfig
from lexedge.runtime.fusion import fuse, interpolate
from lexedge.runtime.metrics import RECALL_CUTOFFS, evaluate
from lexedge.runtime.settings import DEFAULT_ALPHA, SearchSettings
from lexedge.runtime.storage import sha256_file, write_json_atomic
from lexedge.trainer.backbone import load_tokenizer, resolve_device
from lexedge.trainer.embedder.retriever import dense_model_retriever
from lexedge.trainer.lora import load_stage_backbone, resolve_model, stage_chain
from lexedge.trainer.reranker.model import CrossEncoder, load_cross_encoder, score_pairs
from lexedge.trainer.stage import (EncoderSettings, read_run_config, recorded_head,
                                   stage_folders)

GRID_FILE = "grid.json"


@dataclass
class GridConfig:
    """``lexedge grid``.

    Args:
        embedders: an embedder run folder (``lexedge train embedder``'s output_dir).
        rerankers: a reranker run folder (``lexedge train reranker``'s output_dir).
        out: where ``grid.json`` (and later ``selection.json``) go.
        data_dir: BEIR folder; default the reranker run's.
        split: qrels split.
        budgets: first-stage budgets K.
        alpha: dense weight of the fused first stage (default:
            ``lexedge.runtime.settings.DEFAULT_ALPHA``, a search's without a bundle weight).
        include_base: also measure the embedder run's base model.
        embedder_stages: measure only these embedder stage labels (``0`` the base, ``1``...);
            empty: every finished stage. Each first stage adds its candidates to what every
            reranker stage scores.
        rerank_weights: the reranker's weights against the first stage's scores (1: the
            reranker alone; see :func:`lexedge.runtime.fusion.interpolate`).
        query_ids: measure only these queries of the split (to check a selection on queries
            it was not made on); rankings and scores still cover the whole split.
        cache_dir: first-stage rankings and pair scores (default ``out/.cache``); grids of
            the same runs and split can share one.
    """

    embedders: str
    rerankers: str
    out: str
    data_dir: str = ""
    split: str = "dev"
    budgets: list[int] = field(default_factory=lambda: [20, 60, 100])
    alpha: float = DEFAULT_ALPHA
    include_base: bool = True
    embedder_stages: list[str] = field(default_factory=list)
    rerank_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.3, 0.2, 0.1])
    query_ids: list[str] | None = None
    cache_dir: str = ""
    device: str = "auto"
    batch_size: int = 32
    progress: bool = True


def row_key(first_stage: str, reranker: str, budget: int, weight: float = 1.0) -> str:
    """``emb3+bm25_rr2_k100``, with ``_w0.3`` for a reranker weight below 1."""
    key = f"{first_stage}_rr{reranker}_k{budget}"
    return key if weight == 1.0 else f"{key}_w{weight:g}"


def stage_label(folder_name: str) -> str:
    return {"base": "0", "mlm": "mlm"}.get(folder_name, folder_name.removeprefix("stage"))


def run_grid(config: GridConfig, log=print) -> dict:
    """Measure the grid and write ``out/grid.json``; return its rows."""
    embedder_run, reranker_run = Path(config.embedders), Path(config.rerankers)
    emb_config, rr_config = read_run_config(embedder_run), read_run_config(reranker_run)
    data_dir = config.data_dir or rr_config["data_dir"]
    out = Path(config.out)
    cache = Path(config.cache_dir) if config.cache_dir else out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    dataset = BeirDataset(Path(data_dir))
    queries = dataset.queries()
    texts = {doc.id: doc.indexed_text for doc in dataset.corpus()}
    qrels = dataset.qrels(config.split, query_ids=queries, doc_ids=texts)
    query_ids = list(qrels)
    query_texts = [queries[q] for q in query_ids]
    measured = qrels if config.query_ids is None else \
        {q: qrels[q] for q in config.query_ids if q in qrels}
    if not measured:
        raise LexedgeError(f"grid: none of the {len(config.query_ids)} query ids given is "
                           f"judged in split {config.split}")
    depth = max(config.budgets)
    base_eval = EvalConfig(data_dir=data_dir, split=config.split, depth=depth)

    embedders = {stage_label(p.name): p for p in stage_folders(embedder_run)}
    if config.include_base:
        embedders = {"0": resolve_model(emb_config["base_model"]), **embedders}
    if config.embedder_stages:
        unknown = sorted(set(config.embedder_stages) - set(embedders))
        if unknown:
            raise LexedgeError(f"grid: embedder stages {unknown} not in {embedder_run} "
                               f"(it has {sorted(embedders)})")
        embedders = {k: v for k, v in embedders.items() if k in config.embedder_stages}
    rerankers = {stage_label(p.name): p for p in stage_folders(reranker_run)}
    if rerankers:
        bottom = stage_chain(next(iter(rerankers.values())))[-1]
        if recorded_head([bottom]) is not None:  # a segments base: a reranker untrained
            rerankers = {"0": bottom, **rerankers}
    if not embedders or not rerankers:
        missing = embedder_run if not embedders else reranker_run
        raise LexedgeError(f"grid: no finished stages in {missing}")

    rows: dict[str, dict] = {}
    weights = sorted({float(w) for w in config.rerank_weights} | {1.0}, reverse=True)
    if not all(0.0 <= w <= 1.0 for w in weights):
        raise LexedgeError(f"grid: rerank weights must be within [0, 1], got {weights}")
    setup = {"data_dir": str(data_dir), "split": config.split, "queries": len(measured),
             "corpus_size": len(texts), "budgets": list(config.budgets),
             "alpha": config.alpha, "rerank_weights": weights, "embedder_run": str(embedder_run),
             "reranker_run": str(reranker_run),
             "embedders": {k: str(v) for k, v in embedders.items()},
             "rerankers": {k: str(v) for k, v in rerankers.items()}}

    cutoffs = sorted(set(RECALL_CUTOFFS) | set(config.budgets))  # Recall@K at every budget

    def metrics_of(run: dict, **extra) -> dict:
        metrics = evaluate(run, measured, recall_cutoffs=cutoffs)
        metrics.update({"split": config.split, "dataset": str(data_dir), **extra})
        return metrics

    # First stages: BM25, each embedder alone, each embedder fused with BM25.
    bm25 = _cached(cache / "first_bm25.json", lambda: METHODS["bm25"](
        base_eval, dataset).search_many(query_texts, depth))
    rows["bm25"] = metrics_of(dict(zip(query_ids, bm25)), method="bm25")
    first: dict[str, dict[int, list]] = {}  # first stage -> budget -> rankings
    eval_lengths = rr_config.get("evaluation", {})
    for label, folder in embedders.items():
        log(f"grid: first stage of embedder {label} ({folder})")

        def dense_run(folder=folder):
            retriever = dense_model_retriever(EvalConfig(
                data_dir=data_dir, split=config.split, method="dense", model=str(folder),
                extra={"device": config.device, "batch_size": config.batch_size,
                       "progress": config.progress,
                       "max_query_length": emb_config["evaluation"]["max_query_length"],
                       "max_passage_length": emb_config["evaluation"]["max_passage_length"]}),
                dataset)
            return retriever.search_many(query_texts, depth)

        dense = _cached(cache / f"first_emb{label}-{model_identity(folder)}.json", dense_run)
        # As served: each budget K fuses the dense and BM25 top K (the deepest is the row).
        first[f"emb{label}"] = {k: [r[:k] for r in dense] for k in config.budgets}
        first[f"emb{label}+bm25"] = {k: _fused(dense, bm25, k, config.alpha)
                                     for k in config.budgets}
        rows[f"emb{label}"] = metrics_of(dict(zip(query_ids, dense)), method="dense",
                                         model=str(folder))
        rows[f"emb{label}+bm25"] = metrics_of(
            dict(zip(query_ids, first[f"emb{label}+bm25"][depth])), method="hybrid",
            model=str(folder), alpha=config.alpha)
    best = max((k for k in rows if k.startswith("emb")), key=lambda k: rows[k]["mrr@10"])
    rows["embedder_only"] = {**rows[best], "row": best}

    # Second stage: every reranker stage scores every distinct candidate pair once.
    device = resolve_device(config.device)
    pair_length = int(eval_lengths.get("max_query_length", 64)) + \
        int(eval_lengths.get("max_passage_length", 128))
    pairs = sorted({(q, str(d)) for by_budget in first.values()
                    for ranking_set in by_budget.values()
                    for q, ranking in zip(query_ids, ranking_set) for d, _ in ranking})
    for label, folder in rerankers.items():
        path = cache / f"scores_rr{label}-{model_identity(folder)}.json"
        if path.is_file():
            cached = json.loads(path.read_text(encoding="utf-8"))
        else:
            log(f"grid: reranker {label} scores {len(pairs)} pairs ({folder})")
            model, chain = load_stage_backbone(folder, device=device, loader=load_cross_encoder)
            reranker = CrossEncoder(model, EncoderSettings.read(chain)).eval()
            started = time.perf_counter()
            scores = score_pairs(reranker, load_tokenizer(chain),
                                 [(queries[q], texts[d]) for q, d in pairs],
                                 max_length=pair_length, batch_size=config.batch_size,
                                 progress=config.progress,
                                 description=f"reranker {label}")
            seconds = time.perf_counter() - started
            cached = {"seconds_per_pair": seconds / max(len(pairs), 1),
                      "scores": {f"{q}\t{d}": float(s) for (q, d), s in zip(pairs, scores)}}
            write_json_atomic(path, cached)
            del reranker, model
        per_pair, scores = cached["seconds_per_pair"], cached["scores"]
        setup.setdefault("scoring_seconds", {})[label] = round(per_pair * len(cached["scores"]), 1)
        for name, by_budget in first.items():
            for budget in config.budgets:
                for weight in weights:  # ordered as the runtime's Searcher orders them
                    run = {q: [(d, final) for d, final, _ in interpolate(
                        ranking, [scores[f"{q}\t{d}"] for d, _ in ranking], weight)]
                        for q, ranking in zip(query_ids, by_budget[budget])}
                    rows[row_key(name, label, budget, weight)] = metrics_of(
                        run, method="pipeline", first_stage=name, reranker=str(folder),
                        budget=budget, rerank=budget, rerank_weight=weight,
                        rerank_ms_per_query=round(1000 * per_pair * budget, 1),
                        timing_basis="budget x measured seconds per pair (torch, this "
                                     "machine)")
    setup["pair_max_length"] = pair_length
    grid = {"setup": setup, **rows}
    write_json_atomic(out / GRID_FILE, grid)
    return grid


def _fused(dense: list, bm25: list, k: int, alpha: float) -> list:
    return [fuse([tuple(x) for x in d[:k]], [tuple(x) for x in b[:k]], k, alpha=alpha)
            for d, b in zip(dense, bm25)]


def model_identity(folder: Path) -> str:
    """A short hash of the weights a stage folder stands for (its own and those of every
    folder below it): the grid's cache names carry it, so a retrained stage is measured
    afresh instead of being served the scores of the one it replaced."""
    digest = hashlib.sha256()
    for member in stage_chain(Path(folder)):
        for weights in sorted(Path(member).glob("*.safetensors")):
            found = weights.stat()
            file_digest = _file_digest(str(weights), found.st_size, found.st_mtime_ns)
            digest.update(f"{weights.name}:{file_digest}\n".encode())
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """A weights file's SHA-256, hashed once per process and version of the file: stages
    share their base (hundreds of MB), and a held-out check runs the grid four more times."""
    return sha256_file(path)


def _cached(path: Path, compute) -> list:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    value = [[[str(d), float(s)] for d, s in ranking] for ranking in compute()]
    write_json_atomic(path, value)
    return value
