"""Exact symmetries of a model's weights, drawn at random as training augmentation (thesis §8.1).

A transformer computes the same function, so its program is the same label, when

- `hidden`: the hidden units of an MLP are reordered — each unit reads the residual stream and
  writes it back on its own;
- `residual`: its residual basis is permuted, alike in every tensor that reads or writes it;
- `heads`: the heads of an attention layer are reordered — each reads the residual stream and
  writes its sum on its own, so only the order of their dimensions changes;
- `rotation`: its residual basis is turned by a random orthogonal matrix, alike in every tensor
  (Tracr has no layer norm, so nothing else looks at the basis). Only distilled students are
  turned: their residual is a learned basis, dense already, and turning it is what makes a
  meta-model see every basis it may meet (Langosco et al.'s 77 % exact on compressed models
  depends on it); a compiled model's one-hot basis is what offset tokens and the reader read, so
  it is only permuted.

All act on neuron tokens (`weights.features(…, "neurons")`, or "offsets") as they are kept in
memory, without going back to the tensors: a hidden permutation reorders an MLP layer's unit
tokens, a head permutation an attention layer's tokens head by head (`weights.heads` says whose
they are: the tensors do not say how many heads they hold, the layout does), a residual
permutation or rotation turns the residual coordinates of every token's two vectors (test: the
tokens of the turned tensors, whose forward pass is the model's). A token's
offsets in variable blocks name values, the same in any permuted basis, so they are kept as the
model's own basis gives them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inverse_tracr.meta import weights

SYMMETRIES = ("hidden", "heads", "residual", "rotation")
#: The token types a head permutation moves: a head's query/key and value/output dimensions.
HEAD_TYPES = tuple(weights.PARAM_TYPES.index(t) for t in ("query_w", "value_w"))


def check(symmetries: Sequence[str], form: str) -> None:
    """Refuse symmetries this module does not know, or a weight-token form it cannot permute."""
    unknown = [s for s in symmetries if s not in SYMMETRIES]
    if unknown:
        raise ValueError(f"unknown symmetry {unknown[0]!r} (choose from {', '.join(SYMMETRIES)})")
    if symmetries and form == "chunks":
        raise ValueError("augmenting by symmetries needs neuron weight tokens (--weight-tokens neurons or offsets)")


def augment(features: np.ndarray, symmetries: Sequence[str], rng: np.random.Generator, heads: np.ndarray | None = None) -> np.ndarray:
    """Neuron tokens [N, width] of the same model under randomly drawn `symmetries`; `heads`
    (`weights.heads`) is each token's attention head, which `heads` needs."""
    out = features
    if "hidden" in symmetries:
        out = permute_hidden(out, rng)
    if "heads" in symmetries:
        layers = weights.token_layers(out)
        out = permute_heads(out, heads, {layer: rng.permutation(heads[layers == layer].max() + 1) for layer in np.unique(layers[heads >= 0])})
    if "residual" in symmetries:
        out = permute_residual(out, rng.permutation(residual_width(out)))
    if "rotation" in symmetries and _has(out, "other"):  # a student: its read-out is typed "other"
        out = rotate_residual(out, orthogonal(residual_width(out), rng))
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


def permute_heads(features: np.ndarray, heads: np.ndarray, orders: dict[int, np.ndarray]) -> np.ndarray:
    """The tokens of the model whose layer l's head k is the given model's head orders[l][k]: in
    each of those layers, its query/key tokens and its value/output tokens, head by head, in that
    order (a head with no tokens, all-zero padding, moves nothing)."""
    out, kinds, layers = features.copy(), weights.token_types(features), weights.token_layers(features)
    for layer, order in orders.items():
        for kind in HEAD_TYPES:
            rows = np.flatnonzero((kinds == kind) & (layers == layer))
            out[rows] = features[np.concatenate([rows[heads[rows] == head] for head in order])]
    return out


def permute_residual(features: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The tokens of the model whose residual dimension i is the given model's dimension order[i]."""
    return rotate_residual(features, np.eye(len(order), dtype=features.dtype)[:, order])


def rotate_residual(features: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """The tokens of the model whose residual is the given model's times `rotation` (orthogonal,
    [d, d]: x ↦ x·rotation): every read and write vector turns alike (a read r of x becomes
    rotationᵀ·r, as a row r·rotation). Offsets are kept: a permutation moves no value in its block,
    and a student, the only model turned otherwise, has no blocks (every token writes every
    dimension, which `residual.block_starts` takes for `one`), so its offsets are zero."""
    out, d, r = features.copy(), len(rotation), weights.RESIDUAL
    for at in (0, r):
        out[:, at : at + d] = features[:, at : at + d] @ rotation
    return out


def orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A [d, d] orthogonal matrix drawn uniformly (Haar): Q of a Gaussian matrix's QR, its columns'
    signs fixed by R's diagonal (without, the draw is not uniform)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def residual_width(features: np.ndarray) -> int:
    """The residual dimensions in use: one past the last that any token reads or writes."""
    r = weights.RESIDUAL
    used = np.flatnonzero(features[:, :r].any(axis=0) | features[:, r : 2 * r].any(axis=0))
    return int(used[-1]) + 1 if len(used) else 0


def _has(features: np.ndarray, kind: str) -> bool:
    return bool((weights.token_types(features) == weights.PARAM_TYPES.index(kind)).any())
