"""Vocabulary trimming (issue 19): keep only the tokenizer pieces a domain uses.

multilingual-e5-small's SentencePiece (Unigram) vocabulary has 250,002 pieces; its embedding
matrix is 96 M of the model's 118 M parameters and its tokenizer holds about 280 MB of memory
when loaded. The Chinese and Japanese legal corpora use about 12,000 of those pieces. A trimmed
model keeps:

* the special tokens (``<s>``, ``<pad>``, ``</s>``, ``<unk>``, ``<mask>``),
* every piece of one character, and every ``▁`` + one character, so text the keep-list was
  not built from falls back to characters, never to ``<unk>`` (where the full vocabulary
  had the character at all),
* every piece the given texts (corpora and training queries) are tokenised into,
* optionally every piece written wholly in a script (``scripts=("cjk",)``: Han, kana, CJK
  punctuation and full-width forms, about 20,600 pieces of e5's vocabulary), so that Chinese
  and Japanese text the corpora never used (a contract, a memo) keeps its own pieces too.

Unigram tokenisation is a Viterbi search for the best-scoring segmentation: removing pieces
that a text's best segmentation does not use cannot change it. So every text made of covered
pieces is tokenised exactly as before (ids renumbered), and the trimmed model computes the
same embedding for it. :func:`tokenization_identity` measures this on held-out text.

Trimming works on a model folder (``model.safetensors``, ``config.json``, ``tokenizer.json``,
as :mod:`~lexedge.trainer.base_models` writes them) and needs no torch: every tensor whose
first dimension is the vocabulary (word embeddings, an MLM decoder and its bias) is cut to the
kept rows. Reference: Abdaoui et al., "Load What You Need: Smaller Versions of Multilingual
BERT" (2020), which trims mBERT's vocabulary per language the same way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.storage import atomic_directory, sha256_file
from lexedge.trainer.stage import MODEL_SETTINGS

TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
WORD_BOUNDARY = "\u2581"  # SentencePiece's ▁
#: Code point ranges of the scripts ``keep_list(scripts=...)`` can keep whole.
SCRIPTS = {"cjk": ((0x3000, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
                   (0xFF00, 0xFFEF), (0x20000, 0x2FFFF))}


def _in_script(piece: str, ranges) -> bool:
    text = piece.lstrip(WORD_BOUNDARY)
    return bool(text) and all(any(low <= ord(ch) <= high for low, high in ranges)
                              for ch in text)


def _unigram(spec: dict, where) -> list:
    model = spec.get("model", {})
    if model.get("type") != "Unigram":
        raise LexedgeError(f"{where}: vocabulary trimming needs a Unigram (SentencePiece) "
                           f"tokenizer, not {model.get('type')!r}")
    return model["vocab"]


def keep_list(tokenizer_file: str | Path, texts: Iterable[str], scripts: Sequence[str] = (),
              batch_size: int = 2048) -> list[int]:
    """The sorted piece ids to keep: special tokens, one-character pieces, the pieces
    ``texts`` are tokenised into and every piece wholly in one of ``scripts`` (names of
    :data:`SCRIPTS`; see the module docstring)."""
    from tokenizers import Tokenizer

    spec = json.loads(Path(tokenizer_file).read_text(encoding="utf-8"))
    vocab = _unigram(spec, tokenizer_file)
    keep = {token["id"] for token in spec.get("added_tokens", [])}
    keep.update(i for i, (piece, _) in enumerate(vocab) if len(piece) == 1 or (
        len(piece) == 2 and piece[0] == WORD_BOUNDARY))
    for script in scripts:
        if script not in SCRIPTS:
            raise LexedgeError(f"unknown script {script!r} (known: {', '.join(SCRIPTS)})")
        keep.update(i for i, (piece, _) in enumerate(vocab) if _in_script(piece, SCRIPTS[script]))
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            keep.update(i for e in tokenizer.encode_batch(batch, add_special_tokens=False)
                        for i in e.ids)
            batch = []
    if batch:
        keep.update(i for e in tokenizer.encode_batch(batch, add_special_tokens=False)
                    for i in e.ids)
    return sorted(keep)


def trim_tokenizer(spec: dict, keep: Sequence[int]) -> dict:
    """A copy of the ``tokenizer.json`` content ``spec`` holding only the pieces ``keep``
    (old ids, ascending), renumbered 0… in the same order; special-token ids follow."""
    vocab = _unigram(spec, "tokenizer.json")
    new_id = {old: new for new, old in enumerate(keep)}
    trimmed = json.loads(json.dumps(spec))
    trimmed["model"]["vocab"] = [vocab[old] for old in keep]
    unk = spec["model"].get("unk_id")
    if unk is not None:
        if unk not in new_id:
            raise LexedgeError("tokenizer.json: the unknown token must be kept")
        trimmed["model"]["unk_id"] = new_id[unk]
    for token in trimmed.get("added_tokens", []):
        if token["id"] not in new_id:
            raise LexedgeError(f"tokenizer.json: special token {token['content']!r} must be kept")
        token["id"] = new_id[token["id"]]
    for special in (trimmed.get("post_processor") or {}).get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    return trimmed


def trim_model(model_dir: str | Path, out_dir: str | Path, keep: Sequence[int],
               record: dict | None = None) -> Path:
    """Write ``model_dir`` with its vocabulary cut to ``keep`` into ``out_dir`` (atomically).

    Args:
        record: facts to store under ``vocabulary`` in ``lexedge_model.json`` (what the
            keep-list was built from, the measured identity).
    """
    from safetensors.numpy import load_file, save_file

    model_dir, keep = Path(model_dir), list(keep)
    spec = json.loads((model_dir / TOKENIZER_FILE).read_text(encoding="utf-8"))
    pieces = len(_unigram(spec, model_dir / TOKENIZER_FILE))
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    # The matrix may have more rows than the tokenizer has pieces (e5-small: 250,037 for
    # 250,002 pieces, padded); rows no piece names are never read and go too.
    size = int(config.get("vocab_size", pieces))
    rows = np.asarray(keep, dtype=np.int64)
    with atomic_directory(out_dir, kind="model") as staging:
        for item in model_dir.iterdir():
            if item.is_file() and item.name not in (TOKENIZER_FILE, WEIGHTS_FILE, CONFIG_FILE):
                shutil.copy2(item, staging / item.name)
        tensors = load_file(str(model_dir / WEIGHTS_FILE))
        cut = {name: np.ascontiguousarray(tensor[rows]) if tensor.ndim and
               tensor.shape[0] == size else tensor for name, tensor in tensors.items()}
        if not any(tensor.ndim and tensor.shape[0] == size for tensor in tensors.values()):
            raise LexedgeError(f"{model_dir / WEIGHTS_FILE}: no tensor has the vocabulary's "
                               f"{size} rows")
        save_file(cut, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        config["vocab_size"] = len(keep)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        (staging / TOKENIZER_FILE).write_text(
            json.dumps(trim_tokenizer(spec, keep), ensure_ascii=False), encoding="utf-8")
        model_record = staging / MODEL_SETTINGS
        facts = json.loads(model_record.read_text(encoding="utf-8")) \
            if model_record.is_file() else {}
        facts["vocabulary"] = {"kept": len(keep), "of": pieces,
                               "source_tokenizer_sha256": sha256_file(model_dir / TOKENIZER_FILE),
                               **(record or {})}
        model_record.write_text(json.dumps(facts, ensure_ascii=False, indent=2),
                                encoding="utf-8")
    return Path(out_dir)


def trim_loaded_model(model, tokenizer_file: str | Path, keep: Sequence[int],
                      out_tokenizer: str | Path) -> None:
    """Cut a loaded ``transformers`` model's input embeddings to the rows ``keep`` in place
    (the export's path, after the LoRA stack is merged), and write the matching trimmed
    ``tokenizer.json`` to ``out_tokenizer``."""
    import torch

    spec = json.loads(Path(tokenizer_file).read_text(encoding="utf-8"))
    keep = list(keep)
    embeddings = model.get_input_embeddings()
    new_id = {old: new for new, old in enumerate(keep)}
    pad = getattr(model.config, "pad_token_id", None)
    trimmed = torch.nn.Embedding(len(keep), embeddings.embedding_dim,
                                 padding_idx=new_id.get(pad) if pad is not None else None)
    with torch.no_grad():
        trimmed.weight.copy_(embeddings.weight[torch.as_tensor(keep)])
    model.set_input_embeddings(trimmed)
    model.config.vocab_size = len(keep)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        old = getattr(model.config, name, None)
        if old is not None:
            setattr(model.config, name, new_id[old])
    Path(out_tokenizer).write_text(json.dumps(trim_tokenizer(spec, keep), ensure_ascii=False),
                                   encoding="utf-8")


def tokenization_identity(full_tokenizer: str | Path, trimmed_model: str | Path,
                          texts: Iterable[str]) -> dict:
    """How the trimmed tokenizer (``trimmed_model``: its folder or its ``tokenizer.json``)
    treats ``texts`` against the full one: how many are tokenised identically (ids mapped
    back), and how many gained ``<unk>`` tokens.

    Returns:
        ``{"texts", "identical", "identical_fraction", "with_new_unknown"}``.
    """
    from tokenizers import Tokenizer

    full = Tokenizer.from_file(str(full_tokenizer))
    trimmed_path = Path(trimmed_model)
    trimmed_path = trimmed_path / TOKENIZER_FILE if trimmed_path.is_dir() else trimmed_path
    trimmed = Tokenizer.from_file(str(trimmed_path))
    full_spec = json.loads(Path(full_tokenizer).read_text(encoding="utf-8"))
    kept_pieces = [piece for piece, _ in _unigram(
        json.loads(trimmed_path.read_text(encoding="utf-8")), trimmed_path)]
    old_id = {piece: i for i, (piece, _) in enumerate(_unigram(full_spec, full_tokenizer))}
    back = np.asarray([old_id[piece] for piece in kept_pieces], dtype=np.int64)
    unknown = full_spec["model"].get("unk_id")
    for tokenizer in (full, trimmed):
        tokenizer.no_truncation()
        tokenizer.no_padding()
    texts = list(texts)
    identical = new_unknown = 0
    for start in range(0, len(texts), 2048):
        chunk = texts[start:start + 2048]
        for before, after in zip(full.encode_batch(chunk, add_special_tokens=False),
                                 trimmed.encode_batch(chunk, add_special_tokens=False)):
            mapped = back[after.ids].tolist() if after.ids else []
            identical += mapped == before.ids
            new_unknown += mapped.count(unknown) > before.ids.count(unknown)
    return {"texts": len(texts), "identical": identical,
            "identical_fraction": round(identical / max(1, len(texts)), 6),
            "with_new_unknown": new_unknown}
