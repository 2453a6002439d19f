"""Compile a `Program` with Tracr, fast (see `fast_init`), into a `CompiledModel`."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

from tracr.compiler import compiling
from tracr.rasp import rasp

from inverse_tracr.compile.fast_init import fast_init
from inverse_tracr.compile.model import BOS, PAD, CompiledModel
from inverse_tracr.programs import Program
from inverse_tracr.programs.from_rasp import canonical_names, renamed

# RASP labels are `<name>_<global counter>` ("v2_118"): the counter depends on everything the
# process built before, so it is dropped; residual order never depends on it (names differ first).
_RASP_COUNTER = re.compile(r"^(v\d+)_\d+")


def compile_program(program: Program, fast: bool = True) -> CompiledModel:
    """Tracr's compilation of `program` (causally masked if the program is); `fast=False` runs
    stock Tracr (for comparison)."""
    sop = program.to_rasp()
    compile_ = lambda: compiling.compile_rasp_to_model(  # noqa: E731
        sop, vocab=set(program.vocab), max_seq_len=program.max_seq_len, compiler_bos=BOS, compiler_pad=PAD,
        causal=program.causal,
    )
    if fast:
        with fast_init():
            assembled = compile_()
    else:
        assembled = compile_()
    model = CompiledModel.from_tracr(assembled, sop.label)
    labels = tuple(_RASP_COUNTER.sub(r"\1", label) for label in model.layout.residual_labels)
    return dataclasses.replace(model, layout=dataclasses.replace(model.layout, residual_labels=labels))


def compile_as_written(sop: rasp.SOp, vocab: Sequence[Any], max_seq_len: int) -> CompiledModel:
    """Stock Tracr's model of a user's own RASP — their lambdas, predicates and labels — with the
    expressions named as in its canonical `Program`: Tracr orders the residual stream by name, so
    this is exactly `compile_program(Program.from_rasp(sop, vocab, max_seq_len))` when the
    representation is faithful (what the tests and `benchmarks/coverage.py` check)."""
    named = renamed(sop, canonical_names(sop, vocab, max_seq_len))
    with fast_init():
        assembled = compiling.compile_rasp_to_model(named, set(vocab), max_seq_len, compiler_bos=BOS, compiler_pad=PAD)
    return CompiledModel.from_tracr(assembled, named.label)
