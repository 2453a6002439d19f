"""Training checkpoints in the store, without pickle: safetensors for tensors, JSON for the rest.

(Accelerate's `save_state` pickles RNG states and the optimizer.) A checkpoint holds everything a
resumed run needs to continue exactly as if never stopped: model, optimizer, scheduler, step and
every random generator. It is written to a temporary folder, uploaded file by file, and marked
complete by `state.json`, written last: a half-uploaded checkpoint is never resumed from.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from inverse_tracr.zoo.store import Store

FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors")


def _optimizer_split(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            tensors[f"{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": state["param_groups"], "keys": sorted(tensors)}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key in meta["keys"]:
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensors[key]
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save(store: Store, folder: tuple[str, ...], step: int, model, optimizer, scheduler) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        tensors, meta = _optimizer_split(optimizer.state_dict())
        save_file(tensors, tmp / "optimizer.safetensors")
        (tmp / "optimizer.json").write_text(json.dumps(meta))
        save_file({"torch": torch.get_rng_state()}, tmp / "rng.safetensors")
        for name in FILES:
            store.write_bytes((tmp / name).read_bytes(), *folder, name)
    state = {
        "step": step,
        "scheduler": scheduler.state_dict(),
        "python_random": _jsonable(random.getstate()),
        "numpy_random": _jsonable(np.random.get_state()),
    }
    store.write_bytes(json.dumps(state).encode(), *folder, "state.json")


def load(store: Store, folder: tuple[str, ...], model, optimizer, scheduler) -> int:
    """Restore everything; returns the step the checkpoint was taken at."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in FILES:
            (tmp / name).write_bytes(store.read_bytes(*folder, name))
        model.load_state_dict(load_file(tmp / "model.safetensors"))
        meta = json.loads((tmp / "optimizer.json").read_text())
        optimizer.load_state_dict(_optimizer_join(load_file(tmp / "optimizer.safetensors"), meta))
        torch.set_rng_state(load_file(tmp / "rng.safetensors")["torch"])
    state = json.loads(store.read_bytes(*folder, "state.json"))
    scheduler.load_state_dict(state["scheduler"])
    random.setstate(_tuples(state["python_random"]))
    kind, keys, pos, has_gauss, gauss = state["numpy_random"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    return int(state["step"])


def complete(store: Store, run: tuple[str, ...]) -> list[tuple[str, ...]]:
    """A run's complete checkpoint folders, oldest first."""
    names = sorted(n for n in store.list(*run, "checkpoints") if n.startswith("step-"))
    return [(*run, "checkpoints", name) for name in names if store.exists(*run, "checkpoints", name, "state.json")]


def newest(store: Store, run: tuple[str, ...]) -> tuple[str, ...] | None:
    """The newest complete checkpoint folder of a run, if any."""
    folders = complete(store, run)
    return folders[-1] if folders else None


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
