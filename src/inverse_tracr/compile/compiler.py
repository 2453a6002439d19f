"""Compile a `Program` with Tracr, fast (see `fast_init`), into a `CompiledModel`."""

from __future__ import annotations

import dataclasses
import re

from tracr.compiler import compiling

from inverse_tracr.compile.fast_init import fast_init
from inverse_tracr.compile.model import BOS, PAD, CompiledModel
from inverse_tracr.programs import Program

# RASP labels are `<name>_<global counter>` ("v2_118"): the counter depends on everything the
# process built before, so it is dropped; residual order never depends on it (names differ first).
_RASP_COUNTER = re.compile(r"^(v\d+)_\d+")


def compile_program(program: Program, fast: bool = True) -> CompiledModel:
    """Tracr's compilation of `program`; `fast=False` runs stock Tracr (for comparison)."""
    sop = program.to_rasp()
    compile_ = lambda: compiling.compile_rasp_to_model(  # noqa: E731
        sop, vocab=set(program.vocab), max_seq_len=program.max_seq_len, compiler_bos=BOS, compiler_pad=PAD
    )
    if fast:
        with fast_init():
            assembled = compile_()
    else:
        assembled = compile_()
    model = CompiledModel.from_tracr(assembled, sop.label)
    labels = tuple(_RASP_COUNTER.sub(r"\1", label) for label in model.layout.residual_labels)
    return dataclasses.replace(model, layout=dataclasses.replace(model.layout, residual_labels=labels))
