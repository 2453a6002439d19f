"""Symmetries as augmentation: the tokens drawn are those of a model that computes the same."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.compile.check import inputs_for
from inverse_tracr.compile.compiler import compile_as_written
from inverse_tracr.compile.forward import output_scores, residual_output, token_ids
from inverse_tracr.compile.model import READOUT, CompiledModel, Layout
from inverse_tracr.distill import student
from inverse_tracr.meta import augment, weights
from inverse_tracr.meta.config import MetaConfig, TrainConfig
from inverse_tracr.meta.data import stream
from inverse_tracr.zoo import read_samples
from distill_tools import rotated_student
from weight_tools import permute_heads, permute_hidden, permute_residual

MLP_UNIT = weights.PARAM_TYPES.index("mlp_in_w")


def _residual(params, layout, ids):
    return residual_output(CompiledModel(params, layout), ids)


def _sorted_rows(features: np.ndarray) -> np.ndarray:
    return features[np.lexsort(features.T[::-1])]


def test_the_tokens_drawn_are_those_of_a_model_that_computes_the_same(small_zoo):
    rng = np.random.default_rng(0)
    for sample in itertools.islice(read_samples(str(small_zoo / "small/standard/shard-000000.tar")), 4):
        params, layout = sample.params, Layout.from_json(sample.meta["model"])
        longest = [x for x in inputs_for(sample.program.vocab, sample.program.max_seq_len)[0] if len(x) == sample.program.max_seq_len]
        ids = token_ids(CompiledModel(params, layout), longest[:200])
        tokens = weights.features(params, "neurons")
        before = _residual(params, layout, ids)
        # residual: the permuted model's stream is the model's, in the permuted basis; its tokens are the tokens permuted
        d = params["token_embed/embeddings"].shape[1]
        order = rng.permutation(d)
        np.testing.assert_allclose(_residual(permute_residual(params, order), layout, ids), before[..., order], atol=1e-4)
        np.testing.assert_array_equal(weights.features(permute_residual(params, order), "neurons"), augment.permute_residual(tokens, order))
        assert augment.residual_width(tokens) <= d
        # offset tokens: the vectors permuted alike, each unit's offsets in its variables' blocks kept (they name values, not dimensions)
        offsets, extra = weights.features(params, "offsets"), np.s_[weights.floats("neurons") : weights.floats("offsets")]
        permuted = augment.permute_residual(offsets, order)
        np.testing.assert_array_equal(np.delete(permuted, extra, axis=1), augment.permute_residual(tokens, order))
        np.testing.assert_array_equal(permuted[:, extra], offsets[:, extra])
        assert offsets[:, extra].any()
        # hidden: reordered MLP units compute the same stream; the drawn tokens are such a model's, up to the units' order
        reordered = params
        for layer in range(layout.num_layers):
            hidden = params[f"transformer/layer_{layer}/mlp/linear_1/w"].shape[1]
            reordered = permute_hidden(reordered, layer, rng.permutation(hidden))
        np.testing.assert_allclose(_residual(reordered, layout, ids), before, atol=1e-4)
        drawn, expected = augment.permute_hidden(tokens, rng), weights.features(reordered, "neurons")
        kinds, layers = weights.token_types(tokens), weights.token_layers(tokens)
        np.testing.assert_array_equal(drawn[kinds != MLP_UNIT], expected[kinds != MLP_UNIT])
        for layer in range(layout.num_layers):
            units = (kinds == MLP_UNIT) & (layers == layer)
            np.testing.assert_array_equal(_sorted_rows(drawn[units]), _sorted_rows(expected[units]))
        units = kinds == MLP_UNIT
        if units.sum() > 2:  # some order other than the given one is drawn
            assert any(not np.array_equal(augment.permute_hidden(tokens, rng)[units], tokens[units]) for _ in range(5))


def test_reordered_heads_compute_the_same_and_their_tokens_are_the_tokens_drawn():
    # two shifts of the tokens, side by side in one attention layer: two heads
    sop = rasp.SequenceMap(lambda x, y: (x or 0) + (y or 0), *(lib.shift_by(offset, rasp.tokens) for offset in (1, 2)))
    model = compile_as_written(sop, [1, 2, 3], 4)
    params, layout = model.params, model.layout
    assert layout.num_heads >= 2
    ids = token_ids(model, [x for x in inputs_for([1, 2, 3], 4)[0] if len(x) == 4])
    before = _residual(params, layout, ids)
    rng, orders, permuted = np.random.default_rng(5), {}, params
    for layer in range(layout.num_layers):
        orders[layer] = np.roll(np.arange(layout.num_heads), 1)  # every head moves
        permuted = permute_heads(permuted, layer, orders[layer])
    np.testing.assert_allclose(_residual(permuted, layout, ids), before, atol=1e-4)
    for form in ("neurons", "offsets"):
        tokens, heads = weights.features(params, form), weights.heads(params, layout.num_heads)
        assert len(heads) == len(tokens) and set(heads[np.isin(weights.token_types(tokens), augment.HEAD_TYPES)]) >= {0, 1}
        assert not np.array_equal(weights.features(permuted, form), tokens)
        np.testing.assert_array_equal(augment.permute_heads(tokens, heads, orders), weights.features(permuted, form))
        # drawn: the same tokens in another order, and only attention tokens move
        drawn = augment.augment(tokens, ["heads"], rng, heads)
        moved = ~np.isin(weights.token_types(tokens), augment.HEAD_TYPES)
        np.testing.assert_array_equal(drawn[moved], tokens[moved])
        np.testing.assert_array_equal(_sorted_rows(drawn), _sorted_rows(tokens))
        assert any(not np.array_equal(augment.augment(tokens, ["heads"], rng, heads), tokens) for _ in range(8))


def _turned(model: CompiledModel, rotation: np.ndarray) -> CompiledModel:
    """A student whose residual is `model`'s times `rotation`: `student.fold` reads through it and writes through it."""
    folded = student.fold(student.stack(model.params, model.layout.num_layers), rotation)
    params = student.unstack({k: np.asarray(v) for k, v in folded.items()}, rotation.T @ model.params[READOUT])
    return CompiledModel(params, model.layout)


def test_a_students_turned_tokens_are_those_of_the_turned_student_which_computes_the_same(small_zoo):
    rng = np.random.default_rng(1)
    for sample in itertools.islice(read_samples(str(small_zoo / "small/standard/shard-000000.tar")), 3):
        teacher = CompiledModel(sample.params, Layout.from_json(sample.meta["model"]))
        model = rotated_student(teacher, seed=2, width=teacher.layout.residual_width - 2)  # as `distill` stores a compressed one
        longest = [x for x in inputs_for(sample.program.vocab, sample.program.max_seq_len)[0] if len(x) == sample.program.max_seq_len]
        ids = token_ids(model, longest[:300])
        tokens = weights.features(model.params, "offsets")
        assert augment.residual_width(tokens) == model.layout.residual_width
        rotation = augment.orthogonal(model.layout.residual_width, rng)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(len(rotation)), atol=1e-12)
        turned = _turned(model, rotation)
        np.testing.assert_allclose(output_scores(turned, ids), output_scores(model, ids), atol=1e-3)
        np.testing.assert_allclose(residual_output(turned, ids), residual_output(model, ids) @ rotation, atol=1e-3)
        np.testing.assert_allclose(augment.rotate_residual(tokens, rotation), weights.features(turned.params, "offsets"), atol=1e-4)
        # the read-out is one token per output, reading the residual; drawn, a student turns and a compiled model does not
        outputs = weights.token_types(tokens) == weights.PARAM_TYPES.index("other")
        assert outputs.sum() == len(teacher.layout.output_dims)
        np.testing.assert_array_equal(tokens[outputs, : model.layout.residual_width], model.params[READOUT].T.astype(np.float32))
        drawn = augment.augment(tokens, ["rotation"], rng)
        assert drawn.shape == tokens.shape and not np.allclose(drawn, tokens, atol=1e-2)
        compiled = weights.features(teacher.params, "offsets")
        np.testing.assert_array_equal(augment.augment(compiled, ["rotation"], rng), compiled)


def test_training_draws_each_example_anew_every_time_and_a_rerun_draws_the_same(small_zoo):
    urls = str(small_zoo / "small/standard/shard-{000000..000001}.tar")

    def first(n, symmetries):
        return list(itertools.islice(iter(stream(urls, None, 512, shuffle_buffer=0, seed=3, symmetries=symmetries)), n))

    plain, drawn, again = first(24, ()), first(24, ("hidden", "heads", "residual")), first(24, ("hidden", "heads", "residual"))
    assert [e.key for e in plain] == [e.key for e in drawn] and [e.ids for e in plain] == [e.ids for e in drawn]
    for a, b in zip(drawn, again):
        np.testing.assert_array_equal(a.features, b.features)
    for p, a in zip(plain, drawn):  # the same units, other coordinates: as many tokens, their weights' magnitudes kept
        assert a.features.shape == p.features.shape
        np.testing.assert_array_equal(np.sort(np.abs(a.features).ravel()), np.sort(np.abs(p.features).ravel()))
    assert sum(not np.array_equal(p.features, a.features) for p, a in zip(plain, drawn)) >= 20
    # 12 programs: the second epoch shows each one again, under other symmetries
    assert all(drawn[i].key == drawn[i + 12].key and not np.array_equal(drawn[i].features, drawn[i + 12].features) for i in range(12))


def test_unknown_symmetries_and_chunk_tokens_are_refused_and_the_setting_is_recorded():
    with pytest.raises(ValueError, match="unknown symmetry 'mirror'"):
        TrainConfig(store="s", zoo="z", augment=("hidden", "mirror"))
    with pytest.raises(ValueError, match="neuron weight tokens"):
        TrainConfig(store="s", zoo="z", augment=("hidden",), model=MetaConfig(weight_tokens="chunks"))
    config = TrainConfig(store="s", zoo="z", augment=("residual",))
    assert TrainConfig.from_json(config.to_json()) == config
    recorded = config.to_json()
    del recorded["augment"]  # a run recorded before the setting existed drew no symmetries
    assert TrainConfig.from_json(recorded).augment == ()
    # by default students are turned, where the tokens can be; a recorded default stays what it was
    assert TrainConfig(store="s", zoo="z").augment == ("rotation",)
    assert TrainConfig(store="s", zoo="z", model=MetaConfig(weight_tokens="chunks")).augment == ()
    assert TrainConfig.from_json(TrainConfig(store="s", zoo="z").to_json()).augment == ("rotation",)
