"""Compilation: the fast path gives stock Tracr's parameters; the NumPy forward pass matches Tracr's;
verification catches a model whose outputs are wrong."""

from __future__ import annotations

import dataclasses
import functools
import random

import numpy as np
import pytest
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

from inverse_tracr.compile import fast_init, forward
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import BOS, PAD, CompiledModel, Layout
from inverse_tracr.compile.verify import expected_outputs, make_inputs, verify
from inverse_tracr.programs import Program
from inverse_tracr.programs.sampler import SamplerConfig, sample_program


def _programs():
    lib_programs = [
        lib.make_sort_unique(rasp.tokens, rasp.tokens),
        lib.make_hist(),
        lib.make_reverse(rasp.tokens),
        lib.make_frac_prevs(rasp.tokens == 1),
    ]
    sampled = [sample_program(random.Random(seed), SamplerConfig(4, 7)) for seed in range(4)]
    return [Program.from_rasp(p) for p in lib_programs] + sampled


PROGRAMS = _programs()


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


def test_verification_rejects_a_wrong_output_program():
    # A categorical Aggregate over a selector that picks several different values: rasp.evaluate
    # averages the numbers, the compiled attention averages one-hot vectors and decodes a token.
    sop = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ), rasp.tokens)
    program = Program.from_rasp(sop)
    inputs = make_inputs(program, 32)
    assert expected_outputs(program, inputs) == (None, "aggregate_not_unique")  # screening knows
    expected = [program.evaluate(xs) for xs in inputs]  # …but verification must catch it alone
    result = verify(compile_program(program), inputs, expected)
    assert not result.passed and result.mismatches > 0
    # and the same check passes the correct labels of a correct program
    good = Program.from_rasp(lib.make_sort_unique(rasp.tokens, rasp.tokens))
    good_inputs = make_inputs(good, 32)
    assert verify(compile_program(good), good_inputs, [good.evaluate(xs) for xs in good_inputs]).passed


def test_verification_inputs_include_the_maximum_length():
    program = PROGRAMS[0]
    inputs = make_inputs(program, 32)
    assert len(inputs) == 32 and sum(len(xs) == program.max_seq_len for xs in inputs) >= 8
    assert make_inputs(program, 32) == inputs and make_inputs(program, 32, seed=1) != inputs


def test_layout_round_trips_and_rejects_nonsense():
    layout = compile_program(PROGRAMS[0]).layout
    assert Layout.from_json(layout.to_json()) == layout
    with pytest.raises(ValueError, match="malformed model layout"):
        Layout.from_json({**layout.to_json(), "output_dims": [10_000]})
