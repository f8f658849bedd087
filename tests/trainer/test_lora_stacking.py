"""Each stage's adapter trains on the merged weights below it; merging the stack gives the
same encoder as the peft stack with every adapter active, unmerged."""

import torch
from peft import PeftModel

from lexedge.trainer.backbone import load_backbone
from lexedge.trainer.lora import load_stage_backbone, stage_chain

ATOL = 1e-5


def test_merged_stack_equals_unmerged_peft_stack(finished_run):
    output, _ = finished_run
    merged, chain = load_stage_backbone(output / "stage3")
    base = load_backbone(chain[-1])
    adapters = list(reversed(chain[:-1]))  # stage1, stage2, stage3
    stacked = PeftModel.from_pretrained(base, str(adapters[0]), adapter_name="a0")
    for i, adapter in enumerate(adapters[1:], start=1):
        stacked.load_adapter(str(adapter), adapter_name=f"a{i}")
    stacked.base_model.set_adapter([f"a{i}" for i in range(len(adapters))])
    stacked.eval()
    merged.eval()
    ids = torch.tensor([[2, 9, 11, 14, 20, 3], [2, 30, 31, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = stacked(input_ids=ids, attention_mask=mask).last_hidden_state
        actual = merged(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(actual, expected, atol=ATOL)
    # and the stack is not trivially the base model
    with torch.no_grad():
        plain = load_backbone(chain[-1])(input_ids=ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(actual, plain, atol=1e-4)


def test_adapter_names_the_stage_below_relatively(finished_run):
    import json

    output, _ = finished_run
    config = json.loads((output / "stage2" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "../stage1"
    assert [p.name for p in stage_chain(output / "stage2")][:2] == ["stage2", "stage1"]
