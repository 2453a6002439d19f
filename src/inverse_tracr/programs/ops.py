"""The operations a program line can hold: what each takes, what it gives, and its function as a table.

On finite value sets a function *is* its table, and the table is exactly what Tracr writes into
the weights: an MLP's lookup rows, an attention head's key × query pattern. So a line's function
is stored as its table — outputs on every combination of its operands' values, row-major in the
operands' order, each value set in Tracr's order (`values.order`):

    Map                     table over x            categorical output (x categorical or numerical)
    NumericalMap            table over x            numerical output
    SequenceMap             table over x × y        categorical, both operands categorical
    LinearSequenceMap       (a, b): a·x + b·y       numerical, both operands numerical
    Select                  booleans over keys × queries
    Aggregate               —                       the encoding of what it averages
    SelectorWidth           —                       categorical 0 … max_seq_len
    NumericalSelectorWidth  —                       numerical 0 … max_seq_len

A None entry in a categorical table means "undefined" (the function raised an arithmetic error, as
Tracr's basis inference allows): the compiled MLP writes nothing there, and RASP gives None.
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Any, Callable, Sequence

from tracr.rasp import rasp

from inverse_tracr.programs import values
from inverse_tracr.programs.values import NUMERICAL, SELECTOR, OperandError, VarType

OPS = (
    "Map",
    "NumericalMap",
    "SequenceMap",
    "LinearSequenceMap",
    "Select",
    "Aggregate",
    "SelectorWidth",
    "NumericalSelectorWidth",
)
#: Operations whose function is a table over their operands' value sets.
TABLE_OPS = frozenset({"Map", "NumericalMap", "SequenceMap", "Select"})
#: Operations with a function (a table, or LinearSequenceMap's two factors).
FUNCTION_OPS = TABLE_OPS | {"LinearSequenceMap"}
#: Number of operands of each operation.
ARITY = {
    "Map": 1,
    "NumericalMap": 1,
    "SequenceMap": 2,
    "LinearSequenceMap": 2,
    "Select": 2,
    "Aggregate": 2,
    "SelectorWidth": 1,
    "NumericalSelectorWidth": 1,
}

Table = tuple


def tabulate(f: Callable[..., Any], value_sets: Sequence[Sequence[Any]]) -> Table:
    """f on every combination of its inputs' values (row-major); None where it raises an
    arithmetic error, as Tracr's basis inference ignores those. Any other error is an
    OperandError naming the input."""
    out = []
    for args in itertools.product(*value_sets):
        try:
            out.append(f(*args))
        except ArithmeticError:
            out.append(None)
        except Exception as error:  # noqa: BLE001 - a user's lambda may raise anything
            shown = args[0] if len(args) == 1 else args
            raise OperandError(f"its function raises {type(error).__name__} ({error}) on {shown!r}") from None
    return tuple(out)


def table_size(op: str, operands: Sequence[VarType]) -> int:
    return math.prod(len(o.values) for o in operands) if op in TABLE_OPS else 2


def image(table: Table) -> tuple:
    """The values a table can produce, in Tracr's order (None dropped)."""
    return values.order(v for v in table if v is not None)


def result_type(op: str, fn: Table | None, operands: Sequence[VarType], max_seq_len: int) -> VarType:
    """The type of `op(fn, *operands)`, or OperandError saying why Tracr could not compile it."""
    if op not in ARITY:
        raise OperandError(f"unknown operation {op!r} (expected one of {', '.join(OPS)})")
    _need(len(operands) == ARITY[op], f"{op} takes {ARITY[op]} operand(s), got {len(operands)}")
    if op in FUNCTION_OPS:
        _need(isinstance(fn, tuple), f"{op} needs a function table")
        size = table_size(op, operands)
        _need(len(fn) == size, f"{op} table has {len(fn)} entries; its operands' value sets need {size}")
    nullable = any(o.nullable for o in operands)
    if op in ("Map", "NumericalMap"):
        (x,) = operands
        _need(not x.selector, f"{op} needs a sequence, not a selector")
        if op == "NumericalMap":
            _need(None not in fn, "a NumericalMap must be defined on every input value")
            outputs = [values.number(v, op) for v in fn]
            return VarType(encoding=NUMERICAL, values=values.order(outputs), nullable=nullable)
        return VarType(values=image(_checked(fn, op)), nullable=nullable)
    if op == "SequenceMap":
        _need(all(o.categorical for o in operands), "SequenceMap needs categorical operands")
        return VarType(values=image(_checked(fn, op)), nullable=nullable)
    if op == "LinearSequenceMap":
        x, y = operands
        _need(x.numerical and y.numerical, "LinearSequenceMap needs numerical operands")
        a, b = (values.number(v, op) for v in fn)
        sums = {a * u + b * w for u in x.values for w in y.values}
        return VarType(encoding=NUMERICAL, values=values.order(sums), nullable=nullable)
    if op == "Select":
        keys, queries = operands
        _need(keys.categorical and queries.categorical, "Select needs categorical keys and queries")
        _need(all(isinstance(v, bool) for v in fn), "a Select table holds booleans")
        return SELECTOR
    if op == "Aggregate":
        selector, sop = operands
        _need(selector.selector, "Aggregate needs a selector first")
        _need(not sop.selector, "Aggregate needs a sequence to aggregate")
        if sop.numerical:
            _need(sop.binary, f"a numerical Aggregate can only average 0/1 values, not {list(sop.values)}")
            fractions = {v / n for v in sop.values for n in range(1, max_seq_len + 1)}
            return VarType(encoding=NUMERICAL, values=values.order(fractions))
        return VarType(values=sop.values, nullable=True)
    (selector,) = operands  # SelectorWidth, NumericalSelectorWidth
    _need(selector.selector, f"{op} needs a selector")
    encoding = NUMERICAL if op == "NumericalSelectorWidth" else values.CATEGORICAL
    return VarType(encoding=encoding, values=tuple(range(0, max_seq_len + 1)))


def _checked(table: Table, op: str) -> Table:
    return tuple(None if v is None else values.check(v, f"{op} output") for v in table)


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise OperandError(message)


# --- RASP ------------------------------------------------------------------------------------


def function(op: str, fn: Table, operands: Sequence[VarType]) -> Callable[..., Any]:
    """The table as the Python function RASP calls (None in, None out: as the compiled model,
    whose residual holds nothing for an undefined value)."""
    if op in ("Map", "NumericalMap") and operands[0].numerical:
        return _step(operands[0].values, fn)
    if op in ("Map", "NumericalMap"):
        index = operands[0].index()
        return lambda x: None if x is None else fn[_at(index, x)]
    if op == "SequenceMap":
        ix, iy, ny = operands[0].index(), operands[1].index(), len(operands[1].values)
        return lambda x, y: fn[_at(ix, x) * ny + _at(iy, y)]
    if op == "Select":
        ik, iq, nq = operands[0].index(), operands[1].index(), len(operands[1].values)
        return lambda k, q: k is not None and q is not None and fn[_at(ik, k) * nq + _at(iq, q)]
    raise ValueError(f"{op} has no table function")


def _step(xs: Sequence[float], table: Table) -> Callable[[Any], Any]:
    """A table on a numerical input as Tracr's discretising MLP computes it: each input falls in
    the interval, between midpoints of the (defined) input values, of the nearest one — also
    values outside the value set, which a numerical Aggregate can produce."""
    defined = [(x, y) for x, y in zip(xs, table) if y is not None]
    thresholds = [(a + b) / 2 for (a, _), (b, _) in zip(defined, defined[1:])]
    if not defined:
        return lambda x: None
    return lambda x: None if x is None else defined[bisect.bisect_right(thresholds, x)][1]


def _at(index: dict, value: Any) -> int:
    try:
        return index[value]
    except (KeyError, TypeError):
        raise ValueError(f"value {value!r} is outside the operand's value set {list(index)}") from None


def to_rasp(op: str, fn: Table | None, args: Sequence[rasp.RASPExpr], operands: Sequence[VarType],
            result: VarType) -> rasp.RASPExpr:
    """One line as a RASP expression (annotated with its encoding)."""
    if op in ("Map", "NumericalMap"):
        expr = rasp.Map(function(op, fn, operands), args[0], simplify=False)
    elif op == "SequenceMap":
        expr = rasp.SequenceMap(function(op, fn, operands), *args)
    elif op == "LinearSequenceMap":
        expr = rasp.LinearSequenceMap(args[0], args[1], *fn)
    elif op == "Select":
        return rasp.Select(args[0], args[1], function(op, fn, operands))
    elif op == "Aggregate":
        expr = rasp.Aggregate(args[0], args[1], default=0 if result.numerical else None)
    else:
        expr = rasp.SelectorWidth(args[0])
    return rasp.numerical(expr) if result.numerical else rasp.categorical(expr)
