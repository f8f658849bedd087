"""Loading a bundle on the laptop: every file is verified, and length-sorted batching hands
rows back in the caller's order. No torch: the graphs are built with ``onnx.helper``."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors  # noqa: E402

from lexedge.runtime.bundle import Bundle, write_manifest  # noqa: E402
from lexedge.runtime.errors import LexedgeError  # noqa: E402
from lexedge.runtime.provenance import provenance  # noqa: E402

WORDS = ("[PAD] [UNK] [CLS] [SEP] contract void public order tort damages liability "
         "employer worker hours consent personal data third party copyright author").split()
DIM = 8

TEXTS = ["contract void", "tort damages liability employer worker hours consent personal",
         "data", "third party copyright author contract", "public order",
         "worker hours hours hours hours hours hours hours hours", "author", "consent data"]


def write_tokenizer(path):
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.save(str(path))


def int64_input(name):
    return helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])


def write_embedder(path):
    """Masked mean of a random embedding table, L2-normalised: padding never changes a row."""
    table = np.random.default_rng(0).normal(size=(len(WORDS), DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask3"]),
        helper.make_node("Mul", ["vectors", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["summed"], keepdims=0),
        helper.make_node("ReduceL2", ["summed"], ["norm"], axes=[-1], keepdims=1),
        helper.make_node("Div", ["summed", "norm"], ["sentence_embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "embedder", [int64_input("input_ids"), int64_input("attention_mask")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", DIM])],
        initializer=[onnx.numpy_helper.from_array(table, "table"),
                     onnx.numpy_helper.from_array(np.array([-1], np.int64), "last"),
                     onnx.numpy_helper.from_array(np.array([1], np.int64), "one")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def write_reranker(path):
    """Sum of per-token weights, passage tokens (segment 1) counted twice."""
    weights = np.random.default_rng(1).normal(size=(len(WORDS),)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["weights", "input_ids"], ["w"]),
        helper.make_node("Add", ["attention_mask", "token_type_ids"], ["factor"]),
        helper.make_node("Mul", ["attention_mask", "factor"], ["gated"]),
        helper.make_node("Cast", ["gated"], ["gated_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w", "gated_f"], ["scored"]),
        helper.make_node("ReduceSum", ["scored", "one"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "reranker",
        [int64_input("input_ids"), int64_input("attention_mask"), int64_input("token_type_ids")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch"])],
        initializer=[onnx.numpy_helper.from_array(weights, "weights"),
                     onnx.numpy_helper.from_array(np.array([1], np.int64), "one")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def bundle_dir(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    write_embedder(folder / "embedder.onnx")
    write_reranker(folder / "reranker.onnx")
    write_tokenizer(folder / "embedder.tokenizer.json")
    write_tokenizer(folder / "reranker.tokenizer.json")
    common = {"max_length": 32, "pad_id": 0, "query_prefix": "", "passage_prefix": "",
              "precision": "fp32"}
    manifest = {
        "format": 1, "provenance": provenance("test"),
        "embedder": {"file": "embedder.onnx", "tokenizer": "embedder.tokenizer.json",
                     "inputs": ["input_ids", "attention_mask"], "output": "sentence_embedding",
                     "dimension": DIM, "pooling": "mean", "normalize": True, **common},
        "reranker": {"file": "reranker.onnx", "tokenizer": "reranker.tokenizer.json",
                     "inputs": ["input_ids", "attention_mask", "token_type_ids"],
                     "output": "logits", **common},
        "selection": None, "metrics": None,
        "files": {p.name: sha256(p) for p in sorted(folder.iterdir())},
    }
    write_manifest(folder, manifest)
    return folder


def test_bundle_loads_and_binds_to_its_manifest_hash(bundle_dir):
    bundle = Bundle.load(bundle_dir)
    assert bundle.has_reranker
    assert bundle.sha256 == sha256(bundle_dir / "manifest.json")
    assert bundle.embedder() is bundle.embedder()  # one onnxruntime session, reused


def test_changed_model_file_is_refused_naming_the_file(bundle_dir):
    data = bytearray((bundle_dir / "embedder.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bundle_dir / "embedder.onnx").write_bytes(bytes(data))
    with pytest.raises(LexedgeError, match=r"embedder\.onnx: sha256 mismatch"):
        Bundle.load(bundle_dir)
    Bundle.load(bundle_dir, verify=False)  # an explicit opt-out still opens it


def test_missing_file_and_bad_manifest_are_refused(bundle_dir):
    (bundle_dir / "reranker.tokenizer.json").unlink()
    with pytest.raises(LexedgeError, match=r"reranker\.tokenizer\.json: missing"):
        Bundle.load(bundle_dir)
    (bundle_dir / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(LexedgeError, match="manifest.json: malformed JSON"):
        Bundle.load(bundle_dir)
    (bundle_dir / "manifest.json").unlink()
    with pytest.raises(LexedgeError, match="not a lexedge bundle"):
        Bundle.load(bundle_dir)


def test_length_sorted_batches_return_rows_in_the_original_order(bundle_dir):
    embedder = Bundle.load(bundle_dir).embedder(threads=1)
    one_by_one = embedder.encode(TEXTS, kind="query", batch_size=1)
    batched = embedder.encode(TEXTS, kind="query", batch_size=4)
    assert batched.shape == (len(TEXTS), DIM) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # distinct texts give distinct rows, so a permutation could not pass the check above
    assert len({tuple(np.round(row, 5)) for row in one_by_one}) == len(TEXTS)
    assert embedder.encode([], kind="query").shape == (0, DIM)


def test_reranker_scores_follow_the_passages_order(bundle_dir):
    reranker = Bundle.load(bundle_dir).reranker(threads=1)
    one_by_one = reranker.score("contract void", TEXTS, batch_size=1)
    batched = reranker.score("contract void", TEXTS, batch_size=3)
    assert batched.shape == (len(TEXTS),)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    alone = [reranker.score("contract void", [text])[0] for text in TEXTS]
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_loading_a_bundle_never_imports_torch(bundle_dir):
    code = (f"import sys; from lexedge.runtime.bundle import Bundle; "
            f"Bundle.load({str(bundle_dir)!r}).embedder().encode(['contract'], kind='query'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'lexedge')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert "torch" not in loaded and "transformers" not in loaded
    assert "lexedge.export" not in loaded and "lexedge.trainer" not in loaded


def test_models_with_one_tokenizer_file_share_it_and_keep_their_own_lengths(tmp_path):
    from support.tiny_bundle import build_tiny_bundle

    folder = build_tiny_bundle(tmp_path / "shared", "abcdefgh")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["reranker"]["max_length"] = 8  # the embedder keeps 64
    write_manifest(folder, manifest)  # as an export with that setting would
    bundle = Bundle.load(folder)
    embedder, reranker = bundle.embedder(threads=1), bundle.reranker(threads=1)
    assert embedder.tokenizer is reranker.tokenizer  # one ~280 MB vocabulary, not two
    long = "abcdefgh" * 20
    assert len(reranker.tokenize([("ab", long)])[0].ids) == 8
    assert len(embedder.tokenize([long])[0].ids) == 64
    assert len(reranker.tokenize([("ab", long)])[0].ids) == 8
    assert embedder.encode([long]).shape == (1, 16)


def test_cpu_encoding_runs_small_batches(bundle_dir, monkeypatch):
    """On the CPU the embedder batches few texts (the fastest there, bench/encode_batch.py);
    a batch size given by the caller still rules."""
    from lexedge.runtime.onnx_models import CPU_BATCH

    embedder = Bundle.load(bundle_dir).embedder(threads=1)
    run, calls = embedder.session.run, []
    monkeypatch.setattr(embedder.session, "run",
                        lambda *args: calls.append(len(args[1]["input_ids"])) or run(*args))
    texts = [f"text {i} " * (i % 5 + 1) for i in range(2 * CPU_BATCH + 1)]
    small = embedder.encode(texts, kind="passage")
    assert embedder.batch_size == CPU_BATCH == 4 and sorted(calls) == [1, 4, 4]
    calls.clear()
    np.testing.assert_allclose(embedder.encode(texts, kind="passage", batch_size=32), small,
                               atol=1e-5)
    assert calls == [len(texts)]


def test_a_long_run_goes_to_one_worker_per_core_in_the_original_order(bundle_dir):
    """Many texts on the CPU: every core runs whole batches on a one-thread session (made on
    first need, not for a query), and the rows come back in the caller's order with the values
    of the one-session path."""
    from lexedge.runtime.onnx_models import BULK_BATCHES

    embedder = Bundle.load(bundle_dir).embedder(threads=2)
    assert embedder.workers == 2
    texts = [f"{TEXTS[i % len(TEXTS)]} {i} " * (i % 7 + 1) for i in range(BULK_BATCHES * 5)]
    embedder.encode(texts[:3], kind="query")
    assert embedder._bulk_session is None  # a few texts: the all-core session
    seen = []
    spread = embedder.encode(texts, kind="passage", batch_size=2, on_batch=seen.append)
    assert embedder._bulk_session is not None and sum(seen) == len(texts)
    embedder.workers = 1
    together = embedder.encode(texts, kind="passage", batch_size=2)
    np.testing.assert_allclose(spread, together, atol=1e-5)
    alone = np.vstack([embedder.encode([text], kind="passage") for text in texts[:9]])
    np.testing.assert_allclose(spread[:9], alone, atol=1e-5)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: no workers, no bulk")
def test_a_bulk_embedder_holds_one_session_and_gives_the_same_vectors(bundle_dir, tmp_path,
                                                                      monkeypatch):
    """An index build's embedder (``bulk``) runs every batch, even a few texts, on the workers'
    one-thread session and never makes the all-core one (an e5-small INT8 build of 3,000
    articles peaked at 896 MB with both, 781 MB with one); its vectors are the usual ones."""
    from lexedge.runtime.index import Index
    from lexedge.runtime.onnx_models import _OnnxModel

    session = _OnnxModel._session
    bundle = Bundle.load(bundle_dir)
    bulk = bundle.embedder(threads=2, bulk=True)
    assert bulk is not bundle.embedder(threads=2)
    texts = [f"{TEXTS[i % len(TEXTS)]} {i} " * (i % 7 + 1) for i in range(12)]
    vectors = bulk.encode(texts, kind="passage")
    assert bulk._all_core_session is None and bulk._bulk_session is not None
    assert bulk.active_providers() == ["CPUExecutionProvider"]
    np.testing.assert_allclose(vectors, bundle.embedder(threads=2).encode(texts), atol=1e-5)

    made = []  # the sessions an index build makes: only the workers' one-thread session
    monkeypatch.setattr(_OnnxModel, "_session",
                        lambda self, threads: made.append(threads) or session(self, threads))
    documents = [{"id": f"d{i}", "text": text} for i, text in enumerate(texts)]
    Index.build(documents, tmp_path / "idx", bundle=Bundle.load(bundle_dir), progress=False)
    assert made == [1]


def test_sessions_wait_without_spinning(bundle_dir):
    """A search runs the embedder's and the reranker's sessions one after the other on the
    same cores; spinning threads of the first took the cores from the second (issue 19,
    ``bench/results/session_spinning.md``)."""
    from lexedge.runtime import onnx_models

    options = onnx_models.session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    reranker = Bundle.load(bundle_dir).reranker()
    assert reranker.session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning") == "0"
