"""Variable blocks found from the weights: the compiler's own residual labels are the truth."""

from __future__ import annotations

import numpy as np
import pytest
from tracr.rasp import rasp

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.meta import residual, weights
from inverse_tracr.programs import Program
from compile_tools import PROGRAMS


def _side_by_side() -> Program:
    """Two Maps of one variable and a SelectorWidth in one MLP sublayer, their outputs adjacent in
    the residual (the layout the guess must split), then a SequenceMap of them."""
    low = rasp.categorical(rasp.Map(lambda x: min(x, 1), rasp.tokens))
    high = rasp.categorical(rasp.Map(lambda x: max(x, 3), rasp.tokens))
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT))
    both = rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, low, high))
    return Program.from_rasp(rasp.categorical(rasp.SequenceMap(lambda x, y: x * y, both, width)), range(5), 4)


def _truth(labels: tuple[str, ...]) -> np.ndarray:
    """Each dimension's block start by the compiler's labels (`name:value`), -1 for `one`."""
    names = [label.split(":")[0] for label in labels]
    return np.array([-1 if name == "one" else names.index(name) for name in names])


@pytest.mark.parametrize("program", PROGRAMS + [_side_by_side()], ids=lambda p: p.source().splitlines()[-2][:40])
def test_blocks_found_from_the_weights_are_the_compilers_variables(program):
    model = compile_program(program)
    starts = weights.block_starts(weights.features(model.params, "neurons"))
    truth = _truth(model.layout.residual_labels)
    np.testing.assert_array_equal(starts[: len(truth)], truth)
    assert (starts[len(truth) :] == -1).all()  # the residual's padding to RESIDUAL


def test_offset_tokens_say_which_value_a_unit_reads_and_which_it_writes():
    program = Program.from_rasp(rasp.categorical(rasp.Map(lambda x: 4 - x, rasp.tokens)), range(5), 3)
    model = compile_program(program)
    tokens = weights.features(model.params, "offsets")
    f, s = weights.floats("neurons"), weights.SLOTS
    assert tokens.shape[1] == weights.width("offsets") == weights.width("neurons") + 4 * s
    np.testing.assert_array_equal(np.delete(tokens, np.s_[f : f + 4 * s], axis=1), weights.features(model.params, "neurons"))
    units = tokens[weights.token_types(tokens) == weights.PARAM_TYPES.index("mlp_in_w")]
    pairs = {(int(np.flatnonzero(u[f : f + s])[0]), int(np.flatnonzero(u[f + 2 * s : f + 3 * s])[0])) for u in units}
    # the output's values are its ranks: 4 - x for input x
    assert pairs == {(x, 4 - x) for x in range(5)}
    assert not units[:, f + s : f + 2 * s].any() and not units[:, f + 3 * s : f + 4 * s].any()  # one block read, one written


def test_by_offset_sums_each_vector_by_offset_in_its_first_two_blocks():
    starts = np.array([-1, 1, 1, 1, 4, 4, 6])
    vectors = np.array([[5, 0, 2, 0, 3, 0, 7], [0, 1, 0, 0, 0, 0, 0]], np.float32)
    out = residual.by_offset(vectors, starts, slots=3)
    np.testing.assert_array_equal(out, [[0, 2, 0, 3, 0, 0], [1, 0, 0, 0, 0, 0]])  # `one` and a third block left out
