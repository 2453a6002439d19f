"""Shape buckets: zero-pad a model so that one compiled training step serves many models.

Compiling a training step takes ~4 s, training a student ~1 s: compiled per model, the compiler
would cost more than the training. Padding every size up to a bucket (residual width to a multiple
of 16, layers to even, heads, key size, MLP width, outputs) lets a worker reuse one compiled step
for every model of a bucket (1,000 zoo models of 4–8 ops fall into ~50 buckets).

Padding is exact. Zero weights make a padded head, hidden unit or layer contribute nothing, padded
residual dimensions stay zero (nothing writes them, and their rows of `W` get no gradient), and
the masks below keep the padded parts of a student at zero. Queries are scaled by √(K_pad/K),
because attention divides logits by the square root of the (padded) key size.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from inverse_tracr.compile.model import Layout

ATTENTION = ("wq", "bq", "wk", "bk", "wv", "bv")


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _power_of_two(n: int, least: int) -> int:
    return max(least, 1 << (n - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class Bucket:
    """Real and padded sizes of one model and its student."""

    layers: int
    residual: int
    width: int  # the student's residual width
    heads: int
    key_size: int
    hidden: int
    outputs: int
    padded_layers: int
    padded_residual: int
    padded_width: int
    padded_heads: int
    padded_key_size: int
    padded_hidden: int
    padded_outputs: int

    @classmethod
    def of(cls, layout: Layout, width: int) -> "Bucket":
        return cls(
            layout.num_layers, layout.residual_width, width, layout.num_heads, layout.key_size,
            layout.mlp_hidden_size, len(layout.output_dims),
            round_up(layout.num_layers, 2), round_up(layout.residual_width, 16), round_up(width, 8),
            _power_of_two(layout.num_heads, 1), round_up(layout.key_size, 8),
            _power_of_two(layout.mlp_hidden_size, 16), round_up(len(layout.output_dims), 8),
        )  # fmt: skip

    @property
    def query_scale(self) -> float:
        return math.sqrt(self.padded_key_size / self.key_size)

    def masks(self) -> dict[str, np.ndarray]:
        """Which entries are real (1) along each padded axis, and the real counts to average by."""
        real = lambda n, padded: (np.arange(padded) < n).astype(np.float32)  # noqa: E731
        attn = np.outer(real(self.heads, self.padded_heads), real(self.key_size, self.padded_key_size)).ravel()
        return {
            "layers": real(self.layers, self.padded_layers),
            "width": real(self.width, self.padded_width),
            "attn": attn,
            "hidden": real(self.hidden, self.padded_hidden),
            "outputs": real(self.outputs, self.padded_outputs),
            "residual": np.float32(self.residual),
            "blocks": np.float32(1 + 2 * self.layers),
            "attention_maps": np.float32(self.layers * self.heads),
        }


def pad(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-pad at the end of every axis."""
    return np.pad(array, [(0, n - m) for m, n in zip(array.shape, shape)])


def _heads(bucket: Bucket, padded: bool) -> tuple[int, int]:
    return (bucket.padded_heads, bucket.padded_key_size) if padded else (bucket.heads, bucket.key_size)


def _resize_attention(array: np.ndarray, axis: int, bucket: Bucket, to_padded: bool) -> np.ndarray:
    """Pad or crop the (heads × key size) axis of an attention tensor, head by head."""
    heads, keys = _heads(bucket, not to_padded)
    shape = array.shape[:axis] + (heads, keys) + array.shape[axis + 1 :]
    split = array.reshape(shape)
    new_heads, new_keys = _heads(bucket, to_padded)
    target = shape[:axis] + (new_heads, new_keys) + shape[axis + 2 :]
    resized = pad(split, target) if to_padded else split[tuple(slice(0, n) for n in target)]
    return resized.reshape(array.shape[:axis] + (new_heads * new_keys,) + array.shape[axis + 1 :])


#: Per stacked tensor: the role of each axis after the layer axis.
_AXES = {
    "tok": ("rows", "residual"), "pos": ("rows", "residual"),
    "wq": ("layers", "residual", "attn"), "bq": ("layers", "attn"),
    "wk": ("layers", "residual", "attn"), "bk": ("layers", "attn"),
    "wv": ("layers", "residual", "attn"), "bv": ("layers", "attn"),
    "wo": ("layers", "attn", "residual"), "bo": ("layers", "residual"),
    "w1": ("layers", "residual", "hidden"), "b1": ("layers", "hidden"),
    "w2": ("layers", "hidden", "residual"), "b2": ("layers", "residual"),
}  # fmt: skip


def resize(stacked: dict[str, np.ndarray], bucket: Bucket, residual: str, to_padded: bool) -> dict[str, np.ndarray]:
    """Pad (or crop back) stacked model tensors; `residual` says which residual size they have:
    "residual" (the teacher's) or "width" (a student's). Queries are scaled (unscaled) on the way."""
    out = {}
    for name, axes in _AXES.items():
        array = np.asarray(stacked[name])
        sizes = {
            "rows": (array.shape[0],) * 2,
            "layers": (bucket.layers, bucket.padded_layers),
            "residual": (getattr(bucket, residual), getattr(bucket, f"padded_{residual}")),
            "hidden": (bucket.hidden, bucket.padded_hidden),
            "attn": (None, None),
        }
        target = tuple(sizes[a][to_padded] if a != "attn" else array.shape[i] for i, a in enumerate(axes))
        array = pad(array, target) if to_padded else array[tuple(slice(0, n) for n in target)]
        if "attn" in axes:
            array = _resize_attention(array, axes.index("attn"), bucket, to_padded)
        if name in ("wq", "bq"):
            array = array * bucket.query_scale if to_padded else array / bucket.query_scale
        out[name] = array.astype(np.float32)
    return out
