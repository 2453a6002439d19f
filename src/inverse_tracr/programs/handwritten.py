"""Hand-written Tracr programs of the kinds users write: non-library lambdas, lambda selectors,
words, brackets, floats, mixed and boolean vocabularies, numerical Maps and means, n-ary
SequenceMaps. With Tracr's `lib` they are the out-of-distribution set of the reader, the
meta-model and the representation's tests.
"""

from __future__ import annotations

from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.programs.tracr_lib import WrittenProgram


def _dyck():
    opens = rasp.numerical(rasp.Map(lambda t: 1 if t == "(" else 0, rasp.tokens))
    closes = rasp.numerical(rasp.Map(lambda t: 1 if t == ")" else 0, rasp.tokens))
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    balance = rasp.numerical(rasp.LinearSequenceMap(
        rasp.numerical(rasp.Aggregate(prevs, opens, default=0)),
        rasp.numerical(rasp.Aggregate(prevs, closes, default=0)), 1, -1))
    return rasp.Map(lambda b: "open" if b > 0 else ("balanced" if b == 0 else "broken"), balance)


def _words():
    lengths = rasp.Map(len, rasp.tokens)
    same = rasp.Select(lengths, lengths, rasp.Comparison.EQ)
    return rasp.SelectorWidth(same)


def _shift_detector():
    previous = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1), rasp.tokens)
    return rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, previous)


def _running_fraction():
    big = rasp.numerical(rasp.Map(lambda x: x > 2, rasp.tokens))
    return rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), big, default=0))


def _doubled_fraction():
    return rasp.numerical(rasp.Map(lambda f: 2 * f, _running_fraction()))


HANDWRITTEN: dict[str, WrittenProgram] = {
    "square_mod": WrittenProgram(lambda: rasp.Map(lambda x: x * x % 5, rasp.tokens), (0, 1, 2, 3, 4), 5),
    "negate": WrittenProgram(lambda: rasp.Map(lambda x: -x, rasp.tokens), (0, 1, 2, 3, 4), 5),
    "clip": WrittenProgram(lambda: rasp.Map(lambda x: min(max(x, 1), 3), rasp.Map(lambda x: x * 2, rasp.tokens)), (0, 1, 2, 3), 5),
    "parity_count": WrittenProgram(lambda: rasp.SelectorWidth(rasp.Select(rasp.Map(lambda x: x % 2 == 0, rasp.tokens), rasp.tokens, lambda k, q: k and q > 0)), (0, 1, 2, 3), 5),
    "identity": WrittenProgram(lambda: rasp.Map(lambda x: x, rasp.tokens), ("x", "y"), 4),
    "dyck": WrittenProgram(_dyck, ("(", ")", "a"), 6),
    "words": WrittenProgram(_words, ("the", "cat", "sat", "on", "a", "mat"), 5),
    "shift_detector": WrittenProgram(_shift_detector, ("a", "b", "c"), 5),
    "running_fraction": WrittenProgram(_running_fraction, (1, 2, 3, 4), 5),
    "doubled_fraction": WrittenProgram(_doubled_fraction, (1, 2, 3, 4), 2),
    "float_vocab": WrittenProgram(lambda: rasp.Map(lambda x: x * 2, rasp.tokens), (0.5, 1.5, 2.5), 4),
    "mixed_vocab": WrittenProgram(lambda: rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)), ("a", "b", 1, 2), 4),
    "string_labels": WrittenProgram(lambda: rasp.Map(lambda x: "big" if x > 2 else "small", rasp.tokens), (1, 2, 3, 4), 4),
    "triples": WrittenProgram(lambda: lib.make_nary_sequencemap(lambda a, b, c: a + b - c, rasp.tokens, rasp.tokens, rasp.indices), (0, 1, 2), 4),
    "numerical_width": WrittenProgram(lambda: rasp.numerical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT))), (0, 1, 2), 4),
    "booleans": WrittenProgram(lambda: rasp.SequenceMap(lambda x, y: x and not y, rasp.tokens, lib.shift_by(1, rasp.tokens)), (False, True), 4),
}
