"""How right a predicted program is. Pure functions over token ids and Programs.

Definitions (the report and README use these words exactly):

- A program's *target tokens* are its lines in the target layout (`meta.vocab`: op, two
  arguments, the function — its table's entries — and the variable; grouped by the
  sublayer that computes them, each sublayer closed by EOL), then EOS; BOS and padding never
  count. Predictions are compared position by position with the target; a prediction that ends
  early is wrong at every missing position.
- *Token accuracy (all fields)*: right target tokens / all target tokens.
- *Token accuracy (non-NA fields)*: the same over positions whose target is not NA (NA padding is
  easy to predict and inflates the first figure).
- *Token accuracy (line fields)*: the same over the lines' tokens, leaving out EOL and EOS — how
  many of those a layout has is its own, so this is the figure that compares layouts.
- *Program buckets*: the share of programs whose own all-fields accuracy is ≥ 50, 60, 70, 80, 90
  and 100 % (the thesis's table).
- *Exact match*: the prediction decodes (with the model's vocabulary and output labels) to a
  Program equal to the true one: the same canonical program, the same id.
- *Functional equivalence*: the prediction's outputs equal the true program's on every input up to
  the model's length (a random sample where there are more than 5,000 such inputs), None matching
  None, numbers within Tracr's tolerance. An exact match is always functionally equivalent; not
  conversely.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from inverse_tracr.meta import vocab
from inverse_tracr.programs import Program, ProgramError
from inverse_tracr.programs.batch import evaluate_many

BUCKETS = (50, 60, 70, 80, 90, 100)
NA_ID = vocab.NA_ID


def targets(program: Program) -> list[int]:
    """Target tokens: the encoding without BOS."""
    return vocab.encode(program)[1:]


def output_labels(program: Program) -> tuple | None:
    """The output's labels as a model's layout gives them (None for a numerical output)."""
    output = program.types[program.output]
    return output.values if output.categorical else None


def token_hits(target: Sequence[int], predicted: Sequence[int]) -> list[bool]:
    """Per target position: predicted right? (missing predictions are wrong)."""
    return [i < len(predicted) and predicted[i] == t for i, t in enumerate(target)]


def same_outputs(a: Sequence[Any], b: Sequence[Any], rel: float = 0.005, abs_: float = 1e-5) -> bool:
    def same(x, y):
        if x is None or y is None:
            return x is None and y is None
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)
        return x == y

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def functionally_equivalent(true: Program, predicted: Program, inputs: Sequence[Sequence[Any]]) -> bool:
    try:
        want, got = evaluate_many(true, inputs), evaluate_many(predicted, inputs)
    except (ValueError, TypeError, ArithmeticError):
        return False  # the prediction crashes rasp.evaluate where the true program does not
    return all(same_outputs(w, g) for w, g in zip(want, got))


def ops_of(ids: Sequence[int]) -> list[str]:
    """The op token of each line of a (predicted) token sequence without BOS."""
    ops = []
    for i, field in zip(ids, vocab.fields(ids)):
        if field == 0 and 0 <= i < len(vocab.TOKENS) and vocab.TOKENS[i] not in vocab.ENDS:
            ops.append(vocab.TOKENS[i])
    return ops


@dataclasses.dataclass
class Scored:
    """One program's result."""

    key: str
    lines: int
    hits: list[bool]  # per target token
    non_na: list[bool]  # per target token: is the target not NA?
    fields: list[int]  # per target token: its field (vocab.FIELDS), len(FIELDS) for EOL and EOS
    true_ops: list[str]
    predicted_ops: list[str | None]  # per true line; None where the prediction has no such line
    valid: bool
    exact: bool
    functional: bool
    predicted: Program | None = None  # the decoded prediction, if it parses

    @property
    def accuracy(self) -> float:
        return sum(self.hits) / len(self.hits)


def score(key: str, true: Program, predicted_ids: Sequence[int], inputs: Sequence[Sequence[Any]]) -> Scored:
    """Score predicted token ids (without BOS) against the true program."""
    target = targets(true)
    hits = token_hits(target, predicted_ids)
    ops = ops_of(predicted_ids)
    predicted_ops = [ops[i] if i < len(ops) else None for i in range(len(true.lines))]
    try:
        predicted = vocab.decode([vocab.BOS_ID, *predicted_ids], true.vocab, true.max_seq_len, output_labels(true))
    except ProgramError:
        predicted = None
    exact = predicted == true
    functional = exact or (predicted is not None and functionally_equivalent(true, predicted, inputs))
    return Scored(
        key=key,
        lines=len(true.lines),
        hits=hits,
        non_na=[t != NA_ID for t in target],
        fields=vocab.fields(target),
        true_ops=[line[0] for line in true.lines],
        predicted_ops=predicted_ops,
        valid=predicted is not None,
        exact=exact,
        functional=functional,
        predicted=predicted,
    )


def summarise(results: Sequence[Scored]) -> dict[str, Any]:
    """Every figure of the report, from per-program results."""
    if not results:
        return {"programs": 0}
    all_hits = [h for r in results for h in r.hits]
    non_na = [h for r in results for h, keep in zip(r.hits, r.non_na) if keep]
    by_field = {
        name: _share([h for r in results for h, f in zip(r.hits, r.fields) if f == i])
        for i, name in enumerate((*vocab.FIELDS, "ends"))
    }
    by_length: dict[str, dict[str, float]] = {}
    for length in sorted({r.lines for r in results}):
        group = [r for r in results if r.lines == length]
        by_length[str(length)] = {
            "programs": len(group),
            "token_accuracy": _share([h for r in group for h in r.hits]),
            "exact": _share([r.exact for r in group]),
            "functional": _share([r.functional for r in group]),
        }
    return {
        "programs": len(results),
        "token_accuracy": _share(all_hits),
        "token_accuracy_non_na": _share(non_na),
        "token_accuracy_lines": _share([h for r in results for h, f in zip(r.hits, r.fields) if f < len(vocab.FIELDS)]),
        "buckets": {f">={b}%": _share([r.accuracy * 100 >= b - 1e-9 for r in results]) for b in BUCKETS},
        "valid": _share([r.valid for r in results]),
        "exact": _share([r.exact for r in results]),
        "functional": _share([r.functional for r in results]),
        "by_field": by_field,
        "by_length": by_length,
        "op_confusion": confusion(results),
    }


def confusion(results: Sequence[Scored]) -> dict[str, dict[str, int]]:
    """Counts of (true op -> predicted op) over true lines; 'missing' where no line was predicted."""
    table: dict[str, dict[str, int]] = {}
    for r in results:
        for true_op, predicted_op in zip(r.true_ops, r.predicted_ops):
            row = table.setdefault(true_op, {})
            name = predicted_op if predicted_op is not None else "missing"
            row[name] = row.get(name, 0) + 1
    return table


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0
