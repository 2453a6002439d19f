"""The distillation recipe: students pass (and fail) the gates; the attention loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from distill_tools import LIB, agreement_on_fresh_inputs

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import CompiledModel
from inverse_tracr.distill import padding, recipe
from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.distill.recipe import distill
from inverse_tracr.distill.stage import student_layout
from inverse_tracr.programs import Program

SMALL_PROGRAM = Program([("Map", "lt_2", "tokens", "NA", "v1"), ("SequenceMap", "add", "indices", "v1", "v2")], (0, 1, 2, 3, 4), 5)


def test_compressed_sort_unique_passes_the_gates():
    program = LIB["sort_unique"]
    model = compile_program(program)
    result = distill(program, model.params, model.layout, DistillConfig(kind="compressed", compression=2))
    assert result.accepted, result.figures
    assert result.figures["agreement"] >= 0.9 and result.figures["layer_loss"] <= 0.05
    assert result.figures["width"] == round(model.layout.residual_width / 2)
    stored = CompiledModel(result.params, student_layout(model.layout, result.figures["width"]))
    assert stored.params["token_embed/embeddings"].shape[1] == result.figures["width"]
    assert agreement_on_fresh_inputs(stored, program) >= 0.9


def test_natural_student_passes_the_gates():
    model = compile_program(SMALL_PROGRAM)
    result = distill(SMALL_PROGRAM, model.params, model.layout, DistillConfig(kind="natural"), seed=1)
    assert result.accepted, result.figures
    stored = CompiledModel(result.params, student_layout(model.layout, result.figures["width"]))
    assert agreement_on_fresh_inputs(stored, SMALL_PROGRAM) >= 0.9
    # Every weight was trained: nothing is a copy or a fold of the teacher's.
    assert not np.allclose(stored.params["transformer/layer_0/mlp/linear_1/b"], model.params["transformer/layer_0/mlp/linear_1/b"])


def test_gates_reject_an_undertrained_run():
    program = LIB["sort_unique"]
    model = compile_program(program)
    config = DistillConfig(compression=4, max_steps=1, check_every=1, warmup_steps=0, learning_rate=0.0)
    result = distill(program, model.params, model.layout, config)
    assert not result.accepted and result.params is None
    assert result.reason in ("agreement_too_low", "layer_loss_too_high")
    assert result.figures["steps"] == 1 and result.figures["attempts"] == 2  # retried once, from a fresh start
    assert result.figures["agreement"] < 0.9 or result.figures["layer_loss"] > 0.05


def test_attention_loss_vanishes_only_where_attention_is_the_teacher_s():
    program = LIB["sort_unique"]
    model = compile_program(program)
    residual = model.layout.residual_width
    bucket = padding.Bucket.of(model.layout, residual)  # compression 1: W can be exact
    teacher = jax.tree.map(jnp.asarray, recipe._task(model.params, model.layout, program, bucket))
    static = recipe._Static(bucket.padded_heads, bucket.padded_key_size, True, "compressed", "vocabulary", 1.0, 1.0)
    ids, mask = recipe._batch(jax.random.key(0), teacher, 16)

    def attention_loss(w: np.ndarray) -> float:
        w = padding.pad(w, (bucket.padded_residual, bucket.padded_width))
        return float(recipe._losses({"w": jnp.asarray(w)}, teacher, ids, mask, jax.random.key(1), static)[1]["attention"])

    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(residual, residual)))
    assert attention_loss(np.eye(residual)) < 1e-5 and attention_loss(rotation) < 1e-5  # W·Wᵀ = I: the same attention
    squeezed = rotation.copy()
    squeezed[:, residual // 2 :] = 0  # half the residual dropped: keys get confused
    assert attention_loss(squeezed) > 0.1
