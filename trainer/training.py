"""The optimisation loop every stage of every model family runs: AdamW with linear warm-up and
decay, gradient clipping, gradient accumulation, bf16 through accelerate on CUDA, data-parallel
training when launched by ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE > 1``), tqdm
progress with ETA, and a resumable checkpoint every ``checkpoint_every`` steps.

Several processes (issue 21): Hugging Face ``accelerate`` starts the process group (NCCL on
GPUs, gloo on CPUs) and wraps the model in DistributedDataParallel (unused parameters
allowed for the reranker, so every head trains). Every rank builds the same global batches — a pure
function of (seed, stage, epoch) — and the family hands each rank its shard
(:meth:`~lexedge.trainer.family.Family.shard`), so a step sees ``batch_size`` examples across
all ranks, an epoch sees each example once, and the same configuration trains the same
model on one process or many (the embedder gathers passage vectors across ranks, with their
gradients, so its in-batch negatives are the whole global batch).

Determinism: batches of epoch ``e`` are a pure function of (seed, stage, e) and of the
examples, which are persisted before the epoch starts; the torch generator (dropout) is
checkpointed. A run resumed from a checkpoint therefore takes the same steps, on CPU
bit for bit, as one that was never interrupted.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lexedge.trainer.checkpoint import load_checkpoint, save_checkpoint
from lexedge.trainer.gradient_cache import Backpropagated

CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainingPlan:
    """How long and how fast one stage trains.

    Args:
        steps: optimizer steps in all.
        steps_per_epoch: steps between two calls of ``epoch_batches`` (stage 3 re-mines).
        learning_rate: peak learning rate.
        warmup_ratio: share of ``steps`` with a linearly rising learning rate.
        weight_decay: AdamW's decoupled weight decay.
        checkpoint_every: steps between checkpoints (the last step always checkpoints).
        max_grad_norm: gradient clipping threshold.
        head_learning_rate: peak learning rate of a fresh head: the modules a LoRA stage
            trains in full (peft ``modules_to_save``), and in a full fine-tune the modules
            named in ``head_modules``; 0 means ``learning_rate``.
        head_modules: module names of a fresh head (a reranker's ``classifier``).
        accumulation: batches whose gradients add up before one optimizer step (a larger
            effective batch in the same memory; in-batch negatives stay within a batch).
        unused_parameters: under DDP, a step may leave trainable parameters out of its loss
            (a reranker head); costs an extra pass over the graph, so off where none are.
    """

    steps: int
    steps_per_epoch: int
    learning_rate: float
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    checkpoint_every: int = 50
    max_grad_norm: float = 1.0
    description: str = "training"
    bf16: bool = False
    progress: bool = True
    head_learning_rate: float = 0.0
    head_modules: tuple[str, ...] = ()
    accumulation: int = 1
    unused_parameters: bool = False


@dataclass
class TrainingResult:
    """What a stage's training did; ``examples_first_epoch`` counts the examples every rank
    together trained on in the first epoch run here (``count`` of :func:`run_training`)."""

    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    examples_first_epoch: int | None = None


def distributed() -> tuple[int, int]:
    """``(rank, world_size)``; under ``accelerate launch`` or ``torchrun`` accelerate's
    process state starts the process group (NCCL with CUDA, gloo without)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return state.process_index, state.num_processes


def _accelerator(device: torch.device, bf16: bool, unused_parameters: bool):
    """accelerate's handle on this process: mixed precision, DDP wrapping, collectives."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # find_unused_parameters: a reranker head may leave parameters out of a step's loss
    # (the segments head's classifier, a mean head's pooler), which plain DDP refuses.
    return Accelerator(cpu=device.type != "cuda",
                       mixed_precision="bf16" if bf16 and device.type == "cuda" else "no",
                       kwargs_handlers=[DistributedDataParallelKwargs(
                           find_unused_parameters=unused_parameters)])


def linear_schedule(optimizer, steps: int, warmup_ratio: float):
    warmup = max(1, int(round(steps * warmup_ratio))) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def run_training(module: torch.nn.Module, *, plan: TrainingPlan, work_dir: Path, resume: bool,
                 epoch_batches: Callable[[int], list], compute_loss: Callable,
                 hooks: list[Callable[[int], None]] = (),
                 count: Callable[[object], int] | None = None) -> TrainingResult:
    """Train ``module``'s trainable parameters for ``plan.steps`` steps.

    Args:
        module: the model; only parameters with ``requires_grad`` train.
        plan: steps, learning rate, accumulation, checkpoints.
        work_dir: the stage's working folder; the checkpoint lives in ``work_dir/checkpoint``.
        resume: continue from the checkpoint there, if any.
        epoch_batches: ``epoch -> [batch, ...]``, called at the start of each epoch (and
            of a resumed one); must return the same batches for the same epoch; under
            several processes, this rank's shard of each global batch.
        compute_loss: ``(model, batch) -> scalar loss``; ``model`` may be DDP-wrapped.
        hooks: called with the step number after each step (tests use one to simulate a
            kill).
        count: ``batch -> examples in it``, to report ``examples_first_epoch``.
    """
    rank, world = distributed()
    device = next(p for p in module.parameters()).device
    # accelerate for several processes and for bf16 on CUDA; a plain CPU process needs none
    # of it (and accelerate's process-wide state would pin the first run's precision).
    accelerator = _accelerator(device, plan.bf16, plan.unused_parameters) \
        if world > 1 or (plan.bf16 and device.type == "cuda") else None
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    parameters = [p for _, p in named]

    def is_head(name: str) -> bool:
        return "modules_to_save" in name or any(f".{m}." in f".{name}"
                                                for m in plan.head_modules)

    head = [p for n, p in named if is_head(n)]
    groups = [{"params": [p for n, p in named if not is_head(n)]}]
    if head:  # a fresh head starts from noise: it may need a larger step than the adapters
        groups.append({"params": head, "lr": plan.head_learning_rate or plan.learning_rate})
    optimizer = torch.optim.AdamW(groups, lr=plan.learning_rate,
                                  weight_decay=plan.weight_decay)
    scheduler = linear_schedule(optimizer, plan.steps, plan.warmup_ratio)
    checkpoint = work_dir / CHECKPOINT_DIR
    state = {"step": 0, "losses": [], "seconds": 0.0}
    result = TrainingResult(steps=plan.steps)
    if resume and checkpoint.is_dir():
        state = load_checkpoint(checkpoint, model=module, optimizer=optimizer,
                                scheduler=scheduler)
        result.resumed_from = state["step"]
    # DDP under several processes; the optimizer and schedule stay ours (one schedule step
    # per optimizer step whatever the world size; checkpoints stay safetensors + JSON).
    model = accelerator.prepare_model(module, device_placement=False) if world > 1 else module
    progress = _progress(plan, state["step"], rank)
    step, started = state["step"], time.perf_counter() - state["seconds"]
    first_epoch, seen = step // plan.steps_per_epoch, 0
    accumulation = max(1, plan.accumulation)
    while step < plan.steps:
        epoch = step // plan.steps_per_epoch
        batches = epoch_batches(epoch)
        for index in range(step % plan.steps_per_epoch, plan.steps_per_epoch):
            model.train()
            total = torch.zeros((), device=device)
            for micro in range(accumulation):
                batch = batches[(index * accumulation + micro) % len(batches)]
                last = micro == accumulation - 1
                # gradients are all-reduced once per optimizer step, on its last batch
                with (nullcontext() if last or world == 1 else accelerator.no_sync(model)), \
                        (accelerator.autocast() if accelerator else nullcontext()):
                    loss = compute_loss(model, batch)
                    if not isinstance(loss, Backpropagated):  # a cached loss did it itself
                        loss = loss / accumulation
                        if accelerator:
                            accelerator.backward(loss)
                        else:
                            loss.backward()
                total += loss.detach().float()
                if count is not None and epoch == first_epoch:
                    seen += count(batch)
            if plan.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(parameters, plan.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if world > 1:  # the global batch's loss: the mean of the ranks' shards
                total = accelerator.reduce(total, reduction="mean")
            state["losses"].append(round(float(total), 6))
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{state['losses'][-1]:.4f}", epoch=epoch)
            if step % plan.checkpoint_every == 0 or step == plan.steps:
                state.update(step=step, seconds=time.perf_counter() - started)
                if rank == 0:
                    save_checkpoint(checkpoint, model=module, optimizer=optimizer,
                                    scheduler=scheduler, state=state)
                barrier(world)
            for hook in hooks:
                hook(step)
            if step >= plan.steps:
                break
    if progress is not None:
        progress.close()
    if count is not None:
        seen_all = torch.tensor(seen, device=device)
        result.examples_first_epoch = int(accelerator.reduce(seen_all, reduction="sum")
                                          if world > 1 else seen_all)
    result.losses = state["losses"]
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def steps_for(examples: int, batch_size: int, steps: int, epochs: float,
              examples_per_epoch: int = 0) -> tuple[int, int]:
    """``(steps, steps_per_epoch)``: an epoch is one pass over the examples (or over
    ``examples_per_epoch`` of them), incomplete batches dropped."""
    per_epoch = min(examples_per_epoch or examples, examples) // batch_size
    if per_epoch < 1:
        raise ValueError(f"{examples} examples cannot fill one batch of {batch_size}")
    total = steps if steps > 0 else max(1, int(math.ceil(epochs * per_epoch)))
    return total, per_epoch


def _progress(plan: TrainingPlan, initial: int, rank: int):
    if not plan.progress or rank != 0:
        return None
    from tqdm import tqdm

    # Not a terminal (nohup, CI): a line every 30 s instead of a redrawn bar.
    interval = 1 if os.isatty(2) else 30
    return tqdm(total=plan.steps, initial=initial, desc=plan.description, unit="step",
                mininterval=interval, dynamic_ncols=True)


def across_ranks(count: int, encode_rows: Callable[[list[int]], np.ndarray]) -> np.ndarray:
    """Rows ``0 … count-1`` (a corpus to encode for mining or evaluation) split into one
    contiguous share per rank, each encoded by its rank, and gathered so every rank holds
    all of them in order (issue 21); one process encodes them all."""
    rank, world = distributed()
    if world == 1 or count < world:
        return encode_rows(list(range(count)))
    import torch.distributed as dist

    shares = np.array_split(np.arange(count), world)
    local = torch.from_numpy(np.ascontiguousarray(encode_rows(shares[rank].tolist())))
    width = max(len(share) for share in shares)
    device = _collective_device()
    padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[:len(local)] = local.to(device)
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return np.concatenate([g[:len(share)].cpu().numpy() for g, share in zip(gathered, shares)])


def from_rank0(value: bool, world: int) -> bool:
    """Rank 0's ``value`` on every rank (a decision all ranks must take alike)."""
    if world <= 1:
        return value
    import torch.distributed as dist

    flag = torch.tensor([int(bool(value))], device=_collective_device())
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _collective_device() -> torch.device:
    """Where tensors of a collective live: the GPU under NCCL, else the CPU (gloo)."""
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier(world: int) -> None:
    if world > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
