"""Correct labels: screen programs on random inputs, then check compiled outputs against RASP.

Screening (before compiling) rejects programs whose outputs carry no information, and those Tracr
is known to compile wrongly: a categorical Aggregate whose selector picks several *different*
values (the compiled attention averages one-hot vectors; `rasp.evaluate` averages numbers).
Verification (after compiling) is the real gate: the compiled model's decoded outputs must equal
`rasp.evaluate` at every position where the program defines a value (Tracr's own convention:
positions where RASP gives None are not compared). Numerical outputs use Tracr's tolerance.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Sequence

from tracr.rasp import rasp

from inverse_tracr.compile import forward
from inverse_tracr.compile.model import CompiledModel
from inverse_tracr.programs import Program

RTOL, ATOL = 0.005, 1e-5
MAX_NONE_FRACTION = 0.5


def make_inputs(program: Program, n: int = 32, seed: int = 0) -> list[list[int]]:
    """`n` random inputs, a quarter (at least one) of maximum length; a function of program and seed."""
    rng = random.Random(f"{program.id}:{seed}")
    n_max = max(1, n // 4)
    lengths = [program.max_seq_len] * n_max + [rng.randint(1, program.max_seq_len) for _ in range(n - n_max)]
    return [[rng.choice(program.vocab) for _ in range(length)] for length in lengths]


class _Screening(rasp.DefaultRASPEvaluator):
    """rasp.evaluate that also notes categorical Aggregates over several different values."""

    def __init__(self):
        super().__init__()
        self.averaged = False

    def eval_aggregate(self, sop, xs):
        if rasp.is_categorical(sop):
            selector, values = self.evaluate(sop.selector, xs), self.evaluate(sop.sop, xs)
            for row in selector:
                if len({v for s, v in zip(row, values) if s}) > 1:
                    self.averaged = True
        return super().eval_aggregate(sop, xs)


def expected_outputs(program: Program, inputs: Sequence[Sequence[Any]]) -> tuple[list[list[Any]] | None, str | None]:
    """(RASP outputs, None), or (None, reason) when the program is not worth compiling."""
    evaluator, sop = _Screening(), program.to_rasp()
    try:
        outputs = [evaluator.evaluate(sop, list(xs)) for xs in inputs]
    except (ValueError, TypeError, ArithmeticError):
        return None, "evaluation_error"
    if evaluator.averaged:
        return None, "aggregate_not_unique"
    flat = [v for out in outputs for v in out]
    defined = [v for v in flat if v is not None]
    if len(defined) < (1 - MAX_NONE_FRACTION) * len(flat):
        return None, "mostly_none"
    if len(set(defined)) < 2:
        return None, "constant_output"
    if all(out == list(xs) for out, xs in zip(outputs, inputs)):
        return None, "identity"
    return outputs, None


@dataclasses.dataclass(frozen=True)
class Verification:
    """How the compiled model did against RASP (stored in meta.json)."""

    inputs: int
    positions: int  # positions compared (RASP output not None)
    mismatches: int

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and self.positions > 0

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def verify(model: CompiledModel, inputs: Sequence[Sequence[Any]], expected: Sequence[Sequence[Any]]) -> Verification:
    """Compare the compiled model's decoded outputs with the expected ones."""
    numerical = model.layout.output_values is None
    positions = mismatches = 0
    for got_row, want_row in zip(forward.run(model, inputs), expected):
        for got, want in zip(got_row, want_row):
            if want is None:
                continue
            positions += 1
            same = math.isclose(got, want, rel_tol=RTOL, abs_tol=ATOL) if numerical else got == want
            mismatches += not same
    return Verification(len(inputs), positions, mismatches)
