"""Distillation: folding is exact, students pass (and fail) the gates, shards are reproducible."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tracr.compiler import lib
from tracr.rasp import rasp
from tracr.transformer.compressed_model import CompressedTransformer
from tracr.transformer.model import TransformerConfig

from inverse_tracr.compile import forward
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import CompiledModel, Layout
from inverse_tracr.compile.verify import make_inputs
from inverse_tracr.distill import padding, recipe, student
from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.distill.recipe import distill, held_out_inputs
from inverse_tracr.distill.stage import DistillError, check_stored, distill_zoo, student_layout
from inverse_tracr.programs import Program
from inverse_tracr.zoo.shards import Reader, finished_shards, read_marker
from inverse_tracr.zoo.store import Store

from conftest import cli_env

#: Tracr's lib programs at the zoo's vocabulary and length (the students' distillation settings).
LIB = {
    name: Program.from_rasp(make(), range(5), 5)
    for name, make in {
        "sort_unique": lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
        "hist": lib.make_hist,
        "reverse": lambda: lib.make_reverse(rasp.tokens),
        "frac_prevs": lambda: lib.make_frac_prevs(rasp.tokens == 1),
    }.items()
}
SMALL_PROGRAM = Program([("Map", "lt_2", "tokens", "NA", "v1"), ("SequenceMap", "add", "indices", "v1", "v2")], (0, 1, 2, 3, 4), 5)


def _agreement(model: CompiledModel, program: Program) -> float:
    return check_stored(model, program, make_inputs(program, 64, seed=99))["accuracy"]


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


def test_compressed_sort_unique_passes_the_gates():
    program = LIB["sort_unique"]
    model = compile_program(program)
    result = distill(program, model.params, model.layout, DistillConfig(kind="compressed", compression=2))
    assert result.accepted, result.figures
    assert result.figures["agreement"] >= 0.9 and result.figures["layer_loss"] <= 0.05
    assert result.figures["width"] == round(model.layout.residual_width / 2)
    stored = CompiledModel(result.params, student_layout(model.layout, result.figures["width"]))
    assert stored.params["token_embed/embeddings"].shape[1] == result.figures["width"]
    assert _agreement(stored, program) >= 0.9


def test_natural_student_passes_the_gates():
    model = compile_program(SMALL_PROGRAM)
    result = distill(SMALL_PROGRAM, model.params, model.layout, DistillConfig(kind="natural"), seed=1)
    assert result.accepted, result.figures
    stored = CompiledModel(result.params, student_layout(model.layout, result.figures["width"]))
    assert _agreement(stored, SMALL_PROGRAM) >= 0.9
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


@pytest.fixture(scope="module")
def compressed_zoo(small_zoo, tmp_path_factory):
    store = tmp_path_factory.mktemp("distilled")
    shutil.copytree(small_zoo / "small", store / "small")
    summary = distill_zoo(str(store), "small", DistillConfig(), seed=3, shards=[0], workers=2, progress=False)
    assert summary.teachers == 6 and summary.shards_written == 1
    return store, summary


def test_compressed_shard_models_reproduce_their_programs(compressed_zoo):
    store, summary = compressed_zoo
    samples = list(Reader(str(store / "small/compressed/shard-000000.tar")))
    assert len(samples) == summary.accepted >= 3  # most of 6 pass
    marker = read_marker(Store(str(store)), "small", "compressed", 0)
    assert marker["stats"]["teachers"] == 6 and marker["stats"]["accepted"] == len(samples)
    teachers = {s.key: s for s in Reader(str(store / "small/standard/shard-000000.tar"))}
    for sample in samples:
        meta = sample.meta
        assert sample.kind == "compressed" and sample.key in teachers
        assert meta["distillation"]["agreement"] >= 0.9 and meta["distillation"]["layer_loss"] <= 0.05
        assert len(meta["teacher_id"]) == 16
        layout = Layout.from_json(meta["model"])
        assert layout.readout and layout.residual_width == meta["distillation"]["width"]
        assert layout.residual_width < Layout.from_json(teachers[sample.key].meta["model"]).residual_width
        model = CompiledModel(sample.params, layout)
        # The stored model is exactly what was checked: the same inputs give the recorded figures…
        recorded = check_stored(model, sample.program, held_out_inputs(sample.program, DistillConfig(), meta["seed"]))
        assert recorded == meta["verification"] and recorded["accuracy"] >= 0.9
        # …and it computes the program on inputs it never saw (a 90 % gate: some land just below).
        assert _agreement(model, sample.program) >= 0.8


def test_interrupted_distill_rerun_gives_identical_bytes(compressed_zoo, small_zoo, tmp_path, monkeypatch):
    store, _ = compressed_zoo
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a cold compilation cache, warm for the rerun
    shutil.copytree(small_zoo / "small", tmp_path / "small")
    command = ["inverse-tracr", "distill", "--store", str(tmp_path), "--zoo", "small", "--shards", "0:1", "--workers", "1", "--seed", "3", "--quiet"]
    process = subprocess.Popen(command, env=cli_env(), stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # mid-shard: workers started, no shard finished yet
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert finished_shards(Store(str(tmp_path)), "small", "compressed") == set()  # nothing looks complete
    summary = distill_zoo(str(tmp_path), "small", DistillConfig(), seed=3, shards=[0], workers=1, progress=False)
    assert summary.shards_written == 1
    name = "small/compressed/shard-000000.tar"
    assert (tmp_path / name).read_bytes() == (store / name).read_bytes()  # also: 1 worker == 2 workers
    assert any((tmp_path / "cache/inverse-tracr/jax").iterdir())  # compiled steps were kept for later runs
    again = distill_zoo(str(tmp_path), "small", DistillConfig(), seed=3, shards=[0], workers=1, progress=False)
    assert again.shards_written == 0 and again.shards_skipped == 1


def test_distill_refuses_other_settings_and_missing_shards(compressed_zoo):
    store, _ = compressed_zoo
    with pytest.raises(DistillError, match=r"compression=2.0 \(asked 3"):
        distill_zoo(str(store), "small", DistillConfig(compression=3), seed=3, shards=[0], progress=False)
    with pytest.raises(DistillError, match="not finished"):
        distill_zoo(str(store), "small", DistillConfig(), seed=3, shards=[5], progress=False)
    result = subprocess.run(
        ["inverse-tracr", "distill", "--store", str(store), "--zoo", "nope", "--kind", "natural"], env=cli_env(), capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no zoo 'nope'" in result.stderr
