"""A program evaluated on many inputs at once, in NumPy: what `rasp.evaluate` gives, ~100× faster.

Checking a model exhaustively (all 3,905 inputs of vocabulary 5 and length 5) and checking many
candidate programs against a model both evaluate one program on thousands of inputs; `rasp.evaluate`
takes ~0.1 s for that, this a millisecond or two. Because every function is a table, every
categorical variable is an array of positions in its value set (−1 for None) and every numerical
one an array of floats (NaN for None), and each line is one indexing operation.

A categorical Aggregate that selects several different numbers gives their mean, as
`rasp.evaluate` does (checking candidates that average on Tracr's sort went input by input
through `rasp.evaluate`, 0.5 s a candidate): where the mean is one of the variable's values, that
value (a table looks 2.0 up as 2); else OUTSIDE. A table that reads OUTSIDE raises in
`rasp.evaluate`, and so does averaging None or strings: such an input is marked `raises`, and its
output is None everywhere (as a caller takes an input the program raises on); an output that holds
OUTSIDE is marked `outside`. What only `rasp.evaluate` can say — a mean of means, of fractions
(summed in another order, the last bit may differ), a causal selector asked of OUTSIDE — is marked
`irregular`. `evaluate_many` evaluates every marked input with `rasp.evaluate` itself, so its result
is always `rasp.evaluate`'s. A program to compile is screened with `mean=False`: Tracr's attention
cannot average a categorical value, so every input where different values are averaged is
`irregular`.

A causal program (`Program.causal`) is evaluated as Tracr's `causal_eval` evaluates it, which is
what a model compiled with `causal=True` computes: every selector is masked to keys at positions
≤ its query's (`Program.evaluate` routes the marked inputs there too).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from inverse_tracr.programs import ops
from inverse_tracr.programs.program import Line, Program
from inverse_tracr.programs.values import VarType

#: A categorical array holds positions in the value set, NONE for None and OUTSIDE for a mean that
#: is none of the values (which number it is, is not kept).
NONE, OUTSIDE = -1, -2
#: Per input, what a line leaves to rasp.evaluate: nothing (0), an exception, or a value to compute.
RAISES, IRREGULAR = 1, 2


def evaluate_many(program: Program, inputs: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """`[program.evaluate(xs) for xs in inputs]`, batched; raises what `rasp.evaluate` raises."""
    outputs, irregular = evaluate_regular(program, inputs)
    for i in np.flatnonzero(irregular):
        outputs[i] = program.evaluate(inputs[i])
    return outputs


@dataclasses.dataclass
class Batch:
    """A program's outputs on many inputs, padded to the longest: one array for inputs of every
    length (a line costs about as much on a few inputs as on a thousand, so grouping inputs by
    length cost a search five times the lines for vocabulary 5 and length 5)."""

    rows: list[int]  # positions in the given inputs (the non-empty ones, in order)
    tokens: np.ndarray  # [B, T] positions in the vocabulary; NONE past an input's end
    #: [B, T] positions in the output's value set (NONE: None, and past an input's end; OUTSIDE: a
    #: mean that is none of the values), or floats (NaN: None)
    output: np.ndarray
    irregular: np.ndarray  # [B] an Aggregate averaged what only rasp.evaluate can say (module docstring)
    raises: np.ndarray  # [B] rasp.evaluate raises (the output is None everywhere)

    @property
    def present(self) -> np.ndarray:
        """[B, T]: the positions an input has."""
        return self.tokens != NONE

    @property
    def defined(self) -> np.ndarray:
        """[B, T]: where the program's output is not None."""
        return ~np.isnan(self.output) if self.output.dtype.kind == "f" else self.output != NONE

    @property
    def outside(self) -> np.ndarray:
        """[B]: inputs where the output holds a mean that is none of its values (rasp.evaluate knows which)."""
        return np.zeros(len(self.rows), bool) if self.output.dtype.kind == "f" else (self.output == OUTSIDE).any(axis=-1)


def evaluate_batch(program: Program, inputs: Sequence[Sequence[Any]], mean: bool = True) -> Batch:
    """The program's output on every non-empty input; `mean=False` marks every input where
    several different values were averaged (module docstring)."""
    return evaluate_tokens(program, *tokenise(program.types["tokens"], inputs), mean)


def tokenise(tokens: VarType, inputs: Sequence[Sequence[Any]]) -> tuple[list[int], np.ndarray]:
    """The non-empty inputs: their positions in `inputs`, and their tokens' positions in the value
    set of `tokens` [B, T] (NONE past an input's end) — the same for every program of one
    vocabulary, so a caller that evaluates many keeps them (`evaluate_tokens`)."""
    rows = [i for i, xs in enumerate(inputs) if len(xs)]
    array = np.full((len(rows), max((len(inputs[i]) for i in rows), default=0)), NONE, np.int64)
    token_index = tokens.index()
    try:
        for r, i in enumerate(rows):
            array[r, :len(inputs[i])] = [token_index[x] for x in inputs[i]]
    except (KeyError, TypeError) as error:
        raise ValueError(f"input token {error.args[0]!r} is not in the vocabulary {list(tokens.values)}") from None
    return rows, array


def evaluate_tokens(program: Program, rows: list[int], tokens: np.ndarray, mean: bool = True) -> Batch:
    """`evaluate_batch` on inputs already `tokenise`d."""
    return batch_of(rows, tokens, *_run(program, tokens, mean))


def batch_of(rows: list[int], tokens: np.ndarray, output: np.ndarray, flags: np.ndarray | int) -> Batch:
    """The Batch of a program's `output` and its lines' `flags` (the largest, per input): an input
    where rasp.evaluate raises has no output at all (every position None), as `Behaviour` takes an
    input on which the program raises."""
    flags = np.broadcast_to(flags, len(rows))
    raises = flags == RAISES
    if raises.any():
        output = np.where(raises[:, None], np.nan if output.dtype.kind == "f" else NONE, output)
    return Batch(rows, tokens, output, flags == IRREGULAR, raises)


def evaluate_regular(program: Program, inputs: Sequence[Sequence[Any]]) -> tuple[list[list[Any] | None], np.ndarray]:
    """(outputs, irregular): outputs of inputs where every line is a table lookup; the others
    are None and flagged in `irregular` [N] (there `rasp.evaluate` averages numbers into a value
    outside a variable's value set, or raises)."""
    outputs: list[list[Any] | None] = [[] if len(xs) == 0 else None for xs in inputs]
    irregular = np.zeros(len(inputs), bool)
    batch = evaluate_batch(program, inputs)
    bad_rows = batch.irregular | batch.raises | batch.outside  # rasp.evaluate says, or raises
    for i, row, bad in zip(batch.rows, decode(batch, program.types[program.output]), bad_rows):
        irregular[i] = bad
        outputs[i] = None if bad else row
    return outputs, irregular


def _run(program: Program, tokens: np.ndarray, mean: bool) -> tuple[np.ndarray, np.ndarray]:
    """The output array [B, T] for token positions [B, T], and every input's largest flag [B]."""
    env = inputs(tokens)
    visible = visible_keys(program, tokens.shape[1])
    flags = np.zeros(tokens.shape[0], np.int8)
    for line in program.lines:
        env[line.ret], flag = run_line(line, env, program.types, visible, mean)
        flags = np.maximum(flags, flag)
    return env[program.output], flags


def inputs(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The environment a program starts from: `tokens` [B, T] (vocabulary positions, NONE past an
    input's end) and `indices` (NONE there too). Every line gives None where its operands are None,
    and no Select selects it, so past an input's end every variable is None — but for
    SelectorWidth and Aggregate, which give a value where nothing is selected (`run_line` clears it)."""
    return {"tokens": tokens, "indices": np.where(tokens != NONE, np.arange(tokens.shape[1]), NONE)}


def visible_keys(program: Program, length: int) -> np.ndarray | bool:
    """[Tq, Tk]: the keys a query may see (all of them, unless the program is causal)."""
    return np.tril(np.ones((length, length), bool)) if program.causal else True


def run_line(line: Line, env: dict[str, np.ndarray], types: dict[str, VarType], visible: np.ndarray | bool,
             mean: bool = True) -> tuple[np.ndarray, np.ndarray | int]:
    """One line's values on the batch `env` holds, and a flag per input [B] (0 for none): RAISES
    where rasp.evaluate raises, IRREGULAR where only it can say what the line gives (`mean`: see
    `evaluate_batch`)."""
    args = [env[o] for o in line.operands]
    operands = [types[o] for o in line.operands]
    result = types[line.ret]
    if line.op == "Aggregate":  # past an input's end nothing is selected: a categorical value is NONE already
        values, flags = _aggregate(args[0], args[1], operands[1], mean)
        return (np.where(env["indices"] == NONE, np.nan, values) if operands[1].numerical else values), flags
    if line.op in ("SelectorWidth", "NumericalSelectorWidth"):  # the width is its own position in 0 … L
        width = np.where(env["indices"] == NONE, NONE, args[0].sum(axis=-1))
        return (np.where(width == NONE, np.nan, width) if result.numerical else width), 0
    if line.op == "LinearSequenceMap":
        return line.fn[0] * args[0] + line.fn[1] * args[1], 0
    if line.op in ("Map", "NumericalMap"):
        values = _map(line.fn, args[0], operands[0], result)
    elif line.op == "SequenceMap":
        flat = table_index(args[0], args[1], len(operands[1].values))
        values = np.where(flat >= 0, _lut(line.fn, result)[np.maximum(flat, 0)], NONE)
    else:  # Select
        keys, queries = args
        matrix = np.array(line.fn, bool).reshape(len(operands[0].values), len(operands[1].values))
        selected = matrix[np.maximum(keys, 0)[:, None, :], np.maximum(queries, 0)[:, :, None]]  # [B, Tq, Tk]
        values = selected & (keys >= 0)[:, None, :] & (queries >= 0)[:, :, None] & visible
    # A table cannot look up a mean that is none of its values: rasp.evaluate raises there — for a
    # Select, where the predicate is asked of it (every pair where neither is None).
    outside = [t.categorical and a.size > 0 and a.min() <= OUTSIDE for a, t in zip(args, operands)]
    if not any(outside):
        return values, 0
    given = [a != NONE for a in args]
    if line.op == "Select":
        asked = [(args[k] == OUTSIDE).any(axis=-1) & given[1 - k].any(axis=-1) for k in (0, 1)]
        raises = asked[0] | asked[1]
        return values, np.where(raises, IRREGULAR if visible is not True else RAISES, 0)  # causal: rasp must say
    raises = np.any([args[k] == OUTSIDE for k in range(len(args)) if outside[k]], axis=0) & np.all(given, axis=0)
    return values, np.where(raises.any(axis=-1), RAISES, 0)


def table_index(x: np.ndarray, y: np.ndarray, ny: int) -> np.ndarray:
    """Where a two-operand table is read for operand positions x, y (row-major; NONE where either is None)."""
    return np.where((x >= 0) & (y >= 0), x * ny + y, NONE)


def _lut(table: ops.Table, result: VarType) -> np.ndarray:
    """Table entries as positions in the result's value set (NONE: None), or as floats."""
    if result.numerical:
        return np.array([np.nan if v is None else float(v) for v in table])
    index = result.index()
    return np.array([NONE if v is None else index[v] for v in table], np.int64)


def _map(table: ops.Table, x: np.ndarray, operand: VarType, result: VarType) -> np.ndarray:
    lut = _lut(table, result)
    missing = np.nan if result.numerical else NONE
    if operand.numerical:  # Tracr's discretising MLP: the interval of the nearest defined value
        defined = [i for i, v in enumerate(table) if v is not None]
        if not defined:
            return np.full(x.shape, missing)
        points = np.array([operand.values[i] for i in defined], float)
        regions = np.searchsorted((points[1:] + points[:-1]) / 2, np.nan_to_num(x), side="right")
        return np.where(np.isnan(x), missing, lut[np.array(defined)][regions])
    return np.where(x >= 0, lut[np.maximum(x, 0)], missing)


def _aggregate(selector: np.ndarray, values: np.ndarray, sop: VarType, mean: bool) -> tuple[np.ndarray, np.ndarray]:
    """(result [B, T], flags [B]: see `run_line`)."""
    count = selector.sum(axis=-1)  # [B, Tq]
    several = count > 1
    if sop.numerical:  # the mean (default 0); one selected None is None, several raise
        none = (np.isnan(values)[:, None, :] & selector).any(axis=-1)
        total = np.where(selector, np.nan_to_num(values)[:, None, :], 0.0).sum(axis=-1)
        average = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        return np.where(none & (count == 1), np.nan, average), np.where((none & several).any(axis=-1), RAISES if mean else IRREGULAR, 0)
    low = np.where(selector, values[:, None, :], np.iinfo(np.int64).max).min(axis=-1)
    high = np.where(selector, values[:, None, :], np.iinfo(np.int64).min).max(axis=-1)
    result = np.where(count == 1, low, NONE)  # one selected: itself (None, or a mean outside the values, too)
    all_numbers = all(isinstance(v, (bool, int, float)) for v in sop.values)
    equal = several & (low == high) & (low >= 0) & all_numbers
    result = np.where(equal, low, result)
    averaged = several & ~equal
    if not averaged.any():
        return result, 0
    if not mean:
        return result, np.where(averaged.any(axis=-1), IRREGULAR, 0)
    # rasp.evaluate averages several numbers, and raises on None or anything else among them
    has = lambda v: (selector & (values == v)[:, None, :]).any(axis=-1)  # noqa: E731
    raises = averaged & (has(NONE) | (not all_numbers))
    unknown = averaged & ~raises & has(OUTSIDE)  # a mean of means: the numbers are not kept
    if sop.values and all_numbers and all(float(v).is_integer() for v in sop.values):
        # Whole numbers sum exactly, so the mean is rasp's to the bit; where it is one of the
        # values, downstream lines read it as that value (a table looks 2.0 up as 2).
        numbers = np.array(sop.values, float)
        total = np.where(selector, numbers[np.maximum(values, 0)][:, None, :], 0.0).sum(axis=-1)
        at = _positions(numbers, total / np.maximum(count, 1))
        result = np.where(averaged & ~raises & ~unknown, np.where(at >= 0, at, OUTSIDE), result)
    else:  # fractions: summed in another order, the last bit may differ from rasp's
        unknown = averaged & ~raises
    return result, np.maximum(np.where(raises.any(axis=-1), RAISES, 0), np.where(unknown.any(axis=-1), IRREGULAR, 0)).astype(np.int8)


def _positions(numbers: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Where each of `x` is in `numbers` (−1 where it is none of them)."""
    order = np.argsort(numbers, kind="stable")
    sorted_ = numbers[order]
    found = np.minimum(np.searchsorted(sorted_, x), len(numbers) - 1)
    return np.where(sorted_[found] == x, order[found], -1)


def decode(batch: Batch, output: VarType) -> list[list[Any]]:
    """A batch's outputs as lists of values, one per input (None where undefined)."""
    lengths = batch.present.sum(axis=1).tolist()
    if output.numerical:
        rows = [[None if np.isnan(v) else v for v in row] for row in batch.output.astype(float).tolist()]
    else:
        table = output.values
        rows = [[None if v < 0 else table[v] for v in row] for row in batch.output.tolist()]
    return [row[:n] for row, n in zip(rows, lengths)]
