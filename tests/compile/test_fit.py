"""Fitting a candidate's tables to a model's behaviour (`compile.fit`), on models Tracr compiles."""

from __future__ import annotations

import time

from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.compile.check import Behaviour
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.fit import fit
from inverse_tracr.programs import Program, library
from inverse_tracr.programs.program import Line


def _with_entries(program: Program, line: int, changes: dict[int, object]) -> Program:
    lines = list(program.lines)
    table = list(lines[line].fn)
    for entry, value in changes.items():
        table[entry] = value
    lines[line] = lines[line]._replace(fn=tuple(table))
    return Program(lines, program.vocab, program.max_seq_len)


def test_wrong_entries_of_an_inner_line_and_of_the_output_are_fitted_to_the_model():
    inner = rasp.categorical(rasp.Map(lambda t: (t * 2) % 3, rasp.tokens))
    shifted = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q - 1), inner))
    truth = Program.from_rasp(rasp.categorical(rasp.SequenceMap(lambda x, y: (x or 0) + y, shifted, rasp.indices)), range(5), 5)
    behaviour = Behaviour.of(compile_program(truth))
    map_line = next(i for i, line in enumerate(truth.lines) if line.op == "Map")
    output = truth.lines[-1].fn
    wrong = _with_entries(truth, map_line, {0: truth.lines[map_line].fn[1]})
    wrong = _with_entries(wrong, len(wrong.lines) - 1, {3: output[4], 7: output[2]})
    assert behaviour.agreement(wrong).agreement < 0.9
    fitted = fit(wrong, behaviour, time.perf_counter() + 30)
    assert fitted is not None and fitted.agreement.agreement == 1.0
    assert fitted.program.id == truth.id  # the output read, the inner entry climbed back
    assert behaviour.agreement(fitted.program) == fitted.agreement


def test_a_flipped_select_entry_is_flipped_back_and_a_right_program_is_left_alone():
    truth = Program.from_rasp(rasp.numerical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT))), range(5), 5)
    behaviour = Behaviour.of(compile_program(truth))
    select = next(i for i, line in enumerate(truth.lines) if line.op == "Select")
    wrong = _with_entries(truth, select, {7: not truth.lines[select].fn[7], 12: not truth.lines[select].fn[12]})
    fitted = fit(wrong, behaviour, time.perf_counter() + 30)
    assert fitted is not None and fitted.program.id == truth.id and fitted.agreement.agreement == 1.0
    assert fit(truth, behaviour, time.perf_counter() + 30) is None
    assert fit(wrong, behaviour, time.perf_counter() - 1) is None  # no time: nothing tried beyond reading the output


def test_a_wrong_predicate_no_single_entry_mends_is_swapped_for_the_right_one():
    truth = Program.from_rasp(lib.make_hist(), range(5), 5)
    behaviour = Behaviour.of(compile_program(truth))
    select = next(i for i, line in enumerate(truth.lines) if line.op == "Select")
    lines = list(truth.lines)
    lines[select] = lines[select]._replace(fn=library.named_table("Select", "LT", truth.operand_types(lines[select])))
    wrong = Program(lines, truth.vocab, truth.max_seq_len)
    assert behaviour.agreement(wrong).agreement < 0.2
    fitted = fit(wrong, behaviour, time.perf_counter() + 30)
    assert fitted is not None and fitted.program.id == truth.id and fitted.agreement.agreement == 1.0


def test_a_sample_of_a_behaviour_agrees_as_the_model_run_on_those_inputs():
    truth = Program.from_rasp(lib.make_frac_prevs(rasp.tokens == 1), range(5), 5)
    model = compile_program(truth)
    other = Program.from_rasp(lib.make_frac_prevs(rasp.tokens == 2), range(5), 5)
    quick = Behaviour.of(model).sample(500, seed=3)
    assert len(quick.inputs) == 500 and not quick.exhaustive and len({tuple(x) for x in quick.inputs}) == 500
    again = Behaviour(model, quick.inputs)
    assert quick.agreement(other) == again.agreement(other) and quick.agreement(truth).agreement == 1.0


def test_a_wrong_argument_is_rewired_to_the_variable_the_model_reads():
    truth = Program.from_rasp(lib.make_hist(), range(5), 5)
    behaviour = Behaviour.of(compile_program(truth))
    select = next(i for i, line in enumerate(truth.lines) if line.op == "Select")
    lines = list(truth.lines)
    lines[select] = lines[select]._replace(operands=("indices", "tokens"))  # keys from the positions, not the tokens
    wrong = Program(lines, truth.vocab, truth.max_seq_len)
    assert behaviour.agreement(wrong).agreement < 0.5
    fitted = fit(wrong, behaviour, time.perf_counter() + 30)
    assert fitted is not None and fitted.program.id == truth.id


def test_an_output_line_of_the_wrong_operation_or_operands_is_rebuilt_with_its_table_read_off_the_model():
    mapped = rasp.categorical(rasp.Map(lambda t: (t * 2) % 3, rasp.tokens))
    shifted = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q - 1), rasp.tokens))
    pairs = Program.from_rasp(rasp.categorical(rasp.SequenceMap(lambda x, y: (x + (y or 0)) % 4, rasp.tokens, shifted)), range(5), 5)
    single = Program.from_rasp(rasp.categorical(rasp.Map(lambda y: y % 3, shifted)), range(5), 5)
    for truth, wrong in [
        (pairs, pairs.lines[-1]._replace(operands=("indices", pairs.lines[-1].operands[1]))),  # a wrong operand and so a wrong table
        (single, rasp.categorical(rasp.SequenceMap(lambda x, y: x * (y or 0) % 5, mapped, shifted))),  # the wrong operation
    ]:
        behaviour = Behaviour.of(compile_program(truth))
        candidate = (Program([*truth.lines[:-1], wrong], truth.vocab, truth.max_seq_len) if isinstance(wrong, Line)
                     else Program.from_rasp(wrong, truth.vocab, truth.max_seq_len))
        assert behaviour.agreement(candidate).agreement < 0.5
        fitted = fit(candidate, behaviour, time.perf_counter() + 30)
        assert fitted is not None and fitted.program.id == truth.id, candidate.source()


def test_a_last_line_the_candidate_lacks_is_added_when_no_other_move_helps():
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT))
    for last in (
        # values 0–2, as the width's first ones: climbing the Select first takes it astray, and it comes
        # back only if the output's table is read again for each change (and on every input at the end)
        rasp.categorical(rasp.SequenceMap(lambda w, t: (w + t) % 3, width, rasp.tokens)),
        rasp.categorical(rasp.Map(lambda w: w % 2 + 7, width)),
    ):
        truth = Program.from_rasp(last, range(5), 5)
        assert truth.lines[-1].op == type(last).__name__
        candidate = Program.from_rasp(width, range(5), 5)  # the truth without its output line: no table to fit
        behaviour = Behaviour.of(compile_program(truth))
        assert behaviour.agreement(candidate).agreement < 0.5
        fitted = fit(candidate, behaviour, time.perf_counter() + 30)
        # the truth's behaviour and lines (entries for keys no input holds are the model's weights' to say)
        assert fitted is not None and fitted.agreement.agreement == 1.0, fitted and fitted.program.source()
        assert [(line.op, line.operands) for line in fitted.program.lines[:-1]] == [(line.op, line.operands) for line in truth.lines[:-1]]
        assert fitted.program.lines[-1].op == truth.lines[-1].op
