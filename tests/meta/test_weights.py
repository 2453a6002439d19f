"""Weight tokens: exact chunks, neurons in residual coordinates that follow a permuted basis, execution order."""

from __future__ import annotations

import numpy as np

from inverse_tracr.meta import weights
from inverse_tracr.zoo import read_samples
from weight_tools import permute_residual


def test_weight_chunks_reassemble_to_the_original_tensors(small_zoo):
    for sample in read_samples(str(small_zoo / "small/standard/shard-000000.tar")):
        tokens = weights.tokenize(sample.params)
        back = weights.untokenize(tokens)
        assert back.keys() == sample.params.keys()
        for name, array in sample.params.items():
            np.testing.assert_array_equal(back[name], array)
        assert tokens.last.sum() == len(sample.params)  # one last chunk per tensor
        names = [name for name, _ in tokens.shapes]
        assert names[:2] == ["pos_embed/embeddings", "token_embed/embeddings"]
        assert names[2:8] == [f"transformer/layer_0/attn/{m}/{p}" for m in ("query", "key", "value") for p in ("w", "b")]
        features = tokens.features()
        assert features.shape == (len(tokens), weights.FEATURES)
        assert (features[:, weights.CHUNK : weights.CHUNK + len(weights.PARAM_TYPES)].sum(1) == 1).all()


def test_neuron_tokens_hold_each_unit_in_residual_coordinates_and_follow_a_permuted_basis(small_zoo):
    r = weights.RESIDUAL
    for sample in read_samples(str(small_zoo / "small/standard/shard-000000.tar")):
        params = sample.params
        tokens = weights.features(params, "neurons")
        assert tokens.shape[1] == weights.width("neurons")
        kinds = np.array(weights.PARAM_TYPES)[tokens[:, weights.floats("neurons") : weights.floats("neurons") + len(weights.PARAM_TYPES)].argmax(1)]
        d = params["token_embed/embeddings"].shape[1]
        # each MLP hidden unit that exists is one token: input column, output row, bias
        w1, w2 = params["transformer/layer_0/mlp/linear_1/w"], params["transformer/layer_0/mlp/linear_2/w"]
        live = [j for j in range(w1.shape[1]) if w1[:, j].any() or w2[j].any()]
        layer0 = tokens[:, weights.floats("neurons") + len(weights.PARAM_TYPES)] == 1
        mlp = tokens[(kinds == "mlp_in_w") & layer0]
        assert len(mlp) == len(live) > 0
        np.testing.assert_array_equal(mlp[:, :d], w1[:, live].T)
        np.testing.assert_array_equal(mlp[:, r : r + d], w2[live])
        assert not mlp[:, d:r].any() and not mlp[:, r + d : 2 * r].any()
        # the embeddings write one row per token and position
        assert (kinds == "token_embed").sum() == (np.abs(params["token_embed/embeddings"]).sum(1) > 0).sum()
        # the same model in another residual basis: the same tokens, their vectors permuted alike
        order = np.random.default_rng(0).permutation(d)
        permuted = weights.features(permute_residual(params, order), "neurons")
        np.testing.assert_array_equal(permuted[:, :d], tokens[:, :d][:, order])
        np.testing.assert_array_equal(permuted[:, r : r + d], tokens[:, r : r + d][:, order])
        np.testing.assert_array_equal(permuted[:, 2 * r :], tokens[:, 2 * r :])


def test_execution_order_puts_query_before_mlp_and_weights_before_biases():
    order = sorted(["transformer/layer_1/mlp/linear_1/w", "transformer/layer_0/mlp/linear_2/b", "transformer/layer_0/attn/query/b",
                    "transformer/layer_0/attn/query/w", "token_embed/embeddings", "extra/readout"], key=lambda n: weights.describe(n)[0])
    assert order == ["token_embed/embeddings", "transformer/layer_0/attn/query/w", "transformer/layer_0/attn/query/b",
                     "transformer/layer_0/mlp/linear_2/b", "transformer/layer_1/mlp/linear_1/w", "extra/readout"]
