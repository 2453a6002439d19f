"""A NumPy forward pass of a compiled Tracr model, for cheap verification of many programs.

`jax.jit(model.forward)` recompiles for every new architecture (~0.3 s, more than the compile
itself); this is the same computation as `tracr.transformer.model` (no layer norm, non-causal,
softmax attention, ReLU MLPs) in float32, batched over inputs of one length.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from inverse_tracr.compile.model import BOS, READOUT, CompiledModel


def residual_output(model: CompiledModel, ids: np.ndarray) -> np.ndarray:
    """Final residual stream [B, T, D] for token ids [B, T] (BOS first)."""
    p, layout = model.params, model.layout
    _, length = ids.shape
    x = p["token_embed/embeddings"][ids] + p["pos_embed/embeddings"][np.arange(length)]  # [B, T, D]
    heads, key_size = layout.num_heads, layout.key_size
    for layer in range(layout.num_layers):
        attn = f"transformer/layer_{layer}/attn"
        q, k, v = (_linear(p, f"{attn}/{name}", x).reshape(*x.shape[:2], heads, key_size) for name in ("query", "key", "value"))  # [B, T, H, K]
        logits = np.einsum("bthd,bThd->bhtT", q, k) / np.sqrt(key_size).astype(np.float32)  # [B, H, T, T]
        logits -= logits.max(axis=-1, keepdims=True)
        weights = np.exp(logits)
        weights /= weights.sum(axis=-1, keepdims=True)
        mixed = np.einsum("bhtT,bThd->bthd", weights, v).reshape(*x.shape[:2], heads * key_size)
        x = x + _linear(p, f"{attn}/linear", mixed)
        hidden = np.maximum(_linear(p, f"transformer/layer_{layer}/mlp/linear_1", x), 0)  # [B, T, M]
        x = x + _linear(p, f"transformer/layer_{layer}/mlp/linear_2", hidden)
    return x


def _linear(params: dict[str, np.ndarray], name: str, x: np.ndarray) -> np.ndarray:
    """haiku's Linear: x @ w + b."""
    return x @ params[f"{name}/w"] + params[f"{name}/b"]


def run(model: CompiledModel, inputs: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Decoded outputs (BOS position dropped) for each input sequence, as Tracr decodes them."""
    layout = model.layout
    encode = {token: i for i, token in enumerate(layout.input_tokens)}
    outputs: list[list[Any] | None] = [None] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for i, xs in enumerate(inputs):
        by_length.setdefault(len(xs), []).append(i)
    for indices in by_length.values():
        ids = np.array([[encode[BOS]] + [encode[t] for t in inputs[i]] for i in indices])
        residual = residual_output(model, ids)[:, 1:]  # [B, T, D]
        out = residual @ model.params[READOUT] if layout.readout else residual[..., list(layout.output_dims)]  # [B, T, O]
        if layout.output_values is None:
            decoded = out[..., 0].tolist()
        else:
            decoded = [[layout.output_values[j] for j in row] for row in out.argmax(axis=-1)]
        for i, row in zip(indices, decoded):
            outputs[i] = row
    return outputs  # type: ignore[return-value]
