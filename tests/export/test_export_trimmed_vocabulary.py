"""Issue 19: `lexedge export --trim-vocabulary` ships a smaller embedder whose vectors for the
corpus's text are those of the untrimmed model, and records what it kept."""

import json

import numpy as np

from conftest import bert_config, heavy, save_stage

from lexedge.export.bundle import ExportConfig, export_bundle
from lexedge.runtime.bundle import Bundle


def unigram_base(folder, corpus):
    from tokenizers import SentencePieceUnigramTokenizer

    torch, transformers = heavy()
    lines = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    tokenizer = SentencePieceUnigramTokenizer()
    tokenizer.train_from_iterator(lines + ["query passage unseen wording"], vocab_size=120,
                                  special_tokens=["<pad>", "<unk>"], unk_token="<unk>")
    tokenizer_file = folder.parent / "unigram.tokenizer.json"
    tokenizer.save(str(tokenizer_file))
    size = len(json.loads(tokenizer_file.read_text(encoding="utf-8"))["model"]["vocab"])
    torch.manual_seed(0)
    model = transformers.BertModel(bert_config(size), add_pooling_layer=False)
    folder.mkdir()
    return save_stage(folder, model, tokenizer_file), size


def test_trimmed_export_keeps_the_vectors_of_covered_text(calibration_corpus, tmp_path):
    base, size = unigram_base(tmp_path / "base", calibration_corpus)
    kept_source = tmp_path / "kept.jsonl"
    kept_source.write_text("".join(calibration_corpus.read_text(encoding="utf-8")
                                   .splitlines(keepends=True)[:10]), encoding="utf-8")
    common = dict(embedder=str(base), precision="fp32", calibration=calibration_corpus)
    full = export_bundle(ExportConfig(out=tmp_path / "full", **common), log=lambda _: None)
    trimmed = export_bundle(ExportConfig(out=tmp_path / "trimmed", trim_vocabulary=(kept_source,),
                                         **common), log=lambda _: None)
    vocabulary = trimmed.manifest["embedder"]["vocabulary"]
    assert vocabulary["of"] == size and vocabulary["kept"] < size
    assert vocabulary["identity_on_calibration"]["with_new_unknown"] == 0
    kept_tokenizer = json.loads((trimmed.path / "embedder.tokenizer.json").read_text("utf-8"))
    assert len(kept_tokenizer["model"]["vocab"]) == vocabulary["kept"]
    texts = [json.loads(line)["text"] for line in kept_source.read_text("utf-8").splitlines()]
    np.testing.assert_allclose(Bundle.load(trimmed.path).embedder().encode(texts, kind="passage"),
                               Bundle.load(full.path).embedder().encode(texts, kind="passage"),
                               atol=1e-5)
    assert trimmed.manifest["embedder"]["sizes"]["bytes"] < full.manifest["embedder"]["sizes"]["bytes"]
