"""Students for the tests: Tracr's lib programs at the zoo's settings, a stored student's agreement,
an exact rotated student, a compressed one, and a program one table entry from another."""

from __future__ import annotations

import numpy as np
from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.compile.model import CompiledModel
from inverse_tracr.compile.verify import make_inputs
from inverse_tracr.distill import student
from inverse_tracr.distill.stage import check_stored, student_layout
from inverse_tracr.programs import Program


def rotated_student(model: CompiledModel, seed: int = 0, width: int | None = None) -> CompiledModel:
    """An exact 'compressed student' of width D: the residual rotated by a random orthogonal W;
    with a `width` below D, a compressed student as `distill` stores one (folded, float32) through a
    random W with orthonormal columns (its weights are a student's, its behaviour is not faithful)."""
    d = width or model.layout.residual_width
    w, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(model.layout.residual_width, d)))
    folded = student.fold(student.stack(model.params, model.layout.num_layers), w)
    params = student.unstack({k: np.asarray(v, np.float32) for k, v in folded.items()}, np.asarray(student.readout(w, model.layout), np.float32))
    return CompiledModel(params, student_layout(model.layout, d))


#: Tracr's lib programs at the zoo's vocabulary and length (the students' distillation settings).
LIB = {
    name: Program.from_rasp(make(), range(5), 5)
    for name, make in {
        "sort_unique": lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
        "hist": lib.make_hist,
        "reverse": lambda: lib.make_reverse(rasp.tokens),
        "frac_prevs": lambda: lib.make_frac_prevs(rasp.tokens == 1),
    }.items()
}


def agreement_on_fresh_inputs(model: CompiledModel, program: Program) -> float:
    return check_stored(model, program, make_inputs(program, 64, seed=99))["accuracy"]


#: A Map with repeated values, then a SequenceMap: tables with entries that can change value alone.
MAPPED = Program.from_rasp(rasp.SequenceMap(lambda x, y: (x + y) % 4, rasp.Map(lambda x: (x + 1) % 3, rasp.tokens), rasp.indices), range(5), 5)


def with_entry(program: Program, line: int, entry: int) -> Program:
    """`program` with one entry of a line's table set to another of the line's values (an entry
    whose value others have too, so that the line keeps its value set)."""
    fn = list(program.lines[line].fn)
    assert fn.count(fn[entry]) > 1
    fn[entry] = next(v for v in sorted(set(fn)) if v != fn[entry])
    lines = list(program.lines)
    lines[line] = lines[line]._replace(fn=tuple(fn))
    return Program(lines, program.vocab, program.max_seq_len)
