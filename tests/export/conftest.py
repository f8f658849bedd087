"""Tiny random BERT stages (a base, a LoRA adapter on it, a one-logit reranker) and a small
calibration corpus, built in seconds."""

import json
import os
import random

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

WORDS = ("contract void public order tort damages liability employer worker hours consent "
         "personal data third party copyright author lease tenant bankruptcy creditor court "
         "notice administrative procedure consumer cancel article law penalty").split()
SETTINGS = {"pooling": "mean", "normalize": True, "query_prefix": "query: ",
            "passage_prefix": "passage: ", "max_length": 48}


def heavy():
    """torch and transformers, or a skip where only the runtime is installed."""
    return pytest.importorskip("torch"), pytest.importorskip("transformers")


def bert_config(vocab_size):
    _, transformers = heavy()
    return transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, pad_token_id=0)


@pytest.fixture(scope="session")
def calibration_corpus(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("calibration") / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(40):
            title = f"law {i} " + " ".join(rng.sample(WORDS, 2))
            text = ". ".join(" ".join(rng.choices(WORDS, k=rng.randint(3, 12)))
                             for _ in range(rng.randint(1, 3))) + "."
            handle.write(json.dumps({"id": f"d{i}", "title": title, "text": text}) + "\n")
    return path


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory, calibration_corpus):
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    lines = [json.loads(line)["title"] + " " + json.loads(line)["text"]
             for line in calibration_corpus.read_text(encoding="utf-8").splitlines()]
    tokenizer.train_from_iterator(lines + ["query passage"], vocab_size=200, min_frequency=1)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def save_stage(folder, model, tokenizer_file, settings=SETTINGS):
    model.save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes(tokenizer_file.read_bytes())
    (folder / "lexedge_model.json").write_text(json.dumps(settings), encoding="utf-8")
    return folder


def vocab_size(tokenizer_file):
    return len(json.loads(tokenizer_file.read_text(encoding="utf-8"))["model"]["vocab"])


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory, tokenizer_file):
    torch, transformers = heavy()
    torch.manual_seed(0)
    model = transformers.BertModel(bert_config(vocab_size(tokenizer_file)),
                                   add_pooling_layer=False)
    return save_stage(tmp_path_factory.mktemp("base"), model, tokenizer_file)


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory, base_model_dir):
    """A LoRA adapter with non-zero B matrices, so merging changes the outputs."""
    torch, transformers = heavy()
    peft = pytest.importorskip("peft")
    torch.manual_seed(1)
    base = transformers.BertModel.from_pretrained(base_model_dir, add_pooling_layer=False)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "dense"],
                             init_lora_weights=False)
    model = peft.get_peft_model(base, config)
    folder = tmp_path_factory.mktemp("stage1")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def reranker_dir(tmp_path_factory, tokenizer_file):
    torch, transformers = heavy()
    torch.manual_seed(2)
    config = bert_config(vocab_size(tokenizer_file))
    config.num_labels = 1
    model = transformers.BertForSequenceClassification(config)
    settings = dict(SETTINGS, query_prefix="", passage_prefix="", max_length=64)
    return save_stage(tmp_path_factory.mktemp("reranker"), model, tokenizer_file, settings)
