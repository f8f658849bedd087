"""The reranker heads: ``mean`` reads the mean of the last layer's tokens (E5's pooling)
instead of BERT's CLS pooler, which multilingual-e5 ships without weights; ``segments`` is the
cosine of the query's and the passage's token means, no fresh weights. The head is recorded in
every stage, kept through the stack, and survives merging."""

import json

import pytest
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.lora import load_stage_backbone


@pytest.fixture(scope="module")
def mean_head_run(tmp_path_factory, tiny_data, tiny_model):
    """Stages 1 and 2 of a one-layer reranker with the mean head (BM25 candidates)."""
    from support.tiny_encoder import train_tiny_reranker

    output = tmp_path_factory.mktemp("mean_head") / "run"
    summary, config = train_tiny_reranker(
        tiny_data, tiny_model, output, "phases=1,2", "base_layers=1", 'head="mean"',
        "evaluation.candidates=8", "stage1.hard_negatives=2", "stage1.random_negatives=1",
        "stage2.hard_negatives=3")
    return output, summary, config


def _pairs(chain):
    from lexedge.trainer.backbone import load_tokenizer
    from lexedge.trainer.reranker.model import tokenize_pairs
    from lexedge.trainer.stage import EncoderSettings

    return tokenize_pairs(load_tokenizer(chain), EncoderSettings.read(chain),
                          ["worker hours", "lease notice"],
                          ["employer worker hours article", "tenant court notice law"],
                          32, torch.device("cpu"))


def test_every_stage_records_the_mean_head(mean_head_run):
    output, summary, _ = mean_head_run
    assert list(summary["metrics"]) == ["stage1", "stage2"]
    for name in ("stage1", "stage2"):
        settings = json.loads((output / name / "lexedge_model.json").read_text())
        assert settings["head"] == "mean"
    assert "head" not in json.loads((output / "base-1layers" / "lexedge_model.json")
                                    .read_text())


def test_mean_head_logit_is_the_classifier_over_mean_pooled_tokens(mean_head_run):
    """Recompute the logit by hand from the merged model: mean of the unmasked last-layer
    tokens, then the trained classifier; the CLS pooler path gives something else."""
    from lexedge.trainer.reranker.model import CrossEncoder, load_cross_encoder
    from lexedge.trainer.stage import EncoderSettings

    output, _, _ = mean_head_run
    model, chain = load_stage_backbone(output / "stage2", loader=load_cross_encoder)
    model.eval()
    settings = EncoderSettings.read(chain)
    assert settings.head == "mean"
    inputs = _pairs(chain)
    with torch.no_grad():
        found = CrossEncoder(model, settings)(**inputs)
        hidden = model.bert(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        expected = model.classifier((hidden * mask).sum(1) / mask.sum(1))[:, 0]
        pooler_path = model(**inputs).logits[:, 0]
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(found, pooler_path, atol=1e-3)


def test_merged_mean_head_stack_scores_like_the_unmerged_adapters(mean_head_run):
    from peft import PeftModel

    from lexedge.trainer.reranker.model import CrossEncoder, load_cross_encoder
    from lexedge.trainer.stage import EncoderSettings

    output, _, _ = mean_head_run
    merged, chain = load_stage_backbone(output / "stage2", loader=load_cross_encoder)
    # stock peft, the stage folder alone onto the base: it holds the whole stack
    stacked = PeftModel.from_pretrained(load_cross_encoder(chain[-1]), str(chain[0]))
    settings = EncoderSettings.read(chain)
    inputs = _pairs(chain)
    with torch.no_grad():
        a = CrossEncoder(merged.eval(), settings)(**inputs)
        b = CrossEncoder(stacked.eval(), settings)(**inputs)  # peft-wrapped classifier
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_stack_keeps_its_head(mean_head_run):
    import dataclasses

    from lexedge.trainer.reranker.family import RerankerFamily
    from lexedge.trainer.reranker.model import load_cross_encoder

    output, _, config = mean_head_run
    backbone, chain = load_stage_backbone(output / "stage2", loader=load_cross_encoder)
    family = RerankerFamily(dataclasses.replace(config, head="pooler"), None,
                            torch.device("cpu"))
    with pytest.raises(LexedgeError, match="trained with head = 'mean'"):
        family.wrap(backbone, chain)


def test_unknown_head_is_refused():
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config

    with pytest.raises(LexedgeError, match="head = 'max'"):
        load_config(TrainRerankerConfig, None, ['data_dir="d"', 'output_dir="o"',
                                                'head="max"'])


@pytest.fixture(scope="module")
def segments_run(tmp_path_factory, tiny_data, tiny_model):
    """Stage 1 of a one-layer reranker with the parameter-free ``segments`` head."""
    from support.tiny_encoder import train_tiny_reranker

    output = tmp_path_factory.mktemp("segments_head") / "run"
    train_tiny_reranker(tiny_data, tiny_model, output, "phases=1", "base_layers=1",
                        'head="segments"', "head_temperature=0.1", "evaluation.candidates=8",
                        "stage1.hard_negatives=2", "stage1.random_negatives=1")
    return output


def test_a_segments_stack_keeps_its_temperature(segments_run):
    """Logits over another temperature would silently rescale what the stages below learnt."""
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.reranker.family import RerankerFamily
    from lexedge.trainer.reranker.model import load_cross_encoder

    backbone, chain = load_stage_backbone(segments_run / "stage1", loader=load_cross_encoder)
    for temperature, refused in ((0.1, False), (0.05, True)):
        config = load_config(TrainRerankerConfig, None, [
            'data_dir="d"', 'output_dir="o"', 'head="segments"',
            f"head_temperature={temperature}"])
        family = RerankerFamily(config, None, torch.device("cpu"))
        if refused:
            with pytest.raises(LexedgeError, match="trained with 0.1; a stack keeps one head_temperature"):
                family.wrap(backbone, chain)
        else:
            assert family.wrap(backbone, chain).settings.head_temperature == 0.1


def test_segments_head_is_the_cosine_of_query_and_passage_token_means(segments_run):
    """The logit, recomputed by hand: [CLS] query [SEP] passage [SEP]; the query's tokens are
    those before the first separator, the passage's those after it (separators excluded)."""
    from lexedge.trainer.backbone import load_tokenizer
    from lexedge.trainer.reranker.model import CrossEncoder, load_cross_encoder
    from lexedge.trainer.stage import EncoderSettings

    model, chain = load_stage_backbone(segments_run / "stage1", loader=load_cross_encoder)
    settings = EncoderSettings.read(chain)
    recorded = json.loads((segments_run / "stage1" / "lexedge_model.json").read_text())
    assert recorded["head"] == "segments" and recorded["head_temperature"] == 0.1
    assert recorded["sep_token_id"] == load_tokenizer(chain).sep_token_id >= 0
    inputs = _pairs(chain)
    with torch.no_grad():
        found = CrossEncoder(model.eval(), settings)(**inputs)
        hidden = model.bert(**inputs).last_hidden_state
    expected = []
    for row in range(len(hidden)):
        ids = inputs["input_ids"][row].tolist()
        length = int(inputs["attention_mask"][row].sum())
        first_sep = ids.index(settings.sep_token_id)
        passage = [i for i in range(first_sep + 1, length) if ids[i] != settings.sep_token_id]
        query_mean = hidden[row, :first_sep].mean(0)
        passage_mean = hidden[row, passage].mean(0)
        expected.append(torch.nn.functional.cosine_similarity(query_mean, passage_mean, dim=0)
                        / 0.1)
    torch.testing.assert_close(found, torch.stack(expected), atol=1e-4, rtol=1e-4)


def test_reranker_starts_from_a_merged_embedder_stage(tmp_path, tiny_data, tiny_model,
                                                      finished_run):
    """``base_model`` = a trained embedder stage: its stack is merged once into
    ``base-merged`` (the embedder's modules, not the cross-encoder's ``bert.`` ones, so no
    adapter is silently dropped) and the reranker's stages stack on that folder."""
    from safetensors.torch import load_file

    from support.tiny_encoder import train_tiny_reranker
    from lexedge.trainer.backbone import load_backbone
    from lexedge.trainer.lora import stage_chain

    embedder_stage = finished_run[0] / "stage2"
    output = tmp_path / "run"
    summary, _ = train_tiny_reranker(
        tiny_data, tiny_model, output, "phases=1", f'base_model="{embedder_stage}"',
        'head="segments"', "evaluation.candidates=8", "stage1.hard_negatives=2",
        "stage1.random_negatives=1")
    # segments adds no weights: the merged encoder is a reranker already, measured as "base"
    assert list(summary["metrics"]) == ["base", "stage1"]
    assert summary["metrics"]["base"]["method"] == "rerank"
    assert stage_chain(output / "stage1")[1:] == [output / "base-merged"]
    merged_embedder, _ = load_stage_backbone(embedder_stage, loader=load_backbone)
    saved = load_file(output / "base-merged" / "model.safetensors")
    base = load_backbone(tiny_model).state_dict()
    for name, tensor in merged_embedder.state_dict().items():
        torch.testing.assert_close(saved[name], tensor, atol=0, rtol=0)
    changed = [n for n, t in merged_embedder.state_dict().items()
               if not torch.equal(t, base[n])]
    assert any(".attention.self.query." in n for n in changed)  # the LoRA targets moved
    derived = json.loads((output / "base-merged" / "lexedge_model.json").read_text())
    assert derived["derived_from"]["path"] == str(embedder_stage)
    assert derived["head"] == "segments" and derived["sep_token_id"] >= 0

    from lexedge.export.merge import load_merged
    from lexedge.trainer.selection.grid import GridConfig, run_grid

    grid = run_grid(GridConfig(embedders=str(finished_run[0]), rerankers=str(output),
                               out=str(tmp_path / "grid"), budgets=[4], rerank_weights=[1.0],
                               embedder_stages=["2"], device="cpu", progress=False),
                    log=lambda line: None)
    assert grid["setup"]["rerankers"] == {"0": str(output / "base-merged"),
                                          "1": str(output / "stage1")}
    assert "emb2_rr0_k4" in grid and "emb2+bm25_rr1_k4" in grid
    assert load_merged(output / "base-merged", "reranker").settings["head"] == "segments"
