"""Named functions and predicates: readable aliases of tables, and what the sampler draws from.

A program's functions are tables (`ops`); a name such as `lt_3` is only how a table is shown and,
for the meta-model, one token instead of a row of them. A table has an alias when a library
function gives the same table on the line's operand values (after the same relabelling of
intermediate values, see `program.canonicalize`); when several do, the first in library order wins,
so the alias, like the table, is a function of the weights.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
from typing import Any, Callable, Mapping, Sequence

from tracr.rasp import rasp

from inverse_tracr.programs import ops, values
from inverse_tracr.programs.values import VarType

Value = Any


@dataclasses.dataclass(frozen=True)
class NamedFn:
    """A library function: one token in a program, callable like the lambda it replaces."""

    name: str
    arity: int
    fn: Callable[..., Value] = dataclasses.field(compare=False, repr=False)
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
#: Shown for a table that copies its input (an alias only: the sampler never draws it).
IDENTITY = "id"


def _map_library() -> dict[str, NamedFn]:
    fns: dict[str, NamedFn] = {IDENTITY: NamedFn(IDENTITY, 1, lambda x: x)}
    for (stem, op), c in itertools.product(_COMPARISONS.items(), COMPARISON_CONSTANTS):
        fns[f"{stem}_{c}"] = NamedFn(f"{stem}_{c}", 1, lambda x, op=op, c=c: op(x, c), binary=True)
    for (stem, op), c in itertools.product(_ARITHMETIC.items(), ARITHMETIC_CONSTANTS):
        if stem == "mul" and c == 1:
            continue  # the identity
        fns[f"{stem}_{c}"] = NamedFn(f"{stem}_{c}", 1, lambda x, op=op, c=c: op(x, c))
    return fns


def _sequence_map_library() -> dict[str, NamedFn]:
    functions = {
        "add": operator.add,
        "sub": operator.sub,
        "mul": operator.mul,
        "min": min,
        "max": max,
        "eq": operator.eq,
        "ne": operator.ne,
        "lt": operator.lt,
        "gt": operator.gt,
        "both": lambda x, y: bool(x) and bool(y),
        "either": lambda x, y: bool(x) or bool(y),
    }
    comparisons = {"eq", "ne", "lt", "gt", "both", "either"}
    return {name: NamedFn(name, 2, f, binary=name in comparisons) for name, f in functions.items()}


MAP_FNS: Mapping[str, NamedFn] = _map_library()
SEQUENCE_MAP_FNS: Mapping[str, NamedFn] = _sequence_map_library()
#: Select predicates, named as in the thesis (and in `rasp.Comparison`).
PREDICATES: Mapping[str, rasp.Comparison] = {c.name: c for c in rasp.Comparison}


def names(op: str) -> Mapping[str, Callable[..., Value]]:
    """The library for an operation's function: Map functions, SequenceMap functions or predicates."""
    if op in ("Map", "NumericalMap"):
        return MAP_FNS
    if op == "SequenceMap":
        return SEQUENCE_MAP_FNS
    if op == "Select":
        return PREDICATES
    return {}


def named_table(op: str, name: str, operands: Sequence[VarType]) -> ops.Table:
    """The table of library function `name` on the operands' values; KeyError if there is none."""
    library = names(op)
    if name not in library:
        kind = "predicate" if op == "Select" else f"{op} function"
        raise KeyError(f"unknown {kind} {name!r}")
    fn = library[name]
    table = ops.tabulate(fn, [o.values for o in operands])
    return tuple(bool(v) for v in table) if op == "Select" else table


def alias(op: str, table: ops.Table, operands: Sequence[VarType], relabelled: bool) -> str | None:
    """The first library name whose table on these operands is `table`, if any.

    `relabelled`: the line's output values are ranks (an intermediate categorical variable), so a
    library function matches when its outputs, ranked the same way, do."""
    return _names_by_signature(op, _ValueSets(tuple(o.values for o in operands)), relabelled).get(signature(op, table, relabelled))


@dataclasses.dataclass(frozen=True, eq=False)
class _ValueSets:
    """Operands' value sets as a cache key, compared type-exactly (`1`, `1.0` and `True` are equal
    in Python but are different values, on which a library function may differ)."""

    sets: tuple[tuple, ...]

    @functools.cached_property
    def _exact(self) -> tuple:
        return tuple(tuple(map(_exact, s)) for s in self.sets)

    def __eq__(self, other) -> bool:
        return isinstance(other, _ValueSets) and self._exact == other._exact

    def __hash__(self) -> int:
        return hash(self._exact)


def _exact(value: Value) -> tuple:
    return (type(value), tuple(map(_exact, value)) if isinstance(value, tuple) else value)


@functools.lru_cache(maxsize=4096)
def _names_by_signature(op: str, operands: _ValueSets, relabelled: bool) -> dict[tuple, str]:
    """Each library table's signature on these operand values -> its first name in library order.

    Cached: a zoo's programs see few distinct value sets, and decoding every training sample
    otherwise tabulates the whole library for each of its functions."""
    found: dict[tuple, str] = {}
    for name in names(op):
        try:
            found.setdefault(signature(op, named_table(op, name, [VarType(values=s) for s in operands.sets]), relabelled), name)
        except Exception:  # noqa: BLE001 - a library function may not apply to these values at all
            continue
    return found


def signature(op: str, table: ops.Table, relabelled: bool) -> tuple:
    """What of a table the weights fix: its outputs, as ranks where the output is relabelled."""
    if op == "NumericalMap":
        return tuple(values.number(v, op) for v in table)
    if relabelled:
        rank = {v: i for i, v in enumerate(ops.image(table))}
        return tuple(None if v is None else rank[v] for v in table)
    return tuple(None if v is None else values.key(v) for v in table)
