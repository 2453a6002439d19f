"""Verification: a model whose outputs are wrong is caught, even on one input in thousands."""

from __future__ import annotations

from compile_tools import PROGRAMS
from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.verify import check_inputs, expected_outputs, make_inputs, verify
from inverse_tracr.programs import Program


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


def test_a_model_wrong_on_one_input_in_thousands_is_caught():
    # True at the last position of exactly one input of the 3,905: [4, 4, 4, 4, 4].
    program = Program.from_rasp(lib.detect_pattern(rasp.tokens, [4] * 5), range(5), 5)
    model = compile_program(program)
    inputs = check_inputs(program)
    assert len(inputs) == 3905
    wrong = [[False if v is True else v for v in program.evaluate(xs)] for xs in inputs]  # a model that never fires
    caught = verify(model, inputs, wrong, exhaustive=True)
    assert caught.mismatches == 1 and not caught.passed
    assert verify(model, inputs, [program.evaluate(xs) for xs in inputs]).passed
    # 32 random inputs, the old check, almost surely miss it
    sample = make_inputs(program, 32)
    assert verify(model, sample, [[False if v is True else v for v in program.evaluate(xs)] for xs in sample]).passed
