"""Compile without XLA: a scoped replacement for the parameter initialisation Tracr does not need.

`tracr.compiler.assemble` calls `forward.init(...)` only to learn the parameter tree, then zeroes
every transformer weight and fills in its own. Stock haiku runs the whole model eagerly for that,
and XLA compiles each random initialiser and op for each new shape: >90 % of a compile (~2–4 s on
a new shape). Here `init` traces the model abstractly (`jax.eval_shape`, no XLA at all), noting
each parameter as it is created: zeros for the transformer weights and the concrete embedding
matrices, which are exactly the values stock Tracr ends up with (a test compares them bit for bit).

Tracr then converts every parameter with `jnp.array` (one dispatch per tensor and shape, ~30 % of
what is left); within the block, that conversion is NumPy's, which keeps the same float32 values.

The replacement is scoped to one `with fast_init():` block and to Tracr's `assemble` module only:
patching haiku globally would also zero-initialise every student model of the distillation stage.
"""

from __future__ import annotations

import contextlib
import threading
import types

import haiku as hk
import jax
import numpy as np
from tracr.compiler import assemble

_lock = threading.Lock()


class _Embed(hk.Embed):
    """hk.Embed that keeps its matrix as a concrete array (under tracing, haiku's is a tracer)."""

    def __init__(self, embedding_matrix, name=None, **kwargs):
        super().__init__(embedding_matrix=embedding_matrix, name=name, **kwargs)
        self.concrete = np.asarray(embedding_matrix)


def _transform(f) -> hk.Transformed:
    stock = hk.transform(f)

    def init(rng, *args):
        params: dict[str, dict[str, np.ndarray]] = {}

        def creator(next_creator, shape, dtype, init, context):
            module = context.module
            value = module.concrete.astype(dtype) if isinstance(module, _Embed) else np.zeros(shape, dtype)
            if value.shape != tuple(shape):
                raise AssertionError(f"{context.full_name}: shape {value.shape} != {tuple(shape)}")
            params.setdefault(context.module_name, {})[context.name] = value
            # Returning the concrete value (not haiku's traced initialiser) is faster: tracing the
            # random initialisers costs more than the few eager ops on constant parameters.
            del next_creator, init
            return value

        def recorded(*inner_args):
            with hk.custom_creator(creator):
                return f(*inner_args)

        jax.eval_shape(hk.transform(recorded).init, rng, *args)
        return params

    init._original_fn = stock.init._original_fn  # haiku's without_apply_rng looks for it
    return hk.Transformed(init, stock.apply)


@contextlib.contextmanager
def fast_init():
    """Within this block, Tracr's assembly initialises parameters without running XLA."""
    hk_shim = _namespace(hk, transform=_transform, Embed=_Embed)
    jnp_shim = _namespace(assemble.jnp, array=np.asarray)
    with _lock:
        stock = assemble.hk, assemble.jnp
        assemble.hk, assemble.jnp = hk_shim, jnp_shim
        try:
            yield
        finally:
            assemble.hk, assemble.jnp = stock


def _namespace(module, **replacements) -> types.SimpleNamespace:
    """`module`'s public names, some replaced."""
    names = {name: getattr(module, name) for name in dir(module) if not name.startswith("__")}
    return types.SimpleNamespace(**{**names, **replacements})
