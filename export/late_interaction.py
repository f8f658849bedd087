"""``lexedge late-interaction``: give a bundle a late-interaction reranker trained on its own
embedder's token states (issue 19, item 3).

The reranker graph is the bundle's INT8 embedder cut before its pooling, so it shares the
embedder's weights, tokenizer and speed; on top sits the head of
:mod:`lexedge.trainer.late_interaction`, written into the graph as a projection, a
normalisation and a softplus gate. The steps:

1. the untrained graph (unit last-layer states, every token weighted 1) gives the token
   states of each data set's training and dev queries and of their first-stage top
   candidates, through onnxruntime as served;
2. the head trains on the training queries (judged passages against the other candidates);
3. the graph with the head is written and checked against the torch head on dev candidates;
4. per index analyzer, the tokens of a passage read (a grid of caps: fewer is faster) and the
   weight of the reranker against the first stage (a grid of 0.0-1.0) are chosen on each data
   set's dev queries by MRR@10 + nDCG@10 of the served order, with the written graph scoring
   as a search does; the shorter cap, then the lower weight, wins a tie;
5. the bundle is written: the source's files unchanged (indexes built with it stay valid), plus
   ``reranker.onnx`` and the manifest's ``reranker`` section.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lexedge.runtime import model_card
from lexedge.runtime.builtin import bundle_location
from lexedge.runtime.bundle import MANIFEST_FILE, Bundle, write_manifest
from lexedge.runtime.datasets import load_qrels, load_queries
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.fusion import interpolate
from lexedge.runtime.metrics import mrr_at_k, ndcg_at_k
from lexedge.runtime.onnx_models import OnnxLateInteraction, SharedTokenizer
from lexedge.runtime.provenance import PROVENANCE, provenance
from lexedge.runtime.searcher import Searcher
from lexedge.runtime.settings import SearchSettings
from lexedge.runtime.storage import atomic_directory, manifest_with, refuse_foreign, sha256_file
from lexedge.trainer.late_interaction import Example, HeadConfig, train_head

from .bundle import read_card

RERANKER_FILE = "reranker.onnx"
STATES, WEIGHTS = "token_states", "token_weights"
RERANK_WEIGHTS = tuple(round(0.1 * step, 1) for step in range(11))
# Passage caps tried on dev (tokens, those up to the trained cap, which is always tried). On
# the full STARD index, 124 dev questions, 2 AVX2 cores, searches with the top 20 re-scored
# read to 128 tokens instead of 256 took p95 145.4 ms instead of 191.9 at MRR@10 0.5864
# against 0.5699; ja_appi's longer clauses lose 8 points of MRR@10 at 128
# (``bench/passage_cap.py``, one run).
PASSAGE_CAPS = (64, 96, 128, 192, 256)
# the largest difference allowed between the written graph's scores and the torch head's
MAX_SCORE_DIFFERENCE = 1e-4
_legacy_bundle = manifest_with("embedder", "files")


@dataclass
class LateInteractionConfig:
    """What ``lexedge late-interaction`` does; saved in the manifest.

    Args:
        bundle: the source bundle (a folder, or ``builtin``); its embedder is the base.
        data: BEIR folders with ``qrels/train.tsv`` and ``qrels/dev.tsv``.
        indexes: for each of ``data``, an index of its corpus built with ``bundle``: the
            candidates are its served first stage.
        out: the bundle folder to write.
        candidates: N, the first-stage candidates re-scored (the served default,
            ``SearchSettings.rerank``).
        passage_max_length: tokens of a passage read in training, and when re-ranking
            for a language no dev set spoke for (default: the embedder's ``max_length``).
        passage_caps: the shorter caps tried per language on dev (:data:`PASSAGE_CAPS`).
        card: a JSON object recorded as the bundle's card (default: the source's).
    """

    bundle: str
    data: tuple[Path, ...]
    indexes: tuple[Path, ...]
    out: Path
    head: HeadConfig = field(default_factory=HeadConfig)
    candidates: int = SearchSettings.rerank
    passage_max_length: int | None = None
    passage_caps: tuple[int, ...] = PASSAGE_CAPS
    card: Path | None = None


def last_hidden_state(graph) -> str:
    """The last layer's output: the last layer normalisation before the pooling."""
    norms = [node for node in graph.node if node.op_type in (
        "LayerNormalization", "SkipLayerNormalization")]
    if not norms:
        raise LexedgeError("embedder graph: no layer normalisation to take token states from")
    return norms[-1].output[0]


def token_graph(embedder_onnx: Path, head: dict[str, np.ndarray] | None = None):
    """The late-interaction graph of an embedder graph: ``input_ids``, ``attention_mask`` ->
    ``token_states`` [batch, seq, dim] (unit rows, zero on padding) and ``token_weights``
    [batch, seq] (zero on padding); ``head`` (``LateInteractionHead.tensors()``) adds the
    trained projection and gate, ``None`` gives the untrained graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(embedder_onnx))
    graph = model.graph
    hidden = last_hidden_state(graph)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    added, constants = [], []

    def constant(name, array):
        constants.append(numpy_helper.from_array(np.asarray(array), f"late/{name}"))
        return f"late/{name}"

    def node(op, inputs, name, **attributes):
        added.append(helper.make_node(op, inputs, [f"late/{name}"], name=f"late/{name}",
                                      **attributes))
        return f"late/{name}"

    def unit(tensor, name):
        if opset >= 18:
            norm = node("ReduceL2", [tensor, constant(f"{name}_axes", np.array([-1]))],
                        f"{name}_norm", keepdims=1)
        else:
            norm = node("ReduceL2", [tensor], f"{name}_norm", axes=[-1], keepdims=1)
        floor = node("Max", [norm, constant(f"{name}_floor", np.float32(1e-12))],
                     f"{name}_floored")
        return node("Div", [tensor, floor], name)

    mask = node("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)
    last_axis = constant("last_axis", np.array([-1]))
    states = unit_states = unit(hidden, "unit")
    if head is None:
        weights = mask
    else:
        projected = node("MatMul", [unit_states, constant(
            "projection", head["projection"].astype(np.float32))], "projected")
        states = unit(projected, "projected_unit")
        gate = node("MatMul", [unit_states, constant(
            "gate_weight", head["gate_weight"].astype(np.float32)[:, None])], "gate")
        gate = node("Add", [gate, constant("gate_bias", head["gate_bias"].astype(
            np.float32))], "gate_biased")
        gate = node("Squeeze", [node("Softplus", [gate], "gate_softplus"), last_axis],
                    "gate_squeezed")
        weights = node("Mul", [gate, mask], "gated")
    expanded = node("Unsqueeze", [mask, last_axis], "mask_expanded")
    added.append(helper.make_node("Mul", [states, expanded], [STATES], name="late/states"))
    added.append(helper.make_node("Identity", [weights], [WEIGHTS], name="late/weights"))
    nodes = list(graph.node) + added
    needed, kept = {STATES, WEIGHTS}, []
    for item in reversed(nodes):  # nodes are in topological order: keep what the outputs need
        if any(output in needed for output in item.output):
            kept.append(item)
            needed.update(name for name in item.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [i for i in list(graph.initializer) + constants if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info(STATES, TensorProto.FLOAT, ["batch", "sequence", "dim"]),
        helper.make_tensor_value_info(WEIGHTS, TensorProto.FLOAT, ["batch", "sequence"])])
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


@dataclass
class _DataSet:
    name: str
    analyzer: str
    queries: dict
    train: dict
    dev: dict
    candidates: dict  # query id -> [(doc id, first-stage score)], best first
    texts: dict  # doc id -> indexed text


def _data_set(data: Path, index: Path, bundle: Bundle, count: int) -> _DataSet:
    queries = load_queries(data / "queries.jsonl")
    train = load_qrels(data / "qrels" / "train.tsv", queries)
    dev = load_qrels(data / "qrels" / "dev.tsv", queries)
    searcher = Searcher(index, bundle=bundle.path, follow=False)
    settings = SearchSettings()
    candidates = {}
    for query_id in list(train) + list(dev):
        head = searcher.first_stage(queries[query_id], settings)
        candidates[query_id] = [(doc, score) for doc, score, _ in head]

    def text_of(doc: str) -> str:
        try:
            return searcher.index.document(doc).indexed_text
        except KeyError:
            raise LexedgeError(f"{data / 'qrels' / 'train.tsv'}: judged passage {doc!r} is not "
                               f"in the index {index} (built from another corpus?)") from None

    # every head's passages, and the judged training passages outside their head (they
    # train too)
    wanted = [doc for query_id in candidates for doc, _ in candidates[query_id][:count]] + \
        [doc for judged in train.values() for doc in judged]
    texts = {doc: text_of(doc) for doc in dict.fromkeys(wanted)}
    analyzer = (searcher.index.manifest.get("analyzer") or {}).get("name")
    return _DataSet(data.name, analyzer, queries, train, dev, candidates, texts)


def _served(candidates, scores, weight: float, count: int) -> list[str]:
    head = candidates[:count]
    return [doc for doc, _, _ in interpolate(head, scores, weight)] + \
        [doc for doc, _ in candidates[count:]]


def _dev_table(data: _DataSet, scores: dict, count: int) -> dict:
    """MRR@10 and nDCG@10 of the served order at each reranker weight (0: the first stage)."""
    table = {}
    for weight in RERANK_WEIGHTS:
        orders = {query_id: _served(data.candidates[query_id], scores[query_id], weight, count)
                  for query_id in data.dev}
        table[weight] = {name: round(float(np.mean([measure(orders[q], judged, 10) for q, judged
                                                    in data.dev.items()])), 4)
                         for name, measure in (("mrr@10", mrr_at_k), ("ndcg@10", ndcg_at_k))}
    return table


def _served_scores(reranker: OnnxLateInteraction, data: _DataSet, count: int,
                   passage_max_length: int) -> dict:
    """The written graph's scores of each dev query's first ``count`` candidates, computed
    as a search computes them, each passage read to ``passage_max_length`` tokens."""
    return {query_id: reranker.score(data.queries[query_id], [
        data.texts[doc] for doc, _ in data.candidates[query_id][:count]],
        passage_max_length=passage_max_length) for query_id in data.dev}


def _quality(metrics: dict) -> float:
    """What the choices on dev maximise: MRR@10 + nDCG@10."""
    return metrics["mrr@10"] + metrics["ndcg@10"]


def _best_weight(table: dict) -> dict:
    """The best weight of a dev table and its metrics (the lower weight wins a tie)."""
    weight = max(table, key=lambda w: (_quality(table[w]), -w))
    return {"rerank_weight": weight, **table[weight]}


def _head_scores(head, query: np.ndarray, passages) -> np.ndarray:
    """The torch head's MaxSim scores over token-state arrays."""
    with torch.no_grad():
        return head.score(torch.from_numpy(query),
                          [torch.from_numpy(p) for p in passages]).numpy()


def build_late_interaction_bundle(config: LateInteractionConfig, log=print) -> Bundle:
    """Write ``config.out``: ``config.bundle`` with a trained late-interaction reranker."""
    if len(config.data) != len(config.indexes) or not config.data:
        raise LexedgeError(f"--data and --index: give one index per data set "
                           f"({len(config.data)} data sets, {len(config.indexes)} indexes)")
    for name, value in (("--passage-max-length", config.passage_max_length),
                        *(("--passage-caps", cap) for cap in config.passage_caps)):
        if value is not None and value < 1:
            raise LexedgeError(f"{name}: a passage length must be at least 1 token, got {value}")
    source = Bundle.load(bundle_location(config.bundle))
    embedder = source.manifest["embedder"]
    if (config.passage_max_length or 0) > embedder["max_length"]:
        raise LexedgeError(f"--passage-max-length: at most the embedder's max_length, "
                           f"{embedder['max_length']} tokens, not {config.passage_max_length}")
    width, dimension = embedder.get("dimension"), config.head.dimension
    if dimension is not None and not 1 <= dimension <= (width or dimension):
        raise LexedgeError(f"--dimension: the projected states can be 1-{width} wide (the "
                           f"embedder's width), not {dimension}")
    out = Path(config.out)
    if out.resolve() == source.path.resolve():
        raise LexedgeError(f"--out {out}: is the source bundle; write a new folder")
    refuse_foreign(out, "bundle", legacy=_legacy_bundle)
    started = time.perf_counter()
    entry = {"kind": OnnxLateInteraction.KIND, "file": RERANKER_FILE,
             "tokenizer": embedder["tokenizer"], "inputs": list(embedder["inputs"]),
             "output": STATES, "weights_output": WEIGHTS, "layers": embedder.get("layers"),
             "dimension": embedder.get("dimension"), "pooling": "late interaction (MaxSim)",
             "query_prefix": embedder.get("query_prefix"),
             "passage_prefix": embedder.get("passage_prefix"),
             "max_length": embedder["max_length"],
             "passage_max_length": config.passage_max_length or embedder["max_length"],
             "pad_id": embedder.get("pad_id", 0), "precision": embedder.get("precision")}
    with atomic_directory(out, kind="bundle", legacy=_legacy_bundle) as staging:
        work = staging / ".work"
        work.mkdir()
        base_file = work / "untrained.onnx"
        _save(token_graph(source.path / embedder["file"]), base_file)
        tokenizer = SharedTokenizer(source.path / embedder["tokenizer"])
        base = OnnxLateInteraction(base_file, tokenizer, entry)
        sets = []
        for data, index in zip(config.data, config.indexes):
            sets.append(_data_set(Path(data), Path(index), source, config.candidates))
            log(f"late interaction: {data}: {len(sets[-1].train)} training and "
                f"{len(sets[-1].dev)} dev queries, {len(sets[-1].texts):,} passages")
        states, examples = {}, []
        for number, data in enumerate(sets):
            docs = sorted(data.texts)
            for doc, (array, _) in zip(docs, base.token_states([data.texts[d] for d in docs])):
                states[f"{number}/d/{doc}"] = array
            query_ids = list(data.train) + list(data.dev)
            for query_id, (array, _) in zip(query_ids, base.token_states(
                    [data.queries[q] for q in query_ids], "query")):
                states[f"{number}/q/{query_id}"] = array
            for query_id, judged in data.train.items():
                positives = [f"{number}/d/{d}" for d, grade in judged.items() if grade > 0]
                negatives = [f"{number}/d/{d}" for d, _ in
                             data.candidates[query_id][:config.candidates] if d not in judged]
                if positives and negatives:
                    examples.append(Example(f"{number}/q/{query_id}", positives, negatives))
        log(f"late interaction: token states of {len(states):,} texts; training on "
            f"{len(examples):,} queries")
        head = train_head(examples, states, config.head, log)
        entry["dimension"] = head.projection.out_features  # the states a search compares
        final = staging / RERANKER_FILE
        _save(token_graph(source.path / embedder["file"], head.tensors()), final)
        reranker = OnnxLateInteraction(final, tokenizer, entry)

        worst = 0.0
        for number, data in enumerate(sets):
            for query_id in list(data.dev)[:8]:  # the written graph against the torch head
                passages = [data.texts[d] for d, _ in
                            data.candidates[query_id][:config.candidates]]
                # the head over the untrained graph's states of the same batches: INT8
                # activation scales follow batch mates, so the states of training differ
                (query, _), = base.token_states([data.queries[query_id]], "query")
                expected = _head_scores(head, query, [a for a, _ in base.token_states(passages)])
                graph = reranker.score(data.queries[query_id], passages)
                worst = max(worst, float(np.abs(graph - expected).max()))
        if worst > MAX_SCORE_DIFFERENCE:
            raise LexedgeError(f"late interaction: the written graph's scores differ from the "
                               f"trained head's by {worst:.2e} (at most "
                               f"{MAX_SCORE_DIFFERENCE:g}); {out} not written")
        default_cap = entry["passage_max_length"]
        caps = sorted({cap for cap in config.passage_caps if 0 < cap < default_cap}
                      | {default_cap})
        selection, default_tables = {}, []
        for data in sets:
            tables = {cap: _dev_table(data, _served_scores(reranker, data, config.candidates,
                                                           cap), config.candidates)
                      for cap in caps}
            default_tables.append(tables[default_cap])
            cap, weight = max(((c, w) for c in caps for w in RERANK_WEIGHTS),
                              key=lambda cw: (_quality(tables[cw[0]][cw[1]]), -cw[0], -cw[1]))
            table = tables[cap]
            selection[data.name] = {
                "analyzer": data.analyzer, "dev_queries": len(data.dev),
                "rerank_weight": weight, "passage_max_length": cap,
                "first_stage": table[0.0], "chosen": table[weight],
                "by_passage_max_length": {str(c): _best_weight(tables[c]) for c in caps},
                "by_weight": {str(w): v for w, v in table.items()}}
            log(f"late interaction: {data.name} dev MRR@10 {table[0.0]['mrr@10']:.4f} -> "
                f"{table[weight]['mrr@10']:.4f}, nDCG@10 {table[0.0]['ndcg@10']:.4f} -> "
                f"{table[weight]['ndcg@10']:.4f} at weight {weight}, passages read to {cap} "
                "tokens")
        shutil.rmtree(work)
        # for an analyzer no dev set spoke for: the best weight at the trained cap over all
        # dev sets, each set counting alike
        overall = max(RERANK_WEIGHTS, key=lambda w: (
            sum(_quality(t[w]) for t in default_tables), -w))
        entry.update(
            rerank_weight=overall,
            rerank_weight_by_analyzer={s["analyzer"]: s["rerank_weight"]
                                       for s in selection.values() if s["analyzer"]},
            passage_max_length_by_analyzer={s["analyzer"]: s["passage_max_length"]
                                            for s in selection.values() if s["analyzer"]},
            parity={"status": "passed", "gates": [{
                "gate": "graph_vs_head_max_difference", "value": worst,
                "comparison": "<=", "threshold": MAX_SCORE_DIFFERENCE, "passed": True}]},
            source={"path": str(source.reference), "stage": "late-interaction head",
                    "kind": "late_interaction", "embedder_sha256": source.manifest["files"][
                        embedder["file"]]},
            training={"head": asdict(config.head), "candidates": config.candidates,
                      "examples": len(examples), "data": [str(d) for d in config.data],
                      "selection": selection},
            sizes={"bytes": final.stat().st_size},
            export_seconds=round(time.perf_counter() - started, 1))
        manifest = {key: value for key, value in source.manifest.items()
                    if key not in ("files", "manifest_sha256")}
        manifest[PROVENANCE] = provenance("lexedge late-interaction")
        manifest["reranker"] = entry
        manifest["card"] = _card(read_card(config.card) if config.card is not None
                                 else source.manifest.get("card"), entry, selection)
        for name in (embedder["file"], embedder["tokenizer"]):  # a reranker it had is replaced
            shutil.copyfile(source.path / name, staging / name)
        model_card.write(staging / model_card.CARD_FILE, model_card.bundle_card(manifest))
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(staging.iterdir())
                             if p.is_file() and p.name != MANIFEST_FILE}
        write_manifest(staging, manifest)
    return Bundle.load(out)


def _card(card: dict | None, entry: dict, selection: dict) -> dict | None:
    """The card with what this command did: the reranker's method, training and dev
    numbers, as measured in this run (a bundle without a card stays without one)."""
    if not card:
        return card
    training = entry["training"]
    head = training["head"]
    return {**card, "models": {**(card.get("models") or {}), "reranker": (
        "late interaction (MaxSim, Khattab and Zaharia 2020) over the embedder's own "
        "last-layer token states, with a trained projection and query-token weights")},
        "training": {**(card.get("training") or {}), "reranker": (
            f"{training['examples']:,} training queries of {', '.join(selection)} (judged "
            f"passages against the first stage's other top {training['candidates']}), "
            f"{head['epochs']} epochs, lr {head['learning_rate']}, temperature "
            f"{head['temperature']}; {entry['export_seconds']} s in all")},
        "quality": {**(card.get("quality") or {}), "reranker (dev, top "
                    f"{training['candidates']} re-scored)": "; ".join(
                        f"{name}: MRR@10 {s['first_stage']['mrr@10']} -> "
                        f"{s['chosen']['mrr@10']}, nDCG@10 {s['first_stage']['ndcg@10']} -> "
                        f"{s['chosen']['ndcg@10']} at weight {s['rerank_weight']}, passages "
                        f"read to {s['passage_max_length']} tokens"
                        for name, s in selection.items())}}


def _save(model, path: Path) -> None:
    import onnx

    onnx.save(model, str(path))
