"""Each stage's adapter trains on the merged weights below it and is saved as one adapter for
the whole stack, relative to the base model (issue 23): stock peft loads a stage folder by
itself, lexedge merges it the same way, and runs written before (one delta per stage, each
naming the stage below) still load."""

import json

import pytest
import torch
from peft import AutoPeftModel, LoraConfig, PeftModel, get_peft_model

from lexedge.trainer.backbone import load_backbone
from lexedge.trainer.lora import load_stage_backbone, save_stage_adapter, stage_chain
from lexedge.trainer.stage import is_cumulative

ATOL = 1e-5
IDS = torch.tensor([[2, 9, 11, 14, 20, 3], [2, 30, 31, 3, 0, 0]])


def _hidden(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=(IDS != 0).long()).last_hidden_state


def test_stock_peft_loads_a_stage_folder_as_lexedge_does(finished_run):
    output, _ = finished_run
    merged, chain = load_stage_backbone(output / "stage3")
    assert [p.name for p in chain] == ["stage3", "stage2", "stage1", "mlm"]
    stock = PeftModel.from_pretrained(load_backbone(chain[-1]), str(output / "stage3"))
    assert torch.allclose(_hidden(stock), _hidden(merged), atol=ATOL)
    assert torch.allclose(_hidden(stock.merge_and_unload()), _hidden(merged), atol=ATOL)
    # base_model_name_or_path resolves: peft's AutoPeftModel needs nothing from lexedge
    auto = AutoPeftModel.from_pretrained(str(output / "stage3"))
    assert torch.allclose(_hidden(auto), _hidden(merged), atol=ATOL)
    # and the stack is not trivially the base model, nor stage 2
    assert not torch.allclose(_hidden(merged), _hidden(load_backbone(chain[-1])), atol=1e-4)
    below, _ = load_stage_backbone(output / "stage2")
    assert not torch.allclose(_hidden(merged), _hidden(below), atol=1e-4)


def test_stage_folders_name_the_stage_below_relatively(finished_run):
    output, _ = finished_run
    stack = json.loads((output / "stage2" / "lexedge_stack.json").read_text())
    assert stack["below"] == "../stage1" and stack["base"] == "../mlm"
    assert stack["stages"] == 2
    config = json.loads((output / "stage2" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((output / "mlm").resolve())
    assert config["r"] == 2 * json.loads((output / "stage1" / "adapter_config.json")
                                         .read_text())["r"]
    assert [p.name for p in stage_chain(output / "stage2")][:2] == ["stage2", "stage1"]


def test_each_stage_carries_a_model_card(finished_run):
    output, _ = finished_run
    card = (output / "stage3" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: \"peft\"\n")
    assert "## Base model and licences" in card and "## Training" in card
    metrics = json.loads((output / "stage3" / "metrics.json").read_text())
    assert f"| recall@10 | {metrics['recall@10']:.4f} |" in card
    assert "PeftModel.from_pretrained(base, STAGE_FOLDER)" in card
    assert "qrels/train.tsv" in card


# -- composition, unit level: different modules and ranks per stage, old-format runs ----------
def _attach(model, r, alpha, modules, seed):
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha,
                                                  target_modules=modules, lora_dropout=0.0))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:  # a fresh adapter is zero: give it a delta to carry
            torch.nn.init.normal_(parameter, std=0.05)
    return peft_model


def _old_format_stage(peft_model, folder, below_name):
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = below_name
    (folder / "adapter_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("first_is_old_format", [False, True])
def test_stack_of_different_modules_and_ranks_composes_exactly(tmp_path, tiny_model,
                                                               first_is_old_format):
    base_dir = tiny_model
    run = tmp_path / "run"
    run.mkdir()
    stage1 = _attach(load_backbone(base_dir), 2, 4, ["query", "value"], seed=1)
    expected1 = _hidden(stage1)
    if first_is_old_format:
        (run / "stage1").mkdir()
        _old_format_stage(stage1, run / "stage1", str(base_dir))
    else:
        (run / "stage1").mkdir()
        save_stage_adapter(stage1, run / "stage1", [base_dir])
    merged1, chain1 = load_stage_backbone(run / "stage1")
    assert torch.allclose(_hidden(merged1), expected1, atol=ATOL)

    stage2 = _attach(merged1, 3, 12, ["value", "dense"], seed=2)  # other modules, rank, scale
    expected2 = _hidden(stage2)
    (run / "stage2").mkdir()
    save_stage_adapter(stage2, run / "stage2", chain1)
    assert is_cumulative(run / "stage2")
    stock = PeftModel.from_pretrained(load_backbone(base_dir), str(run / "stage2"))
    assert torch.allclose(_hidden(stock), expected2, atol=ATOL)
    merged2, _ = load_stage_backbone(run / "stage2")
    assert torch.allclose(_hidden(merged2), expected2, atol=ATOL)
    assert json.loads((run / "stage2" / "adapter_config.json").read_text())["r"] == 5


def test_old_format_runs_still_load(tmp_path, tiny_model):
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    stage1 = _attach(load_backbone(tiny_model), 2, 4, ["query"], seed=3)
    _old_format_stage(stage1, run / "stage1", str(tiny_model))
    merged1 = stage1.merge_and_unload()
    stage2 = _attach(merged1, 2, 4, ["key"], seed=4)
    expected = _hidden(stage2)
    (run / "stage2").mkdir()
    _old_format_stage(stage2, run / "stage2", "../stage1")
    merged, chain = load_stage_backbone(run / "stage2")
    assert [p.name for p in chain][:2] == ["stage2", "stage1"]
    assert torch.allclose(_hidden(merged), expected, atol=ATOL)
