"""Write a bundle: merge, export, fuse, quantise and measure each stage, then commit the
folder in one rename (``lexedge.runtime.storage.atomic_directory``).

Nothing is written to ``out`` until every stage has exported and every parity gate has
passed (or ``force`` is set), so a failed gate or a crash leaves an existing bundle as it
was and no half-written one. The layout and manifest are described in
``lexedge.runtime.bundle``, which reads them without torch.
"""

from __future__ import annotations

import gc
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lexedge.runtime import model_card
from lexedge.runtime.bundle import FORMAT_VERSION, MANIFEST_FILE, Bundle, write_manifest
from lexedge.runtime.errors import DataError, LexedgeError
from lexedge.runtime.onnx_models import OnnxEmbedder, OnnxReranker
from lexedge.runtime.provenance import PROVENANCE, provenance
from lexedge.runtime.storage import atomic_directory, manifest_with, refuse_foreign, sha256_file

from . import parity
from .merge import EMBEDDER, RERANKER, load_merged
from .onnx_export import OUTPUTS, export_onnx, graph_inputs, graph_module, optimize_graph
from .quantize import quantize_int8

PRECISIONS = ("int8", "fp32")
# Texts the torch model and the FP32 graph are compared on: enough to cover several lengths
# and paddings, few enough that a 12-layer model on 2 cores answers in seconds.
EXPORT_CHECK_TEXTS = 24


@dataclass
class ExportConfig:
    """What ``lexedge export`` does; saved in the manifest beside what it produced.

    Args:
        out: the bundle folder to write (replaced atomically if it holds a bundle).
        embedder: a stage folder or a built-in base name (``default`` = multilingual-e5-small).
        reranker: a reranker stage folder, or ``None`` for an embedder-only bundle.
        precision: ``int8`` (dynamic, per-channel weights) or ``fp32``.
        force: write the bundle even when a parity gate fails (recorded as ``failed+forced``).
        selection: a ``selection.json`` to record in the manifest.
        rerank_weight: the served mix ``W x reranker + (1 - W) x first stage`` over the
            re-ranked candidates, recorded as the runtime's default; ``None`` takes the
            selection's when its reranker is the one exported, else 1 (reranker alone).
        calibration: a BEIR folder or corpus file for the parity sample (default: the shipped
            sample of Japanese statutes).
        gates: parity thresholds.
        keep_fp32: node groups left unquantised (``lexedge.export.quantize.KEEP_FP32_GROUPS``).
        compare_per_tensor: also measure a per-tensor INT8 graph (recorded, not shipped).
        exporter: ``torchscript`` (attention fuses) or ``dynamo``.
        trim_vocabulary: corpora (``corpus.jsonl`` files or BEIR folders, whose corpus and
            training queries are read) whose pieces the bundle's tokenizer keeps, with the
            special tokens and every one-character piece (:mod:`lexedge.trainer.vocabulary`);
            empty: the full vocabulary.
        keep_scripts: scripts whose pieces are all kept too (``cjk``), for text the corpora
            never used.
        alpha: the hybrid fusion's dense weight chosen for this embedder on dev, the
            default of every search served by the bundle (``search.alpha`` in the manifest);
            ``None`` takes the selection's when its embedder is the one exported, else none is
            recorded (searches use ``DEFAULT_ALPHA``).
        alpha_by_analyzer: a weight per index analyzer (``{"ja": 0.7}``), chosen on each
            language's dev set, for indexes of that analyzer (``search.alpha_by_analyzer``);
            the others take ``alpha``.
        card: a JSON file whose object is recorded as the manifest's ``card``: what
            ``lexedge bundle info`` shows of languages, training data, measured quality and
            licences (the built-in bundle's is ``bench/builtin_card.json``).
    """

    out: Path
    embedder: str = "default"
    reranker: str | None = None
    precision: str = "int8"
    force: bool = False
    selection: Path | None = None
    rerank_weight: float | None = None
    calibration: Path | None = None
    gates: parity.Gates = field(default_factory=parity.Gates)
    per_channel: bool = True
    keep_fp32: tuple[str, ...] = ()
    compare_per_tensor: bool = False
    exporter: str = "torchscript"
    opset: int = 17
    model_cache: Path | None = None
    threads: int | None = None
    calibration_passages: int = 200
    calibration_queries: int = 50
    trim_vocabulary: tuple[Path, ...] = ()
    keep_scripts: tuple[str, ...] = ()
    card: Path | None = None
    alpha: float | None = None
    alpha_by_analyzer: dict = field(default_factory=dict)


def export_bundle(config: ExportConfig, log=print) -> Bundle:
    """Build the bundle ``config`` describes and return it loaded (and verified)."""
    if config.precision not in PRECISIONS:
        raise LexedgeError(f"precision must be one of {', '.join(PRECISIONS)}, "
                           f"got {config.precision!r}")
    out = Path(config.out)
    refuse_foreign(out, "bundle", legacy=_legacy_bundle)  # before the long export
    selection = _read_selection(config.selection)
    card = read_card(config.card)
    alpha = _alpha(config, selection)
    rerank_weight = _rerank_weight(config, selection)  # checked before the long export
    calibration = parity.load_calibration(config.calibration, config.calibration_passages,
                                          config.calibration_queries)
    started = time.perf_counter()
    with atomic_directory(out, kind="bundle", legacy=_legacy_bundle) as staging:
        work = staging / ".work"
        work.mkdir()
        entries, metrics = {}, {}
        for kind, spec in ((EMBEDDER, config.embedder), (RERANKER, config.reranker)):
            entries[kind] = None
            if spec is not None:
                entries[kind], metrics[kind] = _export_stage(kind, spec, staging, work,
                                                             config, calibration, log)
        shutil.rmtree(work)
        if entries[RERANKER]:
            entries[RERANKER]["rerank_weight"] = rerank_weight
        gates = [g for entry in entries.values() if entry for g in entry["parity"]["gates"]]
        failed = [g for g in gates if not g["passed"]]
        if failed and not config.force:
            raise LexedgeError("parity gate failed: " + "; ".join(_describe(g) for g in failed)
                               + f"; {out} not written (--force writes it anyway)")
        status = "failed+forced" if failed else "passed"
        for entry in entries.values():
            if entry:
                entry["parity"]["status"] = "failed+forced" if any(
                    not g["passed"] for g in entry["parity"]["gates"]) else "passed"
        manifest = {
            "format": FORMAT_VERSION,
            PROVENANCE: provenance("lexedge export"),
            "embedder": entries[EMBEDDER],
            "reranker": entries[RERANKER],
            "selection": selection,
            "card": card,
            "search": _search_section(alpha, config.alpha_by_analyzer),
            "metrics": metrics if any(metrics.values()) else None,
            "gates": {"status": status, "failed": [g["gate"] for g in failed]},
            "export": {"seconds": round(time.perf_counter() - started, 1),
                       "config": _jsonable(asdict(config))},
        }
        model_card.write(staging / model_card.CARD_FILE, model_card.bundle_card(manifest))
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(staging.iterdir())
                             if p.is_file() and p.name != MANIFEST_FILE}
        write_manifest(staging, manifest)  # with its own hash (manifest_sha256)
    if failed:
        log("WARNING: " + "; ".join(_describe(g) for g in failed) + " (written: --force)")
    return Bundle.load(out)


def _export_stage(kind: str, spec: str, staging: Path, work: Path, config: ExportConfig,
                  calibration: parity.Calibration, log) -> tuple[dict, dict | None]:
    started = time.perf_counter()
    stage = load_merged(spec, kind, config.model_cache)
    log(f"{kind}: {stage.source['path']} ({_stack_summary(stage.source)})")
    vocabulary = _trim(kind, stage, work, config, calibration, log) \
        if config.trim_vocabulary or config.keep_scripts else None
    raw, fp32 = work / f"{kind}.raw.onnx", work / f"{kind}.fp32.onnx"
    graph = export_onnx(stage, raw, config.exporter, config.opset)
    graph.update(optimize_graph(raw, fp32, stage))
    raw.unlink()
    log(f"{kind}: exported ({config.exporter}), fused {graph['fused'] or 'nothing'}")

    entry = {"file": f"{kind}.onnx", "tokenizer": f"{kind}.tokenizer.json",
             "inputs": graph_inputs(stage), "output": OUTPUTS[kind],
             "layers": int(stage.model.config.num_hidden_layers)}
    if kind == EMBEDDER:
        entry.update(dimension=int(stage.model.config.hidden_size),
                     pooling=stage.settings["pooling"], normalize=stage.settings["normalize"])
    else:  # baked into the graph; recorded for provenance
        entry.update(head=stage.settings["head"])
    entry.update(query_prefix=stage.settings["query_prefix"],
                 passage_prefix=stage.settings["passage_prefix"],
                 max_length=int(stage.settings["max_length"]),
                 pad_id=_pad_id(stage), precision=config.precision)
    shutil.copyfile(stage.tokenizer_file, staging / entry["tokenizer"])
    model_class = OnnxEmbedder if kind == EMBEDDER else OnnxReranker
    fp32_model = model_class(fp32, staging / entry["tokenizer"], entry, config.threads)
    reference = parity.Remembered(fp32_model)

    measured = {"calibration": calibration.describe(),
                "export_check": {"reference": "torch", "candidate": "fp32-onnx",
                                 **parity.torch_parity(graph_module(stage), fp32_model,
                                                       _check_inputs(kind, entry, calibration))}}
    source, metrics = stage.source, stage.metrics
    del stage  # the torch model is no longer needed: free it before the INT8 runs
    gc.collect()

    shipped = staging / entry["file"]
    if config.precision == "int8":
        entry["quantization"] = quantize_int8(fp32, shipped, per_channel=config.per_channel,
                                             keep_fp32=tuple(config.keep_fp32))
        candidate = model_class(shipped, staging / entry["tokenizer"], entry, config.threads)
        measured["quantization"] = {"reference": "fp32-onnx", "candidate": "int8-onnx",
                                    **_compare(kind, reference, candidate, calibration)}
        if config.compare_per_tensor and config.per_channel:
            per_tensor = work / f"{kind}.per-tensor.onnx"
            quantize_int8(fp32, per_tensor, per_channel=False,
                          keep_fp32=tuple(config.keep_fp32))
            other = model_class(per_tensor, staging / entry["tokenizer"], entry, config.threads)
            measured["per_tensor_int8"] = {"reference": "fp32-onnx", "candidate":
                                           "int8-onnx per-tensor (not shipped)",
                                           "bytes": per_tensor.stat().st_size,
                                           **_compare(kind, reference, other, calibration)}
            del other
            per_tensor.unlink()
    else:
        entry["quantization"] = None
        shutil.copyfile(fp32, shipped)
    measured["gates"] = parity.evaluate_gates(kind, measured, config.gates)
    entry.update(graph=graph, source=source, parity=measured, vocabulary=vocabulary,
                 sizes={"fp32_bytes": fp32.stat().st_size, "bytes": shipped.stat().st_size},
                 export_seconds=round(time.perf_counter() - started, 1))
    log(f"{kind}: {_parity_summary(measured)}; {shipped.stat().st_size / 1e6:.1f} MB "
        f"({config.precision}), {entry['export_seconds']} s")
    return entry, metrics


def _trim(kind: str, stage, work: Path, config: ExportConfig,
          calibration: parity.Calibration, log) -> dict:
    """Cut the merged model's vocabulary to what ``config.trim_vocabulary`` uses (issue 19)
    and point the stage at the trimmed tokenizer; what was kept and how the calibration texts
    tokenise against the full tokenizer go into the manifest."""
    from lexedge.trainer.vocabulary import keep_list, tokenization_identity, trim_loaded_model

    texts = [text for source in config.trim_vocabulary for text in _vocabulary_texts(source)]
    # the model reads every text behind its prefix (E5: "query: ", "passage: ")
    texts += [prefix for prefix in (stage.settings.get("query_prefix"),
                                    stage.settings.get("passage_prefix")) if prefix]
    full = stage.tokenizer_file
    keep = keep_list(full, texts, scripts=config.keep_scripts)
    trimmed = work / f"{kind}.trimmed.tokenizer.json"
    trim_loaded_model(stage.model, full, keep, trimmed)
    stage.tokenizer_file = trimmed
    pieces = len(json.loads(Path(full).read_text(encoding="utf-8"))["model"]["vocab"])
    identity = tokenization_identity(full, trimmed, calibration.passages + calibration.queries)
    log(f"{kind}: vocabulary trimmed to {len(keep):,} of {pieces:,} pieces; calibration texts "
        f"tokenised identically: {identity['identical_fraction']:.4f}")
    return {"kept": len(keep), "of": pieces, "scripts": list(config.keep_scripts),
            "sources": [str(Path(source).resolve()) for source in config.trim_vocabulary],
            "texts": len(texts), "identity_on_calibration": identity}


def _vocabulary_texts(source: Path) -> list[str]:
    """Titles and texts of a corpus, plus a BEIR folder's training queries."""
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.ingest import iter_documents

    texts = [t for d in iter_documents(source) for t in (d.title, d.text) if t]
    folder = Path(source)
    if folder.is_dir() and (folder / "qrels" / "train.tsv").is_file():
        dataset = BeirDataset(folder)
        wanted = set(dataset.qrels("train"))
        texts += [text for qid, text in dataset.queries().items() if qid in wanted]
    return texts


def _compare(kind, reference, candidate, calibration) -> dict:
    if kind == EMBEDDER:
        return parity.embedding_parity(reference, candidate, calibration)
    return parity.reranker_parity(reference, candidate, calibration)


def _check_inputs(kind: str, entry: dict, calibration: parity.Calibration) -> list:
    """Calibration texts for the torch-vs-ONNX check, prefixed as the runtime prefixes them."""
    half = EXPORT_CHECK_TEXTS // 2
    queries = [entry["query_prefix"] + q for q in calibration.queries[:half]]
    passages = [entry["passage_prefix"] + p for p in calibration.passages[:half]]
    if kind == EMBEDDER:
        return queries + passages
    return list(zip(queries, passages))


def _pad_id(stage) -> int:
    pad = getattr(stage.model.config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _rerank_weight(config: ExportConfig, selection: dict | None) -> float:
    weight = config.rerank_weight
    chosen = (selection or {}).get("reranker") or {}
    if weight is None and chosen.get("path") and \
            Path(chosen["path"]).resolve() == Path(str(config.reranker)).resolve():
        weight = chosen.get("rerank_weight", 1.0)
    weight = 1.0 if weight is None else float(weight)
    if not 0.0 <= weight <= 1.0:
        raise LexedgeError(f"rerank_weight {weight:g}: must be within [0, 1]")
    return weight


def _search_section(alpha: float | None, by_analyzer: dict) -> dict | None:
    for name, weight in by_analyzer.items():
        if not 0.0 <= float(weight) <= 1.0:
            raise LexedgeError(f"alpha for {name} {weight:g}: must be within [0, 1]")
    section = {} if alpha is None else {"alpha": alpha}
    if by_analyzer:
        section["alpha_by_analyzer"] = {k: float(v) for k, v in sorted(by_analyzer.items())}
    return section or None


def _alpha(config: ExportConfig, selection: dict | None) -> float | None:
    alpha = config.alpha
    chosen = (selection or {}).get("embedder") or {}
    if alpha is None and chosen.get("path") and \
            Path(chosen["path"]).resolve() == Path(str(config.embedder)).resolve():
        alpha = (selection or {}).get("alpha")
    if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
        raise LexedgeError(f"alpha {alpha:g}: must be within [0, 1]")
    return None if alpha is None else float(alpha)


#: A bundle written before artefact markers is replaceable by a new export.
_legacy_bundle = manifest_with("format", "embedder", "files")


def read_card(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LexedgeError(f"--card {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(card, dict):
        raise LexedgeError(f"--card {path}: expected a JSON object")
    return card


def _read_selection(path: Path | None):
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON: {exc.msg}", exc.lineno) from None


def _describe(gate: dict) -> str:
    failed = "<" if gate["comparison"] == ">=" else ">"
    value = "not measured" if gate["value"] is None else f"{gate['value']:.6g}"
    return f"{gate['gate']} {value} {failed} {gate['threshold']:.6g}"


def _parity_summary(measured: dict) -> str:
    parts = [f"export check {measured['export_check']['max_abs_diff']:.2g} max abs diff"]
    for name, values in measured.items():
        if name in ("quantization", "per_tensor_int8"):
            shown = {k: v for k, v in values.items()
                     if k in ("cosine_mean", "cosine_min", "top10_overlap",
                              "top10_overlap_tie_aware", "spearman", "top1_agreement")}
            parts.append(f"{name} " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    return "; ".join(parts)


def _stack_summary(source: dict) -> str:
    kinds = []
    while source:
        kinds.append(source["kind"])
        source = source["base"]
    adapters = kinds.count("lora-adapter")
    return f"{adapters} LoRA adapter(s) merged" if adapters else "plain model"


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
