"""A compressed student unfolded into the compiled model it was distilled from, for the reader.

A compressed student (`distill.student.fold`) stores its teacher's tensors through a projection
`W` [D, d]: writes as `T·W`, reads as `Wᵀ·T` (`compile.projection`). Each of the teacher's residual
dimensions is then a vector of the student's residual — a row of `W`, its *atom* — and Tracr's
sparse layout leaves most atoms in plain sight: an index's atom is its position embedding, a
token's is its embedding less `one`'s, `one`'s is what a head's query scores BOS with, a head's
output rows, a lookup unit's write row and a read-out column are the atoms of the dimensions they
write, and a discretising MLP's outputs are the sums of its write rows in the order of its
thresholds. A read of the residual (a query, key or value column, a hidden unit) reads one
variable's dimensions (a SequenceMap unit two) and `one`, so it is one combination of few atoms,
found by least squares over each variable written before it. Every variable's atoms are linearly
independent — measured on 60 compressed students of a held-out zoo, all 507 variables besides the
tokens (whose unused PAD atom is not); their residuals 29.5 dims wide on average in 14.8 — so that
combination is unique; another variable explained 20 of their 2,596 read columns as well, which is
why the smallest exact fit is kept and the program read is judged by the projection certificate,
not by this module.

Rebuilt on these atoms — `one`, the tokens, the indices, then each sublayer's in the order it
writes them — the teacher's tensors are Tracr's again, and `compile.reader` reads them as any
compiled model. Two things the residual alone does not keep are taken from where the student keeps
them: a variable's value order, from the head columns and SequenceMap units that run through its
values in order (where nothing does, the reading may relabel that variable's values: the same
student weights, another canonical program); and the scale of a number an MLP writes (a
LinearSequenceMap's, a numerical Map's), from whatever reads it — the read-out, a head's value
column, or a discretising MLP, which reads with Tracr's slope. Anything else raises `NotUnfolded`.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import NoReturn

import numpy as np

from inverse_tracr.compile.model import BOS, PAD, POS_EMBED, READOUT, TOKEN_EMBED, CompiledModel, Layout, layer_param

#: A vector is a combination of atoms when the remainder is this share of its norm (a student is
#: stored in float32; a wrong atom misses by a share of ~1).
RTOL = 1e-4
#: The slope L with which Tracr's discretising MLPs read a number (its compiler's `mlp_exactness`).
MLP_EXACTNESS = 100.0


class NotUnfolded(ValueError):
    """The weights are not a compiled model seen through a projection (the message says where)."""


def _refuse(why: str) -> NoReturn:
    raise NotUnfolded(why)


def _solve(basis: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Coefficients c with c·basis = target (basis [k, d]), or None where none fits."""
    if not len(basis):
        return np.zeros(0) if np.linalg.norm(target) <= RTOL else None
    coefficients = np.linalg.lstsq(basis.T, target, rcond=None)[0]
    miss = np.linalg.norm(coefficients @ basis - target)
    return coefficients if miss <= RTOL * max(1.0, np.linalg.norm(target)) else None


def _tracr_read(column: np.ndarray, one: np.ndarray, tokens: np.ndarray, others: np.ndarray) -> bool:
    """Whether `column` reads, given `one`'s atom, as a unit of Tracr's MLP: tokens (embeddings
    `tokens`, `one` included) with weights 0/1, or one atom of each of two variables less `one`."""
    weights = _solve(tokens - one, column)
    if weights is not None and np.all(np.abs(weights * (weights - 1)) <= 1e-3):
        return True
    atoms = np.concatenate([tokens - one, others])
    return _pair(column + one, atoms, atoms) is not None


def _pair(target: np.ndarray, firsts: np.ndarray, seconds: np.ndarray) -> tuple[int, int] | None:
    """(i, j) with firsts[i] + seconds[j] = target, looked up atom by atom (over two variables
    that have more atoms than the residual has dims, least squares would fit anything)."""
    wanted = target - firsts  # [A, d]: the second atom for each first
    miss = np.linalg.norm(wanted[:, None] - seconds[None], axis=-1)
    hits = np.argwhere(miss <= RTOL * np.maximum(1.0, np.linalg.norm(wanted, axis=-1))[:, None])
    return (int(hits[0][0]), int(hits[0][1])) if len(hits) else None


def _sparse(coefficients: np.ndarray) -> np.ndarray:
    """Coefficients with float noise set to exact zeros (the reader reads a nonzero as a read)."""
    return np.where(np.abs(coefficients) <= RTOL * max(1.0, np.abs(coefficients).max(initial=0.0)), 0.0, coefficients)


class _Unfolder:
    def __init__(self, student: CompiledModel):
        self.student = student
        self.layout = layout = student.layout
        self.p = {name: np.asarray(value, dtype=np.float64) for name, value in student.params.items()}
        if not layout.readout or READOUT not in self.p:
            _refuse("it is not a distilled student (no read-out)")
        for name, value in self.p.items():
            if not np.isfinite(value).all():
                _refuse(f"{name} has non-finite entries")
            if name.endswith("/b") and np.abs(value).max(initial=0.0) > RTOL:
                _refuse(f"bias {name} is not zero (a compressed student keeps its teacher's zero biases)")
        self.atoms: list[np.ndarray] = []
        self.groups: list[list[int]] = []  # dims read together: a variable, or what one op wrote
        self.free: set[int] = set()  # numerical atoms whose scale nothing has pinned yet
        self.reads: dict[tuple[str, int, int], list[int]] = {}  # (tensor, layer, column) -> dims it reads
        self.writes: dict[tuple[str, int, int], list[int]] = {}  # (tensor, layer, row) -> dims it writes
        self.stuck: tuple[int, int] | None = None  # (layer, groups before it) where a unit read nothing

    # -- atoms ---------------------------------------------------------------------------------------

    def _add(self, vector: np.ndarray, free: bool = False, unused: bool = False) -> int:
        if np.linalg.norm(vector) <= RTOL and not unused:
            _refuse("a written dimension has no direction in the student's residual")
        self.atoms.append(vector)
        if free:
            self.free.add(len(self.atoms) - 1)
        return len(self.atoms) - 1

    def _match(self, vector: np.ndarray, what: str) -> int:
        """The dimension whose atom `vector` is (a free numerical atom takes `vector`'s scale)."""
        for i, atom in enumerate(self.atoms):
            if np.linalg.norm(atom - vector) <= RTOL * max(1.0, np.linalg.norm(vector)):
                return i
        for i in self.free:
            scale = _solve(self.atoms[i][None], vector)
            if scale is not None and abs(scale[0]) > RTOL:
                self.atoms[i] = vector
                self.free.discard(i)
                return i
        _refuse(f"{what} is not the direction of any dimension written before it")

    def _read(self, vector: np.ndarray, before: int, pairs: bool = False) -> list[int] | None:
        """The fewest dims whose atoms make `vector`: of one group written before group `before`,
        and `one`; with `pairs`, also one atom of each of two groups less `one`'s (a SequenceMap
        unit)."""
        one = [self.one] if self.one is not None else []
        best = None
        for group in self.groups[:before]:
            dims = group + [d for d in one if d not in group]
            coefficients = _solve(np.array([self.atoms[d] for d in dims]), vector)
            if coefficients is not None:
                support = [d for d, c in zip(dims, _sparse(coefficients)) if c]
                if best is None or len(support) < len(best):
                    best = support
        if pairs and one and (best is None or len(best) > 3):
            for a, b in itertools.combinations(self.groups[:before], 2):
                hit = _pair(vector + self.atoms[self.one], np.array([self.atoms[d] for d in a]), np.array([self.atoms[d] for d in b]))
                if hit is not None:
                    return [a[hit[0]], b[hit[1]], self.one]
        return best

    # -- the model -----------------------------------------------------------------------------------

    def unfold(self) -> CompiledModel:
        p = self.p
        if np.abs(p[POS_EMBED][0]).max() > RTOL:
            _refuse("position 0 (BOS) has a position embedding")
        bos_row = p[TOKEN_EMBED][self.layout.input_tokens.index(BOS)]
        one = self._one_from_heads(bos_row)
        try:
            return self._unfolded(one)
        except NotUnfolded:
            if one is not None or self.stuck is None:
                raise
            one = self._one_from_units(*self.stuck)
        return _Unfolder(self.student)._unfolded(one)

    def _unfolded(self, one: np.ndarray | None) -> CompiledModel:
        token_dims, index_dims = self._embeddings(one)
        for layer in range(self.layout.num_layers):
            self._attention(layer)
            self._mlp(layer)
        output_dims = tuple(self._match(column, "a read-out column") for column in self.p[READOUT].T)
        model = self._rebuilt(token_dims, index_dims, output_dims)
        return _permuted(model, self._value_order())

    def _embeddings(self, one: np.ndarray | None) -> tuple[list[int], list[int]]:
        """The atoms of `one`, the tokens and the indices (the token and index dims)."""
        tokens = self.layout.input_tokens
        self.one = None if one is None else self._add(one)
        shift = one if one is not None else 0.0
        token_dims = [self._add(row - shift, unused=t == PAD) for row, t in zip(self.p[TOKEN_EMBED], tokens)]
        self.bos = token_dims[tokens.index(BOS)]
        index_dims = [self._add(row) for row in self.p[POS_EMBED][1:]]
        self.groups = [[d] for d in [self.one, self.bos] if d is not None]
        self.groups += [[d for d, t in zip(token_dims, tokens) if t not in (BOS, PAD)], index_dims]
        return token_dims, index_dims

    def _one_from_units(self, layer: int, before: int) -> np.ndarray:
        """`one`'s atom where no head gives it, from the first MLP (`layer`) whose units this
        unfolder, taking no `one`, could not read (its token atoms were their embeddings). Tracr's
        units there read tokens S with weights 1 (Σ_S embedding − |S|·one), or one atom of each of
        two variables less `one` (a token's atom: its embedding less `one`'s). Each direction that
        the first such unit's reading gives is kept if every such unit then reads so: over tokens
        alone, many directions fit some weights, but not Tracr's 0/1."""
        w1 = self.p[layer_param(layer, "mlp/linear_1/w")]
        columns = [w1[:, u] for u in range(w1.shape[1]) if np.linalg.norm(w1[:, u]) > RTOL and self._read(w1[:, u], before, pairs=True) is None]
        tokens = np.array([self.atoms[d] for d in self.groups[1]])  # no `one`: groups are BOS, tokens, indices, …
        others = np.array([self.atoms[d] for g in self.groups[2:before] for d in g])
        first = columns[0]
        subsets = (s for n in range(1, len(tokens) + 1) for s in itertools.combinations(tokens, n))
        guesses = [(sum(s) - first) / len(s) for s in subsets]
        guesses += [(t + a - first) / 2 for t in tokens for a in others] + [a + b - first for a, b in itertools.combinations(others, 2)]
        for one in guesses:
            if all(_tracr_read(column, one, tokens, others) for column in columns):
                return one
        _refuse(f"no direction of `one` makes layer {layer}'s MLP read its variables as Tracr's do")

    def _one_from_heads(self, bos_row: np.ndarray) -> np.ndarray | None:
        """Tracr's heads score BOS with a query reading `one`, so a key column that is
        BOS's atom has a query column parallel to BOS's embedding less that key column."""
        layout, p = self.layout, self.p
        for layer in range(layout.num_layers):
            q, k = p[layer_param(layer, "attn/query/w")], p[layer_param(layer, "attn/key/w")]
            for j in range(k.shape[1]):
                candidate = bos_row - k[:, j]
                if np.linalg.norm(k[:, j]) > RTOL and np.linalg.norm(candidate) > RTOL and np.linalg.norm(q[:, j]) > RTOL:
                    scale = _solve(candidate[None], q[:, j])
                    if scale is not None and scale[0] > 0:
                        return candidate
        return None

    def _attention(self, layer: int) -> None:
        p, size = self.p, self.layout.key_size
        q, k, v, o = (p[layer_param(layer, f"attn/{n}/w")] for n in ("query", "key", "value", "linear"))
        before = len(self.groups)
        for h in range(self.layout.num_heads):
            cols = range(h * size, (h + 1) * size)
            if not any(np.abs(m).max() > RTOL for m in (q[:, cols], k[:, cols], v[:, cols], o[cols])):
                continue
            where = f"head {h} of layer {layer}"
            written = []
            for j in cols:
                if np.linalg.norm(k[:, j]) > RTOL:
                    self.reads["key", layer, j] = [self._match(k[:, j], f"a key column of {where}")]
                if np.linalg.norm(v[:, j]) > RTOL:
                    self.reads["value", layer, j] = [self._match(v[:, j], f"a value column of {where}")]
                if np.linalg.norm(q[:, j]) > RTOL:
                    dims = self._read(q[:, j], before)
                    if dims is None:
                        _refuse(f"a query column of {where} reads no one variable")
                    self.reads["query", layer, j] = dims
                if np.linalg.norm(o[j]) > RTOL:
                    self.writes["linear", layer, j] = [self._add(o[j])]
                    written += self.writes["linear", layer, j]
            if written:
                self.groups.append(written)

    def _mlp(self, layer: int) -> None:
        p = self.p
        w1, w2 = p[layer_param(layer, "mlp/linear_1/w")], p[layer_param(layer, "mlp/linear_2/w")]
        before = len(self.groups)
        units = [u for u in range(w1.shape[1]) if np.linalg.norm(w1[:, u]) > RTOL or np.linalg.norm(w2[u]) > RTOL]
        thresholds: dict[int, int] = {}  # threshold unit -> the dim it reads
        starts, cleaners, lookups = [], [], []
        for u in units:
            dims = self._read(w1[:, u], before, pairs=True)
            if dims is None:
                self.stuck = (layer, before)
                _refuse(f"hidden unit {u} of layer {layer} reads no one variable or pair of variables")
            self.reads["linear_1", layer, u] = dims
            rest = [d for d in dims if d != self.one]
            if dims == [self.one]:
                starts.append(u)
            elif rest == [self.bos]:
                cleaners.append(u)
            elif self.one in dims and len(rest) == 1:
                thresholds[u] = rest[0]
            else:
                lookups.append(u)
        new: list[int] = []
        for u in lookups:  # a lookup unit writes its output value's atom with weight 1
            if np.linalg.norm(w2[u]) > RTOL:
                dim = next((d for d in new if np.linalg.norm(self.atoms[d] - w2[u]) <= RTOL * max(1.0, np.linalg.norm(w2[u]))), None)
                if dim is None:  # a LinearSequenceMap's units write ± its factors times one atom
                    dim = next((d for d in new if _solve(self.atoms[d][None], w2[u]) is not None), None)
                    self.free |= {dim} - {None}
                self.writes["linear_2", layer, u] = [dim if dim is not None else self._add(w2[u])]
                new += [d for d in self.writes["linear_2", layer, u] if d not in new]
        # Tracr lays out each discretising MLP's units together, its `one`-reading start unit last.
        blocks: list[tuple[int, list[int], list[int]]] = []  # (input dim, threshold units, start units)
        for u in sorted([*thresholds, *starts]):
            if u in thresholds and (not blocks or blocks[-1][0] != thresholds[u] or blocks[-1][2]):
                blocks.append((thresholds[u], [], []))
            if not blocks:
                _refuse(f"layer {layer}'s MLP has a unit reading only `one` before any threshold unit")
            blocks[-1][1 if u in thresholds else 2].append(u)
        outputs = []  # (input dim, output dims) of each discretising MLP
        for x, threshold_units, mine in blocks:
            dims = self._discretised(layer, x, threshold_units, mine, w1, w2)
            for u in threshold_units + mine:
                self.writes["linear_2", layer, u] = dims
            outputs.append((x, dims))
            new += [d for d in dims if d not in new]
        # A layer's SelectorWidths share one BOS-cleaning unit, which writes into their dims.
        cleaned = [d for x, dims in outputs for d in dims + [x]]
        for u in cleaners:
            weights = _solve(np.array([self.atoms[d] for d in cleaned]), w2[u]) if cleaned else None
            if weights is None:
                _refuse(f"a BOS-reading unit of layer {layer} writes outside a SelectorWidth's dimensions")
            self.writes["linear_2", layer, u] = [d for d, w in zip(cleaned, _sparse(weights)) if w]
        runs: dict[tuple[int, ...], list[tuple[set, list[int]]]] = {}
        for u in lookups:  # a table's dims: units reading the same variables, each of their values
            # (pairs of values) lit once; where one is lit again, the next table of that input starts
            if ("linear_2", layer, u) in self.writes:
                read = [d for d in self.reads["linear_1", layer, u] if d != self.one]
                key = tuple(sorted({self._group_of(d) for d in read}))
                hot = {tuple(read)} if len(key) == 2 else set(read)
                tables = runs.setdefault(key, [])
                if not tables or tables[-1][0] & hot:
                    tables.append((set(), []))
                tables[-1][0].update(hot)
                tables[-1][1].extend(d for d in self.writes["linear_2", layer, u] if d not in tables[-1][1])
        self.groups += [dims for tables in runs.values() for _, dims in tables] + [dims for _, dims in outputs]

    def _discretised(self, layer: int, x: int, units: list[int], starts: list[int], w1, w2) -> list[int]:
        """The dims a discretising MLP writes: its outputs between thresholds, each one atom
        (several: a categorical output) or multiples of one (a numerical output)."""
        if x in self.free:  # a number nothing pinned yet: scaled so that it is read with Tracr's slope
            slope = _solve(np.array([self.atoms[x], self.atoms[self.one]]), w1[:, units[0]])[0]
            self.atoms[x] = self.atoms[x] * slope / MLP_EXACTNESS
            self.free.discard(x)
        basis = np.array([self.atoms[x], self.atoms[self.one]])
        reads = np.array([_solve(basis, w1[:, u]) for u in units])  # [U, 2]: (slope, bias)
        order = np.argsort(-reads[:, 1])
        free = np.ones(len(units), dtype=bool)
        steps = []
        for i in order:  # the larger bias of a pair relu(L(x−t)+1), relu(L(x−t)) writes the step
            if not free[i]:
                continue
            free[i] = False
            partner = free & (np.abs(reads[:, 1] - (reads[i, 1] - 1)) <= 1e-3) & (np.abs(reads[:, 0] - reads[i, 0]) <= 1e-3 * abs(reads[i, 0]))
            if not partner.any():
                _refuse(f"threshold units of layer {layer}'s MLP do not come in Tracr's pairs")
            j = int(np.argmax(partner))
            free[j] = False
            steps.append((-reads[j, 1] / reads[j, 0], w2[units[i]]))
        value = sum((w2[s] for s in starts), np.zeros(w2.shape[1]))
        outputs = [value]
        for _, step in sorted(steps, key=lambda s: s[0]):
            outputs.append(outputs[-1] + step)
        nonzero = [v for v in outputs if np.linalg.norm(v) > RTOL]
        distinct = []
        for v in nonzero:
            if not any(np.linalg.norm(v - w) <= RTOL * max(1.0, np.linalg.norm(v)) for w in distinct):
                distinct.append(v)
        if len(distinct) > 1 and np.linalg.matrix_rank(np.array(distinct), tol=RTOL * max(np.linalg.norm(v) for v in distinct)) == 1:
            return [self._add(distinct[0], free=True)]  # a numerical output: one atom, scaled by its values
        # Dims in the order of the values they stand for, as Tracr's: a SelectorWidth's counts grow
        # as its input 1/(w+1) falls (another categorical output's value order is not kept).
        return [self._add(v, free=len(distinct) == 1) for v in reversed(distinct)]

    def _value_order(self) -> np.ndarray:
        """Where each dim goes so that a variable's dims are in the order of its values, as
        Tracr's are. The student's residual keeps no order, but its heads and hidden units do: a
        head's key and value columns follow the values of the variable they read, and a SequenceMap's
        units run through its operands' values in order. Where nothing reads a variable so, its
        order is the one it was written in (a SequenceMap's output: first written, first)."""
        witnesses = []
        for layer in range(self.layout.num_layers):
            for part in ("key", "value"):
                columns = sorted(j for (name, at, j) in self.reads if (name, at) == (part, layer))
                heads = itertools.groupby(columns, key=lambda j: j // self.layout.key_size)
                witnesses += [[self.reads[part, layer, j][0] for j in js] for _, js in heads]
            operands: dict[int, list[int]] = {}
            for (name, at, u), dims in sorted(self.reads.items()):
                pair = [d for d in dims if d != self.one]
                if (name, at) == ("linear_1", layer) and self.one in dims and len({self._group_of(d) for d in pair}) == 2:
                    for d in pair:
                        operands.setdefault(self._group_of(d), []).append(d)
            witnesses += list(operands.values())
        slot = list(range(len(self.atoms)))
        for witness in witnesses:
            witness = [d for d in dict.fromkeys(witness) if d != self.bos]
            for position, d in zip(sorted(slot[d] for d in witness), witness):
                slot[d] = position
        return np.argsort(slot)

    def _group_of(self, dim: int) -> int:
        return next(i for i, g in enumerate(self.groups) if dim in g)

    # -- the rebuilt tensors -------------------------------------------------------------------------

    def _rebuilt(self, token_dims: list[int], index_dims: list[int], output_dims: tuple[int, ...]) -> CompiledModel:
        layout, p = self.layout, self.p
        atoms = np.array(self.atoms)
        width = len(atoms)
        params = {}
        tokens = np.zeros((len(token_dims), width))
        tokens[np.arange(len(token_dims)), token_dims] = 1
        if self.one is not None:
            tokens[:, self.one] = 1
        positions = np.zeros((len(index_dims) + 1, width))
        positions[np.arange(1, len(index_dims) + 1), index_dims] = 1
        names = {"query": "attn/query", "key": "attn/key", "value": "attn/value", "linear": "attn/linear",
                 "linear_1": "mlp/linear_1", "linear_2": "mlp/linear_2"}
        for layer in range(layout.num_layers):
            for short, module in names.items():
                stored = p[layer_param(layer, f"{module}/w")]
                writes = short in ("linear", "linear_2")
                rebuilt = np.zeros((stored.shape[0], width) if writes else (width, stored.shape[1]))
                for j in range(stored.shape[0] if writes else stored.shape[1]):
                    vector = stored[j] if writes else stored[:, j]
                    dims = (self.writes if writes else self.reads).get((short, layer, j))
                    if dims is None:
                        if np.linalg.norm(vector) > RTOL:
                            _refuse(f"{layer_param(layer, module)} has a part that reads or writes nothing known")
                        continue
                    coefficients = _solve(atoms[dims], vector)
                    if coefficients is None:
                        _refuse(f"{layer_param(layer, module)} is not a combination of the dimensions it was read as")
                    if writes:
                        rebuilt[j, dims] = _sparse(coefficients)
                    else:
                        rebuilt[dims, j] = _sparse(coefficients)
                params[layer_param(layer, f"{module}/w")] = rebuilt.astype(np.float32)
                bias = p[layer_param(layer, f"{module}/b")]
                params[layer_param(layer, f"{module}/b")] = np.zeros(width if writes else bias.shape, np.float32)
        params[TOKEN_EMBED], params[POS_EMBED] = tokens.astype(np.float32), positions.astype(np.float32)
        labels = tuple(f"d{i}" for i in range(width))
        rebuilt_layout = Layout(layout.num_layers, layout.num_heads, layout.key_size, layout.mlp_hidden_size, labels,
                                layout.input_tokens, output_dims, layout.output_values, readout=False, causal=layout.causal)
        return CompiledModel(params, rebuilt_layout)


def _permuted(model: CompiledModel, order: np.ndarray) -> CompiledModel:
    """`model` with residual dim `order[i]` moved to place i."""
    place = np.argsort(order)
    params = {}
    for name, value in model.params.items():
        reads = name.endswith(("query/w", "key/w", "value/w", "linear_1/w"))
        writes = name.endswith(("embeddings", "linear/w", "linear/b", "linear_2/w", "linear_2/b"))
        params[name] = value[order] if reads else value[..., order] if writes else value
    layout = dataclasses.replace(model.layout, output_dims=tuple(int(place[d]) for d in model.layout.output_dims))
    return CompiledModel(params, layout)


def unfold(student: CompiledModel) -> CompiledModel:
    """The standard compiled model `student` was folded from, its dims in the order of their
    values where the student keeps it; raises `NotUnfolded` where the weights are no such fold."""
    return _Unfolder(student).unfold()
