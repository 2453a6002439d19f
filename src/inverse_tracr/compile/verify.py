"""Correct labels: screen programs, then check compiled outputs against RASP — on every input if we can.

Screening (before compiling) rejects programs whose outputs carry no information, and those Tracr
is known to compile wrongly: a categorical Aggregate whose selector picks several *different*
values (the compiled attention averages one-hot vectors; `rasp.evaluate` averages numbers).
Verification (after compiling) is the real gate: the compiled model's decoded outputs must equal
`rasp.evaluate` at every position where the program defines a value (Tracr's own convention:
positions where RASP gives None are not compared). Numerical outputs use Tracr's tolerance.

Inputs: *every* sequence when there are at most `EXHAUSTIVE_LIMIT` of them (3,905 for vocabulary
5 and length 5), so a model that is wrong on one input among thousands is caught; otherwise a
random sample with a quarter at full length. Programs are evaluated in NumPy (`programs.batch`),
which makes the exhaustive check cost about what one compilation does.

A causal program is compiled causally masked and evaluated masked (Tracr's `causal_eval`), so
everything here holds for it unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from typing import Any, Sequence

import numpy as np

from inverse_tracr.compile import forward
from inverse_tracr.compile.model import CompiledModel
from inverse_tracr.programs import Program
from inverse_tracr.programs.batch import Batch, decode, evaluate_batch

RTOL, ATOL = 0.005, 1e-5
#: A distilled student's numerical outputs agree when within this absolute difference: they are
#: fractions k/n with n ≤ max_seq_len, at least 1/20 apart, so 0.02 still tells every two apart.
STUDENT_ATOL = 0.02
MAX_NONE_FRACTION = 0.5
#: Input spaces up to this many sequences are checked exhaustively.
EXHAUSTIVE_LIMIT = 5000


def input_space(vocab: Sequence[Any], max_seq_len: int) -> int:
    """How many input sequences there are (lengths 1 … max_seq_len)."""
    return sum(len(vocab) ** length for length in range(1, max_seq_len + 1))


def make_inputs(program: Program, n: int = 32, seed: int = 0) -> list[list[Any]]:
    """`n` random inputs, a quarter (at least one) of maximum length; a function of program and seed."""
    rng = random.Random(f"{program.id}:{seed}")
    n_max = max(1, n // 4)
    lengths = [program.max_seq_len] * n_max + [rng.randint(1, program.max_seq_len) for _ in range(n - n_max)]
    return [[rng.choice(program.vocab) for _ in range(length)] for length in lengths]


def check_inputs(program: Program, n: int = 1024, seed: int = 0) -> list[list[Any]]:
    """Every input if there are at most EXHAUSTIVE_LIMIT, else `make_inputs(program, n, seed)`."""
    if input_space(program.vocab, program.max_seq_len) > EXHAUSTIVE_LIMIT:
        return make_inputs(program, n, seed)
    return all_inputs(program.vocab, program.max_seq_len)


def all_inputs(vocab: Sequence[Any], max_seq_len: int) -> list[list[Any]]:
    """Every input sequence of lengths 1 … max_seq_len, shortest first."""
    return [list(xs) for length in range(1, max_seq_len + 1) for xs in itertools.product(vocab, repeat=length)]


def screen(program: Program, inputs: Sequence[Sequence[Any]]) -> tuple[Batch | None, str | None]:
    """(the program's outputs on the inputs, None), or (None, reason) when it is not worth compiling."""
    try:
        batch = evaluate_batch(program, inputs, mean=False)
    except (ValueError, TypeError, ArithmeticError):
        return None, "evaluation_error"
    if batch.irregular.any():  # an Aggregate averaged several values: Tracr's attention cannot
        try:
            program.evaluate(inputs[batch.rows[int(batch.irregular.argmax())]])
        except (ValueError, TypeError, ArithmeticError):
            return None, "evaluation_error"
        return None, "aggregate_not_unique"
    output = program.types[program.output]
    defined, present = batch.defined, batch.present
    if defined.sum() < (1 - MAX_NONE_FRACTION) * present.sum():
        return None, "mostly_none"
    if len(np.unique(batch.output[defined])) < 2:
        return None, "constant_output"
    if output.categorical and (defined == present).all():
        as_token = np.array([program.types["tokens"].index().get(v, -1) for v in output.values])
        if (as_token[batch.output] == batch.tokens)[present].all():
            return None, "identity"
    return batch, None


def expected_outputs(program: Program, inputs: Sequence[Sequence[Any]]) -> tuple[list[list[Any]] | None, str | None]:
    """(RASP outputs, None), or (None, reason) when the program is not worth compiling."""
    batch, reason = screen(program, inputs)
    if batch is None:
        return None, reason
    outputs: list[list[Any]] = [[] for _ in inputs]
    for i, row in zip(batch.rows, decode(batch, program.types[program.output])):
        outputs[i] = row
    return outputs, None


@dataclasses.dataclass(frozen=True)
class Verification:
    """How the compiled model did against RASP (stored in meta.json)."""

    inputs: int
    positions: int  # positions compared (RASP output not None)
    mismatches: int
    exhaustive: bool = False  # every input sequence was checked

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and self.positions > 0

    @classmethod
    def of(cls, agreement) -> "Verification":
        """From a behavioural check (`compile.check.Agreement`)."""
        return cls(agreement.inputs, agreement.positions, agreement.positions - agreement.matches, agreement.exhaustive)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def verify(model: CompiledModel, inputs: Sequence[Sequence[Any]], expected: Sequence[Sequence[Any]], exhaustive: bool = False) -> Verification:
    """Compare the compiled model's decoded outputs with the expected ones."""
    numerical = model.layout.output_values is None
    positions = mismatches = 0
    for got_row, want_row in zip(forward.run(model, inputs), expected):
        for got, want in zip(got_row, want_row):
            if want is None:
                continue
            positions += 1
            mismatches += not same_value(got, want, numerical)
    return Verification(len(inputs), positions, mismatches, exhaustive)


def same_value(got: Any, want: Any, numerical: bool, rtol: float = RTOL, atol: float = ATOL) -> bool:
    """A model's output against RASP's: numbers within Tracr's tolerance (or the one given), labels
    equal (a label where a number is due is simply not equal)."""
    if not numerical:
        return got == want
    numbers = (int, float)
    return isinstance(got, numbers) and isinstance(want, numbers) and math.isclose(got, want, rel_tol=rtol, abs_tol=atol)
