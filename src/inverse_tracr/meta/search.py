"""Candidate programs from the meta-model, beyond its greedy guess: beam search, sampling, repair.

Every decoder here is constrained by `vocab.Grammar`, so each finished candidate spells a
well-formed program, and all run batched through GPT-2's key/value cache (`model.Decoding`):

- **beam search** keeps the `beam` most likely partial programs at every token;
- **sampling** draws programs token by token at a temperature;
- **repair** walks a candidate and, at the positions where the model was least sure of its choice
  (a function's name or table entry above all), forks to each of the next most likely tokens and
  lets the model finish the program greedily from there — the thesis's "iterate through the next
  most likely tokens until the error is removed" (§8.4). All forks of a candidate run as one batch.

Candidates are only proposals: `decompile` checks each against the model's behaviour. Each decoder
stops at an optional `deadline` (`time.perf_counter()`) with the candidates finished by then: those
started just before it ran searches of a held-out zoo up to 1.35 s past a 2 s budget.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np
import torch

from inverse_tracr.meta import vocab, weights
from inverse_tracr.meta.model import MAX_PROGRAM_TOKENS, Decoding, MetaModel, allowed_mask
from inverse_tracr.programs import Program, ProgramError

#: How many of the most likely other tokens a position remembers, for repair.
ALTERNATIVES = 3


@dataclasses.dataclass
class Candidate:
    """A decoded token sequence (without BOS) and what the model thought of it."""

    ids: list[int]
    logprob: float
    how: str  # greedy, beam, sample, repair
    #: per token: (log-probability of the token chosen, [(other token, its log-probability), …])
    steps: list[tuple[float, list[tuple[int, float]]]] = dataclasses.field(default_factory=list, repr=False)
    program: Program | None = None

    def decode(self, vocab_: Sequence[Any], max_seq_len: int, output_values: Sequence[Any] | None) -> "Candidate":
        try:
            self.program = vocab.decode([vocab.BOS_ID, *self.ids], vocab_, max_seq_len, output_values)
        except ProgramError:
            self.program = None
        return self


@dataclasses.dataclass
class _Row:
    ids: list[int]
    logprob: float
    grammar: vocab.Grammar
    steps: list
    how: str
    done: bool = False


def _start(params: dict[str, np.ndarray], vocab_: tuple, max_seq_len: int, how: str) -> _Row:
    """A row before the first token, its grammar told how many sublayers the weights have."""
    return _Row([], 0.0, vocab.Grammar(vocab_, max_seq_len, weights.sublayers(params)), [], how)


def _step_info(logp: torch.Tensor, token: int) -> tuple[float, list[tuple[int, float]]]:
    values, indices = logp.topk(ALTERNATIVES + 1)
    others = [(int(i), float(v)) for v, i in zip(values, indices) if int(i) != token and v > float("-inf")]
    return float(logp[token]), others[:ALTERNATIVES]


def beam_search(model: MetaModel, params: dict[str, np.ndarray], vocab_: tuple, max_seq_len: int, beam: int = 8,
                deadline: float | None = None) -> list[Candidate]:
    """The `beam` most likely complete programs (by summed log-probability), best first."""
    state = Decoding(model, [params])
    rows = [_start(params, vocab_, max_seq_len, "beam")]
    finished: list[Candidate] = []
    for _ in range(MAX_PROGRAM_TOKENS - 1):
        if _past(deadline):
            break
        logp = torch.log_softmax(state.logits + allowed_mask([r.grammar for r in rows], state.logits), dim=-1)
        scores, tokens = logp.topk(min(beam, logp.shape[1]), dim=-1)  # [R, beam]
        options = sorted(
            ((rows[r].logprob + float(s), r, int(t)) for r in range(len(rows)) for s, t in zip(scores[r], tokens[r]) if s > float("-inf")),
            reverse=True,
        )
        kept, parents, chosen = [], [], []
        for score, r, token in options:
            parent = rows[r]
            step = _step_info(logp[r], token)
            if token == vocab.EOS_ID:
                finished.append(Candidate(parent.ids + [token], score, "beam", parent.steps + [step]))
                continue
            grammar = parent.grammar.copy()
            grammar.step(token)
            kept.append(_Row(parent.ids + [token], score, grammar, parent.steps + [step], "beam"))
            parents.append(r)
            chosen.append(token)
            if len(kept) == beam:
                break
        finished = sorted(finished, key=lambda c: -c.logprob)[:beam]
        if not kept or (len(finished) == beam and kept[0].logprob < finished[-1].logprob):
            break  # no partial program can still beat the finished ones
        state.select(torch.tensor(parents, device=state.device))
        state.advance(torch.tensor(chosen, device=state.device), _entries(kept))
        rows = kept
    return finished


def sample(model: MetaModel, params: dict[str, np.ndarray], vocab_: tuple, max_seq_len: int, n: int,
           temperature: float = 1.0, seed: int = 0, deadline: float | None = None) -> list[Candidate]:
    """`n` programs drawn token by token at `temperature`."""
    state = Decoding(model, [params])
    state.select(torch.zeros(n, dtype=torch.long, device=state.device))
    rows = [_start(params, vocab_, max_seq_len, "sample") for _ in range(n)]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return _run(state, rows, lambda logits: torch.multinomial(torch.softmax(logits / temperature, -1).cpu(), 1, generator=generator)[:, 0],
                deadline)


def repair(model: MetaModel, params: dict[str, np.ndarray], candidate: Candidate, vocab_: tuple, max_seq_len: int,
           positions: int = 4, deadline: float | None = None) -> list[Candidate]:
    """Fork `candidate` at its `positions` least sure tokens to each remembered alternative, and
    finish every fork greedily; all forks decode as one batch alongside a replay of the candidate."""
    margins = [(chosen - others[0][1], p) for p, (chosen, others) in enumerate(candidate.steps) if others]
    forks = {p: [t for t, _ in candidate.steps[p][1]] for _, p in sorted(margins)[:positions]}
    state = Decoding(model, [params])
    rows = [_start(params, vocab_, max_seq_len, "replay")]
    for p in range(len(candidate.ids)):
        if _past(deadline):
            return _finished(rows[1:])
        if p in forks:  # new rows branch off the replay (row 0) with another token here
            state.select(torch.tensor(list(range(len(rows))) + [0] * len(forks[p]), device=state.device))
            rows += [_Row(list(rows[0].ids), rows[0].logprob, rows[0].grammar.copy(), list(rows[0].steps), "repair") for _ in forks[p]]
        logits = state.logits + allowed_mask([r.grammar for r in rows], state.logits)
        logp = torch.log_softmax(logits, dim=-1)
        chosen = logits.argmax(-1).tolist()
        fork_index = 0
        for i, row in enumerate(rows):
            if i == 0:
                token = candidate.ids[p]
            elif p in forks and i >= len(rows) - len(forks[p]):
                token = forks[p][fork_index]
                fork_index += 1
            else:
                token = chosen[i]
            _feed(row, token, logp[i])
            chosen[i] = token if not row.done or token == vocab.EOS_ID else vocab.PAD_ID
        state.advance(torch.tensor(chosen, device=state.device), _entries(rows))
    rest = rows[1:]
    if not rest:
        return []
    state.select(torch.arange(1, len(rows), device=state.device))
    return _run(state, rest, lambda logits: logits.argmax(-1), deadline)


def _feed(row: _Row, token: int, logp: torch.Tensor) -> None:
    if row.done:
        return
    if token not in row.grammar.allowed():
        row.done, row.logprob = True, float("-inf")
        return
    row.steps.append(_step_info(logp, token))
    row.ids.append(token)
    row.logprob += float(logp[token])
    row.grammar.step(token)
    row.done = token == vocab.EOS_ID


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


def _run(state: Decoding, rows: list[_Row], choose, deadline: float | None = None) -> list[Candidate]:
    """Decode every row to its end (or the deadline), `choose`-ing each token from the constrained logits."""
    while not all(r.done for r in rows) and max(len(r.ids) for r in rows) < MAX_PROGRAM_TOKENS - 1 and not _past(deadline):
        logits = state.logits + allowed_mask([r.grammar for r in rows], state.logits)
        logp = torch.log_softmax(logits, dim=-1)
        chosen = choose(logits).tolist()
        for row, token, lp in zip(rows, chosen, logp):
            _feed(row, token, lp)
        state.advance(torch.tensor([t if not r.done or t == vocab.EOS_ID else vocab.PAD_ID for r, t in zip(rows, chosen)], device=state.device),
                      _entries(rows))
    return _finished(rows)


def _entries(rows: list[_Row]) -> list:
    """Where each row's next token sits in its table (nowhere once the row is done)."""
    return [None if r.done else r.grammar.entry() for r in rows]


def _finished(rows: list[_Row]) -> list[Candidate]:
    return [Candidate(r.ids, r.logprob, r.how, r.steps) for r in rows if r.ids and r.ids[-1] == vocab.EOS_ID]
