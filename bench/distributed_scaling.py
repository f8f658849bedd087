"""Several training processes on one machine (issue 21): stage 1 of the embedder curriculum
with the same global batch on one process and on two (launched by ``torchrun`` and by
``accelerate launch``), side by side in one run, on this machine's CPU cores (gloo).

    python bench/distributed_scaling.py --data ../shared/data/ja_appi --base minilm

What it shows here is the machinery and its cost on 2 CPU cores (two processes of one
thread against one process of two threads); a GPU machine runs the same commands with
``--nproc_per_node`` GPUs and NCCL. Each row is the stage's own training time (from its
manifest: loading and mining excluded) and the whole command's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import REPO, write_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ja_appi")
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--work", type=Path, default=REPO / "work-out" / "scaling")
    parser.add_argument("--name", default="distributed_scaling")
    args = parser.parse_args(argv)
    common = [f'data_dir="{args.data}"', f'base_model="{args.base}"', "phases=1", "seed=13",
              "evaluation.enabled=false", "runtime.device=cpu", "runtime.progress=false",
              f"stage1.steps={args.steps}", f"stage1.batch_size={args.batch}",
              f"stage1.max_passage_length={args.length}", "stage1.weak_pairs=0",
              "runtime.checkpoint_every=1000", "lora.dropout=0.0"]
    launchers = {
        "1 process": ([sys.executable, "-m", "lexedge"], 1),
        "torchrun, 2 processes": ([sys.executable, "-m", "torch.distributed.run",
                                   "--nproc_per_node", "2", "--master_port", "29611", "-m",
                                   "lexedge"], 2),
        # --multi_gpu is accelerate's multi-process launcher (torchrun inside); --cpu would
        # start one process. lexedge picks gloo itself when there is no GPU.
        "accelerate launch, 2 processes": ([sys.executable, "-m", "accelerate.commands.launch",
                                            "--multi_gpu", "--num_processes", "2",
                                            "--num_machines", "1", "--mixed_precision", "no",
                                            "--dynamo_backend", "no", "--main_process_port",
                                            "29612", "-m", "lexedge"], 2),
    }
    rows, results = [], {}
    for name, (launcher, processes) in launchers.items():
        out = args.work / name.split(",")[0].replace(" ", "-")
        if out.exists():
            import shutil

            shutil.rmtree(out)
        threads = max(1, args.cores // processes)
        sets = common + [f'output_dir="{out}"', f"runtime.threads={threads}"]
        command = launcher + ["train", "embedder", "--config", str(_empty_config(args.work))]
        for item in sets:
            command += ["--set", item]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        manifest = json.loads((out / "stage1" / "lexedge_stage.json").read_text())
        training = manifest["training"]
        per_second = training["steps"] * args.batch / training["seconds"]
        results[name] = {"processes": processes, "threads_per_process": threads,
                         "steps": training["steps"], "train_seconds": training["seconds"],
                         "examples_per_second": round(per_second, 2),
                         "wall_seconds": round(wall, 1), "loss_first": training["loss_first"],
                         "loss_last": training["loss_last"]}
        rows.append((name, processes, threads, training["seconds"], per_second, wall,
                     training["loss_last"]))
    base = rows[0][4]
    model, flags = cpu_model(), _cpu_flags()
    lines = [f"# Several training processes: stage 1 of the embedder on {args.data.name} "
             f"({args.base}, {args.steps} steps of global batch {args.batch}, passages "
             f"{args.length} tokens)", "",
             f"CPU: {model} ({flags}), {args.cores} cores; gloo. One run, side by side.", "",
             "| launcher | processes | threads each | training s | examples/s | speed-up | "
             "wall s | last loss |", "|---|---|---|---|---|---|---|---|"]
    for name, processes, threads, seconds, per_second, wall, loss in rows:
        lines.append(f"| {name} | {processes} | {threads} | {seconds:.1f} | {per_second:.2f} | "
                     f"{per_second / base:.2f}x | {wall:.1f} | {loss:.4f} |")
    lines += ["", "The same global batch, examples and seed on every row. The losses of one "
              "and two processes differ by the model's dropout alone (each rank draws its own "
              "masks); without dropout `tests/trainer/test_distributed.py` finds the same "
              "weights. Both launchers start the same two ranks, so they agree with each "
              "other. Reproduce: `python bench/distributed_scaling.py`."]
    write_report(REPO / "bench" / "results", args.name,
                 {"cpu": model, "flags": flags, "cores": args.cores, "data": str(args.data),
                  "base": args.base, "steps": args.steps, "batch": args.batch,
                  "length": args.length, "runs": results}, lines)
    return 0


def _empty_config(work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "empty.toml"
    path.write_text("# every field comes from --set\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
