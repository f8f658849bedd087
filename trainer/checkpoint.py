"""Resumable training checkpoints without pickle: tensors in safetensors, everything else in
JSON, written into a staging folder and renamed into place (a kill mid-write leaves the
previous checkpoint intact).

Layout of ``<work>/<stage>/checkpoint/``::

    trainable.safetensors   parameters that train (LoRA matrices, or the whole model)
    optimizer.safetensors   optimizer state tensors, keyed "<param index>.<name>"
    optimizer.json          optimizer param groups and non-tensor state
    scheduler.json          learning-rate scheduler state
    rng.safetensors         torch CPU (and CUDA) generator states
    state.json              step, epoch, loss history, elapsed seconds
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.storage import atomic_directory

STATE_FILE = "state.json"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu").clone().contiguous()
            for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(directory: Path, *, model, optimizer, scheduler, state: dict) -> None:
    """Write a complete checkpoint atomically into ``directory``."""
    from safetensors.torch import save_file

    with atomic_directory(directory, kind="checkpoint") as staging:
        save_file(trainable_state(model), str(staging / "trainable.safetensors"))
        tensors, meta = _split_optimizer(optimizer.state_dict())
        save_file(tensors, str(staging / "optimizer.safetensors"))
        _write_json(staging / "optimizer.json", meta)
        _write_json(staging / "scheduler.json", scheduler.state_dict())
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda.{i}"] = cuda_state
        save_file(rng, str(staging / "rng.safetensors"))
        _write_json(staging / STATE_FILE, state)


def load_checkpoint(directory: Path, *, model, optimizer, scheduler) -> dict:
    """Restore weights, optimizer, scheduler and RNG from ``directory``; return its state."""
    from safetensors.torch import load_file

    if not (directory / STATE_FILE).is_file():
        raise LexedgeError(f"{directory}: not a complete checkpoint ({STATE_FILE} missing)")
    weights = load_file(str(directory / "trainable.safetensors"))
    parameters = dict(model.named_parameters())
    missing = [name for name, p in parameters.items() if p.requires_grad and name not in weights]
    if missing or set(weights) - set(parameters):
        raise LexedgeError(f"{directory}: checkpoint does not match the model being trained "
                           f"(missing {missing[:2]}, unexpected "
                           f"{sorted(set(weights) - set(parameters))[:2]})")
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor.to(parameters[name].device))
    meta = json.loads((directory / "optimizer.json").read_text(encoding="utf-8"))
    tensors = load_file(str(directory / "optimizer.safetensors"))
    optimizer.load_state_dict(_join_optimizer(tensors, meta))
    scheduler.load_state_dict(json.loads((directory / "scheduler.json").read_text("utf-8")))
    rng = load_file(str(directory / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(rng) if k.startswith("cuda.")]
        if states:
            torch.cuda.set_rng_state_all(states)
    return json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))


def _split_optimizer(state_dict: dict) -> tuple[dict, dict]:
    tensors, plain_state = {}, {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().to("cpu").clone().contiguous()
            else:
                plain_state.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain_state": plain_state}


def _join_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in meta.get("plain_state", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
