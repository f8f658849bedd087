"""Split attention (``separate_layers``): the lower layers encode the query and the passage
each alone, exactly as the embedder does; only the layers above attend across the pair, only
they train, and a training step runs them alone over cached lower states."""

import json

import pytest
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.lora import load_stage_backbone

QUERIES = ["contract w1 w2", "tax w3", "lease w9 w4 w5"]
PASSAGES = ["contract law article w1 w5 w6 w7", "lease w9", "tax law w3 w3 w8 w2 w1"]


def _xlmr_template(model_dir, out_dir):
    """A copy of the tiny encoder whose pair template is XLM-R's, ``[CLS] A [SEP] [SEP] B
    [SEP]``: the passage opens with a separator, read as ``[CLS]`` by the split."""
    import shutil

    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    shutil.copytree(model_dir, out_dir)
    fast = PreTrainedTokenizerFast.from_pretrained(str(out_dir))
    cls, sep = fast.cls_token_id, fast.sep_token_id
    fast.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="module")
def xlmr_model(tmp_path_factory, tiny_model):
    return _xlmr_template(tiny_model, tmp_path_factory.mktemp("xlmr") / "model")


@pytest.fixture(scope="module", params=["bert", "xlmr"])
def split_model(request, tiny_model, xlmr_model):
    return _split_model(tiny_model if request.param == "bert" else xlmr_model)


def _split_model(folder):
    """The tiny two-layer encoder as a split-attention reranker (one separate layer)."""
    from lexedge.trainer.backbone import load_tokenizer
    from lexedge.trainer.reranker.model import CrossEncoder, load_cross_encoder
    from lexedge.trainer.stage import EncoderSettings

    tokenizer = load_tokenizer([folder])

    def make(bias: float):
        settings = EncoderSettings.read([folder])
        settings.head, settings.head_temperature = "segments", 0.1
        settings.sep_token_id, settings.cls_token_id = tokenizer.sep_token_id, \
            tokenizer.cls_token_id
        settings.separate_layers, settings.cross_attention_bias = 1, bias
        return CrossEncoder(load_cross_encoder(folder).eval(), settings).eval()

    return make, tokenizer, folder


def _pair_logits(module, tokenizer):
    from lexedge.trainer.reranker.model import tokenize_pairs

    with torch.no_grad():
        return module(**tokenize_pairs(tokenizer, module.settings, QUERIES, PASSAGES, 60, "cpu"))


def test_without_cross_attention_the_split_reranker_is_the_embedder(xlmr_model):
    """Cross-segment attention shut off: the logit is the cosine of the embedder's own
    query and passage vectors (each text encoded alone) over the temperature. That takes a
    pair template whose passage opens with a separator, as E5's (XLM-R's) does; under BERT's
    the passage has no leading special token (and the cached states drop it likewise). Any
    cross attention changes the logit."""
    from lexedge.trainer.backbone import load_backbone
    from lexedge.trainer.embedder.model import Embedder, tokenize
    from lexedge.trainer.stage import EncoderSettings

    make, tokenizer, folder = _split_model(xlmr_model)
    settings = EncoderSettings.read([folder])
    embedder = Embedder(load_backbone(folder).eval(), settings).eval()
    with torch.no_grad():
        queries = embedder(**tokenize(tokenizer, [settings.query_prefix + q for q in QUERIES],
                                      30, "cpu"))
        passages = embedder(**tokenize(tokenizer, [settings.passage_prefix + p
                                                   for p in PASSAGES], 30, "cpu"))
    expected = (queries * passages).sum(dim=-1) / 0.1
    torch.testing.assert_close(_pair_logits(make(-1e9), tokenizer), expected,
                               atol=1e-4, rtol=1e-4)
    assert (_pair_logits(make(0.0), tokenizer) - expected).abs().max() > 1e-3


def test_cached_lower_states_give_the_pair_logits_and_train_only_the_top(split_model):
    """The training path (lower states cached per text, top layers over them) computes the
    served pair logits; its gradients reach the top layer only."""
    from lexedge.trainer.reranker.model import SplitStates

    make, tokenizer, _ = split_model
    module = make(-2.0)
    states = SplitStates(module, tokenizer)
    with torch.no_grad():
        cached = states.logits(QUERIES, PASSAGES, query_length=30, passage_length=30)
    torch.testing.assert_close(cached, _pair_logits(module, tokenizer), atol=1e-4, rtol=1e-4)
    assert len(states.states) == len(set(QUERIES)) + len(set(PASSAGES))

    states.logits(QUERIES, PASSAGES, query_length=30, passage_length=30).sum().backward()
    grads = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
    assert grads and all(".layer.1." in name for name in grads)


@pytest.fixture(scope="module")
def split_run(tmp_path_factory, tiny_data, tiny_model, finished_run):
    """Stages 1-3 of a split-attention reranker from the tiny embedder's stage 2."""
    from support.tiny_encoder import train_tiny_reranker

    embedder = finished_run[0] / "stage2"
    output = tmp_path_factory.mktemp("split") / "run"
    summary, config = train_tiny_reranker(
        tiny_data, tiny_model, output, "phases=1,2,3", f'base_model="{embedder}"',
        f'embedder="{embedder}"', 'head="segments"', "head_temperature=0.1",
        "separate_layers=1", "cross_attention_bias=-3.0", "evaluation.candidates=8",
        "stage1.hard_negatives=2", "stage1.random_negatives=1", "stage2.hard_negatives=3",
        "stage3.epochs=2", "stage3.examples_per_epoch=8", "stage3.batch_size=4",
        "stage3.candidates=8", "stage3.rank_window=[0, 4]", "stage3.hard_negatives=2",
        "stage3.max_query_length=16", "stage3.max_passage_length=32")
    return output, summary, config


def test_a_split_run_adapts_only_the_layers_above_the_split(split_run):
    from safetensors.torch import load_file

    output, summary, config = split_run
    assert config.lora.layers == [1]  # resolved from the base's two layers
    assert list(summary["metrics"]) == ["base", "stage1", "stage2", "stage3"]
    for stage in ("stage1", "stage2", "stage3"):
        adapted = {name for name in load_file(output / stage / "adapter_model.safetensors")
                   if "lora_" in name}
        assert adapted and all(".layer.1." in name for name in adapted)
        recorded = json.loads((output / stage / "lexedge_model.json").read_text())
        assert recorded["separate_layers"] == 1 and recorded["cross_attention_bias"] == -3.0
    mined = [json.loads(line) for line in
             (output / "stage3" / "hard_negatives.jsonl").read_text().splitlines()]
    assert any(record["negatives"] for record in mined)

    from lexedge.trainer.reranker.model import load_cross_encoder

    base, _ = load_stage_backbone(output / "base-merged", loader=load_cross_encoder)
    top, _ = load_stage_backbone(output / "stage3", loader=load_cross_encoder)
    base_state, top_state = base.state_dict(), top.state_dict()
    for name, tensor in top_state.items():
        if ".layer.0." in name or ".embeddings." in name:
            torch.testing.assert_close(tensor, base_state[name], atol=0, rtol=0)
    assert any(not torch.equal(t, base_state[n]) for n, t in top_state.items()
               if ".layer.1." in n)


def test_a_split_stack_keeps_its_split(split_run):
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.reranker.family import RerankerFamily
    from lexedge.trainer.reranker.model import load_cross_encoder

    output, _, _ = split_run
    backbone, chain = load_stage_backbone(output / "stage1", loader=load_cross_encoder)
    for changed in ("separate_layers=0", "cross_attention_bias=-1.0"):
        config = load_config(TrainRerankerConfig, None, [
            'data_dir="d"', 'output_dir="o"', 'head="segments"', "head_temperature=0.1",
            "separate_layers=1", "cross_attention_bias=-3.0", changed])
        with pytest.raises(LexedgeError, match=f"{changed.split('=')[0]} = .*a stack keeps"):
            RerankerFamily(config, None, torch.device("cpu")).wrap(backbone, chain)


@pytest.mark.parametrize("overrides, message", [
    (["separate_layers=1"], "needs head = 'segments'"),
    (['head="segments"', "separate_layers=2", "lora.layers=[1]"],
     r"lora.layers = \[1\] trains a layer below separate_layers = 2"),
    (['head="segments"', "separate_layers=1", 'stage2.mode="full"'],
     "stage2.mode = 'full' would train the lower layers"),
])
def test_split_settings_that_cannot_work_are_refused(overrides, message):
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config

    with pytest.raises(LexedgeError, match=message):
        load_config(TrainRerankerConfig, None, ['data_dir="d"', 'output_dir="o"', *overrides])


def test_a_split_that_leaves_no_joint_layer_is_refused(tmp_path, tiny_data, tiny_model):
    from support.tiny_encoder import train_tiny_reranker

    with pytest.raises(LexedgeError, match="separate_layers = 2: .* has 2 layers"):
        train_tiny_reranker(tiny_data, tiny_model, tmp_path / "run", "phases=1",
                            'head="segments"', "separate_layers=2")
