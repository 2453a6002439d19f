"""RASP to programs: users' and Tracr's lib programs round-trip and compile to their own weights; what Tracr cannot compile is named."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from tracr.rasp import rasp

from inverse_tracr.compile import forward
from inverse_tracr.compile.compiler import compile_as_written, compile_program
from inverse_tracr.programs import Program, ProgramError, values
from inverse_tracr.programs.handwritten import HANDWRITTEN
from inverse_tracr.programs.tracr_lib import LIB

USER_PROGRAMS = {**{f"lib:{n}": e for n, e in LIB.items()}, **HANDWRITTEN}


def _inputs(vocab, max_seq_len: int, n_random: int = 60, seed: int = 0) -> list[list]:
    """Every input up to length 3, and random ones of full length."""
    rng = random.Random(seed)
    short = [list(xs) for length in range(1, min(3, max_seq_len) + 1) for xs in itertools.product(vocab, repeat=length)]
    return short + [[rng.choice(vocab) for _ in range(max_seq_len)] for _ in range(n_random)]


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-5 + 0.005 * abs(b)
    return a == b


@pytest.mark.parametrize("name", sorted(USER_PROGRAMS))
def test_user_programs_round_trip_and_compile_to_the_users_weights(name):
    entry = USER_PROGRAMS[name]
    sop, vocab, max_seq_len = entry.make(), entry.vocab, entry.max_seq_len
    program = Program.from_rasp(sop, vocab, max_seq_len)
    assert Program.from_json(program.to_json()) == program
    assert Program.from_rasp(program.to_rasp(), vocab, max_seq_len) == program
    model = compile_program(program)
    inputs = _inputs(program.vocab, max_seq_len)
    for xs, compiled in zip(inputs, forward.run(model, inputs)):
        ours, theirs = program.evaluate(xs), rasp.evaluate(sop, xs)
        assert all(_same(a, b) for a, b in zip(ours, theirs)), (xs, ours, theirs)
        assert all(_same(c, b) for c, b in zip(compiled, ours) if b is not None), (xs, compiled, ours)

    # Stock Tracr on the user's own RASP (their lambdas and labels), with the canonical names (the
    # residual stream is ordered by name), gives exactly our parameters.
    theirs = compile_as_written(sop, vocab, max_seq_len)
    assert theirs.params.keys() == model.params.keys()
    for key in model.params:
        np.testing.assert_array_equal(theirs.params[key], model.params[key], err_msg=key)


def test_all_of_tracrs_lib_is_representable():
    assert len(LIB) == 13
    for entry in LIB.values():
        assert entry.program().vocab == values.order(entry.vocab)


def test_from_rasp_names_every_expression_tracr_cannot_compile():
    full = rasp.Full(1).named("ones")
    both = rasp.Aggregate(rasp.selector_and(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ),
                                            rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)), rasp.tokens).named("both")
    with pytest.raises(ProgramError) as error:
        Program.from_rasp(rasp.SequenceMap(lambda x, y: x, full, both))
    message = str(error.value)
    assert "Full 'ones'" in message and "SelectorAnd" in message
