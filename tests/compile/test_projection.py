"""The compressed student's certificate: a candidate compiled again folds into the student's weights."""

from __future__ import annotations

import dataclasses

import numpy as np
from distill_tools import MAPPED, rotated_student, with_entry
from weight_tools import permute_residual

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import CompiledModel
from inverse_tracr.compile.projection import projects


def test_a_compressed_student_is_certified_by_its_program_whatever_the_residual_order():
    teacher = compile_program(MAPPED)
    narrow = rotated_student(teacher, width=teacher.layout.residual_width // 2)
    assert projects(teacher, narrow)
    order = np.random.default_rng(1).permutation(teacher.layout.residual_width)
    reordered = dataclasses.replace(teacher, params=permute_residual(teacher.params, order),
                                    layout=dataclasses.replace(teacher.layout, output_dims=tuple(int(np.argsort(order)[d]) for d in teacher.layout.output_dims)))
    assert projects(reordered, narrow)


def test_a_program_one_table_entry_away_a_natural_student_and_a_standard_model_are_not_certified():
    teacher = compile_program(MAPPED)
    narrow = rotated_student(teacher, width=teacher.layout.residual_width // 2)
    for line in range(len(MAPPED.lines)):
        fn = MAPPED.lines[line].fn
        for entry in [i for i, v in enumerate(fn) if fn.count(v) > 1][::3]:
            wrong = with_entry(MAPPED, line, entry)
            assert wrong.id != MAPPED.id and not projects(compile_program(wrong), narrow), (line, entry)
    rng = np.random.default_rng(2)
    natural = CompiledModel({k: rng.normal(size=v.shape).astype(np.float32) for k, v in narrow.params.items()}, narrow.layout)
    assert not projects(teacher, natural)
    assert not projects(teacher, teacher)  # a model without a read-out is no student
