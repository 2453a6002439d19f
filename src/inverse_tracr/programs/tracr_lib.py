"""Tracr's hand-written `lib` programs, each at the vocabulary and length Tracr's own tests use.

They are an out-of-distribution test set: written by people, not sampled, over letters, brackets
and numbers, with lambda predicates, numerical Maps and LinearSequenceMaps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from tracr.compiler import lib
from tracr.rasp import rasp

from inverse_tracr.programs.program import Program


@dataclasses.dataclass(frozen=True)
class WrittenProgram:
    """A program someone wrote in RASP, with the vocabulary and length it is compiled for."""

    make: Callable[[], rasp.SOp]
    vocab: tuple[Any, ...]
    max_seq_len: int

    def program(self) -> Program:
        return Program.from_rasp(self.make(), self.vocab, self.max_seq_len)


_LETTERS = ("a", "b", "c", "d")

#: name → program, vocabulary and length (from `tracr/compiler/test_cases.py`).
LIB: dict[str, WrittenProgram] = {
    "length": WrittenProgram(lib.make_length, _LETTERS, 5),
    "reverse": WrittenProgram(lambda: lib.make_reverse(rasp.tokens), _LETTERS, 5),
    "hist": WrittenProgram(lib.make_hist, _LETTERS, 5),
    "sort_unique": WrittenProgram(lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), (1, 2, 3, 4), 5),
    "sort": WrittenProgram(lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1), (1, 2, 3, 4), 5),
    "sort_freq": WrittenProgram(lambda: lib.make_sort_freq(max_seq_len=5), (1, 2, 3, 4), 5),
    "frac_prevs": WrittenProgram(lambda: lib.make_frac_prevs(rasp.tokens == "l"), ("h", "e", "l", "o"), 5),
    "pair_balance": WrittenProgram(lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), ("a", "b", "c", "(", ")"), 10),
    "shuffle_dyck2": WrittenProgram(lambda: lib.make_shuffle_dyck(["()", "{}"]), ("(", ")", "{", "}"), 5),
    "shift_by": WrittenProgram(lambda: lib.shift_by(1, rasp.tokens), _LETTERS, 5),
    "detect_pattern": WrittenProgram(lambda: lib.detect_pattern(rasp.tokens, "abc"), ("a", "b", "c"), 6),
    "count_less_freq": WrittenProgram(lambda: lib.make_count_less_freq(2), _LETTERS, 6),
    "count": WrittenProgram(lambda: lib.make_count(rasp.tokens, "a"), ("a", "b", "c"), 8),
}


def tracr_lib_programs() -> dict[str, Program]:
    return {name: entry.program() for name, entry in LIB.items()}
