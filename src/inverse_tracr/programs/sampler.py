"""Monte Carlo sampler of random RASP programs of an exact length, typed by construction.

The thesis recipe: add operations one at a time, picking operands with a preference for recent
variables (weights w_n = 2·w_{n−1} − w_{n−2} + 1), then keep the ancestors of the longest path.
Pruning makes lengths random, so here every variable must be *used*: `tokens` and each new
variable start "dangling", and each step may only leave as many dangling variables as the
remaining steps can still consume. The last line then uses everything, so the program has exactly
the requested number of lines and all of them matter.

Functions and predicates come from the named library (`library`), and with probability
`random_tables` a line gets a random table instead, so that a meta-model learns to read tables
rather than to recall names. Each candidate line is type-checked against the value sets
(`ops.result_type`) before it is taken, so nothing Tracr rejects reaches the compiler, and lines
that carry no information (constant maps, copies, repeated lines) are never taken. Every loop is
bounded: a step tries `TRIES_PER_STEP` candidates, a program `RESTARTS` times, then
`SamplerError` is raised.
"""

from __future__ import annotations

import dataclasses
import random

from inverse_tracr.programs import library, ops, values
from inverse_tracr.programs.program import Line, Program

TRIES_PER_STEP = 200
RESTARTS = 50
#: Largest categorical value set a line may produce: keeps every MLP small.
MAX_VALUES = 16
#: Largest value set a random table draws its outputs from.
MAX_RANDOM_OUTPUTS = 6
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
#: Map functions the sampler draws (the identity is only an alias).
SAMPLED_MAP_FNS = [n for n in library.MAP_FNS if n != library.IDENTITY]


class SamplerError(RuntimeError):
    """No program of the requested length could be built (after bounded retries)."""


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    min_ops: int = 4
    max_ops: int = 8
    vocab_size: int = 5
    max_seq_len: int = 5
    #: Share of Map, SequenceMap and Select lines whose function is a random table, not a library one.
    random_tables: float = 0.0

    def __post_init__(self):
        if not 2 <= self.min_ops <= self.max_ops <= 64:
            raise ValueError(f"need 2 <= min_ops <= max_ops <= 64, got {self.min_ops}..{self.max_ops}")
        if not 2 <= self.vocab_size <= len(library.COMPARISON_CONSTANTS):
            raise ValueError(f"vocab_size must be 2..{len(library.COMPARISON_CONSTANTS)}, got {self.vocab_size}")
        if not 2 <= self.max_seq_len <= 16:
            raise ValueError(f"max_seq_len must be 2..16, got {self.max_seq_len}")
        if not 0 <= self.random_tables <= 1:
            raise ValueError(f"random_tables is a share from 0 to 1, got {self.random_tables}")

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
    keys: set[tuple]  # (op, table up to relabelling, operands) already taken, to refuse repeated lines
    names: dict[str, str | None]  # variable -> the library name of its line's function, if any
    definitions: dict[str, Line]  # variable -> the line that assigns it


def sample_program(rng: random.Random, config: SamplerConfig) -> Program:
    """A random program with between `config.min_ops` and `config.max_ops` lines (inclusive)."""
    n_ops = rng.randint(config.min_ops, config.max_ops)
    for _ in range(RESTARTS):
        lines = _try_sample(rng, config, n_ops)
        if lines is not None:
            program = Program(tuple(lines), config.vocab, config.max_seq_len)
            if len(program.lines) == n_ops:  # else two lines became one in canonical form
                return program
    raise SamplerError(f"no {n_ops}-line program found after {RESTARTS} restarts")


def _try_sample(rng: random.Random, config: SamplerConfig, n_ops: int) -> list[Line] | None:
    types = values.input_types(config.vocab, config.max_seq_len)
    state = _State(types, ["tokens", "indices"], {"tokens"}, [], set(), {}, {})
    for step in range(n_ops):
        remaining = n_ops - step - 1  # lines still to come after this one
        for _ in range(TRIES_PER_STEP):
            candidate = _candidate(rng, state, config, remaining)
            if candidate is not None:
                break
        else:
            return None  # dead end: restart
        line, name, result, key = candidate
        line = line._replace(ret=f"v{step + 1}")
        state.lines.append(line)
        state.definitions[line.ret] = line
        state.names[line.ret] = name
        state.keys.add(key)
        state.dangling -= set(line.operands)
        state.dangling.add(line.ret)
        state.types[line.ret] = result
        state.order.append(line.ret)
    return state.lines


def _candidate(rng: random.Random, state: _State, config: SamplerConfig, remaining: int):
    """One random well-typed line that keeps the program completable, or None."""
    numerical_pending = any(state.types[v].numerical for v in state.dangling)
    op = rng.choices(list(OP_WEIGHTS), weights=list(OP_WEIGHTS.values()))[0]
    if numerical_pending and op not in ("Select", "Aggregate"):
        return None  # a 0/1 numerical variable is only ever averaged, by the last line
    if op == "Select" and remaining == 0:
        return None  # a selector cannot be the output
    if op == "NumericalMap" and remaining not in (1, 2):
        return None  # it must be followed by its (last) Aggregate, maybe after a Select

    pick = lambda want: _pick(rng, state, want)  # noqa: E731
    categorical = lambda t: t.categorical  # noqa: E731
    if op in ("Map", "NumericalMap", "SequenceMap", "Select"):
        operands = [pick(categorical)] if op in ("Map", "NumericalMap") else [pick(categorical), pick(categorical)]
    elif op == "Aggregate":
        operands = [pick(lambda t: t.selector), pick(lambda t: not t.selector)]
    else:
        operands = [pick(lambda t: t.selector)]
    if None in operands or (op == "SequenceMap" and operands[0] == operands[1]):
        return None  # no operand of the right type yet (or a SequenceMap of one variable: a Map)
    types = [state.types[o] for o in operands]
    name, fn = _function(rng, op, types, config.random_tables)
    if op in ops.FUNCTION_OPS and fn is None:
        return None  # no informative function for these operands
    if op == "Aggregate" and any(state.types[o].nullable for o in operands):
        return None  # rasp.evaluate crashes on averaging None
    if op == "Aggregate" and types[1].categorical:
        if not _one_value(state, *operands):
            return None  # Tracr would average one-hot vectors
        if not _fits_attention(state, *operands):
            return None
    try:
        result = ops.result_type(op, fn, types, config.max_seq_len)
    except values.OperandError:
        return None
    key = (op, None if fn is None else library.signature(op, fn, relabelled=result.categorical), tuple(operands))
    if key in state.keys:
        return None
    if result.numerical and op == "Aggregate" and remaining != 0:
        return None  # Tracr's value set for a numerical mean is wrong, so nothing may read it
    if not result.selector and not _informative(result):
        return None
    if op == "Map" and remaining > 0 and _copies(fn, types[0]):
        return None  # an intermediate copy: the same weights as Map(id, x)
    # Count what stays dangling: at most one per line still to come (a line uses two at best).
    dangling_after = len(state.dangling - set(operands)) + 1
    if dangling_after - 1 > remaining or (remaining == 0 and dangling_after != 1):
        return None
    return Line(op, fn, tuple(operands), ""), name, result, key


def _function(rng: random.Random, op: str, operands: list[values.VarType], random_tables: float):
    """(library name or None, table) for a line of `op`; (None, None) if nothing fits."""
    if op not in ops.TABLE_OPS:
        return None, None
    if rng.random() < random_tables:
        return None, _random_table(rng, op, operands)
    if op in ("Map", "NumericalMap"):
        name = _pick_map_fn(rng, operands[0], numerical=op == "NumericalMap")
    elif op == "SequenceMap":
        name = rng.choice(list(library.SEQUENCE_MAP_FNS))
    else:
        name = rng.choice(SAMPLED_PREDICATES)
    if name is None:
        return None, None
    try:
        return name, library.named_table(op, name, operands)
    except values.OperandError:
        return None, None


def _random_table(rng: random.Random, op: str, operands: list[values.VarType]) -> ops.Table | None:
    """A random table that is not constant (and, for a SequenceMap, reads both operands)."""
    size = ops.table_size(op, operands)
    if op == "Select":
        table = tuple(rng.random() < 0.5 for _ in range(size))
        return table if any(table) else None
    n = 2 if op == "NumericalMap" else rng.randint(2, MAX_RANDOM_OUTPUTS)
    table = tuple(rng.randrange(n) for _ in range(size))
    if len(set(table)) < 2:
        return None
    if op == "SequenceMap":
        ny = len(operands[1].values)
        rows = [table[i : i + ny] for i in range(0, size, ny)]
        if len(set(rows)) == 1 or all(len(set(row)) == 1 for row in rows):
            return None  # ignores one operand: a Map in disguise (with a larger MLP)
    return table


def _copies(table: ops.Table, x: values.VarType) -> bool:
    """Whether a Map's table is order-preserving and one-to-one: in canonical form, a copy of x."""
    if None in table:
        return False
    ranks = {v: i for i, v in enumerate(ops.image(table))}
    return [ranks[v] for v in table] == list(range(len(x.values)))


def _one_value(state: _State, selector: str, sop: str) -> bool:
    """Whether every query of `selector` provably selects positions with one value of `sop`.

    True for Select(indices, q, EQ) (at most one position) and for Select(K, q, EQ) when `sop` is
    K or a chain of Maps of K (selected positions share K's value, so also f(K)'s).
    """
    line = state.definitions[selector]
    if state.names[selector] != "EQ":
        return False
    keys = line.operands[0]
    if keys == "indices":
        return True
    while sop != keys and sop in state.definitions and state.definitions[sop].op == "Map":
        sop = state.definitions[sop].operands[0]
    return sop == keys


def _fits_attention(state: _State, selector: str, sop: str) -> bool:
    """Tracr's `assemble` sizes every head by its query/key space and crashes (a broadcast error)
    when a categorical Aggregate's value space is wider; keep it within |queries| or |keys| + 1 (BOS)."""
    keys, queries = state.definitions[selector].operands
    width = max(len(state.types[queries].values), len(state.types[keys].values) + 1)
    return len(state.types[sop].values) <= width


def _informative(result: values.VarType) -> bool:
    """Not constant, and (if categorical) few enough values for a small MLP."""
    return len(result.values) >= 2 and (not result.categorical or len(result.values) <= MAX_VALUES)


def _pick_map_fn(rng: random.Random, x: values.VarType, numerical: bool) -> str | None:
    """A Map function whose constant comes from x's value set, and that is not the identity on it."""
    names = [n for n in SAMPLED_MAP_FNS if library.MAP_FNS[n].binary or not numerical]
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
