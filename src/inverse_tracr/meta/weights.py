"""A model's parameters as a sequence of tokens: the meta-model's input, in one of two forms.

`chunks` (thesis ch. 5): every tensor is flattened (row-major) in execution order — embeddings,
then per layer the attention's query, key, value and output projections and the MLP's two layers,
weights before biases — and cut into chunks of `CHUNK` floats (the last zero-padded). Each chunk
carries what the floats alone do not say: the tensor's parameter type (one-hot), its layer
(one-hot), and whether it is the tensor's last chunk. Tokenising is exact (`untokenize` gives the tensors back), so any
normalisation belongs to the model (`normalise`), not to the data.

Works for any kind of zoo sample: tensors it does not know (e.g. a compressed model's extra
read-out) go last, typed "other".

`neurons`: one token per unit that reads from and writes to the residual stream, its two vectors
side by side in residual coordinates — an MLP hidden unit (its input column, output row and bias),
an attention key dimension (its query and key columns), a value dimension (its value column and
output row), an embedding row (what it writes), a bias vector, a distilled student's read-out
column (what an output reads). Every token names residual dimensions the same way, so the
meta-model's attention can match what one unit writes with what another reads, which is how a
compiled program flows; all-zero units (Tracr pads layers to a common width) are left out, and so
are tensors it does not know (whose axes name no residual dimensions). A residual wider than
`RESIDUAL` is cut to its first dimensions, as `max_chunks` cuts a long model.

`offsets`: neuron tokens that also give each of their two vectors by offset in the variable blocks
it touches (`meta.residual`): the first `SLOTS` values of its first two blocks. A program's tables
are facts about offsets (value x of the input is read where value f(x) of the output is
written), which absolute dimensions hide behind where each block starts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from inverse_tracr.compile.model import LAYER_PARAM, POS_EMBED, READOUT, TOKEN_EMBED, layer_param
from inverse_tracr.meta import residual

CHUNK = 512
#: The residual dimensions a neuron token holds.
RESIDUAL = 128
#: Offsets per block an `offsets` token holds: a variable's values (a vocabulary, 0..max_seq_len).
SLOTS = 16
#: The meta-model's weight-token forms (see the module docstring).
FORMS = ("chunks", "neurons", "offsets")
#: Measured held out: neurons 75.7 % of tokens, chunks 73.9 % (4,000 programs, 1,500 steps of `tiny`);
#: offsets 25.0 % exact greedy, neurons 13.0 % (the same programs, 3,000 steps, target layout 3).
DEFAULT_FORM = "offsets"
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


def floats(form: str) -> int:
    """The leading floats of a token's features (the part `normalise` applies to)."""
    if form == "chunks":
        return CHUNK
    return 2 * RESIDUAL + 2 + (4 * SLOTS if form == "offsets" else 0)


def width(form: str) -> int:
    """Features per token: the floats, then one-hot type, one-hot layer, last-chunk flag."""
    return floats(form) + len(PARAM_TYPES) + MAX_LAYERS + 1


def sublayers(params: dict[str, np.ndarray]) -> int | None:
    """How many sublayers (an attention and an MLP per layer) the model has, by its parameters'
    names; None where they name no layers (then the program's grammar does not count them)."""
    layers = [int(m[1]) for m in map(LAYER_PARAM.match, params) if m]
    return 2 * (max(layers) + 1) if layers else None


def features(params: dict[str, np.ndarray], form: str) -> np.ndarray:
    """[N, width(form)]: a model's weight tokens."""
    if form == "chunks":
        return tokenize(params).features()
    if form == "neurons":
        return _neurons(params)[0]
    if form == "offsets":
        return _with_offsets(_neurons(params)[0])
    raise ValueError(f"unknown weight-token form {form!r} (choose from {', '.join(FORMS)})")


def heads(params: dict[str, np.ndarray], num_heads: int) -> np.ndarray:
    """[N] the attention head of each neuron or offset token (its query/key or value/output
    dimension's), -1 for tokens of no head: what permuting a layer's heads moves (`meta.augment`).
    The weights do not say how many heads their attention dimensions are cut into; the layout does."""
    return _neurons(params, num_heads)[1]

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
    if name in (TOKEN_EMBED, POS_EMBED):
        return (0, name), name.split("/")[0], 0
    match = LAYER_PARAM.match(name)
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


def _neurons(params: dict[str, np.ndarray], num_heads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The neuron tokens, and each one's attention head (-1: none)."""
    blocks: list[np.ndarray] = []
    head_of: list[np.ndarray] = []

    def add(reads, writes, bias_read, bias_write, kind: str, layer: int, per_head: bool = False) -> None:
        """Tokens of units i: reads[i] and writes[i] ([n, d] or None), their biases (scalars or [n]);
        `per_head`: the n units are `num_heads` heads' dimensions, head by head."""
        n = len(reads if reads is not None else writes)
        block = np.zeros((n, width("neurons")), np.float32)
        for offset, vectors in ((0, reads), (RESIDUAL, writes)):
            if vectors is not None:
                vectors = np.asarray(vectors, np.float32).reshape(n, -1)[:, :RESIDUAL]
                block[:, offset : offset + vectors.shape[1]] = vectors
        block[:, 2 * RESIDUAL], block[:, 2 * RESIDUAL + 1] = bias_read, bias_write
        used = block.any(axis=1)
        block = block[used]
        head_of.append((np.arange(n) // (n // num_heads) if per_head else np.full(n, -1))[used])
        block[:, floats("neurons") + PARAM_TYPES.index(kind)] = 1
        block[:, floats("neurons") + len(PARAM_TYPES) + min(layer, MAX_LAYERS - 1)] = 1
        blocks.append(block)

    for name in (TOKEN_EMBED, POS_EMBED):
        if name in params:
            add(None, params[name], 0, 0, name.split("/")[0], 0)
    layers = sorted({int(m[1]) for m in map(LAYER_PARAM.match, params) if m})
    for layer in layers:
        def get(path: str, size: int | None = None):
            value = params.get(layer_param(layer, path))
            return np.zeros(size) if value is None and size is not None else value

        if (wq := get("attn/query/w")) is not None:
            wk, wv, wo = get("attn/key/w"), get("attn/value/w"), get("attn/linear/w")
            bq, bk, bv = get("attn/query/b", wq.shape[1]), get("attn/key/b", wk.shape[1]), get("attn/value/b", wv.shape[1])
            add(wq.T, wk.T, bq, bk, "query_w", layer, per_head=True)
            add(wv.T, wo, bv, 0, "value_w", layer, per_head=True)
            add(None, get("attn/linear/b", wo.shape[1])[None], 0, 0, "attn_out_b", layer)
        if (w1 := get("mlp/linear_1/w")) is not None:
            w2, b1 = get("mlp/linear_2/w"), get("mlp/linear_1/b", w1.shape[1])
            add(w1.T, w2, b1, 0, "mlp_in_w", layer)
            add(None, get("mlp/linear_2/b", w2.shape[1])[None], 0, 0, "mlp_out_b", layer)
    if READOUT in params:  # a student's read-out [d, outputs]: each output reads the residual through its column
        add(np.asarray(params[READOUT]).T, None, 0, 0, "other", 0)
    if not blocks:
        return np.zeros((0, width("neurons")), np.float32), np.zeros(0, np.int64)
    return np.concatenate(blocks), np.concatenate(head_of)


def token_types(tokens: np.ndarray) -> np.ndarray:
    """[N] each token's parameter type (an index into PARAM_TYPES), in any form: the labels end a token."""
    return tokens[:, -1 - MAX_LAYERS - len(PARAM_TYPES) : -1 - MAX_LAYERS].argmax(axis=1)


def token_layers(tokens: np.ndarray) -> np.ndarray:
    """[N] each token's layer, in any form."""
    return tokens[:, -1 - MAX_LAYERS : -1].argmax(axis=1)


def block_starts(tokens: np.ndarray) -> np.ndarray:
    """[RESIDUAL] where each residual dimension's variable block starts (`residual.block_starts`),
    from a model's neuron tokens: its embedding rows and the units that write the residual."""
    types, kind, layer = list(PARAM_TYPES), token_types(tokens), token_layers(tokens)
    writer = np.isin(kind, [types.index(k) for k in ("token_embed", "pos_embed", "value_w", "mlp_in_w")])
    embedding = np.select([kind == types.index("token_embed"), kind == types.index("pos_embed")], [0, 1], -1)
    sublayer = 2 * layer + (kind == types.index("mlp_in_w"))
    return residual.block_starts(tokens[writer, :RESIDUAL], tokens[writer, RESIDUAL : 2 * RESIDUAL], sublayer[writer], embedding[writer])


def _with_offsets(tokens: np.ndarray) -> np.ndarray:
    """Neuron tokens with their two vectors by offset in blocks, inserted after the floats."""
    starts, f = block_starts(tokens), floats("neurons")
    folded = [residual.by_offset(tokens[:, at : at + RESIDUAL], starts, SLOTS) for at in (0, RESIDUAL)]
    return np.concatenate([tokens[:, :f], *folded, tokens[:, f:]], axis=1)
