"""The exact symmetries of a model's tensors, which the weight-token tests check tokens against."""

from __future__ import annotations

import numpy as np


def permute_residual(params: dict[str, np.ndarray], order: np.ndarray) -> dict[str, np.ndarray]:
    """The same model with its residual dimensions reordered: every tensor's residual axis at once."""
    out = {}
    for name, array in params.items():
        if name.endswith(("embeddings", "attn/linear/w", "mlp/linear_2/w")):
            out[name] = array[..., order]
        elif name.endswith(("attn/linear/b", "mlp/linear_2/b")):
            out[name] = array[order]
        elif name.endswith("/w"):
            out[name] = array[order]
        else:
            out[name] = array
    return out


def permute_hidden(params: dict[str, np.ndarray], layer: int, order: np.ndarray) -> dict[str, np.ndarray]:
    """The same model with layer `layer`'s MLP hidden units reordered."""
    prefix = f"transformer/layer_{layer}/mlp/"
    out = dict(params)
    out[prefix + "linear_1/w"] = params[prefix + "linear_1/w"][:, order]
    out[prefix + "linear_1/b"] = params[prefix + "linear_1/b"][order]
    out[prefix + "linear_2/w"] = params[prefix + "linear_2/w"][order]
    return out


def permute_heads(params: dict[str, np.ndarray], layer: int, order: np.ndarray) -> dict[str, np.ndarray]:
    """The same model with layer `layer`'s attention heads reordered (head k is the given head order[k])."""
    prefix, out = f"transformer/layer_{layer}/attn/", dict(params)
    for name in ("query/w", "query/b", "key/w", "key/b", "value/w", "value/b", "linear/w"):
        if prefix + name in params:
            array = params[prefix + name]
            axis = 0 if name == "linear/w" else array.ndim - 1  # the heads' dimensions, head by head
            size = array.shape[axis] // len(order)
            columns = np.concatenate([np.arange(head * size, (head + 1) * size) for head in order])
            out[prefix + name] = np.take(array, columns, axis=axis)
    return out
