"""The behavioural check: how far a candidate program agrees with what a model computes."""

from __future__ import annotations

from distill_tools import rotated_student
from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.compile.check import Behaviour, verifies
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import READOUT
from inverse_tracr.compile.verify import same_value
from inverse_tracr.programs import Program
from inverse_tracr.programs.batch import evaluate_batch


def test_agreement_is_exact_for_categorical_and_numerical_outputs_and_students():
    frac = Program.from_rasp(lib.make_frac_prevs(rasp.tokens == 1), range(5), 5)
    other = Program.from_rasp(lib.make_frac_prevs(rasp.tokens == 2), range(5), 5)
    behaviour = Behaviour.of(compile_program(frac))
    assert behaviour.numerical and behaviour.exhaustive and len(behaviour.inputs) == 3905
    assert behaviour.agreement(frac).agreement == 1.0 and behaviour.agreement(frac).defined == 1.0
    assert 0.3 < behaviour.agreement(other).agreement < 0.9  # both give 0 where there is no 1 and no 2
    hist = Program.from_rasp(lib.make_hist(), range(5), 5)
    rotated = Behaviour.of(rotated_student(compile_program(hist)))
    assert rotated.agreement(hist).agreement == 1.0
    assert rotated.agreement(Program.from_rasp(lib.make_length(), range(5), 5)).agreement < 0.6


def test_a_student_is_compared_as_its_gates_measured_it_its_argmax_and_numbers_within_their_tolerance():
    # A student that says its teacher's values softly (largest score 0.3, as trained students do),
    # and one whose numbers are 1 % off: each is still its program's, as its gates measured it.
    hist = Program.from_rasp(lib.make_hist(), range(5), 5)
    soft = rotated_student(compile_program(hist))
    soft.params[READOUT] = soft.params[READOUT] * 0.3
    assert Behaviour.of(soft).agreement(hist).agreement == 1.0
    frac = Program.from_rasp(lib.make_frac_prevs(rasp.tokens == 1), range(5), 5)
    off = rotated_student(compile_program(frac))
    off.params[READOUT] = off.params[READOUT] * 1.01
    assert Behaviour.of(off).agreement(frac).agreement == 1.0
    assert Behaviour.of(off).agreement(Program.from_rasp(lib.make_frac_prevs(rasp.tokens == 2), range(5), 5)).agreement < 0.9


def test_a_candidate_of_the_wrong_kind_scores_zero_and_never_raises():
    # A categorical candidate whose Aggregate averages several values (rasp.evaluate decides those
    # inputs one by one) against a numerical model; and labels where numbers are due.
    frac = Behaviour.of(compile_program(Program.from_rasp(lib.make_frac_prevs(rasp.tokens == 1), range(5), 5)))
    averaging = Program.from_rasp(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE), rasp.tokens), range(5), 5)
    assert frac.agreement(averaging).agreement == 0.0
    assert not same_value("a", 1.0, numerical=True) and same_value(1, 1.0000001, numerical=True)


def test_none_must_match_where_the_model_writes_nothing():
    # A copy of the tokens writes a value everywhere: a candidate that says None at position 0
    # is not verified by agreeing wherever it does say something.
    copy = Program.from_rasp(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), rasp.tokens), range(5), 5)
    silent_first = Program.from_rasp(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q and q > 0), rasp.tokens), range(5), 5)
    behaviour = Behaviour.of(compile_program(copy))
    assert behaviour.agreement(copy).agreement == 1.0
    partial = behaviour.agreement(silent_first)
    assert 0.6 < partial.defined < 1 and partial.agreement < 1.0
    # …and where the model writes nothing (RASP's None: shift_by's first position), a value is wrong
    shifted = Program.from_rasp(lib.shift_by(1, rasp.tokens), range(5), 5)
    model_says = Behaviour.of(compile_program(shifted))
    assert model_says.agreement(shifted).agreement == 1.0
    assert model_says.agreement(copy).agreement < 0.5


def test_a_numerical_none_counts_as_the_zero_a_compiled_model_writes_there():
    # The model cannot say None in a number: where a program's numerical output is None (here the
    # first position, which nothing precedes) its compiled model writes 0, so the program agrees…
    low = lambda x: 1 if x < 3 else 0  # noqa: E731
    previous = lib.shift_by(1, rasp.tokens)
    shifted = Program.from_rasp(rasp.numerical(rasp.Map(low, previous)), range(5), 5)
    agrees = Behaviour.of(compile_program(shifted)).agreement(shifted)
    assert agrees.agreement == 1.0 and agrees.defined < 1
    # but the model writes 0 where a program says 0, too: a numerical None cannot be checked, and
    # only a program defined everywhere is verified (a categorical one needs MIN_DEFINED)
    assert not verifies(agrees, 1.0, numerical=True) and verifies(agrees, 1.0, numerical=False)
    frac = Program.from_rasp(lib.make_frac_prevs(rasp.tokens == 1), range(5), 5)
    assert verifies(Behaviour.of(compile_program(frac)).agreement(frac), 1.0, numerical=True)
    # …and a candidate that is right wherever it says something but None where the model says 1
    # is not verified by keeping quiet there (a held-out search verified such a program).
    here = Program.from_rasp(rasp.numerical(rasp.Map(low, rasp.tokens)), range(5), 5)
    silent_first = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q and q > 0), rasp.tokens)
    quiet = Behaviour.of(compile_program(here)).agreement(Program.from_rasp(rasp.numerical(rasp.Map(low, silent_first)), range(5), 5))
    assert 0.6 < quiet.defined < 1 and quiet.agreement < 0.9


def test_where_a_candidate_averages_several_values_rasp_says_and_elsewhere_its_tables_do():
    copy = Program.from_rasp(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), rasp.tokens), range(5), 5)
    behaviour = Behaviour.of(compile_program(copy))
    # the mean of the tokens up to each position: a table lookup where they are all equal, rasp's
    # average elsewhere, which equals the model's token there only by chance ([2, 0, 1] ends in 1.0)
    prefix_mean = Program.from_rasp(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), rasp.tokens), range(5), 5)
    found = behaviour.agreement(prefix_mean)
    inputs = [x for x in behaviour.inputs if x]
    assert found.positions == sum(map(len, inputs)) and found.defined == 1.0
    assert found.matches == sum(sum(x[: q + 1]) == x[q] * (q + 1) for x in inputs for q in range(len(x)))


def test_where_a_candidate_averages_its_agreement_is_what_rasp_says(monkeypatch):
    # A categorical Aggregate that averages several numbers is no table lookup: rasp.evaluate
    # gives the mean (checking Tracr's sort that way, input by input, took 0.5 s a candidate). The
    # batch knows the mean where it is one of the values, and that one which is none of the
    # candidate's values is none of the model's labels either — unless a label the candidate has
    # not lies between its values (evens: the mean of 0 and 2 is 1): only then do the inputs where
    # the output holds such a mean go to rasp.evaluate.
    copy = Program.from_rasp(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), rasp.tokens), range(5), 4)
    behaviour = Behaviour.of(compile_program(copy))
    evens = rasp.categorical(rasp.Map(lambda x: x - x % 2, rasp.tokens))
    for values, by_rasp in ((rasp.tokens, False), (evens, True)):
        averaging = Program.from_rasp(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ), values), range(5), 4)
        expected = compared = 0
        rows, _ = behaviour.tokens(averaging.types["tokens"])
        got, written = behaviour.outputs()
        for r, i in enumerate(rows):
            want = averaging.evaluate(behaviour.inputs[i])
            for g, w, wrote in zip(got[r].tolist(), want, written[r].tolist()):
                compared += w is not None or wrote
                expected += w is not None and wrote and same_value(g, w, numerical=False)
        calls = []
        monkeypatch.setattr(Program, "evaluate", lambda self, xs: calls.append(xs) or rasp.evaluate(self.to_rasp(), list(xs)))
        agreement = behaviour.agreement(averaging)
        monkeypatch.undo()
        assert (agreement.matches, agreement.positions) == (expected, compared) and 0.2 < agreement.agreement < 0.9
        outside = int(evaluate_batch(averaging, behaviour.inputs).outside.sum())
        assert outside > 100 and len(calls) == (outside if by_rasp else 0)
