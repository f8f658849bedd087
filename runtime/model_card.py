"""Model cards: the ``README.md`` a stage folder and a bundle carry so they explain themselves
(issue 23) — what model, from which base under which licence, trained on what, measured how,
and how to load it. Hugging Face's layout: YAML front matter, then Markdown; everything in it
comes from the folder's own manifests, so a card never says more than was recorded."""

from __future__ import annotations

import json
from pathlib import Path

from lexedge.runtime.storage import atomic_file

CARD_FILE = "README.md"


def render(front_matter: dict, title: str, sections: list[tuple[str, list[str]]]) -> str:
    """The card's text: ``front_matter`` as YAML (scalars and lists of scalars), a title,
    then each ``(heading, lines)`` section that has lines."""
    head = ["---"]
    for key, value in front_matter.items():
        if value in (None, [], ""):
            continue
        if isinstance(value, list):
            head += [f"{key}:"] + [f"- {json.dumps(item, ensure_ascii=False)}" for item in value]
        else:
            head.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    body = [f"# {title}", ""]
    for heading, lines in sections:
        if lines:
            body += [f"## {heading}", "", *lines, ""]
    return "\n".join(head + ["---", ""] + body)


def table(rows: list[tuple], header: tuple) -> list[str]:
    """A Markdown table (cells are formatted with ``str``; floats to 4 places)."""
    def cell(value) -> str:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def metrics_rows(metrics: dict) -> list[tuple]:
    """The retrieval measures of a metrics record, in a fixed order."""
    names = [k for k in metrics if isinstance(metrics[k], (int, float))
             and k.split("@")[0] in ("recall", "mrr", "ndcg", "map", "precision")]
    return [(name, float(metrics[name])) for name in names]


def licence_lines(licences: dict | None) -> list[str]:
    return [f"- {name}: {licence}" for name, licence in (licences or {}).items()]


def write(path: Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text.encode("utf-8"))


# -- a bundle's card ----------------------------------------------------------------------------
def bundle_card(manifest: dict) -> str:
    """A bundle's ``README.md`` from its manifest: the models (depth, width, vocabulary,
    precision, the stages they came from), licences, training data, quality, the parity
    gates the export passed, and the search settings it carries."""
    card = manifest.get("card") or {}
    sections, licences, languages = [], dict(card.get("licences") or {}), card.get("languages")
    for kind in ("embedder", "reranker"):
        entry = manifest.get(kind)
        if not entry:
            continue
        facts = [f"- file `{entry['file']}` ({(entry.get('sizes') or {}).get('bytes', 0) / 1e6:.1f}"
                 f" MB, {entry.get('precision')}), tokenizer `{entry['tokenizer']}`",
                 f"- {entry.get('layers')} layers"
                 + (f", {entry['dimension']} dimensions, {entry.get('pooling')} pooling"
                    if entry.get("dimension") else f", head `{entry.get('head')}`")
                 + f", at most {entry.get('max_length')} tokens",
                 f"- query prefix {entry.get('query_prefix')!r}, passage prefix "
                 f"{entry.get('passage_prefix')!r}"]
        vocabulary = entry.get("vocabulary")
        if vocabulary:
            identity = vocabulary.get("identity_on_calibration") or {}
            facts.append(f"- vocabulary trimmed to {vocabulary['kept']:,} of "
                         f"{vocabulary['of']:,} pieces; {identity.get('identical')} of "
                         f"{identity.get('texts')} calibration texts tokenise as before")
        chain = _stages(entry.get("source"))
        if chain:
            facts.append("- from " + " ← ".join(f"`{s['stage']}`" for s in chain))
        if (card.get("models") or {}).get(kind):
            facts.append(f"- {card['models'][kind]}")
        if kind == "reranker":
            if entry.get("rerank_weight") is not None:
                facts.append(f"- rerank weight {entry['rerank_weight']}")
            facts += [f"- rerank weight for the `{name}` analyzer: {value}"
                      for name, value in (entry.get("rerank_weight_by_analyzer") or {}).items()]
            facts += [f"- passages read to {value} tokens for the `{name}` analyzer"
                      for name, value in
                      (entry.get("passage_max_length_by_analyzer") or {}).items()]
        parity = entry.get("parity") or {}
        facts += ["", f"Parity ({parity.get('status')}):", ""] + table(
            [(g["gate"], g["value"], f"{g['comparison']} {g['threshold']}",
              "passed" if g["passed"] else "FAILED") for g in parity.get("gates") or []],
            ("gate", "value", "bound", "outcome"))
        sections.append((kind.capitalize(), facts))
        for stage in chain:
            licences.update({k: v for k, v in (stage.get("licences") or {}).items()
                             if k not in licences})
    training = [f"- {name}: {text}" for name, text in (card.get("training") or {}).items()]
    for kind in ("embedder", "reranker"):
        for stage in _stages((manifest.get(kind) or {}).get("source")):
            data = stage.get("data")
            if data:
                training.append(f"- {kind} `{stage['stage']}`: `{data.get('dataset')}`, split "
                                f"`{data.get('split')}`, {data.get('examples')} examples")
    quality = [f"- {name}: {text}" for name, text in (card.get("quality") or {}).items()]
    if any("bench/" in str(text) for text in (card.get("quality") or {}).values()):
        quality.append("- (`bench/…` files are in the lexedge source repository, with the "
                       "commands that reproduce them.)")
    for kind, by_stage in (manifest.get("metrics") or {}).items():
        for stage, metrics in (by_stage or {}).items():
            quality += ["", f"{kind} `{Path(stage).name}`, recorded by training "
                            f"({metrics.get('split', 'dev')}):", ""]
            quality += table(metrics_rows(metrics), ("measure", "value"))
    search = manifest.get("search") or {}
    settings = [f"- fusion weight alpha {search.get('alpha')}"] + [
        f"- alpha for the `{name}` analyzer: {value}"
        for name, value in (search.get("alpha_by_analyzer") or {}).items()]
    use = ["```sh", "lexedge index build --bundle THIS_FOLDER --docs FOLDER --out INDEX",
           "lexedge search --index INDEX \"your question\"", "```",
           "Every file's sha256 is in `manifest.json` and checked on load; the models are "
           "ONNX and load with onnxruntime alone (no torch)."]
    precisions = sorted({str(manifest[kind].get("precision"))
                         for kind in ("embedder", "reranker") if manifest.get(kind)})
    front = {"library_name": "onnx", "license": card.get("license") or upstream_licence(licences),
             "language": languages, "tags": ["lexedge", "legal", "retrieval", "onnx",
                                             *precisions],
             "pipeline_tag": "sentence-similarity"}
    return render(front, card.get("name") or "lexedge bundle", sections + [
        ("Licences", licence_lines(licences)), ("Training data", training),
        ("Quality", quality), ("Search settings", settings), ("Using it", use)])


def _stages(source: dict | None) -> list[dict]:
    """The stage records of an export source, top first."""
    found = []
    while source:
        found.append(source)
        source = source.get("base")
    return found


def upstream_licence(licences: dict) -> str | None:
    """The licence of the upstream model weights (a hub id's entry), SPDX in lower case."""
    for name, licence in licences.items():
        if "/" in name and "github" not in str(licence):
            return str(licence).split()[0].strip(",;").lower()
    return None
