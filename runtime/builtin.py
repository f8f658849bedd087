"""The built-in bundle: the trained laptop models shipped inside the package (issue 19, item 5),
and what ``lexedge bundle info`` says about any bundle.

``builtin`` names it wherever a bundle is taken (``--bundle builtin`` for ``index build``,
``search``, ``eval``, ``demo``, ``tui``; ``Bundle.load("builtin")`` in Python). A folder that
happens to be called ``builtin`` is given as ``./builtin``. An index built with it records the
name, not the installed path, so it keeps working when the package moves; a lexedge whose
built-in bundle has other models refuses the index by its embedder hash, as for any bundle.

The bundle's files are hashed on every load like any bundle's: a damaged install is refused.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .errors import LexedgeError
from .model_card import CARD_FILE

BUILTIN = "builtin"
MANIFEST_FILE = "manifest.json"


def builtin_path() -> Path:
    """Where the installed package keeps the built-in bundle (it may be absent in a source
    checkout whose bundle was never built)."""
    return Path(str(files("lexedge.runtime") / BUILTIN))


def has_builtin() -> bool:
    return (builtin_path() / MANIFEST_FILE).is_file()


def bundle_location(value: str | Path) -> Path:
    """The folder a ``--bundle`` value names: the string ``builtin`` is the built-in bundle,
    anything else a path."""
    if isinstance(value, str) and value == BUILTIN:
        if not has_builtin():
            raise LexedgeError("--bundle builtin: this lexedge was installed without its "
                               f"built-in bundle (no {builtin_path() / MANIFEST_FILE}); "
                               "reinstall it, or give a bundle folder")
        return builtin_path()
    return Path(value)


def names_bundle(value: str) -> bool:
    """Whether a setting names an exported bundle (``builtin``, or a folder holding a
    bundle's manifest) rather than, say, a trainer stage folder."""
    return value == BUILTIN or (Path(value) / MANIFEST_FILE).is_file()


def is_builtin(path: str | Path) -> bool:
    try:
        return Path(path).resolve() == builtin_path().resolve()
    except OSError:
        return False


def describe(bundle) -> dict:
    """What a bundle is, for ``lexedge bundle info``: where, how big, its models (layers,
    width, vocabulary, lengths, precision, parity), and what its card says (languages,
    training data, measured quality, licences) when the exporter was given one."""
    manifest = bundle.manifest
    card = manifest.get("card") or {}
    sizes = {name: (bundle.path / name).stat().st_size for name in manifest["files"]}
    models = {}
    for section in ("embedder", "reranker"):
        entry = manifest.get(section)
        if not entry:
            continue
        source = entry.get("source") or {}
        models[section] = {
            "file": entry["file"], "bytes": sizes[entry["file"]],
            "tokenizer_bytes": sizes[entry["tokenizer"]],
            "layers": entry.get("layers") or source.get("layers"),
            "dimension": entry.get("dimension"), "max_length": entry.get("max_length"),
            "precision": entry.get("precision"), "vocabulary": (entry.get("vocabulary") or {})
            .get("kept"), "parity": (entry.get("parity") or {}).get("status"),
            **({"kind": entry.get("kind", "cross_encoder"),
                "rerank_weight": entry.get("rerank_weight"),
                "rerank_weight_by_analyzer": entry.get("rerank_weight_by_analyzer"),
                "passage_max_length_by_analyzer": entry.get("passage_max_length_by_analyzer")}
               if section == "reranker" else {}),
            **({"base_model": card["models"].get(section)} if isinstance(
                card.get("models"), dict) and section in card["models"] else {})}
    return {"name": BUILTIN if is_builtin(bundle.path) else bundle.path.name,
            "path": str(bundle.path), "bytes": sum(sizes.values()) + (
                bundle.path / MANIFEST_FILE).stat().st_size,
            "sha256": bundle.sha256, "models": models,
            "languages": card.get("languages"), "training": card.get("training"),
            "quality": card.get("quality"), "licences": card.get("licences"),
            "made": (manifest.get("provenance") or {}).get("created"),
            "card": str(bundle.path / CARD_FILE) if CARD_FILE in manifest["files"] else None}


def format_info(info: dict) -> str:
    """The human form of :func:`describe`."""
    lines = [f"{info['name']}: {info['path']}",
             f"  size        {info['bytes'] / 1e6:.1f} MB, manifest sha256 {info['sha256'][:16]}"]
    for section, model in info["models"].items():
        facts = [f"{model['layers']} layers" if model.get("layers") else None,
                 f"{model['dimension']} dims" if model.get("dimension") else None,
                 f"{model['vocabulary']:,} pieces" if model.get("vocabulary") else None,
                 f"max {model['max_length']} tokens", model.get("precision"),
                 f"{model['bytes'] / 1e6:.1f} MB + tokenizer "
                 f"{model['tokenizer_bytes'] / 1e6:.1f} MB", f"parity {model.get('parity')}"]
        lines.append(f"  {section:<11} " + ", ".join(f for f in facts if f))
        if model.get("passage_max_length_by_analyzer"):
            lines.append(f"  {'':<11} passages read to " + ", ".join(
                f"{tokens} tokens ({name})" for name, tokens in
                model["passage_max_length_by_analyzer"].items()) + " when re-ranking")
        if model.get("base_model"):
            lines.append(f"  {'':<11} from {model['base_model']}")
    if info.get("card"):
        lines.append(f"  card        {info['card']}")
    for key in ("languages", "training", "quality", "licences"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, dict):
            lines.append(f"  {key}")
            lines += [f"    {name}: {text}" for name, text in value.items()]
        else:
            lines.append(f"  {key:<11} " + (", ".join(value) if isinstance(value, list)
                                           else str(value)))
    return "\n".join(lines)
