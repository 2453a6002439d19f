"""A compressed student unfolded into its teacher and read: the program its weights certify."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from distill_tools import LIB, MAPPED, rotated_student
from tracr.rasp import rasp

from inverse_tracr.compile import reader, unfold
from inverse_tracr.compile.check import inputs_for
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.projection import projects
from inverse_tracr.evaluate.metrics import functionally_equivalent
from inverse_tracr.programs import Program
from inverse_tracr.programs.handwritten import HANDWRITTEN
from inverse_tracr.programs.tracr_lib import LIB as TRACR_LIB

_SMALL = dict(vocab=range(5), max_seq_len=5)


def _program(sop: rasp.SOp) -> Program:
    return Program.from_rasp(sop, _SMALL["vocab"], _SMALL["max_seq_len"])


def _two_selector_widths_in_one_layer() -> Program:
    """Their MLPs share one layer and one BOS-cleaning unit."""
    wide = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    narrow = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.GT))
    return _program(rasp.SequenceMap(lambda a, b: a > b, rasp.Map(lambda x: x < 3, wide), narrow))


def _no_heads_tokens_read_late() -> Program:
    """No head says where `one` is, and the first MLP reads indices only: the SequenceMap that
    reads a token and `one` comes a layer later."""
    first = rasp.Map(lambda i: i == 4, rasp.indices)
    return _program(rasp.SequenceMap(lambda t, f: (t + f) % 3, rasp.tokens, first))


def _sequence_map_keys() -> Program:
    """A SequenceMap's output read as keys: its value order is kept by the head's key columns only."""
    summed = rasp.SequenceMap(lambda t, i: t - i, rasp.tokens, rasp.indices)
    return _program(rasp.SelectorWidth(rasp.Select(summed, summed, rasp.Comparison.GT)))


PROGRAMS = {"mapped": MAPPED, **LIB, "two selector widths": _two_selector_widths_in_one_layer(),
            "no heads": _no_heads_tokens_read_late(), "sequence map keys": _sequence_map_keys(),
            # A LinearSequenceMap (its units write ± one atom); two discretising MLPs on one number
            # that nothing pins the scale of; Tracr's own vocabularies and lengths.
            "pair_balance": TRACR_LIB["pair_balance"].program(), "shuffle_dyck2": TRACR_LIB["shuffle_dyck2"].program(),
            "dyck": HANDWRITTEN["dyck"].program()}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_compressed_student_reads_as_a_program_its_weights_certify(name):
    program = PROGRAMS[name]
    teacher = compile_program(program)
    narrow = rotated_student(teacher, seed=3, width=(teacher.layout.residual_width * 2) // 3)
    read = reader.read(narrow).program
    assert projects(compile_program(read), narrow)
    assert functionally_equivalent(program, read, inputs_for(program.vocab, program.max_seq_len)[0])
    # Where the student keeps every variable's value order (keys, SequenceMap units, its MLPs'
    # output order), the reading is the very program; in reverse only a Map reads a SequenceMap,
    # and nothing keeps that SequenceMap's value order.
    if name != "reverse":
        assert read.id == program.id


def test_the_unfolded_teacher_is_the_compiled_model_up_to_the_order_of_its_dims():
    teacher = compile_program(PROGRAMS["sequence map keys"])
    unfolded = unfold.unfold(rotated_student(teacher, seed=1, width=teacher.layout.residual_width // 2))
    assert unfolded.layout.residual_width == teacher.layout.residual_width and not unfolded.layout.readout
    for name, tensor in teacher.params.items():  # the same tensors, dims permuted: same sorted entries
        assert np.allclose(np.sort(unfolded.params[name], axis=None), np.sort(tensor, axis=None), atol=1e-4), name


def test_a_natural_student_and_a_standard_model_do_not_unfold():
    teacher = compile_program(MAPPED)
    narrow = rotated_student(teacher, width=teacher.layout.residual_width // 2)
    rng = np.random.default_rng(0)
    natural = dataclasses.replace(narrow, params={k: v + rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in narrow.params.items()})
    with pytest.raises(reader.NotCompiledLayout, match="student"):
        reader.read(natural)
    with pytest.raises(unfold.NotUnfolded, match="read-out"):
        unfold.unfold(teacher)
