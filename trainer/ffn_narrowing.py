"""Narrower feed-forward blocks for a student (issue 19): each layer keeps the units that add
most to the residual stream on calibration passages, so every token costs less arithmetic
without losing a layer. :func:`lexedge.trainer.student.make_student` applies it to a cut; the
narrow copy is then distilled from the full-width model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.embedder.model import tokenize


def ffn_importance(stage, texts: Sequence[str], *, max_length: int,
                   batch_size: int = 32) -> list[torch.Tensor]:
    """Per layer, each feed-forward unit's importance: the mean over the real (non-padding)
    tokens of ``texts`` of the magnitude of what it adds to the residual stream,
    ``|activation| * ||output column||`` (the first-order criterion of Michel et al., 2019,
    arXiv:1905.10650, applied to units; passages take the stage's passage prefix)."""
    backbone = stage.embedder.backbone
    blocks = [layer.output.dense for layer in backbone.encoder.layer]
    sums = [torch.zeros(block.in_features) for block in blocks]
    mask: list[torch.Tensor] = []

    def hook(index):
        def record(_module, inputs):
            activation = inputs[0].detach().abs() * mask[0].unsqueeze(-1)
            sums[index] += activation.sum(dim=(0, 1)).float()
        return record

    handles = [block.register_forward_pre_hook(hook(i)) for i, block in enumerate(blocks)]
    tokens = 0
    prefix = stage.settings.passage_prefix
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenize(stage.tokenizer, [prefix + t for t in
                                                   texts[start:start + batch_size]],
                                 max_length, torch.device("cpu"))
                mask[:] = [batch["attention_mask"].float()]
                tokens += int(batch["attention_mask"].sum())
                backbone(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return [total / max(tokens, 1) * block.weight.detach().norm(dim=0)
            for total, block in zip(sums, blocks)]


def narrow_ffn(stage, width: int, calibration: Sequence[str], *, max_length: int = 256) -> dict:
    """Keep, in every layer of ``stage``'s backbone, the ``width`` feed-forward units of most
    importance on ``calibration`` (:func:`ffn_importance`), in their original order, and set
    the config's ``intermediate_size`` to match. Returns what to record: the widths and the
    share of importance kept per layer."""
    backbone = stage.embedder.backbone
    full = int(backbone.config.intermediate_size)
    if not 1 <= width < full:
        raise LexedgeError(f"ffn width {width}: give 1..{full - 1} (the teacher's blocks have "
                           f"{full} units)")
    if not calibration:
        raise LexedgeError("narrowing the feed-forward blocks needs calibration passages")
    importance = ffn_importance(stage, calibration, max_length=max_length)
    kept_share = []
    for layer, scores in zip(backbone.encoder.layer, importance):
        keep = torch.sort(torch.topk(scores, width).indices).values
        kept_share.append(round(float(scores[keep].sum() / scores.sum()), 4))
        layer.intermediate.dense = _linear_rows(layer.intermediate.dense, keep)
        layer.output.dense = _linear_columns(layer.output.dense, keep)
    backbone.config.intermediate_size = width
    return {"width": width, "teacher_width": full, "importance_kept": kept_share,
            "calibration_passages": len(calibration)}


def _linear_rows(linear: torch.nn.Linear, rows: torch.Tensor) -> torch.nn.Linear:
    out = torch.nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None)
    with torch.no_grad():
        out.weight.copy_(linear.weight[rows])
        if linear.bias is not None:
            out.bias.copy_(linear.bias[rows])
    return out


def _linear_columns(linear: torch.nn.Linear, columns: torch.Tensor) -> torch.nn.Linear:
    out = torch.nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        out.weight.copy_(linear.weight[:, columns])
        if linear.bias is not None:
            out.bias.copy_(linear.bias)
    return out


__all__ = ["ffn_importance", "narrow_ffn"]
