"""The finite library of named functions and predicates that programs are made of.

Why a library of *named* functions: the source thesis dropped lambda constants from its program
tokens, so a predicted program could never be rebuilt, run or compiled. Here every function is one
token (`lt_3`, `add_1`, `max`), so any token sequence that parses is a runnable program.

A lambda from elsewhere (Tracr's `lib`, a notebook) is recognised by extension: value sets are
finite, so a function is fully described by its table on the values its input can take, and the
first library function with the same table stands for it (`identify`).
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from typing import Any, Callable, Iterable, Mapping

from tracr.rasp import rasp

Value = Any


@dataclasses.dataclass(frozen=True)
class NamedFn:
    """A library function: one token in a program, callable like the lambda it replaces."""

    name: str
    arity: int
    fn: Callable[..., Value] = dataclasses.field(compare=False, repr=False)
    commutative: bool = False
    # Comparisons give booleans; only those may be numerically encoded, because Tracr's numerical
    # Aggregate can only average binary values.
    binary: bool = False

    def __call__(self, *args: Value) -> Value:
        return self.fn(*args)


#: Constants that comparison functions may use (`lt_0` … `lt_7`): enough for vocabularies and
#: sequence lengths up to 8. Arithmetic uses small constants so value sets stay small.
COMPARISON_CONSTANTS = range(0, 8)
ARITHMETIC_CONSTANTS = range(1, 4)

_COMPARISONS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
_ARITHMETIC = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "or": lambda x, c: x or c,
    "and": lambda x, c: x and c,
}


def _map_library() -> dict[str, NamedFn]:
    fns: dict[str, NamedFn] = {}
    for (stem, op), c in itertools.product(_COMPARISONS.items(), COMPARISON_CONSTANTS):
        fns[f"{stem}_{c}"] = NamedFn(f"{stem}_{c}", 1, lambda x, op=op, c=c: op(x, c), binary=True)
    for (stem, op), c in itertools.product(_ARITHMETIC.items(), ARITHMETIC_CONSTANTS):
        if stem == "mul" and c == 1:
            continue  # the identity
        fns[f"{stem}_{c}"] = NamedFn(f"{stem}_{c}", 1, lambda x, op=op, c=c: op(x, c))
    return fns


def _sequence_map_library() -> dict[str, NamedFn]:
    def fn(name: str, f: Callable[[Value, Value], Value], commutative: bool, binary=False):
        return name, NamedFn(name, 2, f, commutative=commutative, binary=binary)

    return dict(
        [
            fn("add", operator.add, True),
            fn("sub", operator.sub, False),
            fn("mul", operator.mul, True),
            fn("min", min, True),
            fn("max", max, True),
            fn("eq", operator.eq, True, binary=True),
            fn("ne", operator.ne, True, binary=True),
            fn("lt", operator.lt, False, binary=True),
            fn("gt", operator.gt, False, binary=True),
            fn("both", lambda x, y: bool(x) and bool(y), True, binary=True),
            fn("either", lambda x, y: bool(x) or bool(y), True, binary=True),
        ]
    )


MAP_FNS: Mapping[str, NamedFn] = _map_library()
SEQUENCE_MAP_FNS: Mapping[str, NamedFn] = _sequence_map_library()
#: Select predicates, named as in the thesis (and in `rasp.Comparison`).
PREDICATES: Mapping[str, rasp.Comparison] = {c.name: c for c in rasp.Comparison}


def _safe(fn: Callable[..., Value], *args: Value) -> Value:
    # Tracr ignores arithmetic errors when it infers value sets; so do we.
    try:
        return fn(*args)
    except ArithmeticError:
        return None


def table(fn: Callable[..., Value], value_sets: Iterable[Iterable[Value]]) -> dict[tuple, Value]:
    """The function's outputs on every combination of its inputs' values."""
    return {args: _safe(fn, *args) for args in itertools.product(*value_sets)}


def output_values(fn: Callable[..., Value], value_sets: Iterable[Iterable[Value]]) -> frozenset:
    """The values `fn` can produce, as Tracr's basis inference computes them (None dropped)."""
    return frozenset(v for v in table(fn, value_sets).values() if v is not None)


def identify(fn: Callable[..., Value], value_sets: list[Iterable[Value]]) -> NamedFn | None:
    """The first library function that agrees with `fn` on every reachable input, if any."""
    if isinstance(fn, NamedFn):
        return fn
    library = MAP_FNS if len(value_sets) == 1 else SEQUENCE_MAP_FNS
    try:
        wanted = table(fn, value_sets)
    except Exception:  # noqa: BLE001 - a foreign lambda may raise anything; then nothing matches
        return None
    for candidate in library.values():
        if table(candidate, value_sets) == wanted:
            return candidate
    return None


def identify_predicate(
    predicate: Callable[[Value, Value], bool], keys: Iterable[Value], queries: Iterable[Value]
) -> str | None:
    """The name of the first Comparison that agrees with `predicate` on all (key, query) pairs."""
    if isinstance(predicate, rasp.Comparison):
        return predicate.name
    pairs = list(itertools.product(keys, queries))
    try:
        wanted = [bool(predicate(k, q)) for k, q in pairs]
    except Exception:  # noqa: BLE001 - as in `identify`
        return None
    for name, comparison in PREDICATES.items():
        if [comparison(k, q) for k, q in pairs] == wanted:
            return name
    return None


def function(name: str, arity: int) -> NamedFn:
    """The library function called `name`; a clear error if there is none."""
    library = MAP_FNS if arity == 1 else SEQUENCE_MAP_FNS
    try:
        return library[name]
    except KeyError:
        kind = "Map" if arity == 1 else "SequenceMap"
        raise KeyError(f"unknown {kind} function {name!r}") from None
