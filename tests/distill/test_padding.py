"""Shape buckets: padding a model is exact and reversible."""

from __future__ import annotations

import jax
import numpy as np
from distill_tools import LIB

from inverse_tracr.compile import forward
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.distill import padding, student


def test_padding_is_exact_and_reversible():
    model = compile_program(LIB["sort_unique"])
    bucket = padding.Bucket.of(model.layout, 7)
    stacked = student.stack(model.params, model.layout.num_layers)
    padded = padding.resize(stacked, bucket, "residual", to_padded=True)
    assert padded["wq"].shape == (bucket.padded_layers, bucket.padded_residual, bucket.padded_heads * bucket.padded_key_size)
    back = padding.resize(padded, bucket, "residual", to_padded=False)
    assert all(np.allclose(back[k], stacked[k], atol=1e-6) for k in stacked)
    ids = np.array([[0, 1, 2, 3, 4, 1]])
    heads, keys = bucket.padded_heads, bucket.padded_key_size
    final, _, _ = student.run(jax.tree.map(np.asarray, padded), ids, np.ones(ids.shape, bool), heads, keys)
    expected = forward.residual_output(model, ids)
    assert np.abs(np.asarray(final)[..., : model.layout.residual_width] - expected).max() <= 1e-4
