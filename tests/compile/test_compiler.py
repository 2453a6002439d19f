"""Compilation: the fast path gives stock Tracr's parameters; the NumPy forward pass matches Tracr's; layouts round-trip."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from compile_tools import PROGRAMS
from tracr.compiler import compiling

from inverse_tracr.compile import fast_init, forward
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import BOS, PAD, CompiledModel, Layout
from inverse_tracr.compile.verify import make_inputs
from inverse_tracr.programs import Program


@functools.cache
def _stock(program: Program):
    """Stock Tracr's model (slow: XLA compiles its initialisers) and the output label."""
    sop = program.to_rasp()
    assembled = compiling.compile_rasp_to_model(sop, set(program.vocab), program.max_seq_len, compiler_bos=BOS, compiler_pad=PAD)
    return assembled, sop.label


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_fast_compile_gives_identical_parameters(program):
    fast = compile_program(program, fast=True)
    stock = CompiledModel.from_tracr(*_stock(program))
    assert fast.params.keys() == stock.params.keys()
    for name in stock.params:
        assert fast.params[name].dtype == stock.params[name].dtype == np.float32
        np.testing.assert_array_equal(fast.params[name], stock.params[name], err_msg=name)
    # the same layout, but for RASP's process-wide label counters, which the compiler drops
    assert [label.split(":")[0].split("_")[0] for label in stock.layout.residual_labels] == [
        label.split(":")[0].split("_")[0] for label in fast.layout.residual_labels
    ]
    assert dataclasses.replace(stock.layout, residual_labels=fast.layout.residual_labels) == fast.layout


def test_fast_init_is_scoped_to_its_block():
    from tracr.compiler import assemble

    stock_hk = assemble.hk
    with fast_init.fast_init():
        assert assemble.hk is not stock_hk
    assert assemble.hk is stock_hk


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_numpy_forward_matches_tracr(program):
    assembled, label = _stock(program)
    model = CompiledModel.from_tracr(assembled, label)
    # Tracr's eager `apply` recompiles every op for each new length: two lengths keep this quick.
    inputs = [xs for xs in make_inputs(program, 24) if len(xs) in (2, program.max_seq_len)][:8]
    ours = forward.run(model, inputs)
    for xs, row in zip(inputs, ours):
        theirs = assembled.apply([BOS, *xs]).decoded[1:]
        if model.layout.output_values is None:
            np.testing.assert_allclose(row, theirs, rtol=1e-5, atol=1e-5)
        else:
            assert row == theirs


def test_layout_round_trips_and_rejects_nonsense():
    layout = compile_program(PROGRAMS[0]).layout
    assert Layout.from_json(layout.to_json()) == layout
    with pytest.raises(ValueError, match="malformed model layout"):
        Layout.from_json({**layout.to_json(), "output_dims": [10_000]})
