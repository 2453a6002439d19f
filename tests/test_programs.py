"""Programs: canonical form, ids, JSON and RASP round trips, Tracr lib programs, clear errors."""

from __future__ import annotations

import random

import pytest
from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.programs import Program, ProgramError
from inverse_tracr.programs.sampler import SamplerConfig, sample_program

from inverse_tracr.programs.tracr_lib import FACTORIES as LIB_PROGRAMS


def _inputs(program: Program, n: int = 20, seed: int = 0):
    rng = random.Random(seed)
    return [[rng.choice(program.vocab) for _ in range(rng.randint(1, program.max_seq_len))] for _ in range(n)]


@pytest.mark.parametrize("name", sorted(LIB_PROGRAMS))
def test_tracr_lib_programs_round_trip_with_identical_outputs(name):
    sop = LIB_PROGRAMS[name]()
    program = Program.from_rasp(sop)
    rebuilt = program.to_rasp()
    for xs in _inputs(program):
        assert rasp.evaluate(rebuilt, xs) == rasp.evaluate(sop, xs)
    assert Program.from_rasp(rebuilt) == program  # RASP -> Program -> RASP -> Program is stable


def test_foreign_lambdas_are_recognised_by_their_table():
    # `lambda x: x < 2` and library `lt_2` agree on every token value, so they are the same line.
    sop = rasp.Map(lambda x: x < 2, rasp.tokens)
    assert Program.from_rasp(sop).lines == (("Map", "lt_2", "tokens", "NA", "v1"),)


def test_from_rasp_names_every_unsupported_expression():
    squares = rasp.Map(lambda x: x * x + 7, rasp.tokens).named("squares")
    shifted = lib.shift_by(1, rasp.tokens)  # its predicate is a lambda, not a comparison
    with pytest.raises(ProgramError) as error:
        Program.from_rasp(rasp.SequenceMap(lambda x, y: x, squares, shifted))
    message = str(error.value)
    assert "Map 'squares'" in message and "matches no library function" in message
    assert "Select" in message and "predicate" in message


def test_canonical_form_is_invariant_under_reordering_and_renaming():
    lines = [
        ("Map", "lt_3", "tokens", "NA", "a"),
        ("Map", "add_1", "indices", "NA", "b"),
        ("Select", "EQ", "indices", "b", "s"),
        ("Aggregate", "s", "a", "NA", "c"),
        ("SequenceMap", "max", "c", "b", "out"),
    ]
    reordered = [lines[1], lines[0], lines[2], lines[3], lines[4]]
    renamed = [tuple({"a": "q", "b": "r", "c": "z"}.get(f, f) for f in line) for line in reordered]
    swapped = renamed[:-1] + [("SequenceMap", "max", "r", "z", "out")]  # max is commutative
    programs = [Program(tuple(ls)) for ls in (lines, reordered, renamed, swapped)]
    assert len({p.lines for p in programs}) == 1
    assert len({p.id for p in programs}) == 1
    # …but not under swapping the arguments of a non-commutative function.
    subtract = lines[:-1] + [("SequenceMap", "sub", "c", "b", "out")]
    subtract_swapped = lines[:-1] + [("SequenceMap", "sub", "b", "c", "out")]
    assert Program(tuple(subtract)).id != Program(tuple(subtract_swapped)).id


def test_canonical_form_prunes_dead_lines_and_merges_duplicates():
    lines = (
        ("Map", "lt_3", "tokens", "NA", "a"),
        ("Map", "lt_3", "tokens", "NA", "b"),  # same as a
        ("Map", "add_1", "tokens", "NA", "dead"),  # not an ancestor of the output
        ("SequenceMap", "both", "a", "b", "out"),
    )
    program = Program(lines)
    assert program.lines == (("Map", "lt_3", "tokens", "NA", "v1"), ("SequenceMap", "both", "v1", "v1", "v2"))


def test_sampled_programs_survive_json_and_rasp_round_trips():
    config = SamplerConfig(min_ops=3, max_ops=10)
    for seed in range(60):
        program = sample_program(random.Random(seed), config)
        assert Program.from_json(program.to_json()) == program
        assert Program.from_rasp(program.to_rasp(), program.vocab, program.max_seq_len) == program
        text = program.source()
        assert text.count("\n") == len(program.lines) and text.endswith(f"program = {program.output}")


@pytest.mark.parametrize(
    "data, fragment",
    [
        ([1, 2], "JSON object"),
        ({"lines": []}, "lacks max_seq_len, vocab"),
        ({"lines": [["Map", "lt_3", "tokens", "NA"]], "vocab": [0, 1], "max_seq_len": 3}, "5 string fields"),
        ({"lines": [["Frobnicate", "x", "tokens", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "unknown operation"),
        ({"lines": [["Map", "lt_99x", "tokens", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "unknown Map function"),
        ({"lines": [["Map", "lt_1", "v9", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "used before it is assigned"),
        ({"lines": [["Select", "EQ", "tokens", "tokens", "v1"]], "vocab": [0, 1], "max_seq_len": 3}, "not a selector"),
        ({"lines": [["Map", "lt_1", "tokens", "NA", "v1"]], "vocab": ["a"], "max_seq_len": 3}, "integers"),
        ({"lines": [["Map", "lt_1", "tokens", "NA", "v1"]], "vocab": [0, 1], "max_seq_len": 3, "id": "0" * 16}, "does not match"),
    ],
)
def test_malformed_program_json_gives_a_clear_error(data, fragment):
    with pytest.raises(ProgramError, match=fragment):
        Program.from_json(data)
