"""Students: a folded compressed student equals Tracr's own CompressedTransformer."""

from __future__ import annotations

import haiku as hk
import jax
import numpy as np
import pytest
from distill_tools import LIB
from tracr.transformer.compressed_model import CompressedTransformer
from tracr.transformer.model import TransformerConfig

from inverse_tracr.compile import forward
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import CompiledModel
from inverse_tracr.distill import student


def _tracr_compressed(model: CompiledModel, w: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Tracr's own CompressedTransformer (unfolded: reads through Wᵀ, writes through W) on ids."""
    layout, params = model.layout, model.params
    config = TransformerConfig(
        num_heads=layout.num_heads, num_layers=layout.num_layers, key_size=layout.key_size,
        mlp_hidden_size=layout.mlp_hidden_size, dropout_rate=0.0, activation_function=jax.nn.relu,
        layer_norm=False, causal=False,
    )  # fmt: skip

    @hk.transform
    def run(embeddings, mask):
        return CompressedTransformer(config)(embeddings, mask, use_dropout=False, embedding_size=w.shape[1], unembed_at_every_layer=True).output

    tracr_params: dict = {"compressed_transformer": {"w_emb": w.T}}
    for name, value in params.items():
        if name.startswith("transformer/"):
            module, leaf = name.rsplit("/", 1)
            tracr_params.setdefault(module.replace("transformer/", "compressed_transformer/", 1), {})[leaf] = value
    embeddings = params["token_embed/embeddings"][ids] + params["pos_embed/embeddings"][np.arange(ids.shape[1])]
    with jax.enable_x64():  # float64 on both sides: compare the maths, not rounding
        return np.asarray(run.apply(tracr_params, None, embeddings, np.ones(ids.shape)))


@pytest.mark.parametrize("name", ["sort_unique", "hist", "reverse", "frac_prevs"])
def test_folded_model_equals_tracr_compressed_transformer(name):
    compiled = compile_program(LIB[name])
    model = CompiledModel({k: v.astype(np.float64) for k, v in compiled.params.items()}, compiled.layout)
    rng = np.random.default_rng(0)
    w, _ = np.linalg.qr(rng.normal(size=(model.layout.residual_width, model.layout.residual_width // 2)))
    with jax.enable_x64():
        folded = student.unstack(student.fold(student.stack(model.params, model.layout.num_layers), w))
    assert folded["transformer/layer_0/attn/query/w"].dtype == np.float64
    ids = rng.integers(0, len(model.layout.input_tokens) - 2, size=(8, 6))
    ours = forward.residual_output(CompiledModel(folded, model.layout), ids) @ w.T  # back to width D
    theirs = _tracr_compressed(model, w, ids)
    assert np.abs(ours).max() > 0.1  # not trivially zero
    assert np.abs(ours - theirs).max() <= 1e-4
