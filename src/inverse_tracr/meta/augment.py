"""Exact symmetries of a model's weights, drawn at random as training augmentation (thesis §8.1).

A transformer computes the same function, so its program is the same label, when

- `hidden`: the hidden units of an MLP are reordered — each unit reads the residual stream and
  writes it back on its own;
- `residual`: its residual basis is permuted, alike in every tensor that reads or writes it.

Both act on neuron tokens (`weights.features(…, "neurons")`, or "offsets") as they are kept in
memory, without going back to the tensors: a hidden permutation reorders an MLP layer's unit
tokens, a residual one permutes the residual coordinates of every token's two vectors (test: the
tokens of the permuted tensors, whose forward pass is the model's). A token's offsets in variable
blocks name values, the same in any basis, so they are kept as the model's own basis gives them.
A model with tensors the tokens hold only flattened (a compressed student's read-out, typed
"other") is left in its residual basis.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inverse_tracr.meta import weights

SYMMETRIES = ("hidden", "residual")


def check(symmetries: Sequence[str], form: str) -> None:
    """Refuse symmetries this module does not know, or a weight-token form it cannot permute."""
    unknown = [s for s in symmetries if s not in SYMMETRIES]
    if unknown:
        raise ValueError(f"unknown symmetry {unknown[0]!r} (choose from {', '.join(SYMMETRIES)})")
    if symmetries and form == "chunks":
        raise ValueError("augmenting by symmetries needs neuron weight tokens (--weight-tokens neurons or offsets)")


def augment(features: np.ndarray, symmetries: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """Neuron tokens [N, width] of the same model under randomly drawn `symmetries`."""
    out = features
    if "hidden" in symmetries:
        out = permute_hidden(out, rng)
    if "residual" in symmetries and not _has(out, "other"):
        out = permute_residual(out, rng.permutation(residual_width(out)))
    return out


def permute_hidden(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The tokens with each layer's MLP hidden units in a random order."""
    out = features.copy()
    units = weights.token_types(features) == weights.PARAM_TYPES.index("mlp_in_w")
    layers = weights.token_layers(features)
    for layer in np.unique(layers[units]):
        rows = np.flatnonzero(units & (layers == layer))
        out[rows] = features[rng.permutation(rows)]
    return out


def permute_residual(features: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The tokens of the model whose residual dimension i is the given model's dimension order[i]."""
    out = features.copy()
    d, r = len(order), weights.RESIDUAL
    out[:, :d] = features[:, order]
    out[:, r : r + d] = features[:, r + order]
    return out


def residual_width(features: np.ndarray) -> int:
    """The residual dimensions in use: one past the last that any token reads or writes."""
    r = weights.RESIDUAL
    used = np.flatnonzero(features[:, :r].any(axis=0) | features[:, r : 2 * r].any(axis=0))
    return int(used[-1]) + 1 if len(used) else 0


def _has(features: np.ndarray, kind: str) -> bool:
    return bool((weights.token_types(features) == weights.PARAM_TYPES.index(kind)).any())
