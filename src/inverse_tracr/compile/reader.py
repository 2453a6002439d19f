"""Read a standard compiled Tracr model back into its RASP program, from the weights alone.

A model that Tracr compiled carries its program in plain sight (NumPy only: no JAX, no Tracr
compiler). What the reader relies on — Tracr's conventions, see `tracr/craft/chamber/*` and
`tracr/compiler/assemble.py`:

- **Residual stream.** Every dimension is a basis direction `name:value`, sorted by (name, value),
  so a categorical variable is a *contiguous* block of one-hot dimensions in sorted value order and
  a numerical variable is one dimension. `token_embed` writes a token's one-hot plus the `one`
  dimension (1 in every row); `pos_embed` row 0 (BOS) is zero, row i+1 is index i's one-hot.
- **Sublayers** read and write disjoint dimensions: every variable is written once, by the
  sublayer that computes it, and only read afterwards. Biases are zero (Tracr uses `one`).
- **Attention head** (`categorical_attn`): the key matrix is a projection of the key variable and
  BOS; Q·Kᵀ is `c`·[predicate(key, query)] on (query, key) one-hot pairs plus `one`→BOS at `c/2`
  (Aggregate: BOS only wins when nothing else is selected) or at `c` (SelectorWidth: BOS always
  attended). V·O maps value dims one-to-one onto output dims (categorical: same values; numerical:
  weight 1). A SelectorWidth head's value reads only BOS; the next MLP turns 1/(w+1) into w.
- **MLP hidden units**: a categorical Map has one unit per output value reading the inputs that map
  to it (weights 1, W2 = identity); a categorical→numerical Map one unit reading f(x) (ReLU'd!);
  a SequenceMap one unit per (x, y) pair reading x + y − one, sorted with the *first* operand
  varying slowest; a numerical Map (`numerical_mlp`) discretises its input: a `start` unit reading
  `one` that writes f(v₀), and per threshold t a pair relu(L(x−t)+1), relu(L(x−t)) writing ±Δ; a
  LinearSequenceMap four units ±x, ±y (first operand first). A SelectorWidth MLP adds one unit that
  reads BOS and cleans the BOS position.

Values: tokens keep their labels (`input_tokens`), indices are 0..N−1, SelectorWidth counts
0..N, the output keeps its labels (`output_values`, propagated back through categorical
Aggregates to the variable that made them); every other categorical variable's values are its
ranks 0..n−1 in residual order (the weights fix them only up to an order-preserving relabelling).
Numerical values are Python floats snapped to simple fractions within float32 error.

Where the weights cannot tell, a convention (the canonical form must agree with it):
- a Select that selects nothing (FALSE) has no query rows: its queries are read as its keys;
- a SequenceMap whose operands cannot be ordered (one has a single value) puts the earlier-made
  variable first;
- a one-dimension variable that nothing reads categorically (a constant) is numerical;
- a categorical -> numerical Map is read as the weights compute it, ReLU included.

Anything that is not such a layout raises `NotCompiledLayout` ("not a compiled Tracr layout: ...").
A reading is then a canonical `Program`, checked (`compile.check.Behaviour`) against the model's
forward pass on every input up to the model's length (a random sample where there are more than
5,000); a disagreement raises `ReadingMismatch`, a `NotCompiledLayout` — typically Tracr's own
model being wrong (a categorical mean over several values, two SelectorWidths sharing one
BOS-cleaning unit, an inexact discretising MLP).

A model compiled with `causal=True` has the same weights; its attention mask is in the layout
(`Layout.causal`), so it reads as the same program with `Program.causal` set, and is checked
against the masked forward pass with the masked evaluation.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from fractions import Fraction
from typing import Any, Callable, NoReturn, Sequence

import numpy as np
from networkx.utils import UnionFind
from tracr.rasp import rasp

from inverse_tracr.compile import unfold
from inverse_tracr.compile.check import Behaviour
from inverse_tracr.compile.model import BOS, LAYER_MODULES, PAD, POS_EMBED, READOUT, TOKEN_EMBED, CompiledModel, layer_param
from inverse_tracr.programs import Program, ProgramError

PREFIX = "not a compiled Tracr layout: "
_EPS = 1e-4  # tolerance on weights that must equal small exact constants (0, ±1, c, L)
_HOT = 1e-3  # one-hot decoding tolerance
_MAX_DENOMINATOR = 1000

CAT, NUM = "categorical", "numerical"


class NotCompiledLayout(ValueError):
    """The weights are not a standard Tracr layout (or do not compute the program read from them)."""

    def __init__(self, why: str):
        super().__init__(PREFIX + why)
        self.why = why


class ReadingMismatch(NotCompiledLayout):
    """The weights read as a program, but the model's forward pass disagrees with it somewhere
    (Tracr's own model is wrong there, e.g. a categorical mean over several values)."""


def _refuse(why: str, error: type[NotCompiledLayout] = NotCompiledLayout) -> NoReturn:
    raise error(why)


@dataclasses.dataclass(frozen=True)
class ReadOp:
    """One operation as read: where it sits and the table it computes."""

    label: str
    kind: str  # Map, SequenceMap, LinearSequenceMap, Select, Aggregate, SelectorWidth
    layer: int  # Tracr layer (0-based); attention ops sit in its attn sublayer, the rest in its MLP
    sublayer: str  # "attn" or "mlp"
    inputs: tuple[str, ...]  # operand labels (Select: keys, queries)
    encoding: str | None  # output encoding (None for a Select)
    values: tuple[Any, ...] | None  # categorical output values (dimension order); None otherwise
    table: Any  # dict for Map/SequenceMap/Select, (fst_fac, snd_fac) for LinearSequenceMap, else None


@dataclasses.dataclass
class Reading:
    sop: rasp.SOp  # RASP has no mask: for a causal model, evaluate it with `tracr.rasp.causal_eval`
    program: Program  # the canonical program (`sop` with its tables; the labels the weights fix)
    vocab: tuple[Any, ...]
    max_seq_len: int
    ops: list[ReadOp]
    checked_inputs: int  # sequences on which the reading was compared with the model's forward pass
    exhaustive: bool  # whether those were all sequences up to max_seq_len


# ------------------------------------------------------------------------------------------------
# Small helpers


def snap(y: float) -> float:
    """A float32-precision number as the simple fraction it most likely is, else as float32."""
    y = float(y)
    fraction = Fraction(y).limit_denominator(_MAX_DENOMINATOR)
    if abs(float(fraction) - y) <= 1e-6 * max(1.0, abs(y)):
        return float(fraction)
    return float(np.float32(y))


def _close(a: Any, b: Any) -> bool:
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))


def _lookup(table: dict) -> Callable[[Any], Any]:
    """Table lookup; numerical keys also match within float error (a mean computed another way)."""

    def f(x):
        try:
            return table[x]
        except (KeyError, TypeError):
            pass
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            for key, value in table.items():
                if isinstance(key, (int, float)) and _close(key, x):
                    return value
        return None

    return f


def _steps(thresholds: Sequence[float], outputs: Sequence[Any]) -> Callable[[Any], Any]:
    """Tracr's discretising MLP: outputs[k] where k = #{thresholds <= x}."""
    thresholds = list(thresholds)

    def f(x):
        if x is None or isinstance(x, str):
            return None
        return outputs[bisect.bisect_right(thresholds, float(x))]

    return f


def _is(array: np.ndarray, value: float) -> np.ndarray:
    return np.abs(array - value) <= _EPS * max(1.0, abs(value))



# ------------------------------------------------------------------------------------------------
# Parsed structure


@dataclasses.dataclass
class _Var:
    id: int
    dims: tuple[int, ...]  # residual dimensions, ascending
    origin: str  # tokens, indices, cmap, seqmap, nmap, lsm, agg, sw, sw_attn
    sublayer: int  # index into the sublayer list (-1: embeddings)
    kinds: set[str]  # encodings still possible (a constant 1-dim variable may be either)
    values: list[Any] | None = None  # categorical: value of each dim; numerical: sorted value set
    labels: list[Any] | None = None  # user labels forced from the output
    sop: rasp.SOp | None = None
    op: Any = None

    @property
    def kind(self) -> str:
        return next(iter(self.kinds))


@dataclasses.dataclass
class _Head:
    sublayer: int
    index: int
    sw: bool
    q_dims: list[int]
    k_dims: list[int]
    v_dims: list[int]
    o_dims: list[int]
    truth: np.ndarray  # [query dims, key dims] booleans
    pairs: dict[int, int]  # value dim -> output dim
    out: _Var | None = None
    queries: _Var | None = None
    keys: _Var | None = None
    value: _Var | None = None


@dataclasses.dataclass
class _Comp:
    """Hidden units of one MLP layer that together compute one operation."""

    sublayer: int
    kind: str  # C (one unit reading a categorical block), S (SequenceMap units), N (discretising), L (linear)
    units: list[int]
    reads: list[int]  # non-`one` dims read
    writes: list[int]
    hot: frozenset = frozenset()  # C/S: input dims (C) or (x, y) dim pairs (S) that light the output
    binary: bool = True  # C: weights all 1
    x: int | None = None  # N: the input dim
    inputs: list = dataclasses.field(default_factory=list)  # operand variables
    out: _Var | None = None


class _Reader:
    def __init__(self, model: CompiledModel):
        self.model = model
        self.layout = model.layout
        self.p = self._arrays()
        self._embeddings()
        self.vars: list[_Var] = []
        self.var_of: dict[int, _Var] = {}
        self.ops: list[ReadOp] = []

    # -- parameters ---------------------------------------------------------------------------------

    def _arrays(self) -> dict[str, np.ndarray]:
        params, layout = self.model.params, self.layout
        if layout.readout or READOUT in params:
            _refuse(f"it has a read-out tensor `{READOUT}` (a distilled student's learned residual, not Tracr's named dimensions)")
        names = {TOKEN_EMBED, POS_EMBED}
        for layer in range(layout.num_layers):
            for module in LAYER_MODULES:
                names |= {layer_param(layer, f"{module}/w"), layer_param(layer, f"{module}/b")}
        extra, missing = sorted(set(params) - names), sorted(names - set(params))
        if extra:
            _refuse(f"unexpected parameters {extra[:3]} (a Tracr model has embeddings, attention and MLP weights only)")
        if missing:
            _refuse(f"missing parameters {missing[:3]}")
        p = {name: np.asarray(value, dtype=np.float32) for name, value in params.items()}
        d = p[TOKEN_EMBED].shape[1]
        hk, m = layout.num_heads * layout.key_size, layout.mlp_hidden_size
        for layer in range(layout.num_layers):
            shapes = {
                "attn/query/w": (d, hk), "attn/key/w": (d, hk), "attn/value/w": (d, hk), "attn/linear/w": (hk, d),
                "mlp/linear_1/w": (d, m), "mlp/linear_2/w": (m, d),
            }
            for name, shape in shapes.items():
                if p[layer_param(layer, name)].shape != shape:
                    _refuse(f"{layer_param(layer, name)} has shape {p[layer_param(layer, name)].shape}, expected {shape}")
        for name, value in p.items():
            if not np.isfinite(value).all():
                _refuse(f"{name} has non-finite entries")
            if not name.endswith("/b") and value.size and np.count_nonzero(value) == value.size:
                _refuse(f"{name} has no exact zeros (Tracr's weights are sparse: this looks like noise, training or random weights)")
        for name, value in p.items():
            if name.endswith("/b") and value.any():
                _refuse(f"bias {name} is not zero (Tracr writes no biases: it adds through the `one` dimension)")
        return p

    def _embeddings(self) -> None:
        tokens = list(self.layout.input_tokens)
        e = self.p[TOKEN_EMBED]
        self.width = e.shape[1]
        if e.shape[0] != len(tokens):
            _refuse(f"token embedding has {e.shape[0]} rows for {len(tokens)} input tokens")
        if BOS not in tokens or PAD not in tokens:
            _refuse("input tokens lack the compiler's BOS/PAD tokens")
        if not (_is(e, 0) | _is(e, 1)).all():
            _refuse("the token embedding is not 0/1 (Tracr embeds a token as its one-hot plus `one`)")
        e = (e > 0.5).astype(np.int8)
        common = np.flatnonzero(e.all(axis=0))
        if len(common) > 1:
            _refuse("the token embedding writes several dimensions for every token")
        self.one = int(common[0]) if len(common) else None
        rest = e.copy()
        if self.one is not None:
            rest[:, self.one] = 0
        if (rest.sum(axis=1) != 1).any():
            _refuse("a token's embedding is not one-hot")
        token_dims = rest.argmax(axis=1)
        if len(set(token_dims.tolist())) != len(tokens):
            _refuse("two tokens share an embedding dimension")
        self.bos = int(token_dims[tokens.index(BOS)])
        self.pad = int(token_dims[tokens.index(PAD)])
        self.vocab = tuple(t for t in tokens if t not in (BOS, PAD))
        self.token_pairs = sorted((int(d), t) for d, t in zip(token_dims, tokens) if t not in (BOS, PAD))

        pos = self.p[POS_EMBED]
        if pos.shape[0] < 2:
            _refuse("the position embedding has no positions")
        if pos[0].any():
            _refuse("position 0 (BOS) has a position embedding (Tracr leaves it zero)")
        if not (_is(pos, 0) | _is(pos, 1)).all() or ((pos > 0.5).sum(axis=1)[1:] != 1).any():
            _refuse("the position embedding is not one-hot")
        index_dims = (pos[1:] > 0.5).argmax(axis=1).tolist()
        if len(set(index_dims)) != len(index_dims) or set(index_dims) & (set(token_dims.tolist()) | {self.one}):
            _refuse("position embeddings overlap each other or the token embedding")
        self.max_seq_len = pos.shape[0] - 1
        self.index_dims = index_dims
        for name, value in self.p.items():  # [D, ...] reads the residual; [..., D] writes it
            reads = name.endswith(("query/w", "key/w", "value/w", "linear_1/w"))
            touched = value[self.pad] if reads else value[..., self.pad] if name.endswith(("linear/w", "linear_2/w")) else None
            if touched is not None and touched.any():
                _refuse(f"{name} {'reads' if reads else 'writes'} the PAD token's dimension, which Tracr never uses (noise or training?)")

    # -- variables ----------------------------------------------------------------------------------

    def _new_var(self, dims: Sequence[int], origin: str, sublayer: int, kinds: set[str]) -> _Var:
        dims = tuple(sorted(int(d) for d in dims))
        for d in dims:
            if d in self.var_of or d in (self.one, self.bos, self.pad):
                _refuse(f"residual dimension {d} is written twice (sublayer {sublayer})")
        var = _Var(len(self.vars), dims, origin, sublayer, set(kinds))
        self.vars.append(var)
        for d in dims:
            self.var_of[d] = var
        return var

    def _var_of_dims(self, dims: Sequence[int], what: str, sublayer: int) -> _Var:
        unknown = [d for d in dims if d not in self.var_of]
        if not dims or unknown:
            _refuse(f"{what} in sublayer {sublayer} reads dimensions {unknown[:4]} that nothing wrote before")
        if len({self.var_of[d].id for d in dims}) != 1:
            _refuse(f"{what} in sublayer {sublayer} reads several variables at once")
        var = self.var_of[dims[0]]
        if var.sublayer >= sublayer:
            _refuse(f"{what} in sublayer {sublayer} reads a variable written in the same sublayer")
        return var

    def _restrict(self, var: _Var, kinds: set[str], why: str) -> None:
        if not var.kinds & kinds:
            _refuse(f"variable at dims {list(var.dims)[:4]} is read as {'/'.join(sorted(kinds))} by {why} but is {'/'.join(sorted(var.kinds))}")
        var.kinds &= kinds

    # -- the whole reading --------------------------------------------------------------------------

    def read(self) -> tuple[rasp.SOp, list[ReadOp]]:
        tokens = self._new_var([d for d, _ in self.token_pairs], "tokens", -1, {CAT})
        tokens.values = [t for _, t in self.token_pairs]
        tokens.sop = rasp.tokens
        indices = self._new_var(self.index_dims, "indices", -1, {CAT})
        order = {d: i for i, d in enumerate(self.index_dims)}
        indices.values = [order[d] for d in indices.dims]
        indices.sop = rasp.indices

        layers = []
        for layer in range(self.layout.num_layers):
            layers.append(("attn", layer, self._parse_heads(layer, 2 * layer)))
            layers.append(("mlp", layer, self._parse_mlp(layer, 2 * layer + 1)))
        self.numeric_dims, self.blocks = self._evidence(layers)
        for kind, layer, parsed in layers:
            if kind == "attn":
                self._attach_heads(parsed)
            else:
                self._attach_mlp(parsed, layer)
        output = self.output = self._output_var()
        self._resolve_kinds()
        self._propagate_labels(output)
        for var in self.vars:
            if var.sop is None:
                self._build(var)
        used, stack = set(), [output.sop]  # the program is what the output depends on
        while stack:
            expr = stack.pop()
            if expr.name not in used:
                used.add(expr.name)
                stack.extend(expr.children)
        return output.sop, [op for op in self.ops if op.label in used]

    # -- attention ----------------------------------------------------------------------------------

    def _parse_heads(self, layer: int, sublayer: int) -> list[_Head]:
        prefix = layer_param(layer, "attn")
        wq, wk, wv, wo = (self.p[f"{prefix}/{n}/w"] for n in ("query", "key", "value", "linear"))
        size = self.layout.key_size
        heads = []
        for h in range(self.layout.num_heads):
            cols = slice(h * size, (h + 1) * size)
            q, k, v, o = wq[:, cols], wk[:, cols], wv[:, cols], wo[cols, :]
            if not (q.any() or k.any() or v.any() or o.any()):
                continue
            where = f"head {h} of layer {layer}"
            for name, m in (("key", k), ("output", o)):
                if not (_is(m, 0) | _is(m, 1)).all() or ((m > 0.5).sum(0) > 1).any() or ((m > 0.5).sum(1) > 1).any():
                    _refuse(f"the {name} matrix of {where} is not a 0/1 projection")
            if self.one is None:
                _refuse(f"{where} exists but the model has no `one` dimension")
            qk = q.astype(np.float64) @ k.astype(np.float64).T  # [D, D] (query dim, key dim)
            ov = v.astype(np.float64) @ o.astype(np.float64)  # [D, D] (value dim, output dim)
            k_dims = np.flatnonzero((k > 0.5).any(axis=1)).tolist()
            o_dims = np.flatnonzero((o > 0.5).any(axis=0)).tolist()
            if self.bos not in k_dims:
                _refuse(f"{where} does not read BOS as a key")
            s_bos = qk[self.one, self.bos]
            if s_bos <= 0:
                _refuse(f"{where} gives BOS no attention score")
            rest = qk.copy()
            rest[self.one, self.bos] = 0
            if rest[:, self.bos].any() or rest[self.one].any():
                _refuse(f"{where} scores BOS or `one` beyond Tracr's default-to-BOS term")
            q_dims = np.flatnonzero(np.abs(rest).max(axis=1) > 0).tolist()
            v_dims = np.flatnonzero(np.abs(ov).max(axis=1) > 0).tolist()
            sw = v_dims == [self.bos]
            c = s_bos if sw else 2 * s_bos
            key_dims = [d for d in k_dims if d != self.bos]
            sub = rest[np.ix_(q_dims, key_dims)] / c if q_dims and key_dims else np.zeros((len(q_dims), len(key_dims)))
            if not (_is(sub, 0) | _is(sub, 1)).all():
                _refuse(f"the attention scores of {where} are not 0/1 multiples of one softmax coldness")
            if set(np.flatnonzero(np.abs(ov).max(axis=0) > 0).tolist()) != set(o_dims):
                _refuse(f"{where} writes dimensions its values never reach")
            pairs: dict[int, int] = {}
            if sw:
                if len(o_dims) != 1 or not _is(ov[self.bos, o_dims[0]], 1):
                    _refuse(f"{where} (a SelectorWidth head) does not copy BOS to one dimension")
            else:
                if self.bos in v_dims or self.one in v_dims:
                    _refuse(f"{where} aggregates BOS or `one` together with a variable")
                block = ov[np.ix_(v_dims, o_dims)]
                if not (_is(block, 0) | _is(block, 1)).all() or ((block > 0.5).sum(0) != 1).any() or ((block > 0.5).sum(1) != 1).any():
                    _refuse(f"the value/output map of {where} is not one-to-one with weight 1")
                for i, d in enumerate(v_dims):
                    pairs[d] = o_dims[int(np.argmax(block[i]))]
            heads.append(_Head(sublayer, h, sw, q_dims, key_dims, v_dims, o_dims, sub > 0.5, pairs))
        return heads

    def _attach_heads(self, heads: list[_Head]) -> None:
        for head in heads:
            what = f"attention head {head.index}"
            head.keys = self._var_of_dims(head.k_dims, what + " (keys)", head.sublayer)
            if list(head.keys.dims) != sorted(head.k_dims):
                _refuse(f"{what} reads part of a variable as keys")
            if head.q_dims:
                head.queries = self._var_of_dims(head.q_dims, what + " (queries)", head.sublayer)
            else:  # nothing is ever selected: the weights do not say which variable is queried
                head.queries = head.keys
            self._restrict(head.keys, {CAT}, "a Select's keys")
            self._restrict(head.queries, {CAT}, "a Select's queries")
            if head.sw:
                head.out = self._new_var(head.o_dims, "sw_attn", head.sublayer, {NUM})
            else:
                head.value = self._var_of_dims(head.v_dims, what + " (values)", head.sublayer)
                if list(head.value.dims) != sorted(head.v_dims):
                    _refuse(f"{what} aggregates part of a variable")
                kinds = {CAT, NUM} if len(head.o_dims) == 1 else {CAT}
                head.out = self._new_var(head.o_dims, "agg", head.sublayer, kinds & head.value.kinds)
            head.out.op = head

    # -- MLPs -----------------------------------------------------------------------------------------

    def _parse_mlp(self, layer: int, sublayer: int) -> dict[str, Any]:
        w1 = self.p[layer_param(layer, "mlp/linear_1/w")]
        w2 = self.p[layer_param(layer, "mlp/linear_2/w")]
        active = np.flatnonzero(w1.any(axis=0) | w2.any(axis=1)).tolist()
        one = self.one
        live, cleaners, orphans = [], [], []
        reads: dict[int, list[int]] = {}
        for u in active:
            r = np.flatnonzero(w1[:, u]).tolist()
            w = np.flatnonzero(w2[u]).tolist()
            nonone = [d for d in r if d != one]
            if not r:
                _refuse(f"hidden unit {u} of layer {layer}'s MLP reads nothing (a constant: its input cannot be read)")
            if nonone == [self.bos] and one not in r:
                if w1[self.bos, u] <= 0:  # 1 per SelectorWidth in the layer: they share this unit
                    _refuse(f"the BOS-cleaning unit {u} of layer {layer} does not read BOS positively")
                cleaners.append(u)
                continue
            if self.bos in nonone or self.pad in nonone:
                _refuse(f"hidden unit {u} of layer {layer} reads BOS/PAD together with variables")
            reads[u] = nonone
            (live if w else orphans).append(u)
        uf = UnionFind(live)
        first_writer: dict[int, int] = {}
        for u in live:
            for d in np.flatnonzero(w2[u]).tolist():
                if d in first_writer:
                    uf.union(u, first_writer[d])
                else:
                    first_writer[d] = u
        groups: dict[int, list[int]] = {}
        for u in live:
            groups.setdefault(uf[u], []).append(u)
        comps = [self._classify(sorted(units), reads, w1, w2, layer, sublayer) for units in groups.values()]
        return {"comps": comps, "cleaners": cleaners, "orphans": orphans, "reads": reads, "w1": w1, "w2": w2, "sublayer": sublayer}

    def _classify(self, units, reads, w1, w2, layer, sublayer) -> _Comp:
        one = self.one
        where = f"layer {layer}'s MLP (units {units[:4]})"
        writes = sorted(set(itertools.chain.from_iterable(np.flatnonzero(w2[u]).tolist() for u in units)))
        reads_one = [one is not None and w1[one, u] != 0 for u in units]
        nonone = sorted(set(itertools.chain.from_iterable(reads[u] for u in units)))
        if all(reads_one):
            if len(nonone) <= 1 and all(len(reads[u]) <= 1 for u in units):
                return _Comp(sublayer, "N", units, nonone, writes, x=nonone[0] if nonone else None)
            ok = all(
                len(reads[u]) == 2 and _is(w1[reads[u], u], 1).all() and _is(w1[one, u], -1) and len(np.flatnonzero(w2[u])) == 1
                for u in units
            ) and len(writes) == 1 and _is(w2[units, writes[0]], 1).all()
            if not ok:
                _refuse(f"{where} is neither a SequenceMap nor a discretising numerical MLP")
            hot = frozenset(tuple(reads[u]) for u in units)
            return _Comp(sublayer, "S", units, nonone, writes, hot=hot)
        if any(reads_one):
            _refuse(f"{where} mixes units that read `one` with units that do not")
        if len(units) == 1:
            u = units[0]
            if len(writes) != 1 or not _is(w2[u, writes[0]], 1):
                _refuse(f"{where} writes its lookup table with weights other than 1")
            binary = bool(_is(w1[reads[u], u], 1).all())
            return _Comp(sublayer, "C", units, nonone, writes, hot=frozenset(reads[u]), binary=binary)
        ok = len(writes) == 1 and len(units) in (2, 4) and all(len(reads[u]) == 1 and _is(abs(w1[reads[u][0], u]), 1) for u in units)
        if not ok:
            _refuse(f"{where} is not a Tracr MLP (several units write one dimension without a recognised pattern)")
        return _Comp(sublayer, "L", units, nonone, writes)

    def _evidence(self, layers) -> tuple[set[int], set[frozenset]]:
        """What later readers say about blocks: dimensions read as a number somewhere (they cannot
        be part of a categorical block), and sets of dimensions read together as one categorical
        variable (keys, aggregated values, the categorical output)."""
        numeric: set[int] = set()
        blocks: set[frozenset] = set()
        for kind, _, parsed in layers:
            if kind == "attn":
                numeric.update(h.v_dims[0] for h in parsed if not h.sw and len(h.v_dims) == 1)
                blocks.update(frozenset(h.k_dims) for h in parsed)
                blocks.update(frozenset(h.v_dims) for h in parsed if not h.sw and len(h.v_dims) > 1)
            else:
                for comp in parsed["comps"]:
                    if comp.kind in ("N", "L"):
                        numeric.update(comp.reads)
        if self.layout.output_values is None:
            numeric.update(self.layout.output_dims)
        else:
            blocks.add(frozenset(self.layout.output_dims))
        return numeric, blocks

    def _attach_mlp(self, parsed: dict[str, Any], layer: int) -> None:
        sublayer = parsed["sublayer"]
        by_signature: dict[tuple, list[_Comp]] = {}
        for comp in parsed["comps"]:
            what = f"layer {layer}'s MLP"
            if comp.kind == "N":
                if comp.x is None:
                    comp.x = self._constant_input(comp, parsed, layer)
                var = self._var_of_dims([comp.x], what, sublayer)
                if len(var.dims) != 1:
                    _refuse(f"{what} discretises one dimension of a categorical variable")
                comp.inputs = [var]
                if var.origin == "sw_attn":
                    kinds = {CAT} if len(comp.writes) > 1 else {NUM}
                    self._restrict(var, {NUM}, "a SelectorWidth MLP")
                    comp.out = self._new_var(comp.writes, "sw", sublayer, kinds)
                else:
                    self._restrict(var, {NUM}, "a numerical MLP")
                    kinds = {CAT} if len(comp.writes) > 1 else {CAT, NUM}
                    comp.out = self._new_var(comp.writes, "nmap", sublayer, kinds)
                comp.out.op = comp
            elif comp.kind == "L":
                if len(comp.units) == 2:  # a zero factor: that operand's units write nothing
                    comp.units = sorted(comp.units + self._silent_operand(comp, parsed, layer))
                order = comp.units  # hidden order: the first operand's two units come first
                halves = [order[:2], order[2:]]
                comp.inputs = []
                for half in halves:
                    dims = sorted({parsed["reads"][u][0] for u in half})
                    if len(dims) != 1:
                        _refuse(f"{what}: a LinearSequenceMap operand's units read different dimensions")
                    var = self._var_of_dims(dims, what, sublayer)
                    self._restrict(var, {NUM}, "a LinearSequenceMap")
                    comp.inputs.append(var)
                comp.out = self._new_var(comp.writes, "lsm", sublayer, {NUM})
                comp.out.op = comp
            else:
                if comp.kind == "C":
                    inputs = [self._var_of_dims(comp.reads, what, sublayer)]
                else:
                    xs = {r[0] for r in comp.hot} | {r[1] for r in comp.hot}
                    owners = {}
                    for d in xs:
                        owners.setdefault(self._var_of_dims([d], what, sublayer).id, self.var_of[d])
                    if len(owners) != 2 or any(self.var_of[a].id == self.var_of[b].id for a, b in comp.hot):
                        _refuse(f"{what}: a SequenceMap unit does not read one value of each of two variables")
                    inputs = sorted(owners.values(), key=lambda v: v.id)
                comp.inputs = inputs
                by_signature.setdefault((comp.kind, tuple(v.id for v in inputs)), []).append(comp)
        for (kind, _), comps in by_signature.items():
            self._categorical_runs(kind, comps, sublayer)
        self._check_cleaners(parsed, layer)

    def _silent_operand(self, comp: _Comp, parsed: dict[str, Any], layer: int) -> list[int]:
        """The two silent units (+x, -x) of a LinearSequenceMap operand whose factor is zero."""
        w1, reads = parsed["w1"], parsed["reads"]
        pairs: dict[int, list[int]] = {}
        for u in parsed["orphans"]:
            if len(reads[u]) == 1 and (self.one is None or w1[self.one, u] == 0) and _is(abs(w1[reads[u][0], u]), 1):
                pairs.setdefault(reads[u][0], []).append(u)
        pairs = {d: us for d, us in pairs.items() if len(us) == 2 and w1[d, us[0]] == -w1[d, us[1]]}
        if len(pairs) != 1:
            _refuse(f"layer {layer}'s MLP is a LinearSequenceMap with a zero factor whose operand cannot be read")
        units = pairs.popitem()[1]
        parsed["orphans"] = [u for u in parsed["orphans"] if u not in units]
        return units

    def _constant_input(self, comp: _Comp, parsed: dict[str, Any], layer: int) -> int:
        """A numerical MLP that writes a constant: its input is what its silent threshold units read."""
        claimed = {c.x for c in parsed["comps"] if c.kind == "N" and c.x is not None}
        candidates = {parsed["reads"][u][0] for u in parsed["orphans"] if len(parsed["reads"][u]) == 1} - claimed
        if len(candidates) != 1:
            _refuse(f"a numerical MLP in layer {layer} computes a constant and its input cannot be read")
        return candidates.pop()

    def _categorical_runs(self, kind: str, comps: list[_Comp], sublayer: int) -> None:
        """Split lookup units with the same inputs into variables: runs of adjacent output dims with
        at most one hot unit per input value (a categorical variable is a contiguous one-hot block).
        A run that is not hot for every input (unless a later reader takes it as one block), or
        whose dims something reads as numbers, is a set of categorical -> numerical Maps."""
        comps = sorted(comps, key=lambda c: c.writes[0])
        runs: list[list[_Comp]] = []
        for comp in comps:
            run = runs[-1] if runs else None
            if (
                run is not None
                and comp.binary
                and run[-1].binary
                and comp.writes[0] == run[-1].writes[0] + 1
                and not any(comp.hot & c.hot for c in run)
            ):
                run.append(comp)
            else:
                runs.append([comp])
        inputs = comps[0].inputs
        if kind == "C":
            everything = frozenset(inputs[0].dims)
        else:
            everything = frozenset((a, b) if a < b else (b, a) for a in inputs[0].dims for b in inputs[1].dims)
        for run in runs:
            dims = [c.writes[0] for c in run]
            covered = frozenset().union(*(c.hot for c in run))
            full = covered == everything or (len(run) > 1 and frozenset(dims) in self.blocks)
            if kind == "S":  # Tracr's non-linear SequenceMap is categorical only
                pieces, kinds = [run], [{CAT}]
            elif not all(c.binary for c in run) or not full or (len(run) > 1 and self.numeric_dims & set(dims)):
                pieces = [[c] for c in run]  # categorical -> numerical Maps
                kinds = [{NUM} if not c.binary else {CAT, NUM} for c in run]
            else:
                pieces = [run]
                kinds = [{CAT} if len(run) > 1 else {CAT, NUM}]
            for piece, ks in zip(pieces, kinds):
                var = self._new_var([c.writes[0] for c in piece], "cmap" if kind == "C" else "seqmap", sublayer, ks)
                var.op = piece
                for c in piece:
                    c.out = var
                for v in inputs:
                    self._restrict(v, {CAT}, "a lookup-table MLP")

    def _check_cleaners(self, parsed, layer: int) -> None:
        if not parsed["cleaners"]:
            return
        w2 = parsed["w2"]
        allowed = set()
        for comp in parsed["comps"]:
            if comp.kind == "N" and comp.out is not None and comp.out.origin == "sw":
                allowed |= set(comp.out.dims) | {comp.x}
        for u in parsed["cleaners"]:
            if not set(np.flatnonzero(w2[u]).tolist()) <= allowed or not allowed:
                _refuse(f"a BOS-reading unit in layer {layer}'s MLP writes outside a SelectorWidth's dimensions")

    # -- types and labels ---------------------------------------------------------------------------

    def _output_var(self) -> _Var:
        dims = list(self.layout.output_dims)
        var = self.var_of.get(dims[0]) if dims else None
        if var is None or sorted(dims) != list(var.dims):
            _refuse("the output dimensions are not exactly one variable")
        if self.layout.output_values is None:
            self._restrict(var, {NUM}, "the numerical output")
        else:
            self._restrict(var, {CAT}, "the categorical output")
            if len(self.layout.output_values) != len(dims):
                _refuse("output values and output dimensions differ in number")
            by_dim = dict(zip(dims, self.layout.output_values))
            var.labels = [by_dim[d] for d in var.dims]
        return var

    def _resolve_kinds(self) -> None:
        changed = True
        while changed:  # an Aggregate has its values' encoding
            changed = False
            for var in self.vars:
                if var.origin == "agg":
                    value = var.op.value
                    both = var.kinds & value.kinds
                    if not both:
                        _refuse("an Aggregate's output and values differ in encoding")
                    if both != var.kinds or both != value.kinds:
                        var.kinds, value.kinds, changed = set(both), set(both), True
        for var in self.vars:
            if len(var.kinds) > 1:  # a constant nothing reads categorically: a number
                var.kinds = {NUM}

    def _propagate_labels(self, output: _Var) -> None:
        var = output
        while var.labels is not None and var.origin == "agg" and var.kind == CAT:
            head = var.op
            by_out = dict(zip(var.dims, var.labels))
            value = head.value
            value.labels = [by_out[head.pairs[d]] for d in value.dims]
            var = value

    # -- building the RASP program -------------------------------------------------------------------

    def _name(self, stem: str, sublayer: int) -> str:
        n = sum(1 for op in self.ops if op.layer == sublayer // 2 and op.label.startswith(f"{stem}_L{sublayer // 2}"))
        return f"{stem}_L{sublayer // 2}_{n}"

    def _record(self, label, kind, sublayer, inputs, encoding, values, table) -> None:
        self.ops.append(ReadOp(label, kind, sublayer // 2, "attn" if sublayer % 2 == 0 else "mlp", tuple(inputs), encoding, values, table))

    def _categorical_values(self, var: _Var, natural: list[Any] | None = None) -> list[Any]:
        if natural is not None:
            if var.labels is not None and list(var.labels) != list(natural):
                _refuse(f"output labels {var.labels} contradict the values {natural} the weights fix")
            return list(natural)
        return list(var.labels) if var.labels is not None else list(range(len(var.dims)))

    def _build(self, var: _Var) -> None:
        if var.origin == "sw_attn":
            return
        builder = {"agg": self._build_aggregate, "sw": self._build_selector_width, "nmap": self._build_nmap,
                   "lsm": self._build_lsm, "cmap": self._build_cmap, "seqmap": self._build_seqmap}[var.origin]
        builder(var)

    def _select(self, head: _Head) -> rasp.Select:
        keys, queries = head.keys, head.queries
        for v in (keys, queries):
            if v.sop is None:
                self._build(v)
        k_index = {d: i for i, d in enumerate(head.k_dims)}
        q_index = {d: i for i, d in enumerate(head.q_dims)}
        table = {}
        for kd, kv in zip(keys.dims, keys.values):
            for qd, qv in zip(queries.dims, queries.values):
                selected = qd in q_index and bool(head.truth[q_index[qd], k_index[kd]])
                table[(kv, qv)] = selected
        label = self._name("select", head.sublayer)
        predicate = _lookup(table)
        sel = rasp.Select(keys.sop, queries.sop, lambda k, q, f=predicate: bool(f((k, q)))).named(label)
        self._record(label, "Select", head.sublayer, (keys.sop.name, queries.sop.name), None, None, table)
        return sel

    def _build_aggregate(self, var: _Var) -> None:
        head: _Head = var.op
        value = head.value
        if value.sop is None:
            self._build(value)
        sel = self._select(head)
        label = self._name("aggregate", head.sublayer)
        if var.kind == CAT:
            by_dim = dict(zip(value.dims, value.values))
            natural = [by_dim[v] for v in sorted(head.pairs, key=head.pairs.get)]
            var.values = self._categorical_values(var, natural)
            var.sop = rasp.categorical(rasp.Aggregate(sel, value.sop)).named(label)
        else:
            vs = value.values  # Tracr's value set of a mean: each value over each length
            var.values = sorted({x / n for x in vs for n in range(1, self.max_seq_len + 1)})
            var.sop = rasp.numerical(rasp.Aggregate(sel, value.sop, default=0)).named(label)
        self._record(label, "Aggregate", head.sublayer, (sel.name, value.sop.name), var.kind,
                     tuple(var.values) if var.kind == CAT else None, None)

    def _build_selector_width(self, var: _Var) -> None:
        comp: _Comp = var.op
        attn = comp.inputs[0]
        head: _Head = attn.op
        sel = self._select(head)
        n = self.max_seq_len
        xs = [1 / (w + 1) for w in range(n + 1)]
        thresholds, outputs = self._discretising(comp, f"the SelectorWidth MLP of layer {comp.sublayer // 2}")
        got = [outputs[bisect.bisect_right(thresholds, x)] for x in xs]
        label = self._name("selector_width", comp.sublayer)
        if var.kind == CAT:
            if len(var.dims) != n + 1:
                _refuse("a categorical SelectorWidth output does not have one dimension per count 0..N")
            for w, y in enumerate(got):
                if self._decode(y, var, "a SelectorWidth MLP") != w:
                    _refuse("a SelectorWidth MLP does not turn 1/(w+1) into the count w")
            var.values = self._categorical_values(var, list(range(n + 1)))
            var.sop = rasp.categorical(rasp.SelectorWidth(sel)).named(label)
        else:
            for w, y in enumerate(got):
                if abs(float(y[0]) - w) > 1e-3:
                    _refuse("a SelectorWidth MLP does not turn 1/(w+1) into the count w")
            var.values = [float(w) for w in range(n + 1)]
            var.sop = rasp.numerical(rasp.SelectorWidth(sel)).named(label)
        self._record(label, "SelectorWidth", comp.sublayer, (sel.name,), var.kind,
                     tuple(var.values) if var.kind == CAT else None, None)

    def _discretising(self, comp: _Comp, where: str) -> tuple[list[float], list[np.ndarray]]:
        """Thresholds and the output vector on each side of them, from the discretising units."""
        w1, w2 = self._mlp_weights(comp.sublayer)
        out = list(comp.writes)
        start = np.zeros(len(out))
        pairs = []
        units = []
        for u in comp.units:
            if comp.x is None or w1[comp.x, u] == 0:
                if not _is(w1[self.one, u], 1):
                    _refuse(f"{where}: a unit reads only `one` but not with weight 1")
                start = start + w2[u, out].astype(np.float64)
            else:
                units.append(u)
        if units:
            big = w1[comp.x, units].astype(np.float64)
            scale = big[0]
            if scale <= 0 or not _is(big / scale, 1).all():
                _refuse(f"{where}: threshold units read their input with different weights")
            bias = w1[self.one, units].astype(np.float64)
            rows = w2[np.ix_(units, out)].astype(np.float64)  # [U, O]
            free = np.ones(len(units), dtype=bool)
            for i in np.argsort(-bias):  # the largest bias left is always a pair's relu(L(x-t)+1)
                if not free[i]:
                    continue
                free[i] = False
                partner = free & (np.abs(bias - (bias[i] - 1)) <= 1e-3) & (np.abs(rows + rows[i]).max(axis=1) <= 1e-6)
                if not partner.any():
                    _refuse(f"{where}: threshold units do not come in Tracr's pairs")
                j = int(np.argmax(partner))
                free[j] = False
                pairs.append((-bias[j] / scale, rows[i]))
        pairs.sort(key=lambda p: p[0])
        thresholds = [t for t, _ in pairs]
        outputs = [start]
        for _, delta in pairs:
            outputs.append(outputs[-1] + delta)
        return thresholds, outputs

    def _mlp_weights(self, sublayer: int) -> tuple[np.ndarray, np.ndarray]:
        layer = sublayer // 2
        return self.p[layer_param(layer, "mlp/linear_1/w")], self.p[layer_param(layer, "mlp/linear_2/w")]

    def _decode(self, y: np.ndarray, var: _Var, where: str) -> int | None:
        """Index of the one hot entry of an MLP's output vector, None when all are off."""
        hot = np.abs(y - 1) <= _HOT
        off = np.abs(y) <= _HOT
        if not (hot | off).all() or hot.sum() > 1:
            _refuse(f"{where} writes a vector that is not one-hot: {np.round(y, 3).tolist()}")
        return int(np.argmax(hot)) if hot.any() else None

    def _build_nmap(self, var: _Var) -> None:
        comp: _Comp = var.op
        x = comp.inputs[0]
        if x.sop is None:
            self._build(x)
        where = f"the numerical MLP of layer {comp.sublayer // 2}"
        thresholds, outputs = self._discretising(comp, where)
        label = self._name("map", comp.sublayer)
        if var.kind == CAT:
            values = self._categorical_values(var)
            decoded = [self._decode(y, var, where) for y in outputs]
            region_values = [None if i is None else values[i] for i in decoded]
            var.values = values
            f = _steps(thresholds, region_values)
            var.sop = rasp.categorical(rasp.Map(f, x.sop, simplify=False)).named(label)
        else:
            region_values = [snap(y[0]) for y in outputs]
            f = _steps(thresholds, region_values)
            var.values = sorted({f(v) for v in x.values})
            var.sop = rasp.numerical(rasp.Map(f, x.sop, simplify=False)).named(label)
        table = {v: f(v) for v in x.values}
        self._record(label, "Map", comp.sublayer, (x.sop.name,), var.kind, tuple(var.values) if var.kind == CAT else None, table)

    def _build_lsm(self, var: _Var) -> None:
        comp: _Comp = var.op
        w1, w2 = self._mlp_weights(comp.sublayer)
        out = comp.writes[0]
        factors = []
        for half in (comp.units[:2], comp.units[2:]):
            signs = [float(np.sign(w1[:, u][w1[:, u] != 0][0])) for u in half]
            if sorted(signs) != [-1.0, 1.0] or not np.isclose(w2[half[0], out] * signs[0], w2[half[1], out] * signs[1], atol=1e-6):
                _refuse(f"the LinearSequenceMap of layer {comp.sublayer // 2} does not compute a·x + b·y")
            factors.append(snap(w2[half[signs.index(1.0)], out]))
        fst, snd = comp.inputs
        for v in (fst, snd):
            if v.sop is None:
                self._build(v)
        label = self._name("linear_sequence_map", comp.sublayer)
        a, b = factors
        var.values = sorted({a * x + b * y for x in fst.values for y in snd.values})
        var.sop = rasp.numerical(rasp.LinearSequenceMap(fst.sop, snd.sop, a, b)).named(label)
        self._record(label, "LinearSequenceMap", comp.sublayer, (fst.sop.name, snd.sop.name), NUM, None, (a, b))

    def _simulate(self, units: list[int], sublayer: int, rows: np.ndarray, out: list[int]) -> np.ndarray:
        """The MLP's arithmetic on residual vectors `rows` [B, D], restricted to `units` and `out`."""
        w1, w2 = self._mlp_weights(sublayer)
        hidden = np.maximum(rows.astype(np.float32) @ w1[:, units], 0)  # [B, U]
        return hidden @ w2[np.ix_(units, out)]  # [B, O]

    def _build_cmap(self, var: _Var) -> None:
        piece: list[_Comp] = var.op
        x = piece[0].inputs[0]
        if x.sop is None:
            self._build(x)
        units = [c.units[0] for c in piece]
        rows = np.zeros((len(x.dims), self.width), dtype=np.float32)
        rows[np.arange(len(x.dims)), list(x.dims)] = 1
        if self.one is not None:
            rows[:, self.one] = 1
        y = self._simulate(units, piece[0].sublayer, rows, list(var.dims))
        label = self._name("map", piece[0].sublayer)
        where = f"the lookup-table MLP of layer {piece[0].sublayer // 2}"
        if var.kind == CAT:
            values = self._categorical_values(var)
            table = {}
            for xv, row in zip(x.values, y):
                i = self._decode(row, var, where)
                table[xv] = None if i is None else values[i]
            var.values = values
            var.sop = rasp.categorical(rasp.Map(_lookup(table), x.sop, simplify=False)).named(label)
        else:
            table = {xv: snap(row[0]) for xv, row in zip(x.values, y)}
            var.values = sorted(set(table.values()))
            var.sop = rasp.numerical(rasp.Map(_lookup(table), x.sop, simplify=False)).named(label)
        self._record(label, "Map", piece[0].sublayer, (x.sop.name,), var.kind, tuple(var.values) if var.kind == CAT else None, table)

    def _build_seqmap(self, var: _Var) -> None:
        piece: list[_Comp] = var.op
        a, b = piece[0].inputs
        for v in (a, b):
            if v.sop is None:
                self._build(v)
        units = sorted(u for c in piece for u in c.units)
        # The first operand varies slowest in Tracr's hidden order.
        w1, _ = self._mlp_weights(piece[0].sublayer)
        a_dims, b_dims = set(a.dims), set(b.dims)
        seq_a = [next(d for d in np.flatnonzero(w1[:, u]) if d in a_dims) for u in units]
        seq_b = [next(d for d in np.flatnonzero(w1[:, u]) if d in b_dims) for u in units]
        changes_a = sum(1 for i in range(1, len(units)) if seq_a[i] != seq_a[i - 1])
        changes_b = sum(1 for i in range(1, len(units)) if seq_b[i] != seq_b[i - 1])
        fst, snd = (a, b) if changes_a <= changes_b else (b, a)
        rows = np.zeros((len(fst.dims) * len(snd.dims), self.width), dtype=np.float32)
        keys = []
        pairs = itertools.product(zip(fst.dims, fst.values), zip(snd.dims, snd.values))
        for i, ((x_dim, x_value), (y_dim, y_value)) in enumerate(pairs):
            rows[i, [x_dim, y_dim]] = 1
            keys.append((x_value, y_value))
        rows[:, self.one] = 1
        y = self._simulate(units, piece[0].sublayer, rows, list(var.dims))
        values = self._categorical_values(var)
        where = f"the SequenceMap MLP of layer {piece[0].sublayer // 2}"
        table = {}
        for key, row in zip(keys, y):
            i = self._decode(row, var, where)
            table[key] = None if i is None else values[i]
        var.values = values
        label = self._name("sequence_map", piece[0].sublayer)
        f = _lookup(table)
        var.sop = rasp.categorical(rasp.SequenceMap(lambda x, y, f=f: f((x, y)), fst.sop, snd.sop)).named(label)
        self._record(label, "SequenceMap", piece[0].sublayer, (fst.sop.name, snd.sop.name), CAT, tuple(values), table)




# ------------------------------------------------------------------------------------------------


def read(model: CompiledModel, verify: bool = True) -> Reading:
    """The program of a standard compiled model, read from its weights.

    Raises `NotCompiledLayout` when the weights are not a Tracr layout, or (with `verify`) when the
    program read disagrees with the model's own forward pass (`ReadingMismatch`) on any input up to
    the model's length (a random sample where there are more than 5,000).

    A compressed student (a model with a read-out) is unfolded into the compiled model it was folded
    from (`compile.unfold`) and read as that. Its behaviour is its own, not its teacher's, so it is
    not compared here: the reading is checked by compiling it again and projecting it onto the
    student's weights (`compile.projection`, as `meta.decompile` does).
    """
    student = model.layout.readout
    if student:
        try:
            model = unfold.unfold(model)
        except unfold.NotUnfolded as error:
            _refuse(f"a student that is not a compiled model seen through a projection ({error})")
    reader = _Reader(model)
    sop, ops = reader.read()
    try:
        program = Program.from_rasp(sop, reader.vocab, reader.max_seq_len, model.layout.causal)
    except ProgramError as error:
        _refuse(f"the weights read as a program Tracr could not have compiled: {error}")
    checked, exhaustive = 0, False
    if verify and not student:
        agreement = Behaviour.of(model).agreement(program)
        checked, exhaustive = agreement.inputs, agreement.exhaustive
        if agreement.agreement < 1 or agreement.positions == 0:
            _refuse(f"the program read from the weights disagrees with the model's forward pass on "
                    f"{1 - agreement.agreement:.2%} of {agreement.positions} output positions (Tracr's model may itself be wrong there)",
                    ReadingMismatch)
    return Reading(sop, program, reader.vocab, reader.max_seq_len, ops, checked, exhaustive)
