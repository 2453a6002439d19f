"""Behavioural check: does a candidate program compute what a given model computes?

We can run both: the model with the NumPy forward pass, the candidate with the batched RASP
evaluator. The model's outputs are computed once (`Behaviour`) and every candidate is compared with
them, so checking a candidate costs a millisecond or two. Inputs: every sequence up to the model's
length when there are at most `verify.EXHAUSTIVE_LIMIT` of them, else a large random sample that
always includes full-length inputs.

*Agreement* is the share of output positions where the candidate or the model defines a value and
the two are equal (numbers within Tracr's tolerance). A compiled model "defines" a categorical
output where its output block holds a one-hot vector: where RASP gives None (an Aggregate that
selects nothing, a None input to a Map) Tracr's model writes nothing, and the block is zero — the
decoded argmax there is an artefact, not an answer. So a candidate that gives None where the model
writes a value, or a value where the model writes none, disagrees there. A numerical output cannot
say None: where there is nothing to compute, Tracr's model writes 0 (its attention falls on BOS, its
MLP reads nothing; tested on a shifted sequence's first position), so a candidate's None counts as 0 —
not comparing it let a candidate verify that was None on a fifth of the positions where the model
says 1. A candidate must also define `MIN_DEFINED` of all positions.

A distilled student is compared as its gates measured it against its teacher: its categorical
output is no one-hot block (trained to give its teacher's argmax, it may say a value with a score of
0.3: a student whose gates measured 100 % scored below 0.5 on most positions), so nothing in it says
None — its argmax is what it says, compared where the candidate defines a value; its numbers agree
within `verify.STUDENT_ATOL`, not Tracr's tolerance (every numerical student of a held-out zoo
agreed with its own program on less than a fifth of the outputs at Tracr's).

A causal model (`Layout.causal`) runs with its attention mask, and a candidate is evaluated as its
own `Program.causal` says (batched, or by `Program.evaluate` where values are averaged): a
non-causal candidate for a causal model is simply another function, and disagrees where the mask
matters.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any, Sequence

import numpy as np

from inverse_tracr.compile import forward
from inverse_tracr.compile.model import BOS, PAD, POS_EMBED, CompiledModel
from inverse_tracr.compile.verify import ATOL, EXHAUSTIVE_LIMIT, RTOL, STUDENT_ATOL, all_inputs, input_space, same_value
from inverse_tracr.programs import Program
from inverse_tracr.programs.batch import Batch, evaluate_tokens, tokenise
from inverse_tracr.programs.values import VarType

#: Share of output positions a candidate must define for its agreement to count.
MIN_DEFINED = 0.5
#: A categorical output block whose largest entry is below this holds no value (Tracr writes 0 or 1).
WRITTEN = 0.5


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How a candidate did against the model."""

    agreement: float  # matching positions / positions compared
    positions: int  # positions compared (where the candidate or the model defines a value)
    defined: float  # share of all positions the candidate defines
    inputs: int
    exhaustive: bool
    matches: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def inputs_for(vocab: Sequence[Any], max_seq_len: int, n: int = 4096, seed: int = 0) -> tuple[list[list[Any]], bool]:
    """(inputs, exhaustive): every input up to `max_seq_len` if few enough, else `n` random ones,
    a quarter at full length."""
    vocab = list(vocab)
    if input_space(vocab, max_seq_len) <= EXHAUSTIVE_LIMIT:
        return all_inputs(vocab, max_seq_len), True
    rng = random.Random(seed)
    lengths = [max_seq_len] * (n // 4) + [rng.randint(1, max_seq_len) for _ in range(n - n // 4)]
    return [[rng.choice(vocab) for _ in range(length)] for length in lengths], False


class Behaviour:
    """A model's decoded outputs on a fixed set of inputs, to compare candidates with."""

    def __init__(self, model: CompiledModel, inputs: Sequence[Sequence[Any]], exhaustive: bool = False):
        self.model, self.inputs, self.exhaustive = model, [list(xs) for xs in inputs], exhaustive
        self.numerical = model.layout.output_values is None
        #: A categorical student, compared only where the candidate defines a value (module docstring).
        self.student = model.layout.readout and not self.numerical
        self._atol, self._rtol = (STUDENT_ATOL, 0.0) if model.layout.readout else (ATOL, RTOL)
        # As `batch.tokenise` orders and pads them: the non-empty inputs, in order.
        self._rows = [i for i, xs in enumerate(self.inputs) if len(xs)]
        self._positions = sum(len(xs) for xs in self.inputs)
        by_length: dict[int, list[int]] = {}  # input length -> positions in `_rows`
        for r, i in enumerate(self._rows):
            by_length.setdefault(len(self.inputs[i]), []).append(r)
        shape = (len(self._rows), max(by_length, default=0))
        self._outputs = np.zeros(shape, float if self.numerical else np.int64)  # decoded outputs [B, T]
        self._written = np.zeros(shape, bool)  # where the model writes a value [B, T] (nowhere past an input's end)
        self._tokenised: dict[tuple, tuple] = {}  # a vocabulary's order -> the inputs as `batch.tokenise` gives them
        for length, at in by_length.items():  # the model runs inputs of one length at a time
            scores = forward.output_scores(model, forward.token_ids(model, [self.inputs[self._rows[r]] for r in at]))
            self._outputs[at, :length] = scores[..., 0] if self.numerical else scores.argmax(axis=-1)
            self._written[at, :length] = True if self.numerical or self.student else scores.max(axis=-1) > WRITTEN

    @classmethod
    def of(cls, model: CompiledModel, n: int = 4096, seed: int = 0) -> "Behaviour":
        """On every input of the model's vocabulary and length, or `n` random ones."""
        vocab = [t for t in model.layout.input_tokens if t not in (BOS, PAD)]
        max_seq_len = model.params[POS_EMBED].shape[0] - 1
        return cls(model, *inputs_for(vocab, max_seq_len, n, seed))

    def sample(self, n: int, seed: int = 0) -> "Behaviour":
        """The same outputs on `n` of these inputs (all of them if there are no more), drawn at
        random: a quick, rough comparison, for choosing among many candidates before checking the
        chosen one on every input."""
        if len(self.inputs) <= n:
            return self
        keep = set(random.Random(seed).sample(range(len(self.inputs)), n))
        kept = [r for r, i in enumerate(self._rows) if i in keep]
        quick = copy.copy(self)  # the model's outputs are sliced, never computed again
        quick.exhaustive, quick._tokenised = False, {}
        quick.inputs, quick._rows = [self.inputs[self._rows[r]] for r in kept], list(range(len(kept)))
        quick._positions = sum(len(xs) for xs in quick.inputs)
        quick._outputs, quick._written = self._outputs[kept], self._written[kept]
        return quick

    def tokens(self, vocabulary: VarType) -> tuple[list[int], np.ndarray]:
        """The inputs tokenised for a program whose tokens are `vocabulary` (`batch.tokenise`; kept:
        every candidate has the same)."""
        if vocabulary.values not in self._tokenised:
            self._tokenised[vocabulary.values] = tokenise(vocabulary, self.inputs)
        return self._tokenised[vocabulary.values]

    def outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The model's decoded outputs [B, T] on the inputs as `tokens` orders and pads them
        (positions in the layout's output values, or numbers), and where it writes a value [B, T]."""
        return self._outputs, self._written

    def agreement(self, program: Program, batch: Batch | None = None) -> Agreement:
        """The candidate's agreement with the model (0 if it cannot even run on these inputs);
        `batch`: the program's outputs on these inputs, if already evaluated (`compile.fit`)."""
        try:
            batch = batch if batch is not None else evaluate_tokens(program, *self.tokens(program.types["tokens"]))
        except (ValueError, TypeError, ArithmeticError):
            return self._result(0, 0)
        output = program.types[program.output]
        if output.numerical != self.numerical:  # a numerical candidate for a categorical model, or back
            defined = int(batch.defined.sum())
            return self._result(0, defined, defined)
        labels = self.model.layout.output_values
        if not self.numerical:
            layout_index = {v: i for i, v in enumerate(labels)}
            # index OUTSIDE (-2, a mean that is none of the values) -> -4, NONE (-1) -> -3: no label
            as_layout = np.array([layout_index.get(v, -2) for v in output.values] + [-4, -3])
        # A mean that is none of the candidate's values lies between them, so it is none of the
        # model's labels either, unless one the candidate has not lies there: then rasp.evaluate
        # must say what the mean is.
        outside_is_wrong = self.numerical or not any(_between(label, output.values) for label in labels)
        irregular = batch.irregular if outside_is_wrong else batch.irregular | batch.outside
        regular = ~irregular if irregular.any() else slice(None)
        got, written = self._outputs[regular], self._written[regular]
        want, defined = batch.output[regular], batch.defined[regular]
        # A numerical None is compared as 0 (nan_to_num); the model writes a number everywhere (past
        # an input's end it writes nothing, and the candidate defines nothing).
        same = np.isclose(got, np.nan_to_num(want), rtol=self._rtol, atol=self._atol) if self.numerical else as_layout[want] == got
        either = defined if self.student else defined | written
        compared, matches, defined_total = int(either.sum()), int((same & (defined | self.numerical) & written).sum()), int(defined.sum())
        # Where an Aggregate averaged several values, only rasp.evaluate says what the program gives.
        for r in np.flatnonzero(irregular):
            c, m, d = self._by_rasp(program, batch.rows[r], self._outputs[r], self._written[r])
            compared, matches, defined_total = compared + c, matches + m, defined_total + d
        return self._result(matches, compared, defined_total)

    def _by_rasp(self, program: Program, i: int, got: np.ndarray, written: np.ndarray) -> tuple[int, int, int]:
        """(compared, matches, defined) on input i, evaluated by rasp: the model said `got` and wrote `written`."""
        values = self.model.layout.output_values
        try:
            want = program.evaluate(self.inputs[i])
        except (ValueError, TypeError, ArithmeticError):
            want = [None] * len(self.inputs[i])
        compared = matches = defined = 0
        for g, w, wrote in zip(got.tolist(), want, written.tolist()):  # past the input's end: nothing
            if w is not None or (wrote and not self.student):
                compared += 1
                defined += w is not None
                w = 0.0 if w is None and self.numerical else w
                matches += w is not None and wrote and same_value(g if values is None else values[g], w, values is None, self._rtol, self._atol)
        return compared, matches, defined

    def _result(self, matches: int, compared: int, defined: int = 0) -> Agreement:
        return Agreement(matches / compared if compared else 0.0, compared, defined / self._positions if self._positions else 0.0,
                         len(self.inputs), self.exhaustive, matches)


def _between(label: Any, values: Sequence[Any]) -> bool:
    """Whether `label` is a number that is none of `values` but might be a mean of them."""
    numbers = [v for v in values if isinstance(v, (bool, int, float))]
    return isinstance(label, (bool, int, float)) and label not in values and bool(numbers) and min(numbers) < label < max(numbers)


def verifies(agreement: Agreement, threshold: float, numerical: bool) -> bool:
    """Whether an agreement verifies its candidate: at least `threshold`, over at least
    `MIN_DEFINED` of the positions. A numerical model writes 0 both where its program says 0 and
    where it says None, so a numerical candidate's None cannot be checked: it must define every
    output (none of the zoo's 1,060 numerical-output programs of two seeds gives None; a held-out
    search verified one that was None where the true program's Aggregate gives its default 0)."""
    defined = 1.0 if numerical else MIN_DEFINED
    return agreement.positions > 0 and agreement.defined >= defined - 1e-12 and agreement.agreement >= threshold - 1e-12


def identical_weights(a: CompiledModel, b: CompiledModel, atol: float = 1e-6) -> bool:
    """The strongest certificate: the same parameters, tensor by tensor, under the same attention
    mask (a causal model's parameters are the non-causal one's: only the mask tells them apart)."""
    return a.layout.causal == b.layout.causal and a.params.keys() == b.params.keys() and all(
        a.params[k].shape == b.params[k].shape and np.allclose(a.params[k], b.params[k], atol=atol, rtol=0) for k in a.params
    )
