"""A NumPy forward pass of a compiled Tracr model, for cheap verification of many programs.

`jax.jit(model.forward)` recompiles for every new architecture (~0.3 s, more than the compile
itself); this is the same computation as `tracr.transformer.model` (no layer norm, softmax
attention, causally masked when the layout says so, ReLU MLPs) in float32, batched over inputs of
one length.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from inverse_tracr.compile.model import BOS, POS_EMBED, READOUT, TOKEN_EMBED, CompiledModel, layer_param


def residual_output(model: CompiledModel, ids: np.ndarray) -> np.ndarray:
    """Final residual stream [B, T, D] for token ids [B, T] (BOS first).

    Heads and hidden units whose output weights are all zero add exactly nothing, and Tracr pads
    every layer to the widest one with them, so they are skipped (half the work on zoo models)."""
    p, layout = model.params, model.layout
    _, length = ids.shape
    x = p[TOKEN_EMBED][ids] + p[POS_EMBED][np.arange(length)]  # [B, T, D]
    heads, key_size = layout.num_heads, layout.key_size
    # Tracr's causal mask: position t (BOS is 0) attends to positions ≤ t, so BOS is always seen.
    hidden_keys = ~np.tril(np.ones((length, length), bool)) if layout.causal else None  # [T, T]
    for layer in range(layout.num_layers):
        attn, mlp = layer_param(layer, "attn"), layer_param(layer, "mlp")
        out_w = p[f"{attn}/linear/w"].reshape(heads, key_size, -1)  # [H, K, D]
        used = np.flatnonzero(np.any(out_w != 0, axis=(1, 2)))
        if len(used):
            q, k, v = (_heads(p, f"{attn}/{name}", x, heads, key_size)[:, :, used] for name in ("query", "key", "value"))  # [B, T, H', K]
            logits = np.einsum("bthd,bThd->bhtT", q, k) / np.sqrt(key_size).astype(np.float32)  # [B, H', T, T]
            if hidden_keys is not None:  # every row keeps its own position: never all -inf
                logits[..., hidden_keys] = -np.inf
            logits -= logits.max(axis=-1, keepdims=True)
            weights = np.exp(logits)
            weights /= weights.sum(axis=-1, keepdims=True)
            mixed = np.einsum("bhtT,bThd->bthd", weights, v).reshape(*x.shape[:2], len(used) * key_size)
            x = x + mixed @ out_w[used].reshape(len(used) * key_size, -1)
        x = x + p[f"{attn}/linear/b"]
        w2 = p[f"{mlp}/linear_2/w"]
        units = np.flatnonzero(np.any(w2 != 0, axis=1))
        if len(units):
            hidden = np.maximum(x @ p[f"{mlp}/linear_1/w"][:, units] + p[f"{mlp}/linear_1/b"][units], 0)  # [B, T, M']
            x = x + hidden @ w2[units]
        x = x + p[f"{mlp}/linear_2/b"]
    return x


def _heads(params: dict[str, np.ndarray], name: str, x: np.ndarray, heads: int, key_size: int) -> np.ndarray:
    return _linear(params, name, x).reshape(*x.shape[:2], heads, key_size)


def _linear(params: dict[str, np.ndarray], name: str, x: np.ndarray) -> np.ndarray:
    """haiku's Linear: x @ w + b."""
    return x @ params[f"{name}/w"] + params[f"{name}/b"]


def output_scores(model: CompiledModel, ids: np.ndarray) -> np.ndarray:
    """The output block [B, T, O] for token ids [B, T+1] (BOS first; BOS position dropped)."""
    residual = residual_output(model, ids)[:, 1:]  # [B, T, D]
    layout = model.layout
    return residual @ model.params[READOUT] if layout.readout else residual[..., list(layout.output_dims)]


def output_array(model: CompiledModel, ids: np.ndarray) -> np.ndarray:
    """Decoded outputs [B, T]: positions in the layout's output values (categorical), or numbers."""
    out = output_scores(model, ids)
    return out[..., 0] if model.layout.output_values is None else out.argmax(axis=-1)


def token_ids(model: CompiledModel, inputs: Sequence[Sequence[Any]]) -> np.ndarray:
    """Embedding rows [B, T+1] of inputs of one length, BOS first."""
    encode = {token: i for i, token in enumerate(model.layout.input_tokens)}
    tokens = np.array([encode[t] for xs in inputs for t in xs], np.int64).reshape(len(inputs), -1)
    return np.concatenate([np.full((len(inputs), 1), encode[BOS]), tokens], axis=1)


def run(model: CompiledModel, inputs: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Decoded outputs (BOS position dropped) for each input sequence, as Tracr decodes them."""
    layout = model.layout
    outputs: list[list[Any] | None] = [None] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for i, xs in enumerate(inputs):
        by_length.setdefault(len(xs), []).append(i)
    for indices in by_length.values():
        out = output_array(model, token_ids(model, [inputs[i] for i in indices]))
        if layout.output_values is None:
            decoded = out.tolist()
        else:
            decoded = [[layout.output_values[j] for j in row] for row in out.tolist()]
        for i, row in zip(indices, decoded):
            outputs[i] = row
    return outputs  # type: ignore[return-value]
