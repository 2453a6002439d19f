"""Values and types: any vocabulary, exact types in JSON, Tracr's order, one clear error for a value a program cannot hold."""

from __future__ import annotations

import pytest
from tracr.rasp import rasp

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.programs import Program, ProgramError, values


def test_json_keeps_value_types_exactly():
    vocab = (1, "1", 2.5, (0, "a"), True)
    program = Program([("Select", "TRUE", "tokens", "tokens", "s"), ("SelectorWidth", "NA", "s", "NA", "w")], vocab, 3)
    back = Program.from_json(program.to_json())
    assert [type(v) for v in back.vocab] == [type(v) for v in program.vocab]
    assert back.vocab == program.vocab and "1" in back.vocab and (0, "a") in back.vocab
    ints = Program([("Map", [0, 1, 1], "tokens", "NA", "m")], (0, 1, 2), 3)
    floats = Program([("Map", [0.0, 1.0, 1.0], "tokens", "NA", "m")], (0, 1, 2), 3)
    assert ints.id != floats.id  # an output labelled 1 is not one labelled 1.0


def test_value_order_is_tracrs():
    assert values.order([3, "b", 1.5, "(", True]) == ("(", True, 1.5, 3, "b")
    assert values.order([(1, 2), (0, 5), (1, 0)]) == ((0, 5), (1, 0), (1, 2))
    model = compile_program(Program.from_rasp(rasp.Map(lambda x: x, rasp.tokens), ("b", 2, "a", 1), 3))
    assert model.layout.input_tokens[:4] == values.order(("b", 2, "a", 1)) == (1, 2, "a", "b")


@pytest.mark.parametrize(
    "make, vocab, fragment",
    [
        (lambda: rasp.Map(lambda x: x, rasp.tokens), (0, None), "None is not a value"),
        (lambda: rasp.Map(lambda x: [x], rasp.tokens), (0, 1), "type list is not supported"),
        (lambda: rasp.Map(lambda x: x + 1, rasp.tokens), (0, "a"), "raises TypeError"),
        (lambda: rasp.Select(rasp.numerical(rasp.Map(lambda x: x / 2, rasp.tokens)), rasp.tokens, rasp.Comparison.EQ), (0, 1), "categorical keys and queries"),
        (lambda: rasp.Map(lambda x: x, rasp.tokens), (0, float("nan")), "not a finite number"),
    ],
)
def test_bad_values_get_one_clear_error(make, vocab, fragment):
    sop = make()
    if isinstance(sop, rasp.Select):
        sop = rasp.SelectorWidth(sop)
    with pytest.raises(ProgramError, match=fragment):
        Program.from_rasp(sop, vocab, 3)
