"""Monte Carlo sampler of random RASP programs of an exact length, typed by construction.

The thesis recipe: add operations one at a time, picking operands with a preference for recent
variables (weights w_n = 2·w_{n−1} − w_{n−2} + 1), then keep the ancestors of the longest path.
Pruning makes lengths random, so here every variable must be *used*: `tokens` and each new
variable start "dangling", and each step may only leave as many dangling variables as the
remaining steps can still consume. The last line then uses everything, so the program has exactly
the requested number of lines and all of them matter.

Each candidate line is type-checked against the value sets (`values.result_type`) before it is
taken, so nothing Tracr rejects reaches the compiler, and lines that carry no information
(constant or identity maps, repeated lines) are never taken. Every loop is bounded: a step tries
`TRIES_PER_STEP` candidates, a program `RESTARTS` times, then `SamplerError` is raised.
"""

from __future__ import annotations

import dataclasses
import random

from inverse_tracr.programs import library, values
from inverse_tracr.programs.program import Line, Op, Program

TRIES_PER_STEP = 200
RESTARTS = 50
#: Largest categorical value set a line may produce: keeps every MLP small.
MAX_VALUES = 16
#: Sampling weight of each operation (Select lines come with the Aggregate/SelectorWidth they feed).
OP_WEIGHTS = {
    "Map": 4.0,
    "NumericalMap": 1.0,
    "SequenceMap": 2.0,
    "Select": 3.0,
    "Aggregate": 3.0,
    "SelectorWidth": 1.5,
}
#: FALSE selects nothing: every Aggregate or SelectorWidth over it is constant.
SAMPLED_PREDICATES = [p for p in library.PREDICATES if p != "FALSE"]


class SamplerError(RuntimeError):
    """No program of the requested length could be built (after bounded retries)."""


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    min_ops: int = 4
    max_ops: int = 8
    vocab_size: int = 5
    max_seq_len: int = 5

    def __post_init__(self):
        if not 2 <= self.min_ops <= self.max_ops <= 64:
            raise ValueError(f"need 2 <= min_ops <= max_ops <= 64, got {self.min_ops}..{self.max_ops}")
        if not 2 <= self.vocab_size <= len(library.COMPARISON_CONSTANTS):
            raise ValueError(f"vocab_size must be 2..{len(library.COMPARISON_CONSTANTS)}, got {self.vocab_size}")
        if not 2 <= self.max_seq_len <= 16:
            raise ValueError(f"max_seq_len must be 2..16, got {self.max_seq_len}")

    @property
    def vocab(self) -> tuple[int, ...]:
        return tuple(range(self.vocab_size))


def recency_weights(n: int) -> list[float]:
    """Thesis weights for n variables, oldest first: 1, 1, 2, 4, 7, 11, … (w_n = 2w_{n−1} − w_{n−2} + 1)."""
    weights = [1.0, 1.0][:n]
    while len(weights) < n:
        weights.append(2 * weights[-1] - weights[-2] + 1)
    return weights


@dataclasses.dataclass
class _State:
    types: dict[str, values.VarType]
    order: list[str]  # variables, oldest first
    dangling: set[str]  # variables not used yet (tokens included: every program must read it)
    lines: list[Line]
    keys: set[tuple]  # (op, fn, operands) already taken, to refuse repeated lines
    definitions: dict[str, Line]  # variable -> the line that assigns it


def sample_program(rng: random.Random, config: SamplerConfig) -> Program:
    """A random program with between `config.min_ops` and `config.max_ops` lines (inclusive)."""
    n_ops = rng.randint(config.min_ops, config.max_ops)
    for _ in range(RESTARTS):
        lines = _try_sample(rng, config, n_ops)
        if lines is not None:
            program = Program(tuple(lines), config.vocab, config.max_seq_len)
            assert len(program.lines) == n_ops, "a sampled line went unused"
            return program
    raise SamplerError(f"no {n_ops}-line program found after {RESTARTS} restarts")


def _try_sample(rng: random.Random, config: SamplerConfig, n_ops: int) -> list[Line] | None:
    types = values.input_types(config.vocab, config.max_seq_len)
    state = _State(types, ["tokens", "indices"], {"tokens"}, [], set(), {})
    for step in range(n_ops):
        remaining = n_ops - step - 1  # lines still to come after this one
        for _ in range(TRIES_PER_STEP):
            candidate = _candidate(rng, state, config, remaining)
            if candidate is not None:
                break
        else:
            return None  # dead end: restart
        op, fn, operands, result = candidate
        ret = f"v{step + 1}"
        state.lines.append(Op(op, fn, tuple(operands)).line(ret))
        state.definitions[ret] = state.lines[-1]
        state.keys.add((op, fn, tuple(operands)))
        state.dangling -= set(operands)
        state.dangling.add(ret)
        state.types[ret] = result
        state.order.append(ret)
    return state.lines


def _candidate(rng: random.Random, state: _State, config: SamplerConfig, remaining: int):
    """One random well-typed line that keeps the program completable, or None."""
    numerical_pending = any(state.types[v].encoding == values.NUMERICAL for v in state.dangling)
    ops = list(OP_WEIGHTS)
    op = rng.choices(ops, weights=[OP_WEIGHTS[o] for o in ops])[0]
    if numerical_pending and op not in ("Select", "Aggregate"):
        return None  # a 0/1 numerical variable is only ever averaged, by the last line
    if op == "Select" and remaining == 0:
        return None  # a selector cannot be the output
    if op == "NumericalMap" and remaining not in (1, 2):
        return None  # it must be followed by its (last) Aggregate, maybe after a Select

    pick = lambda want: _pick(rng, state, want)  # noqa: E731
    categorical = lambda t: t.categorical  # noqa: E731
    if op in ("Map", "NumericalMap"):
        x = pick(categorical)
        fn = _pick_map_fn(rng, state.types[x], numerical=op == "NumericalMap")
        operands = [x]
    elif op == "SequenceMap":
        x, y = pick(categorical), pick(categorical)
        fn, operands = rng.choice(list(library.SEQUENCE_MAP_FNS)), [x, y]
        if x == y:
            return None  # that is a Map
    elif op == "Select":
        fn, operands = rng.choice(SAMPLED_PREDICATES), [pick(categorical), pick(categorical)]
    elif op == "Aggregate":
        fn, operands = None, [pick(lambda t: t.selector), pick(lambda t: not t.selector)]
    else:
        fn, operands = None, [pick(lambda t: t.selector)]
    if None in operands or (fn is None and op in ("Map", "NumericalMap")):
        return None  # no operand of the right type yet, or no non-trivial function for it
    if op == "SequenceMap" and library.SEQUENCE_MAP_FNS[fn].commutative:
        operands.sort()
    if op in ("Select", "Aggregate") and any(state.types[o].nullable for o in operands):
        return None  # rasp.evaluate crashes on None in a comparison or a mean
    if op == "Aggregate" and state.types[operands[1]].categorical:
        if not _one_value(state, *operands):
            return None  # Tracr would average one-hot vectors
        if not _fits_attention(state, *operands):
            return None
    if (op, fn, tuple(operands)) in state.keys:
        return None
    try:
        result = values.result_type(op, fn, [state.types[o] for o in operands], config.max_seq_len)
    except values.OperandError:
        return None
    if result.encoding == values.NUMERICAL and op == "Aggregate" and remaining != 0:
        return None  # Tracr's value set for a numerical mean is wrong, so nothing may read it
    if not result.selector and not _informative(result):
        return None
    # Count what stays dangling: at most one per line still to come (a line uses two at best).
    dangling_after = len(state.dangling - set(operands)) + 1
    if dangling_after - 1 > remaining or (remaining == 0 and dangling_after != 1):
        return None
    return op, fn, operands, result


def _one_value(state: _State, selector: str, sop: str) -> bool:
    """Whether every query of `selector` provably selects positions with one value of `sop`.

    True for Select(indices, q, EQ) (at most one position) and for Select(K, q, EQ) when `sop` is
    K or a chain of Maps of K (selected positions share K's value, so also f(K)'s).
    """
    _, predicate, keys, _, _ = state.definitions[selector]
    if predicate != "EQ":
        return False
    if keys == "indices":
        return True
    while sop != keys and sop in state.definitions and state.definitions[sop][0] == "Map":
        sop = state.definitions[sop][2]
    return sop == keys


def _fits_attention(state: _State, selector: str, sop: str) -> bool:
    """Tracr's `assemble` sizes every head by its query/key space and crashes (a broadcast error)
    when a categorical Aggregate's value space is wider; keep it within |queries| or |keys| + 1 (BOS)."""
    _, _, keys, queries, _ = state.definitions[selector]
    width = max(len(state.types[queries].values), len(state.types[keys].values) + 1)
    return len(state.types[sop].values) <= width


def _informative(result: values.VarType) -> bool:
    """Not constant, and (if categorical) few enough values for a small MLP."""
    return len(result.values) >= 2 and (not result.categorical or len(result.values) <= MAX_VALUES)


def _pick_map_fn(rng: random.Random, x: values.VarType, numerical: bool) -> str | None:
    """A Map function whose constant comes from x's value set, and that is not the identity on it."""
    names = [n for n, f in library.MAP_FNS.items() if f.binary or not numerical]
    for _ in range(20):
        name = rng.choice(names)
        f = library.MAP_FNS[name]
        constant = int(name.rsplit("_", 1)[1])
        if f.binary and constant not in {int(v) for v in x.values}:
            continue  # `lt_7` on values 0..4 is constant: draw constants from the value set
        if all(f(v) == v for v in x.values):
            continue  # the identity on these values
        return name
    return None


def _pick(rng: random.Random, state: _State, want) -> str | None:
    """A variable of the wanted type, recent ones (and unused ones) preferred."""
    candidates = [v for v in state.order if want(state.types[v])]
    if not candidates:
        return None
    weights = dict(zip(state.order, recency_weights(len(state.order))))
    # Unused variables must be used eventually; preferring them avoids dead ends.
    return rng.choices(candidates, weights=[weights[v] * (4 if v in state.dangling else 1) for v in candidates])[0]
