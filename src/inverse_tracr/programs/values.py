"""Values and types: what a program variable can hold, in which order, and how it is written as JSON.

A variable is a selector, or a sequence with an encoding (categorical or numerical) and a value set.
Value sets are tuples in **Tracr's order**: Tracr sorts every vector space's basis directions with
`BasisDirection.__lt__`, which compares values with `<` and, where two values cannot be compared
(a string and a number), compares their texts (`str(value)`: `"(" < "1" < "a"`). Embedding rows,
one-hot blocks of the residual stream and MLP tables are all laid out in this order, so a table
written in it is what the weights hold, row for row. (For a value set mixing strings and numbers
this comparison need not be transitive; the order is then still deterministic, and a test checks
it against Tracr's layout for a mixed vocabulary.)

Values may be booleans, integers, finite floats, strings, or tuples of those (Tracr's n-ary
SequenceMaps build tuples). JSON keeps their types exactly: `"1"` is not `1`, `1.0` is not `1`,
`true` is not `1`, and a tuple is written `{"tuple": [...]}`.

`result_type` mirrors `tracr.compiler.basis_inference` (a test compares the two), because Tracr
sizes every MLP and embedding from these sets.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any, Iterable, Sequence

import numpy as np

CATEGORICAL = "categorical"
NUMERICAL = "numerical"

Value = Any


class OperandError(ValueError):
    """An operation applied to operands or values it cannot take (the message says which and why)."""


# --- single values ---------------------------------------------------------------------------


def check(value: Value, where: str) -> Value:
    """`value` if Tracr and JSON can both carry it; else OperandError naming it and `where`."""
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OperandError(f"{where}: value {value!r} is not a finite number")
        return value
    if isinstance(value, np.generic):
        return check(value.item(), where)
    if isinstance(value, tuple):
        return tuple(check(v, where) for v in value)
    if value is None:
        raise OperandError(f"{where}: None is not a value (it means 'undefined' in RASP)")
    raise OperandError(f"{where}: value {value!r} of type {type(value).__name__} is not supported "
                       "(use booleans, integers, finite floats, strings or tuples of them)")


def is_number(value: Value) -> bool:
    return isinstance(value, (bool, int, float))


def number(value: Value, where: str) -> float:
    """A numerical variable's value as the float32 number the weights can carry (True is 1.0)."""
    if not is_number(value):
        raise OperandError(f"{where}: a numerical value must be a number, got {value!r}")
    result = float(np.float32(value))
    if not math.isfinite(result):
        raise OperandError(f"{where}: value {value!r} does not fit a float32 weight")
    return result


def _compare(a: Value, b: Value) -> int:
    """Tracr's `BasisDirection.__lt__` on two values of one variable."""
    try:
        return -1 if a < b else (1 if b < a else 0)
    except TypeError:
        # Tracr falls back to comparing `str(BasisDirection(name, value))`, which is "name:value":
        # the name is the same, so the values' texts decide.
        x, y = str(a), str(b)
        return -1 if x < y else (1 if y < x else 0)


def order(values: Iterable[Value]) -> tuple:
    """The distinct values in Tracr's order (see the module docstring)."""
    # A fixed pre-order makes the result independent of the values' given order: it picks which
    # of equal values (1, 1.0 and True are one value to Python and to Tracr) stands for them, and
    # fixes the order where Tracr's comparison is not a total one.
    unique: dict = {}
    for v in sorted(values, key=lambda v: (type(v).__name__, repr(v))):
        unique.setdefault(v, v)
    return tuple(sorted(unique.values(), key=functools.cmp_to_key(_compare)))


def to_json(value: Value) -> Any:
    if isinstance(value, tuple):
        return {"tuple": [to_json(v) for v in value]}
    return value


def from_json(data: Any, where: str) -> Value:
    """A value from JSON; OperandError for anything `to_json` does not write."""
    if isinstance(data, dict):
        if set(data) != {"tuple"} or not isinstance(data["tuple"], list):
            raise OperandError(f"{where}: malformed value {data!r}")
        return tuple(from_json(v, where) for v in data["tuple"])
    if isinstance(data, list):
        raise OperandError(f"{where}: a value cannot be a list, got {data!r}")
    return check(data, where)


def key(value: Value) -> str:
    """A type-exact text of a value (`1`, `1.0`, `true` and `"1"` all differ), for ids and sorting."""
    return json.dumps(to_json(value), separators=(",", ":"))


# --- variable types --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VarType:
    """A variable's type: `selector` (no values), or a sequence with an encoding and value set."""

    selector: bool = False
    encoding: str = CATEGORICAL
    values: tuple = ()  # in Tracr's order
    # May hold None (an Aggregate that selects nothing, and anything computed from it).
    nullable: bool = False

    @property
    def categorical(self) -> bool:
        return not self.selector and self.encoding == CATEGORICAL

    @property
    def numerical(self) -> bool:
        return not self.selector and self.encoding == NUMERICAL

    @property
    def binary(self) -> bool:
        """Only numerical variables with values in {0, 1} can be averaged by Tracr's attention.

        The test is Tracr's own (`int(v)` in {0, 1}, so fractions pass it too): a stricter one
        would refuse programs Tracr compiles."""
        return self.numerical and {int(v) for v in self.values} <= {0, 1}

    def index(self) -> dict:
        """Position of each value in the value set (how tables are indexed)."""
        return {v: i for i, v in enumerate(self.values)}


SELECTOR = VarType(selector=True)


def input_types(vocab: Sequence[Value], max_seq_len: int) -> dict[str, VarType]:
    return {
        "tokens": VarType(values=order(vocab)),
        "indices": VarType(values=tuple(range(max_seq_len))),
    }
