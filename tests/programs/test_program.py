"""Programs: functions as tables, one program for equal weights, canonical lines, JSON and RASP round trips."""

from __future__ import annotations

import random

import pytest
from tracr.rasp import rasp

from inverse_tracr.meta import vocab
from inverse_tracr.programs import Program, ProgramError
from inverse_tracr.programs.sampler import SamplerConfig, sample_program


@pytest.mark.parametrize(
    "first, second, vocab",
    [
        (lambda x: x != 1, lambda x: x == 0, (0, 1)),  # ne_1 / eq_0 on {0, 1}
        (lambda x: x > 3, lambda x: x == 4, (0, 1, 2, 3, 4)),  # gt_3 / eq_4 on {0..4}
        (lambda x: x >= 1, lambda x: x != 0, (0, 1, 2)),  # ge_1 / ne_0
        (lambda x: x + 1, lambda x: x + 10, (0, 1, 2)),  # an intermediate's labels are not in the weights
    ],
)
def test_functions_equal_on_their_inputs_are_one_program(first, second, vocab):
    def program(f):
        x = rasp.Map(f, rasp.tokens)
        return rasp.SelectorWidth(rasp.Select(x, x, rasp.Comparison.LEQ))

    a, b = Program.from_rasp(program(first), vocab), Program.from_rasp(program(second), vocab)
    assert a == b and a.id == b.id and a.lines == b.lines


def test_and_mul_on_booleans_are_one_program():
    booleans = rasp.Map(lambda x: x > 1, rasp.tokens)
    and_2 = rasp.Map(lambda x: x and 2, booleans)
    mul_2 = rasp.Map(lambda x: x * 2, booleans)
    out = lambda m: rasp.SelectorWidth(rasp.Select(m, m, rasp.Comparison.EQ))  # noqa: E731
    assert Program.from_rasp(out(and_2)) == Program.from_rasp(out(mul_2))


def test_relabelled_intermediates_compile_to_identical_weights():
    # DESIGN §9: x = tokens + 1 and x = tokens + 10, with downstream tables shifted to match.
    def program(offset):
        x = rasp.Map(lambda t: t + offset, rasp.tokens)
        width = rasp.SelectorWidth(rasp.Select(x, rasp.indices, lambda k, q: k == q + offset + 1))
        return rasp.SequenceMap(lambda w, v: w + v - offset, width, x)

    a, b = Program.from_rasp(program(1)), Program.from_rasp(program(10))
    assert a == b
    # …and the labels that the interface fixes are kept: the output's.
    assert a.types[a.output].values == tuple(range(0, 10))
    assert a.ranked == {"v1"}


def test_a_sequence_map_of_one_variable_is_its_diagonal_and_image():
    # Tracr compiles SequenceMap(f, x, x) as the Map x -> f(x, x), into a block sized by f's image
    # over all pairs: only the diagonal and that image are in the weights.
    x = rasp.Map(lambda t: t % 3, rasp.tokens)
    plus = Program.from_rasp(rasp.SequenceMap(lambda a, b: a + b, x, x))
    twice_or_sum = Program.from_rasp(rasp.SequenceMap(lambda a, b: 2 * a if a == b else a + b, x, x))
    assert plus == twice_or_sum and plus.lines[-1].op == "SequenceMap"
    doubled = Program.from_rasp(rasp.Map(lambda a: 2 * a, x))  # image {0, 2, 4}, not {0 … 4}
    assert doubled != plus and len(plus.types[plus.output].values) == 5


def test_predicates_that_select_the_same_pairs_are_one_selector():
    def width(predicate):
        return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.indices, predicate))

    # on tokens {5, 6} and indices {0..3}, keys are always greater than queries
    lt, true = Program.from_rasp(width(rasp.Comparison.GT), (5, 6), 4), Program.from_rasp(width(rasp.Comparison.TRUE), (5, 6), 4)
    lam = Program.from_rasp(width(lambda k, q: k > 4), (5, 6), 4)
    assert lt == true == lam
    assert lt.aliases[0] == "GT"  # the first comparison with this table (in rasp.Comparison's order)


def test_equal_library_names_give_equal_ids_in_every_construction_path():
    lines_a = [("Map", "ne_1", "tokens", "NA", "a"), ("Select", "EQ", "a", "tokens", "s"), ("SelectorWidth", "NA", "s", "NA", "o")]
    lines_b = [("Map", "eq_0", "tokens", "NA", "a"), ("Select", "EQ", "a", "tokens", "s"), ("SelectorWidth", "NA", "s", "NA", "o")]
    a, b = Program(lines_a, (0, 1)), Program(lines_b, (0, 1))
    assert a == b
    assert Program.from_json(a.to_json()) == b
    assert Program.from_rasp(b.to_rasp(), (0, 1)) == a
    # …and the meta-model's targets, which write the table, not a name, are one sequence that decodes to it
    ids = vocab.encode(a)
    assert ids == vocab.encode(b) and vocab.decode(ids, (0, 1), a.max_seq_len, a.types[a.output].values) == a


def test_sampled_programs_survive_json_and_rasp_round_trips():
    config = SamplerConfig(min_ops=3, max_ops=10, random_tables=0.3)
    for seed in range(60):
        program = sample_program(random.Random(seed), config)
        assert Program.from_json(program.to_json()) == program
        assert Program.from_rasp(program.to_rasp(), program.vocab, program.max_seq_len) == program
        text = program.source()
        assert text.count("\n") == len(program.lines) and text.endswith(f"program = {program.output}")


def test_canonical_form_is_invariant_under_reordering_and_renaming():
    lines = [
        ("Map", "lt_3", "tokens", "NA", "a"),
        ("Map", "add_1", "indices", "NA", "b"),
        ("Select", "EQ", "indices", "b", "s"),
        ("Aggregate", "NA", "s", "a", "c"),
        ("SequenceMap", "max", "c", "b", "out"),
    ]
    reordered = [lines[1], lines[0], lines[2], lines[3], lines[4]]
    renamed = [tuple({"a": "q", "b": "r", "c": "z"}.get(f, f) for f in line) for line in reordered]
    programs = [Program(tuple(ls)) for ls in (lines, reordered, renamed)]
    assert len({p.id for p in programs}) == 1 and len({p.lines for p in programs}) == 1
    # Operand order is what the weights hold: swapped operands are another program, even for max.
    swapped = lines[:-1] + [("SequenceMap", "max", "b", "c", "out")]
    assert Program(tuple(swapped)).id != programs[0].id


def test_canonical_form_prunes_dead_lines_and_merges_duplicates():
    lines = (
        ("Map", "lt_3", "tokens", "NA", "a"),
        ("Map", "lt_3", "tokens", "NA", "b"),  # same as a
        ("Map", "add_1", "tokens", "NA", "dead"),  # not an ancestor of the output
        ("SequenceMap", "both", "a", "b", "out"),  # after merging, a SequenceMap of one variable: a Map
    )
    program = Program(lines)
    assert [(line.op, line.operands) for line in program.lines] == [("Map", ("tokens",)), ("SequenceMap", ("v1", "v1"))]
    # both(v, v) is v; False (rank 0) and True (rank 1) are the image, so the table is the diagonal
    # with the image's extra values (none) first off the diagonal, each row's diagonal elsewhere
    assert program.lines[1].fn == (False, False, True, True)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ([1, 2], "JSON object"),
        ({"lines": []}, "lacks max_seq_len, vocab"),
        ({"lines": [["Map", "lt_3", "tokens", "NA"]], "vocab": [0, 1], "max_seq_len": 3}, "5 fields"),
        ({"lines": [["Frobnicate", "x", "tokens", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "unknown operation"),
        ({"lines": [["Map", "lt_99x", "tokens", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "unknown Map function"),
        ({"lines": [["Map", [0, 1, 1], "tokens", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "table has 3 entries"),
        ({"lines": [["Map", "lt_1", "v9", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "used before it is assigned"),
        ({"lines": [["Select", "EQ", "tokens", "tokens", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "not a selector"),
        ({"lines": [["Map", "lt_1", "tokens", "NA", "v1"]], "vocab": [[0]], "max_seq_len": 3}, "cannot be a list"),
        ({"lines": [["Map", "lt_1", "tokens", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3, "format": "inverse-tracr/program/1"}, "regenerate"),
        ({"lines": [["Map", "lt_1", "tokens", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3, "id": "0" * 16}, "does not match"),
    ],
)
def test_malformed_program_json_gives_a_clear_error(data, fragment):
    with pytest.raises(ProgramError, match=fragment):
        Program.from_json(data)
