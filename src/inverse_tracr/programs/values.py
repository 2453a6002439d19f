"""What each program variable can hold: selector or sequence, its encoding, its value set.

The sampler uses these to reject, by construction, what Tracr cannot compile; `Program` uses them
to check a program before it is built. They mirror `tracr.compiler.basis_inference` exactly (a
test compares the two), because Tracr sizes every MLP and embedding from these sets.
"""

from __future__ import annotations

import dataclasses

from inverse_tracr.programs import library

CATEGORICAL = "categorical"
NUMERICAL = "numerical"


@dataclasses.dataclass(frozen=True)
class VarType:
    """A variable's type: `selector` (no values), or a sequence with an encoding and value set."""

    selector: bool = False
    encoding: str = CATEGORICAL
    values: frozenset = frozenset()
    # May hold None (an Aggregate that selects nothing, and anything computed from it).
    # `rasp.evaluate` crashes when None reaches a Select or is averaged, so the sampler avoids it.
    nullable: bool = False

    @property
    def categorical(self) -> bool:
        return not self.selector and self.encoding == CATEGORICAL

    @property
    def binary(self) -> bool:
        """Only numerical variables with values in {0, 1} can be averaged by Tracr's attention.

        The test is Tracr's own (`int(v)` in {0, 1}, so fractions pass it too): a stricter one
        would refuse programs Tracr compiles."""
        return not self.selector and {int(v) for v in self.values} <= {0, 1}


SELECTOR = VarType(selector=True)


def input_types(vocab: tuple, max_seq_len: int) -> dict[str, VarType]:
    return {
        "tokens": VarType(values=frozenset(vocab)),
        "indices": VarType(values=frozenset(range(max_seq_len))),
    }


class OperandError(ValueError):
    """An operation applied to operands it cannot take (message says which and why)."""


def result_type(op: str, fn: str | None, operands: list[VarType], max_seq_len: int) -> VarType:
    """The type of `op(fn, *operands)`, or OperandError saying why Tracr could not compile it."""
    nullable = any(o.nullable for o in operands)
    if op in ("Map", "NumericalMap"):
        (x,) = operands
        _need(x.categorical, f"{op} needs a categorical input")
        f = library.function(fn, 1)
        encoding = NUMERICAL if op == "NumericalMap" else CATEGORICAL
        _need(f.binary or encoding == CATEGORICAL, f"NumericalMap needs a comparison (0/1 valued), not {fn}")
        return VarType(encoding=encoding, values=library.output_values(f, [x.values]), nullable=nullable)
    if op == "SequenceMap":
        x, y = operands
        _need(x.categorical and y.categorical, "SequenceMap needs categorical inputs")
        f = library.function(fn, 2)
        return VarType(values=library.output_values(f, [x.values, y.values]), nullable=nullable)
    if op == "Select":
        keys, queries = operands
        _need(keys.categorical and queries.categorical, "Select needs categorical keys and queries")
        _need(fn in library.PREDICATES, f"unknown predicate {fn!r}")
        return SELECTOR
    if op == "Aggregate":
        selector, sop = operands
        _need(selector.selector, "Aggregate needs a selector first")
        _need(not sop.selector, "Aggregate needs a sequence to aggregate")
        if sop.encoding == NUMERICAL:
            _need(sop.binary, "a numerical Aggregate can only average 0/1 values")
            fractions = {v / n for v in sop.values for n in range(1, max_seq_len + 1)}
            return VarType(encoding=NUMERICAL, values=frozenset(fractions))
        return VarType(values=sop.values, nullable=True)
    if op == "SelectorWidth":
        (selector,) = operands
        _need(selector.selector, "SelectorWidth needs a selector")
        return VarType(values=frozenset(range(0, max_seq_len + 1)))
    raise OperandError(f"unknown operation {op!r}")


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise OperandError(message)
