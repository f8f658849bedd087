"""Issue 19, vocabulary trimming: text made of kept pieces is tokenised and embedded exactly as
before; other text falls back to characters, never to <unk>; the model shrinks to match."""

import json

import numpy as np
import pytest

from lexedge.trainer.vocabulary import keep_list, tokenization_identity, trim_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
PIECES = ["▁契約", "契約", "▁解除", "解除", "の", "▁の", "▁民法", "民法", "第", "条", "▁第", "九十",
          "▁賃貸借", "賃貸借", "更新", "▁更新", "▁労働", "労働", "時間", "▁時間", "契", "約", "解", "除",
          "民", "法", "九", "十", "賃", "貸", "借", "更", "新", "労", "働", "時", "間", "▁", "▁契"]


def build_model(folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    folder.mkdir()
    vocab = [(token, 0.0) for token in SPECIALS] + [
        (piece, -1.0 - 0.5 * len(piece) ** -1) for piece in PIECES] + [("<mask>", 0.0)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=3))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.add_special_tokens(SPECIALS + ["<mask>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer.save(str(folder / "tokenizer.json"))
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    (folder / "lexedge_model.json").write_text(json.dumps({"base": "tiny"}))
    return folder


def embed(folder, texts):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    model = transformers.BertModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text).ids])
            rows.append(model(input_ids=ids).last_hidden_state.mean(dim=1)[0].numpy())
    return np.stack(rows)


def test_covered_text_is_tokenised_and_embedded_as_before(tmp_path):
    full = build_model(tmp_path / "full")
    corpus = ["契約の解除", "民法第九十条", "賃貸借の更新"]
    keep = keep_list(full / "tokenizer.json", corpus)
    trimmed = trim_model(full, tmp_path / "trimmed", keep, record={"sources": ["corpus"]})
    assert len(keep) < len(SPECIALS) + len(PIECES) + 1  # something was cut
    identity = tokenization_identity(full / "tokenizer.json", trimmed, corpus)
    assert identity["identical"] == identity["texts"] == 3
    np.testing.assert_allclose(embed(trimmed, corpus), embed(full, corpus), atol=1e-5)
    record = json.loads((trimmed / "lexedge_model.json").read_text())
    assert record["base"] == "tiny" and record["vocabulary"]["kept"] == len(keep)
    assert json.loads((trimmed / "config.json").read_text())["vocab_size"] == len(keep)


def test_uncovered_text_falls_back_to_characters_never_to_unknown(tmp_path):
    full = build_model(tmp_path / "full")
    keep = keep_list(full / "tokenizer.json", ["契約の解除"])
    trimmed = trim_model(full, tmp_path / "trimmed", keep)
    identity = tokenization_identity(full / "tokenizer.json", trimmed, ["労働時間の更新"])
    assert identity["identical"] == 0  # 労働, 時間, 更新 were cut: characters now
    assert identity["with_new_unknown"] == 0
    from tokenizers import Tokenizer

    pieces = Tokenizer.from_file(str(trimmed / "tokenizer.json")).encode("労働時間").tokens
    assert pieces[1:-1] == ["▁", "労", "働", "時", "間"]


def test_the_special_tokens_keep_their_roles(tmp_path):
    from tokenizers import Tokenizer

    full = build_model(tmp_path / "full")
    trimmed = trim_model(full, tmp_path / "trimmed", keep_list(full / "tokenizer.json", []))
    tokenizer = Tokenizer.from_file(str(trimmed / "tokenizer.json"))
    encoding = tokenizer.encode("契約")
    assert encoding.tokens[0] == "<s>" and encoding.tokens[-1] == "</s>"
    assert tokenizer.token_to_id("<mask>") == len(json.loads(
        (trimmed / "tokenizer.json").read_text())["model"]["vocab"]) - 1


def test_a_script_kept_whole_keeps_text_the_corpus_never_used(tmp_path):
    full = build_model(tmp_path / "full")
    keep = keep_list(full / "tokenizer.json", ["契約の解除"], scripts=("cjk",))
    trimmed = trim_model(full, tmp_path / "trimmed", keep)
    identity = tokenization_identity(full / "tokenizer.json", trimmed, ["労働時間の更新"])
    assert identity["identical"] == 1
