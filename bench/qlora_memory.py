"""bf16 against QLoRA (a 4-bit NF4 base through bitsandbytes) for the embedder on a GPU
(issue 21): peak GPU memory and time per training step, same adapter, batch and texts, one
run. One prepared script for a lent GPU:

    pip install "lexedge[gpu]" && python bench/qlora_memory.py --data ../shared/data/stard

Without CUDA it refuses, unless ``--dry-run``, which runs the float32 path for two steps on
the CPU to check the script itself (no result is written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from report import REPO, write_report


def measure(mode: str, texts: list[str], args, device) -> dict:
    import torch

    from lexedge.trainer.backbone import load_backbone, load_tokenizer
    from lexedge.trainer.config import LoraSettings
    from lexedge.trainer.embedder.model import Embedder, tokenize
    from lexedge.trainer.lora import attach_lora, resolve_model
    from lexedge.trainer.losses import InfoNCELoss
    from lexedge.trainer.stage import EncoderSettings

    folder = resolve_model(args.base)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    backbone = load_backbone(folder, load_in_4bit=mode == "qlora", device=device)
    model = Embedder(attach_lora(backbone, LoraSettings(r=16, alpha=32, dropout=0.05)),
                     EncoderSettings.read([folder])).to(device)
    tokenizer = load_tokenizer([folder])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn, batch = InfoNCELoss(0.05), args.batch
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=mode in ("bf16", "qlora") and device.type == "cuda")
    times = []
    for step in range(args.steps):
        start = (step * batch * 2) % max(1, len(texts) - batch * 2)
        queries = tokenize(tokenizer, ["query: " + t[:64] for t in texts[start:start + batch]],
                           64, device)
        passages = tokenize(tokenizer, ["passage: " + t for t in
                                        texts[start + batch:start + 2 * batch]],
                            args.length, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        with autocast:
            loss = loss_fn(model(**queries), model(**passages),
                           torch.arange(batch, device=device))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - began)
    warm = times[2:] or times
    return {"mode": mode, "steps": args.steps, "batch": batch, "length": args.length,
            "step_ms_median": round(sorted(warm)[len(warm) // 2] * 1000, 1),
            "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda" else None,
            "trainable_parameters": sum(p.numel() for p in model.parameters()
                                        if p.requires_grad),
            "loss_last": round(float(loss.detach()), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "stard")
    parser.add_argument("--base", default="default")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--name", default="qlora_memory")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print("qlora_memory: needs a CUDA GPU (--dry-run checks the script on the CPU)",
              file=sys.stderr)
        return 2
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    with (args.data / "corpus.jsonl").open(encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for _, line in zip(range(20000), handle)]
    if args.dry_run:
        args.steps, args.batch, args.length = 2, 2, 32
        print(json.dumps(measure("fp32", texts, args, device)))
        return 0
    runs = [measure(mode, texts, args, device) for mode in ("bf16", "qlora")]
    gpu = torch.cuda.get_device_name(device)
    lines = [f"# bf16 against QLoRA for the embedder ({args.base}) on {gpu}", "",
             f"LoRA r 16 on every projection; batch {args.batch} queries (64 tokens) + "
             f"{args.batch} passages ({args.length} tokens) of {args.data.name}; median of "
             f"steps 3-{args.steps}. One run.", "",
             "| mode | peak GPU memory MB | step ms | trainable parameters | last loss |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['peak_memory_mb']} | {r['step_ms_median']} | "
              f"{r['trainable_parameters']:,} | {r['loss_last']} |" for r in runs]
    write_report(REPO / "bench" / "results", args.name, {"gpu": gpu, "runs": runs}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
