"""Tracr's hand-written `lib` programs that the named-function library can express.

They are the out-of-distribution test set of the meta-model: written by people, not sampled.
"""

from __future__ import annotations

from typing import Callable

from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.programs.program import Program

FACTORIES: dict[str, Callable[[], rasp.SOp]] = {
    "hist": lambda: lib.make_hist(),
    "length": lambda: lib.make_length(),
    "sort_unique": lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
    "sort_indices_by_token": lambda: lib.make_sort_unique(rasp.indices, rasp.tokens),
    "reverse": lambda: lib.make_reverse(rasp.tokens),
    "frac_prevs": lambda: lib.make_frac_prevs(rasp.tokens == 1),
}


def tracr_lib_programs(vocab: tuple, max_seq_len: int) -> dict[str, Program]:
    return {name: Program.from_rasp(make(), vocab, max_seq_len) for name, make in FACTORIES.items()}
