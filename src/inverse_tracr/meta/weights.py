"""A model's parameters as a sequence of chunks: the meta-model's input (thesis ch. 5).

Every tensor is flattened (row-major) in execution order — embeddings, then per layer the
attention's query, key, value and output projections and the MLP's two layers, weights before
biases — and cut into chunks of `CHUNK` floats (the last zero-padded). Each chunk carries what the
floats alone do not say: the tensor's parameter type (one-hot), its layer (one-hot), and whether it
is the tensor's last chunk. Tokenising is exact (`untokenize` gives the tensors back), so any
normalisation belongs to the model (`normalise`), not to the data.

Works for any kind of zoo sample: tensors it does not know (e.g. a compressed model's extra
read-out) go last, typed "other".
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

CHUNK = 512
MAX_LAYERS = 16
PARAM_TYPES = (
    "token_embed",
    "pos_embed",
    "query_w",
    "query_b",
    "key_w",
    "key_b",
    "value_w",
    "value_b",
    "attn_out_w",
    "attn_out_b",
    "mlp_in_w",
    "mlp_in_b",
    "mlp_out_w",
    "mlp_out_b",
    "other",
)
FEATURES = CHUNK + len(PARAM_TYPES) + MAX_LAYERS + 1  # floats, type, layer, last-chunk flag

_LAYER = re.compile(r"^transformer/layer_(\d+)/(attn|mlp)/(\w+)/([wb])$")
_TYPES = {
    ("attn", "query"): "query",
    ("attn", "key"): "key",
    ("attn", "value"): "value",
    ("attn", "linear"): "attn_out",
    ("mlp", "linear_1"): "mlp_in",
    ("mlp", "linear_2"): "mlp_out",
}
_ORDER_IN_LAYER = ["query", "key", "value", "attn_out", "mlp_in", "mlp_out"]


def describe(name: str) -> tuple[tuple, str, int]:
    """(execution-order key, parameter type, layer) of a parameter path."""
    if name in ("token_embed/embeddings", "pos_embed/embeddings"):
        return (0, name), name.split("/")[0], 0
    match = _LAYER.match(name)
    if match and (match[2], match[3]) in _TYPES:
        layer, kind = int(match[1]), _TYPES[(match[2], match[3])]
        return (1, layer, _ORDER_IN_LAYER.index(kind), match[4] == "b"), f"{kind}_{match[4]}", layer
    return (2, name), "other", 0


@dataclasses.dataclass
class WeightTokens:
    """Chunks [N, CHUNK] and per-chunk type, layer and last-chunk flag; `shapes` to undo it."""

    values: np.ndarray  # [N, CHUNK] float32
    types: np.ndarray  # [N] int64, index into PARAM_TYPES
    layers: np.ndarray  # [N] int64
    last: np.ndarray  # [N] bool
    shapes: list[tuple[str, tuple[int, ...]]]  # tensors in execution order

    def __len__(self) -> int:
        return len(self.values)

    def features(self) -> np.ndarray:
        """[N, FEATURES]: the floats, then one-hot type, one-hot layer, last flag."""
        n = len(self)
        out = np.zeros((n, FEATURES), np.float32)
        out[:, :CHUNK] = self.values
        out[np.arange(n), CHUNK + self.types] = 1
        out[np.arange(n), CHUNK + len(PARAM_TYPES) + np.minimum(self.layers, MAX_LAYERS - 1)] = 1
        out[:, -1] = self.last
        return out


def tokenize(params: dict[str, np.ndarray]) -> WeightTokens:
    values, types, layers, last, shapes = [], [], [], [], []
    for name in sorted(params, key=lambda n: describe(n)[0]):
        _, kind, layer = describe(name)
        flat = np.asarray(params[name], np.float32).reshape(-1)
        n_chunks = max(1, -(-flat.size // CHUNK))
        padded = np.zeros(n_chunks * CHUNK, np.float32)
        padded[: flat.size] = flat
        values.append(padded.reshape(n_chunks, CHUNK))
        types += [PARAM_TYPES.index(kind)] * n_chunks
        layers += [layer] * n_chunks
        last += [False] * (n_chunks - 1) + [True]
        shapes.append((name, tuple(np.shape(params[name]))))
    return WeightTokens(np.concatenate(values), np.array(types), np.array(layers), np.array(last), shapes)


def untokenize(tokens: WeightTokens) -> dict[str, np.ndarray]:
    """The tensors back, exactly."""
    params, row = {}, 0
    for name, shape in tokens.shapes:
        size = int(np.prod(shape))
        n_chunks = max(1, -(-size // CHUNK))
        params[name] = tokens.values[row : row + n_chunks].reshape(-1)[:size].reshape(shape)
        row += n_chunks
    return params


def normalise(values):
    """sign(x)·log(1+|x|): Tracr weights span ~1e-3 to ~1e3 (MLP exactness, attention softness), so a
    linear scale would flatten all but the largest; works on NumPy arrays and torch tensors."""
    lib = np if isinstance(values, np.ndarray) else __import__("torch")
    return lib.sign(values) * lib.log1p(lib.abs(values))
