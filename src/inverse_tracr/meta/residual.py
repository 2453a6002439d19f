"""Which variable block each residual dimension belongs to, guessed from the weights alone.

A compiled model's residual stream is the program's variables side by side: Tracr sorts its basis
directions by (variable, value), so a categorical variable is a contiguous block of one-hot
dimensions, value v at the block's first dimension + v. A table entry of the program is a fact
about *offsets* — the Map unit that reads input value x writes output value f(x) — while the
weights give absolute dimensions, which move with every program. Handing the meta-model each
dimension's offset in its block spares it working out where blocks start.

The blocks are found as the compiler makes them, without Tracr's labels (so it also runs on any
weights, where it is only a guess): the token embedding writes the tokens (and `one`, the
dimension every token writes), the position embedding the indices; then, sublayer by sublayer,
the units that make one operation (`_operations`) write its variable, each contiguous run of it a
block. Checked against the compiler's labels on 300 held-out programs: every variable right but
in 3 programs, where two SequenceMaps of the same operands share a sublayer — their units look
alike to the weights, so their two outputs read as one block.
"""

from __future__ import annotations

import numpy as np
from networkx.utils import UnionFind

_TOL = 1e-6


def block_starts(reads: np.ndarray, writes: np.ndarray, sublayer: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """[D] the first dimension of each residual dimension's block; -1 for `one` and for dimensions
    nothing writes.

    reads, writes: [N, D] each unit's residual vectors (an embedding row only writes); sublayer: [N]
    the order in which units run (embeddings first, then each sublayer); embedding: [N] 0 for a
    token-embedding row, 1 for a position-embedding row, -1 for any other unit.
    """
    d = reads.shape[1]
    read, wrote = np.abs(reads) > _TOL, np.abs(writes) > _TOL
    block = np.arange(d)  # block id of each dim: its own until a writer claims it
    tokens = embedding == 0
    one = wrote[tokens].all(axis=0) if tokens.any() else np.zeros(d, bool)
    read[:, one] = False  # `one` is read by every unit that needs a constant: it says nothing about operands
    claimed = one.copy()
    for group in (tokens, embedding == 1):
        _claim(block, claimed, [wrote[group].any(axis=0) & ~one])
    for s in sorted(set(sublayer[embedding < 0].tolist())):
        units = np.flatnonzero((sublayer == s) & (embedding < 0))
        _claim(block, claimed, [wrote[units[g]].any(axis=0) for g in _operations(read[units], wrote[units], block)])
    starts = np.full(d, -1, np.int64)
    for b in np.unique(block[claimed & ~one]):
        dims = np.flatnonzero((block == b) & claimed & ~one)
        starts[dims] = dims[0]
    return starts


def _operations(read: np.ndarray, wrote: np.ndarray, block: np.ndarray) -> list[np.ndarray]:
    """Units of one sublayer (in their order) grouped into operations.

    Units that write a dimension in common are one operation (a numerical MLP's units all write its
    one output). Then operations reading the same two or more blocks are one (a SequenceMap); of
    those reading one block, consecutive ones join while what they read is disjoint — a categorical
    Map's units partition its input's values, so a unit reading a value already read starts the next
    operation on the same variable."""
    n = len(read)
    units = UnionFind(range(n))
    writer: dict[int, int] = {}
    for unit in range(n):
        for dim in np.flatnonzero(wrote[unit]).tolist():
            units.union(unit, writer.setdefault(dim, unit))
    members: dict[int, list[int]] = {}
    for unit in range(n):
        members.setdefault(units[unit], []).append(unit)
    pairs: dict[tuple, int] = {}
    current: dict[tuple, tuple[int, np.ndarray]] = {}  # one-block key -> (its operation, what it reads)
    for root, group in members.items():
        reads = read[group].any(axis=0)
        key = tuple(sorted(set(block[reads].tolist())))
        if len(key) > 1:
            units.union(root, pairs.setdefault(key, root))
        elif len(key) == 1:
            op, seen = current.get(key, (root, np.zeros_like(reads)))
            if (seen & reads).any():
                op, seen = root, np.zeros_like(reads)
            units.union(root, op)
            current[key] = (units[root], seen | reads)
    groups: dict[int, list[int]] = {}
    for unit in range(n):
        groups.setdefault(units[unit], []).append(unit)
    return [np.array(g) for g in groups.values()]


def _claim(block: np.ndarray, claimed: np.ndarray, writes: list[np.ndarray]) -> None:
    """New blocks: each contiguous run of not-yet-claimed dimensions one operation writes."""
    for wrote in writes:
        dims = np.flatnonzero(wrote & ~claimed)
        for run in np.split(dims, np.flatnonzero(np.diff(dims) > 1) + 1):
            if len(run):
                block[run] = run[0]
                claimed[run] = True


def by_offset(vectors: np.ndarray, starts: np.ndarray, slots: int, blocks: int = 2) -> np.ndarray:
    """[N, blocks * slots]: each residual vector's entries summed by their offset in the first
    `blocks` blocks it touches (in residual order), one group of `slots` per block; entries of
    `one`, of unwritten dimensions and past `slots` are left out."""
    n, d = vectors.shape
    touched = (np.abs(vectors) > _TOL) & (starts >= 0)
    offset = np.where(starts >= 0, np.arange(d) - starts, slots)
    spread = np.zeros((d, slots), vectors.dtype)
    spread[np.flatnonzero(offset < slots), offset[offset < slots]] = 1  # dim -> its offset, one-hot
    out = np.zeros((n, blocks * slots), vectors.dtype)
    rest = touched
    for b in range(blocks):
        first = np.where(rest, starts, d).min(axis=1, keepdims=True)  # the block's start, d: none left
        mine = rest & (starts == first)
        out[:, b * slots : (b + 1) * slots] = (vectors * mine) @ spread
        rest = rest & ~mine
    return out
