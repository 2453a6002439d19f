"""Behavioural check: does a candidate program compute what a given model computes?

We can run both: the model with the NumPy forward pass, the candidate with the batched RASP
evaluator. The model's outputs are computed once (`Behaviour`) and every candidate is compared with
them, so checking a candidate costs a millisecond or two. Inputs: every sequence up to the model's
length when there are at most `verify.EXHAUSTIVE_LIMIT` of them, else a large random sample that
always includes full-length inputs.

*Agreement* is the share of output positions where the candidate defines a value (RASP's None is
not compared, as in Tracr's own tests) and the model's decoded output equals it (numbers within
Tracr's tolerance). A candidate that leaves most positions undefined cannot be verified by the
positions it does define: it needs `MIN_DEFINED` of them.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any, Sequence

import numpy as np

from inverse_tracr.compile import forward
from inverse_tracr.compile.model import BOS, PAD, CompiledModel
from inverse_tracr.compile.verify import ATOL, EXHAUSTIVE_LIMIT, RTOL, input_space, same_value
from inverse_tracr.programs import Program
from inverse_tracr.programs.batch import evaluate_groups

#: Share of output positions a candidate must define for its agreement to count.
MIN_DEFINED = 0.5


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How a candidate did against the model."""

    agreement: float  # matching positions / positions the candidate defines
    positions: int  # positions compared
    defined: float  # share of all positions the candidate defines
    inputs: int
    exhaustive: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def inputs_for(vocab: Sequence[Any], max_seq_len: int, n: int = 4096, seed: int = 0) -> tuple[list[list[Any]], bool]:
    """(inputs, exhaustive): every input up to `max_seq_len` if few enough, else `n` random ones,
    a quarter at full length."""
    vocab = list(vocab)
    if input_space(vocab, max_seq_len) <= EXHAUSTIVE_LIMIT:
        return [list(xs) for length in range(1, max_seq_len + 1) for xs in itertools.product(vocab, repeat=length)], True
    rng = random.Random(seed)
    lengths = [max_seq_len] * (n // 4) + [rng.randint(1, max_seq_len) for _ in range(n - n // 4)]
    return [[rng.choice(vocab) for _ in range(length)] for length in lengths], False


class Behaviour:
    """A model's decoded outputs on a fixed set of inputs, to compare candidates with."""

    def __init__(self, model: CompiledModel, inputs: Sequence[Sequence[Any]], exhaustive: bool = False):
        self.model, self.inputs, self.exhaustive = model, [list(xs) for xs in inputs], exhaustive
        self.numerical = model.layout.output_values is None
        self._rows: dict[int, list[int]] = {}  # input length -> the inputs of that length, in order
        for i, xs in enumerate(self.inputs):
            self._rows.setdefault(len(xs), []).append(i)
        self._outputs = {  # input length -> decoded outputs [B, T]
            length: forward.output_array(model, forward.token_ids(model, [self.inputs[i] for i in rows]))
            for length, rows in self._rows.items()
        }

    @classmethod
    def of(cls, model: CompiledModel, n: int = 4096, seed: int = 0) -> "Behaviour":
        """On every input of the model's vocabulary and length, or `n` random ones."""
        vocab = [t for t in model.layout.input_tokens if t not in (BOS, PAD)]
        max_seq_len = model.params["pos_embed/embeddings"].shape[0] - 1
        return cls(model, *inputs_for(vocab, max_seq_len, n, seed))

    def agreement(self, program: Program) -> Agreement:
        """The candidate's agreement with the model (0 if it cannot even run on these inputs)."""
        try:
            groups = evaluate_groups(program, self.inputs)
        except (ValueError, TypeError, ArithmeticError):
            return self._result(0, 0)
        if any(group.irregular.any() for group in groups):
            return self._agreement_by_rasp(program)  # several values averaged: what rasp.evaluate says
        output = program.types[program.output]
        if output.numerical != self.numerical:  # a numerical candidate for a categorical model, or back
            return self._result(0, sum(int(g.defined.sum()) for g in groups))
        if not self.numerical:
            layout_index = {v: i for i, v in enumerate(self.model.layout.output_values)}
            as_layout = np.array([layout_index.get(v, -2) for v in output.values] + [-3])  # index -1 (None) -> -3
        compared = matches = 0
        for group in groups:  # a group holds all inputs of its length, in order, as `_rows` does
            got, want, defined = self._outputs[group.tokens.shape[1]], group.output, group.defined
            same = np.isclose(got, np.nan_to_num(want), rtol=RTOL, atol=ATOL) if self.numerical else as_layout[want] == got
            compared += int(defined.sum())
            matches += int((same & defined).sum())
        return self._result(matches, compared)

    def _agreement_by_rasp(self, program: Program) -> Agreement:
        compared = matches = 0
        values = self.model.layout.output_values
        for length, rows in self._rows.items():
            for i, got in zip(rows, self._outputs[length].tolist()):
                try:
                    want = program.evaluate(self.inputs[i])
                except (ValueError, TypeError, ArithmeticError):
                    continue
                for g, w in zip(got, want):
                    if w is not None:
                        compared += 1
                        matches += same_value(g if values is None else values[g], w, numerical=values is None)
        return self._result(matches, compared)

    def _result(self, matches: int, compared: int) -> Agreement:
        total = sum(out.size for out in self._outputs.values())
        return Agreement(matches / compared if compared else 0.0, compared, compared / total if total else 0.0,
                         len(self.inputs), self.exhaustive)


def identical_weights(a: CompiledModel, b: CompiledModel, atol: float = 1e-6) -> bool:
    """The strongest certificate: the same parameters, tensor by tensor."""
    return a.params.keys() == b.params.keys() and all(
        a.params[k].shape == b.params[k].shape and np.allclose(a.params[k], b.params[k], atol=atol, rtol=0) for k in a.params
    )
