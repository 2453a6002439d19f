"""A compiled model's forward pass in JAX, over layer-stacked arrays, and the students built on it.

Stored models keep their parameters flat by haiku path (`transformer/layer_0/attn/query/w`);
training wants every layer's tensors stacked ([L, ...]) so one `lax.scan` runs the layers in order
and one `vmap` runs every block at once on teacher-forced inputs: the compiled step then has the
same size whatever the depth. The computation is Tracr's (no layer norm, non-causal softmax
attention with a padding mask, ReLU MLPs).

A *compressed* student keeps the teacher's weights frozen and learns `W` [D, d]: it reads the
residual through `Wᵀ` and writes through `W` (Tracr's `CompressedTransformer`). Folding `W` into
the weights (thesis Algorithm 2) gives an ordinary transformer of width d plus a read-out
`Wᵀ[:, output dims]`. A *natural* student is that ordinary transformer with every weight free
(Glorot-initialised); its `W` maps its residual onto the teacher's, for the loss and the read-out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from inverse_tracr.compile.model import POS_EMBED, READOUT, TOKEN_EMBED, Layout, layer_param

Params = dict[str, jax.Array]

#: Stacked name -> (haiku module, parameter) for one layer's tensors.
_LAYER_TENSORS = {
    "wq": ("attn/query", "w"), "bq": ("attn/query", "b"),
    "wk": ("attn/key", "w"), "bk": ("attn/key", "b"),
    "wv": ("attn/value", "w"), "bv": ("attn/value", "b"),
    "wo": ("attn/linear", "w"), "bo": ("attn/linear", "b"),
    "w1": ("mlp/linear_1", "w"), "b1": ("mlp/linear_1", "b"),
    "w2": ("mlp/linear_2", "w"), "b2": ("mlp/linear_2", "b"),
}  # fmt: skip


def stack(flat: dict[str, np.ndarray], num_layers: int) -> dict[str, np.ndarray]:
    """Haiku-path parameters -> {"tok", "pos", "wq": [L, D, H·K], ...}."""
    stacked = {"tok": flat[TOKEN_EMBED], "pos": flat[POS_EMBED]}
    for name, (module, param) in _LAYER_TENSORS.items():
        stacked[name] = np.stack([flat[layer_param(i, f"{module}/{param}")] for i in range(num_layers)])
    return stacked


def unstack(stacked: dict[str, np.ndarray], readout: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The inverse of `stack` (NumPy), plus the read-out of a distilled model."""
    flat = {TOKEN_EMBED: stacked["tok"], POS_EMBED: stacked["pos"]}
    for name, (module, param) in _LAYER_TENSORS.items():
        for i, tensor in enumerate(stacked[name]):
            flat[layer_param(i, f"{module}/{param}")] = tensor
    if readout is not None:
        flat[READOUT] = readout
    return {name: np.asarray(value) for name, value in flat.items()}


def attention_logits(p: Params, x: jax.Array, mask: jax.Array, heads: int, key_size: int) -> jax.Array:
    """One layer's attention logits [B, H, T, T] for x [B, T, D], mask [B, T] (masked keys: -1e30)."""
    batch, length, _ = x.shape
    q, k = ((x @ p[f"w{n}"] + p[f"b{n}"]).reshape(batch, length, heads, key_size) for n in "qk")  # [B, T, H, K]
    logits = jnp.einsum("bthk,bThk->bhtT", q, k) / np.sqrt(key_size)
    return jnp.where(mask[:, None, None, :], logits, -1e30)


def attention(p: Params, x: jax.Array, mask: jax.Array, heads: int, key_size: int) -> jax.Array:
    """One layer's attention block output (without the residual) for x [B, T, D], mask [B, T]."""
    batch, length, _ = x.shape
    v = (x @ p["wv"] + p["bv"]).reshape(batch, length, heads, key_size)
    weights = jax.nn.softmax(attention_logits(p, x, mask, heads, key_size), axis=-1)
    mixed = jnp.einsum("bhtT,bThk->bthk", weights, v)
    return mixed.reshape(batch, length, heads * key_size) @ p["wo"] + p["bo"]  # [B, T, D]


def mlp(p: Params, x: jax.Array) -> jax.Array:
    return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def layers_of(params: Params) -> Params:
    return {name: params[name] for name in _LAYER_TENSORS}


def embed(params: Params, ids: jax.Array) -> jax.Array:
    return params["tok"][ids] + params["pos"][: ids.shape[1]]  # [B, T, D]


def run(params: Params, ids: jax.Array, mask: jax.Array, heads: int, key_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(final residual [B, T, D], attention inputs [L, B, T, D], MLP inputs [L, B, T, D])."""

    def layer(x, p):
        attn_in = x
        x = x + attention(p, x, mask, heads, key_size)
        mlp_in = x
        return x + mlp(p, x), (attn_in, mlp_in)

    final, (attn_in, mlp_in) = jax.lax.scan(layer, embed(params, ids), layers_of(params))
    return final, attn_in, mlp_in


def blocks(params: Params, attn_in: jax.Array, mlp_in: jax.Array, mask: jax.Array, heads: int, key_size: int) -> tuple[jax.Array, jax.Array]:
    """Every block's output on given (teacher-forced) inputs [L, B, T, D], all layers at once."""
    layer_params = layers_of(params)
    attn_out = jax.vmap(lambda p, x: attention(p, x, mask, heads, key_size))(layer_params, attn_in)
    return attn_out, jax.vmap(mlp)(layer_params, mlp_in)


def fold(teacher: Params, w: jax.Array) -> Params:
    """Thesis Algorithm 2: the compressed student (read through Wᵀ, write through W) as an ordinary
    transformer of width d. w: [D, d]."""
    read = lambda m: jnp.einsum("Dd,lDh->ldh", w, m)  # noqa: E731 - x·Wᵀ·M = x·(Wᵀ M)
    write = lambda m: m @ w  # noqa: E731 - (… M)·W
    return {
        "tok": teacher["tok"] @ w, "pos": teacher["pos"] @ w,
        "wq": read(teacher["wq"]), "bq": teacher["bq"],
        "wk": read(teacher["wk"]), "bk": teacher["bk"],
        "wv": read(teacher["wv"]), "bv": teacher["bv"],
        "wo": write(teacher["wo"]), "bo": write(teacher["bo"]),
        "w1": read(teacher["w1"]), "b1": teacher["b1"],
        "w2": write(teacher["w2"]), "b2": write(teacher["b2"]),
    }  # fmt: skip


def readout(w: jax.Array, layout: Layout) -> jax.Array:
    """[d, O]: the student's residual -> the teacher's output dimensions."""
    return w.T[:, list(layout.output_dims)]


def glorot(key: jax.Array, shapes: dict[str, tuple[int, ...]]) -> Params:
    """Xavier/Glorot-normal weights (stacked tensors: per layer), zero biases."""
    init = jax.nn.initializers.glorot_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
    params = {}
    for (name, shape), k in zip(sorted(shapes.items()), jax.random.split(key, len(shapes))):
        if name.startswith("b"):
            params[name] = jnp.zeros(shape)
        elif name in ("tok", "pos"):
            params[name] = jax.nn.initializers.glorot_normal()(k, shape)
        else:
            params[name] = init(k, shape)
    return params


def natural_shapes(teacher: dict[str, np.ndarray], width: int) -> dict[str, tuple[int, ...]]:
    """Shapes of a natural student of residual width `width` with the teacher's other sizes."""
    layers, _, hidden = teacher["w1"].shape
    attn = teacher["wq"].shape[2]  # heads × key size
    shapes = {"tok": (teacher["tok"].shape[0], width), "pos": (teacher["pos"].shape[0], width)}
    for n in "qkv":
        shapes[f"w{n}"], shapes[f"b{n}"] = (layers, width, attn), (layers, attn)
    shapes |= {"wo": (layers, attn, width), "bo": (layers, width), "w1": (layers, width, hidden), "b1": (layers, hidden)}
    return shapes | {"w2": (layers, hidden, width), "b2": (layers, width)}
