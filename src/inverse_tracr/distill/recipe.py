"""Distil one compiled model into a compressed or natural student, with the thesis's quality gates.

Loss (thesis ch. 6, its best combination): layer-wise L2 — every block of the student, fed the
teacher's block input mapped into the student's residual (`x·W`), must give the teacher's block
output once mapped back (`·Wᵀ`) — plus cross-entropy between the student's decoded outputs and the
teacher's, end to end on random token sequences. Block inputs are the teacher's residuals on those
sequences ("vocabulary" inputs) or random residual-like vectors, a random value of every variable
at every position ("random" inputs; the thesis's comparison, `benchmarks/distill.py`).

Gates (thesis): on held-out inputs, the student's decoded outputs agree with the teacher's at
≥ 90 % of the positions the program defines, and the layer loss — the mean squared error per
residual element, averaged over blocks and positions — is ≤ 0.05. Training stops as
soon as both hold (checked every `check_every` steps, always on the true student), and gives up
early when the loss is clearly not going to get there or the agreement has stopped rising.

Tracr's attention is nearly hard (logits ~100× apart): a compressed student whose attention picks
the wrong keys gets almost no gradient out of the saturated softmax. Two things answer that. The
student's attention logits start scaled down (×0.05) and sharpen linearly to the true model's over
the first `anneal_steps`. And a third loss term compares attention patterns directly — the KL
divergence from the teacher's attention to the student's, per head and query, both at the same
sharpness — whose gradient (student probabilities minus teacher's) does not vanish when the student
is confidently wrong. Averages (numerical means, selector widths) need every selected key's logit
equal to a few parts in a thousand, which only this term asks for. A rejected run is retried from a
fresh initialisation (`attempts`, default 2 runs in all): which runs fail depends on the start.
(`benchmarks/distill.py`, README: each of these moved acceptance on the same programs.)

Everything is a function of (teacher, config, seed): the same inputs give the same student, bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from inverse_tracr.compile.model import BOS, PAD, Layout
from inverse_tracr.compile.verify import STUDENT_ATOL, make_inputs
from inverse_tracr.distill import padding, student
from inverse_tracr.distill.config import DistillConfig
from inverse_tracr.distill.padding import Bucket
from inverse_tracr.programs import Program

#: Categorical logits are ~0/1 one-hot scores; the cross-entropy sees them sharpened by this.
LOGIT_SCALE = 10.0


@dataclasses.dataclass
class Result:
    """A distilled student (flat haiku-path params incl. `readout/w`) or why there is none."""

    params: dict[str, np.ndarray] | None
    figures: dict[str, Any]
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclasses.dataclass(frozen=True)
class _Static:
    """What the compiled step specialises on, besides array shapes."""

    heads: int
    key_size: int
    categorical: bool
    kind: str
    inputs: str
    ce_weight: float
    attention_weight: float


def _task(params: dict[str, np.ndarray], layout: Layout, program: Program, bucket: Bucket) -> dict[str, Any]:
    """The teacher padded to its bucket, and everything else the compiled step reads as arrays."""
    tokens = list(layout.input_tokens)
    residual = (bucket.padded_residual,)
    select = np.zeros((bucket.padded_residual, bucket.padded_outputs), np.float32)
    select[list(layout.output_dims), np.arange(bucket.outputs)] = 1
    labels = np.array(layout.residual_labels)
    groups = _residual_groups(layout)
    return {
        **padding.resize(student.stack(params, layout.num_layers), bucket, "residual", to_padded=True),
        "select": select,  # [D, O]: residual -> output scores
        "vocab": np.array([tokens.index(t) for t in program.vocab], np.int32),
        "groups": padding.pad(groups, (padding.round_up(len(groups), 8),) + residual),  # [G, D] categorical variables
        "numeric": padding.pad((groups.sum(0) == 0) * (labels != "one"), residual).astype(np.float32),
        "one": padding.pad(labels == "one", residual).astype(np.float32),
        "special": np.array([tokens.index(BOS), tokens.index(PAD)], np.int32),
        "masks": bucket.masks(),
    }


def _residual_groups(layout: Layout) -> np.ndarray:
    """[G, D]: which residual dimensions hold the values of one categorical variable ("x:3")."""
    names = [label.split(":")[0] if ":" in label else None for label in layout.residual_labels]
    variables = sorted({n for n in names if n is not None})
    groups = np.zeros((max(1, len(variables)), len(names)), np.float32)
    for d, name in enumerate(names):
        if name is not None:
            groups[variables.index(name), d] = 1
    return groups


def _batch(key: jax.Array, teacher: dict[str, jax.Array], size: int) -> tuple[jax.Array, jax.Array]:
    """Random token sequences (BOS first, random lengths, PAD after): ids and mask [B, T]."""
    length = teacher["pos"].shape[0]
    k_len, k_tok = jax.random.split(key)
    lengths = jax.random.randint(k_len, (size, 1), 1, length)
    tokens = teacher["vocab"][jax.random.randint(k_tok, (size, length), 0, teacher["vocab"].shape[0])]
    mask = jnp.arange(length)[None, :] <= lengths
    ids = jnp.where(mask, tokens, teacher["special"][1]).at[:, 0].set(teacher["special"][0])
    return ids, mask


def _random_residuals(key: jax.Array, teacher: dict[str, jax.Array], like: jax.Array) -> jax.Array:
    """Residual-like vectors shaped like `like` [L, B, T, D]: one random value per categorical
    variable, numerical variables uniform in [0, 1], the constant "one" at 1. Position 0 keeps the
    teacher's BOS residual, which Tracr's attention relies on."""
    k_pick, k_num = jax.random.split(key)
    score = jax.random.uniform(k_pick, like.shape)
    groups = teacher["groups"]  # [G, D]
    best = jnp.max(jnp.where(groups > 0, score[..., None, :], -1.0), axis=-1)  # [L, B, T, G]
    onehot = (score == best @ groups) * groups.sum(0)
    values = onehot + jax.random.uniform(k_num, like.shape) * teacher["numeric"] + teacher["one"]
    return values.at[:, :, 0].set(like[:, :, 0])


def _restrict(model: student.Params, masks: dict[str, jax.Array]) -> student.Params:
    """A natural student with its padded parts silenced: nothing writes a padded residual dimension,
    and padded layers, heads and hidden units contribute nothing."""
    width, layers, attn, hidden = masks["width"], masks["layers"], masks["attn"], masks["hidden"]
    writes = width * layers[:, None]  # [L, d]
    return {
        **model,
        "tok": model["tok"] * width, "pos": model["pos"] * width,
        "wq": model["wq"] * attn, "bq": model["bq"] * attn,
        "wk": model["wk"] * attn, "bk": model["bk"] * attn,
        "wo": model["wo"] * attn[:, None] * writes[:, None, :], "bo": model["bo"] * writes,
        "w2": model["w2"] * hidden[:, None] * writes[:, None, :], "b2": model["b2"] * writes,
    }  # fmt: skip


def _student(trainable, teacher, static: _Static) -> tuple[student.Params, jax.Array]:
    """(The student's model as a transformer of width d, its map W [D, d] to the teacher's residual)."""
    w = trainable["w"] * teacher["masks"]["width"]
    if static.kind == "compressed":
        return student.fold(teacher, w), w
    return _restrict(trainable["model"], teacher["masks"]), w


def _outputs(final: jax.Array, w: jax.Array, teacher, static: _Static) -> jax.Array:
    """Output scores [B, T, O] of a residual of width d (`w`: its map to the teacher's residual)."""
    scores = final @ (w.T @ teacher["select"]) if w is not None else final @ teacher["select"]
    return jnp.where(teacher["masks"]["outputs"] > 0, scores, -1e9) if static.categorical else scores[..., :1]


def _losses(trainable, teacher, ids, mask, key, static: _Static, sharpness: jax.Array | float = 1.0):
    """(total loss, {its terms, student and teacher outputs [B, T, O]}) on one batch; `sharpness`
    scales the attention logits (training only: see `DistillConfig.anneal_steps`)."""
    model, w = _student(trainable, teacher, static)
    model = {**model, "wq": model["wq"] * sharpness, "bq": model["bq"] * sharpness}
    masks, shape = teacher["masks"], (static.heads, static.key_size)
    t_final, attn_in, mlp_in = student.run(teacher, ids, mask, *shape)
    if static.inputs == "random":
        k_attn, k_mlp = jax.random.split(key)
        attn_in, mlp_in = _random_residuals(k_attn, teacher, attn_in), _random_residuals(k_mlp, teacher, mlp_in)
    t_attn, t_mlp = student.blocks(teacher, attn_in, mlp_in, mask, *shape)
    s_attn, s_mlp = student.blocks(model, attn_in @ w, mlp_in @ w, mask, *shape)
    error = lambda s, t: jnp.sum((s @ w.T - t) ** 2, axis=-1) / masks["residual"]  # noqa: E731 - MSE [..., B, T]
    per_position = error(student.embed(model, ids), student.embed(teacher, ids)) + error(s_attn, t_attn).sum(0) + error(s_mlp, t_mlp).sum(0)
    layer_loss = jnp.sum(per_position * mask) / (jnp.sum(mask) * masks["blocks"])
    attention_loss = 0.0
    if static.attention_weight:  # KL(teacher's attention ‖ student's) per head and query, both at the same sharpness
        logits = lambda m, x: jax.vmap(lambda p, y: student.attention_logits(p, y, mask, *shape))(student.layers_of(m), x)  # noqa: E731
        t_logp = jax.nn.log_softmax(logits({**teacher, "wq": teacher["wq"] * sharpness, "bq": teacher["bq"] * sharpness}, attn_in), -1)
        s_logp = jax.nn.log_softmax(logits(model, attn_in @ w), -1)
        kl = jnp.sum(jnp.exp(t_logp) * (t_logp - s_logp), -1)  # [L, B, H, T]; padded heads and layers: 0
        attention_loss = jnp.sum(kl * mask[None, :, None, :]) / (jnp.sum(mask) * masks["attention_maps"])

    s_final, _, _ = student.run(model, ids, mask, *shape)
    s_out, t_out = _outputs(s_final, w, teacher, static), _outputs(t_final, None, teacher, static)
    outputs = mask.at[:, 0].set(False)
    if static.categorical:
        per_output = optax.softmax_cross_entropy_with_integer_labels(LOGIT_SCALE * s_out, jnp.argmax(t_out, -1))
    else:
        per_output = ((s_out - t_out)[..., 0] / STUDENT_ATOL) ** 2  # ~1 at the edge of agreeing
    output_loss = jnp.sum(per_output * outputs) / jnp.maximum(jnp.sum(outputs), 1)
    total = layer_loss + static.ce_weight * output_loss + static.attention_weight * attention_loss
    return total, {"layer": layer_loss, "output": output_loss, "attention": attention_loss, "student": s_out, "teacher": t_out}


def _optimizer(config: DistillConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, config.warmup_steps, config.max_steps, end_value=0.1 * config.learning_rate
    )
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adamw(schedule, weight_decay=config.weight_decay))


@functools.partial(jax.jit, static_argnames=("static", "config"))
def _train_chunk(state, teacher, key, start, static: _Static, config: DistillConfig):
    """`config.check_every` optimiser steps from step `start`; returns the new state."""
    optimizer = _optimizer(config)

    def step(carry, key_index):
        key, index = key_index
        trainable, opt_state = carry
        k_batch, k_inputs = jax.random.split(key)
        ids, mask = _batch(k_batch, teacher, config.batch)
        progress = (start + index) / config.anneal_steps if config.anneal_steps else 1.0
        sharpness = jnp.minimum(1.0, config.anneal_from + (1 - config.anneal_from) * progress)
        grads, _ = jax.grad(_losses, has_aux=True)(trainable, teacher, ids, mask, k_inputs, static, sharpness)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return (optax.apply_updates(trainable, updates), opt_state), None

    state, _ = jax.lax.scan(step, state, (jax.random.split(key, config.check_every), jnp.arange(config.check_every)))
    return state


@functools.partial(jax.jit, static_argnames=("static",))
def _held_out(trainable, teacher, ids, mask, static: _Static):
    """(layer loss, student outputs [B, T, O], teacher outputs [B, T, O]) on held-out inputs."""
    _, aux = _losses(trainable, teacher, ids, mask, jax.random.key(0), dataclasses.replace(static, inputs="vocabulary", attention_weight=0.0))
    return aux["layer"], aux["student"], aux["teacher"]


def use_compilation_cache() -> None:
    """Keep compiled training steps on disk (JAX's persistent cache), for every worker and every
    later run on this machine to reuse: compiling is most of a student's cost (24 students, 2
    workers: 102 s cold, 39 s once the cache is warm). `JAX_COMPILATION_CACHE_DIR` picks the
    folder, else `$XDG_CACHE_HOME/inverse-tracr/jax` (~/.cache); no cache where it is not writable."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(cache, "inverse-tracr", "jax")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return
    if os.access(path, os.W_OK):
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def held_out_inputs(program: Program, config: DistillConfig, seed: int) -> list[list]:
    """The gate's inputs: never trained on (training draws its own sequences in JAX)."""
    return make_inputs(program, config.eval_inputs, seed=seed + 1)


def _encode(inputs: list[list], program: Program, layout: Layout):
    """Inputs as padded ids [N, T], their mask, and where RASP defines an output."""
    tokens = list(layout.input_tokens)
    ids = np.full((len(inputs), program.max_seq_len + 1), tokens.index(PAD), np.int32)
    defined = np.zeros(ids.shape, bool)
    for i, xs in enumerate(inputs):
        ids[i, : len(xs) + 1] = [tokens.index(BOS)] + [tokens.index(x) for x in xs]
        defined[i, 1 : len(xs) + 1] = [v is not None for v in program.evaluate(xs)]
    return ids, ids != tokens.index(PAD), defined


def _agreement(s_out: np.ndarray, t_out: np.ndarray, defined: np.ndarray, categorical: bool) -> float:
    if categorical:
        same = s_out.argmax(-1) == t_out.argmax(-1)
    else:
        same = np.abs(s_out[..., 0] - t_out[..., 0]) <= STUDENT_ATOL
    return float(same[defined].mean()) if defined.any() else 0.0


def distill(program: Program, params: dict[str, np.ndarray], layout: Layout, config: DistillConfig, seed: int = 0) -> Result:
    """Train a student of the compiled model (params, layout) of `program`; gate it; fold it.
    A rejected run is retried from a fresh initialisation, up to `config.attempts` runs."""
    started = time.perf_counter()
    bucket = Bucket.of(layout, config.width(layout.residual_width))
    teacher = jax.tree.map(jnp.asarray, _task(params, layout, program, bucket))
    held_out = _encode(held_out_inputs(program, config, seed), program, layout)
    for attempt in range(1, config.attempts + 1):
        trainable, figures, reason = _attempt(teacher, params, layout, bucket, held_out, config, jax.random.fold_in(jax.random.key(seed), attempt))
        if reason is None:
            break
    figures |= {"seed": seed, "attempts": attempt, "seconds": round(time.perf_counter() - started, 3)}
    if reason is not None:
        return Result(None, figures, reason)
    return Result(_stored(trainable, params, layout, bucket, config.kind), figures)


def _attempt(teacher, params, layout: Layout, bucket: Bucket, held_out, config: DistillConfig, key: jax.Array):
    """One training run from a fresh initialisation: (trainable, figures, why rejected or None)."""
    k_w, k_model, k_train = jax.random.split(key, 3)
    trainable: dict[str, Any] = {"w": padding.pad(_initial_w(k_w, layout.residual_width, bucket.width), (bucket.padded_residual, bucket.padded_width))}
    if config.kind == "natural":
        stacked = student.stack(params, layout.num_layers)
        natural = jax.tree.map(np.asarray, student.glorot(k_model, student.natural_shapes(stacked, bucket.width)))
        trainable["model"] = padding.resize(natural, bucket, "width", to_padded=True)
    trainable = jax.tree.map(jnp.asarray, trainable)
    categorical = layout.output_values is not None
    static = _Static(bucket.padded_heads, bucket.padded_key_size, categorical, config.kind, config.inputs, config.ce_weight, config.attention_weight)
    state = (trainable, _optimizer(config).init(trainable))
    ids, mask, defined = held_out

    figures: dict[str, Any] = {"kind": config.kind, "compression": config.compression, "width": bucket.width}
    steps, reason, best, best_at = 0, None, 0.0, 0
    while reason is None:
        state = _train_chunk(state, teacher, jax.random.fold_in(k_train, steps), steps, static, config)
        steps += config.check_every
        layer_loss, s_out, t_out = (np.asarray(x) for x in _held_out(state[0], teacher, ids, mask, static))
        agreement = _agreement(s_out, t_out, defined, categorical)
        figures |= {"steps": steps, "layer_loss": float(layer_loss), "agreement": agreement}
        if agreement >= config.min_agreement and layer_loss <= config.max_layer_loss:
            break
        if agreement >= best + 0.01:
            best, best_at = agreement, steps
        if not np.isfinite(layer_loss):
            reason = "diverged"
        elif any(steps >= f * config.max_steps and layer_loss > m * config.max_layer_loss for f, m in config.give_up):
            reason = "loss_too_high"
        elif steps >= config.max_steps or steps - best_at >= config.patience_steps:
            reason = "agreement_too_low" if agreement < config.min_agreement else "layer_loss_too_high"
    return state[0], figures, reason


def _initial_w(key: jax.Array, residual_width: int, width: int) -> np.ndarray:
    """W [D, d] with random orthonormal columns, so that W·Wᵀ starts as a projection: a residual
    holding a few one-hot values starts close to its own reconstruction. (Tried and measured worse
    on 24 programs: giving each numerical dimension its own column, 14 instead of 16 accepted, and
    freezing those columns, 14; PCA of the teacher's residuals: no better.)"""
    q, _ = np.linalg.qr(np.asarray(jax.random.normal(key, (residual_width, width))))
    return q


def _stored(trainable, params: dict[str, np.ndarray], layout: Layout, bucket: Bucket, kind: str) -> dict[str, np.ndarray]:
    """The student as stored: an ordinary transformer of width d and its read-out, padding removed."""
    w = np.asarray(trainable["w"])[: bucket.residual, : bucket.width]
    if kind == "compressed":
        model = student.fold(student.stack(params, layout.num_layers), w)
    else:
        model = padding.resize(jax.tree.map(np.asarray, trainable["model"]), bucket, "width", to_padded=False)
    return {k: v.astype(np.float32) for k, v in student.unstack(model, student.readout(w, layout)).items()}
