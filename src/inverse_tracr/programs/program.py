"""`Program`: a RASP program as canonical lines of tables, and its conversions to RASP, JSON and source.

A program is a list of lines `op, fn, arg1, arg2, ret` (args padded with NA), where `fn` is the
line's function as a *table* on its operands' value sets (`ops`), or NA for Aggregate and
SelectorWidth. Everything Tracr compiles is such a table, so every program Tracr compiles — over
any vocabulary, with any lambda or predicate — is a `Program`, and a table is what the weights
hold, so two programs that compile to the same weights are one `Program`, with one id.

The canonical form (`canonicalize`) makes that true:

- only ancestors of the output are kept;
- **intermediate values are their ranks**: Tracr writes a categorical variable as a block of one-hot
  dimensions in sorted value order, and no weight says which label a dimension had, so
  `x = tokens + 1` and `x = tokens + 10` (with every table that reads x unchanged, row for row) are
  the same weights. An intermediate categorical variable made by a Map or SequenceMap therefore
  holds 0 … n−1, in the order of its original values. Labels that the model's interface fixes are
  kept: the tokens, the indices, selector widths, the output (and the variables an Aggregate copies
  into it), and numbers, which numerical MLPs and attention carry as magnitudes;
- numbers are the float32 values a weight can carry;
- a `SequenceMap(f, x, x)` keeps only what Tracr compiles of it: the diagonal and the image;
- a Select that selects nothing has no query weights: its queries are its keys (and a line that
  only such a Select read is dropped); a SequenceMap one of whose operands has a single value has
  that operand first (either way round, Tracr makes the same hidden units);
- identical lines are merged;
- lines are ordered by depth in the computation graph, ties broken by their content, and
  variables renamed v1, v2, … in that order (the residual stream is laid out by these names).

Operand order is kept as written (a SequenceMap's or a Select's operands are not sorted, even for
symmetric functions): Tracr lays out the hidden units by operand order, so swapped operands are
different weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import logging
from typing import Any, Iterable, NamedTuple, Sequence

from tracr.rasp import causal_eval, rasp

from inverse_tracr.programs import library, ops, values
from inverse_tracr.programs.ops import OPS, Table
from inverse_tracr.programs.values import OperandError, VarType

NA = "NA"
INPUTS = ("tokens", "indices")
FORMAT = "inverse-tracr/program/2"

#: The defaults of `from_rasp` and of the zoo: Tracr's own examples use similar sizes.
DEFAULT_VOCAB = (0, 1, 2, 3, 4)
DEFAULT_MAX_SEQ_LEN = 5
MAX_LINES = 256
MAX_SEQ_LEN = 64
#: Largest value set a line may have; larger MLPs than this are not what zoos are made of.
MAX_VALUES = 4096
MAX_TABLE = 1 << 16


class ProgramError(ValueError):
    """A program that is not well formed, or that Tracr could not compile (the message says why)."""


class Line(NamedTuple):
    """One line: `ret = op(fn, *operands)`."""

    op: str
    fn: Table | None
    operands: tuple[str, ...]
    ret: str

    def fields(self) -> list:
        """The five fields `op, fn, arg1, arg2, ret` (NA where there is nothing)."""
        args = list(self.operands) + [NA] * (2 - len(self.operands))
        return [self.op, NA if self.fn is None else self.fn, *args, self.ret]

    def sort_key(self, rank: dict[str, int]) -> tuple:
        return (self.op, _fn_key(self.fn), tuple(rank[o] for o in self.operands))


def _fn_key(fn: Table | None) -> str:
    return "" if fn is None else json.dumps([values.to_json(v) for v in fn], separators=(",", ":"))


# --- parsing ---------------------------------------------------------------------------------


def _parse(line: Any) -> tuple[str, Any, tuple[str, ...], str]:
    """(op, fn as given, operands, ret) from five fields `op, fn, arg1, arg2, ret`."""
    if isinstance(line, Line):
        return line.op, line.fn, line.operands, line.ret
    if not isinstance(line, (list, tuple)) or len(line) != 5:
        raise ProgramError(f"a line has 5 fields (op, fn, arg1, arg2, ret), got {line!r}")
    op, fn, a1, a2, ret = line
    if op not in OPS:
        raise ProgramError(f"unknown operation {op!r} (expected one of {', '.join(OPS)})")
    operands = tuple(a for a in (a1, a2) if a != NA)
    if not all(isinstance(a, str) for a in (a1, a2, ret)) or len(operands) != ops.ARITY[op] or (a1 == NA and a2 != NA):
        raise ProgramError(f"malformed {op} line {list(line)!r}: it takes {ops.ARITY[op]} operand(s)")
    if ret in (NA, *INPUTS):
        raise ProgramError(f"malformed {op} line {list(line)!r}: it cannot assign {ret!r}")
    if (op in ops.FUNCTION_OPS) == (fn is None or fn == NA):
        raise ProgramError(f"malformed {op} line {list(line)!r}: " + ("a function is missing" if op in ops.FUNCTION_OPS else "it takes no function"))
    return op, (None if fn == NA else fn), operands, ret


def _table(op: str, fn: Any, operands: Sequence[VarType]) -> Table | None:
    """A line's function as a table: given as one (list or tuple), or by library name."""
    if fn is None:
        return None
    if isinstance(fn, str):
        return library.named_table(op, fn, operands)
    if isinstance(fn, (list, tuple)) and len(fn) <= MAX_TABLE:
        return tuple(None if v is None else values.from_json(v, f"{op} table") for v in fn)
    raise ProgramError(f"{op}: a function is a library name or a table (list of at most {MAX_TABLE} values), got {fn!r}")


def _normalise(op: str, fn: Table | None) -> Table | None:
    """Numbers as float32 (all a weight holds); equal categorical outputs (0 and False) as the one
    value that stands for them in the value set."""
    if op in ("NumericalMap", "LinearSequenceMap"):
        return tuple(values.number(v, op) for v in fn)
    if op in ("Map", "SequenceMap"):
        representative = {v: v for v in ops.image(values.check(v, op) if v is not None else None for v in fn)}
        return tuple(None if v is None else representative[v] for v in fn)
    return fn


# --- canonical form --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Typed:
    """Lines (in an order where operands come first) and every variable's type."""

    lines: dict[str, Line]
    types: dict[str, VarType]
    output: str


def _typed(lines: dict[str, Line], output: str, vocab: tuple, max_seq_len: int) -> _Typed:
    types = values.input_types(vocab, max_seq_len)
    for number, (ret, line) in enumerate(lines.items(), start=1):
        try:
            types[ret] = ops.result_type(line.op, line.fn, [types[o] for o in line.operands], max_seq_len)
        except OperandError as error:
            raise ProgramError(f"line {number} ({line.op} -> {ret}): {error}") from None
        if not types[ret].selector and len(types[ret].values) > MAX_VALUES:
            raise ProgramError(f"line {number} ({line.op} -> {ret}): {len(types[ret].values)} values (at most {MAX_VALUES})")
    if types[output].selector:
        raise ProgramError("the output must be a sequence, not a selector")
    return _Typed(lines, types, output)


def table_made(lines: dict[str, Line], types: dict[str, VarType]) -> dict[str, str]:
    """Categorical variables whose values a Map or SequenceMap made (directly, or copied by
    categorical Aggregates), each with the line that made them."""
    root: dict[str, str] = {}
    for ret, line in lines.items():  # operands come first, so an Aggregate's source has its root
        copied = line.op == "Aggregate" and types[ret].categorical
        root[ret] = root.get(line.operands[1], line.operands[1]) if copied else ret
    return {
        ret: root[ret] for ret in lines
        if types[ret].categorical and root[ret] in lines and lines[root[ret]].op in ("Map", "SequenceMap")
    }


def ranked_variables(lines: dict[str, Line], types: dict[str, VarType], output: str) -> set[str]:
    """Variables whose values are ranks: made by a table, and not copied into the output."""
    made = table_made(lines, types)
    kept = made.get(output)
    return {ret for ret, root in made.items() if root != kept}


def rank_view(var: VarType) -> VarType:
    """A table-made variable as its consumers' aliases see it: its values' positions."""
    return dataclasses.replace(var, values=tuple(range(len(var.values))))


def _simplify(typed: _Typed) -> tuple[dict[str, Line], str, dict[str, str]] | None:
    """One round of rewriting (ranks, SequenceMap(x, x), merging): (lines, output, merged
    variable -> the one it was merged into), or None when nothing changes."""
    lines, types = dict(typed.lines), typed.types
    changed = False
    for ret in ranked_variables(lines, types, typed.output):
        line = lines[ret]
        if line.op == "Aggregate":
            continue  # copies its source's ranks
        rank = {v: i for i, v in enumerate(types[ret].values)}
        table = tuple(None if v is None else rank[v] for v in line.fn)
        if _fn_key(table) != _fn_key(line.fn):
            lines[ret], changed = line._replace(fn=table), True
    for ret, line in lines.items():
        if line.op == "Select" and not any(line.fn) and line.operands[0] != line.operands[1]:
            n = len(types[line.operands[0]].values)
            lines[ret], changed = line._replace(fn=(False,) * (n * n), operands=(line.operands[0],) * 2), True
        if line.op == "SequenceMap" and len(types[line.operands[1]].values) == 1 < len(types[line.operands[0]].values):
            # One hidden unit per value of the other operand either way round: the same weights.
            x, y = line.operands
            nx = len(types[x].values)
            lines[ret], changed = line._replace(operands=(y, x), fn=tuple(line.fn[i] for i in range(nx))), True
            line = lines[ret]
        if line.op == "SequenceMap" and line.operands[0] == line.operands[1]:
            table = _one_variable_table(line.fn, len(types[line.operands[0]].values))
            if _fn_key(table) != _fn_key(line.fn):
                lines[ret], changed = line._replace(fn=table), True
    seen: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    merged: dict[str, Line] = {}
    for ret, line in lines.items():
        line = line._replace(operands=tuple(alias.get(o, o) for o in line.operands))
        key = (line.op, _fn_key(line.fn), line.operands)
        if key in seen:
            alias[ret], changed = seen[key], True
        else:
            seen[key] = ret
            merged[ret] = line
    if not changed:
        return None
    output = alias.get(typed.output, typed.output)
    return _ancestors(merged, output), output, alias


def _one_variable_table(table: Table, n: int) -> Table:
    """The canonical table of a SequenceMap(f, x, x).

    Tracr compiles it as the Map x -> f(x, x) into a block sized by f's image over *all* pairs, so
    the weights fix only the diagonal and the image: the extra values are written in order into
    the first off-diagonal entries, and every other off-diagonal entry repeats its row's diagonal."""
    diagonal = [table[i * n + i] for i in range(n)]
    extra = [v for v in ops.image(table) if values.key(v) not in {values.key(d) for d in diagonal if d is not None}]
    out = []
    for i, j in itertools.product(range(n), repeat=2):
        out.append(diagonal[i] if i == j or not extra else extra.pop(0))
    return tuple(out)


def _ancestors(lines: dict[str, Line], output: str) -> dict[str, Line]:
    keep, stack = set(), [output]
    while stack:
        var = stack.pop()
        if var not in INPUTS and var not in keep:
            keep.add(var)
            stack.extend(lines[var].operands)
    return {ret: line for ret, line in lines.items() if ret in keep}


@dataclasses.dataclass(frozen=True)
class Canonical:
    lines: tuple[Line, ...]
    types: dict[str, VarType]
    names: dict[str, str]  # each given variable that is kept (or merged into one kept) -> its name


def canonicalize(raw: Iterable[Any], vocab: tuple, max_seq_len: int) -> Canonical:
    """The canonical form of a program whose output is the last line's."""
    lines: dict[str, Line] = {}
    types = values.input_types(vocab, max_seq_len)
    for number, item in enumerate(raw, start=1):
        op, fn, operands, ret = _parse(item)
        if ret in lines:
            raise ProgramError(f"variable {ret!r} is assigned twice")
        for operand in operands:
            if operand not in types:
                raise ProgramError(f"variable {operand!r} is used before it is assigned")
        try:
            table = _normalise(op, _table(op, fn, [types[o] for o in operands]))
            types[ret] = ops.result_type(op, table, [types[o] for o in operands], max_seq_len)
        except (OperandError, KeyError) as error:
            raise ProgramError(f"line {number} ({op} -> {ret}): {error.args[0]}") from None
        lines[ret] = Line(op, table, operands, ret)
    if not lines:
        raise ProgramError("a program needs at least one line")
    output = next(reversed(lines))
    typed = _typed(_ancestors(lines, output), output, vocab, max_seq_len)
    merged_into = {ret: ret for ret in typed.lines}
    for _ in range(MAX_LINES):
        rewritten = _simplify(typed)
        if rewritten is None:
            break
        *kept, alias = rewritten
        merged_into = {raw: alias.get(now, now) for raw, now in merged_into.items()}
        typed = _typed(*kept, vocab=vocab, max_seq_len=max_seq_len)
    result, types, renamed = _rename(typed)
    return Canonical(result, types, {raw: renamed[now] for raw, now in merged_into.items() if now in renamed})


def _rename(typed: _Typed) -> tuple[tuple[Line, ...], dict[str, VarType], dict[str, str]]:
    """Order by depth, ties by content; rename v1, v2, … in that order."""
    lines = typed.lines

    @functools.cache
    def depth(var: str) -> int:
        return 0 if var in INPUTS else 1 + max(depth(o) for o in lines[var].operands)

    rank = {"tokens": -2, "indices": -1}
    renamed = {name: name for name in INPUTS}
    result: list[Line] = []
    for level in sorted({depth(v) for v in lines}):
        here = [lines[v]._replace(operands=tuple(renamed[o] for o in lines[v].operands)) for v in lines if depth(v) == level]
        for line in sorted(here, key=lambda line: line.sort_key(rank)):
            name = f"v{len(result) + 1}"
            rank[name], renamed[line.ret] = len(result) + 1, name
            result.append(line._replace(ret=name))
    types = {renamed[v]: t for v, t in typed.types.items() if v in renamed}
    return tuple(result), types, renamed


# --- the program -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """A RASP program over `tokens` and `indices`, in canonical form.

    Build one from lines (`Program(lines, vocab, max_seq_len)`: five fields each, `fn` a table or a
    library name; they are type-checked and canonicalised), from RASP (`Program.from_rasp`) or
    from JSON (`Program.from_json`). Equality and hashing follow the id.

    `causal`: every Select is masked to keys at positions ≤ its query's, as in a model Tracr
    compiles with `causal=True` (the same weights, the mask in the model's config), which computes
    another function whenever a selector selects a later position. It counts in the id only when
    set, so a non-causal program's id is what it was before the flag existed.
    """

    lines: tuple[Line, ...]
    vocab: tuple = DEFAULT_VOCAB
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    causal: bool = False

    def __post_init__(self):
        if not isinstance(self.causal, bool):
            raise ProgramError(f"causal must be true or false, got {self.causal!r}")
        if not isinstance(self.max_seq_len, int) or isinstance(self.max_seq_len, bool) or not 1 <= self.max_seq_len <= MAX_SEQ_LEN:
            raise ProgramError(f"max_seq_len must be an integer from 1 to {MAX_SEQ_LEN}, got {self.max_seq_len!r}")
        if not isinstance(self.vocab, (list, tuple, set, frozenset)) or not self.vocab:
            raise ProgramError(f"vocab must be a non-empty list of values, got {self.vocab!r}")
        try:
            vocab = values.order(values.check(v, "vocab") for v in self.vocab)
        except OperandError as error:
            raise ProgramError(str(error)) from None
        if len(vocab) > MAX_VALUES:
            raise ProgramError(f"vocab has {len(vocab)} values (at most {MAX_VALUES})")
        if not isinstance(self.lines, (list, tuple)) or len(self.lines) > MAX_LINES:
            raise ProgramError(f"a program is a list of at most {MAX_LINES} lines")
        canonical = canonicalize(self.lines, vocab, self.max_seq_len)
        object.__setattr__(self, "vocab", vocab)
        object.__setattr__(self, "lines", canonical.lines)
        object.__setattr__(self, "_types", canonical.types)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Program) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # --- derived views ---------------------------------------------------------------------

    @property
    def output(self) -> str:
        return self.lines[-1].ret

    @property
    def types(self) -> dict[str, VarType]:
        """Every variable's type and value set (inputs included)."""
        return self._types  # type: ignore[attr-defined]

    @functools.cached_property
    def ranked(self) -> frozenset[str]:
        """Variables whose values are ranks (see the module docstring)."""
        return frozenset(ranked_variables({line.ret: line for line in self.lines}, self.types, self.output))

    @functools.cached_property
    def id(self) -> str:
        """Hash of the canonical program: equal programs have equal ids; types count (`1` ≠ `1.0`),
        and so does the causal mask."""
        blob = json.dumps(self._canonical_json(), separators=(",", ":"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def _canonical_json(self) -> dict[str, Any]:
        """What the id hashes; `causal` only when set, so that the ids (and JSON) of non-causal
        programs, and of every zoo made before the flag, stay what they were."""
        return {
            "lines": [_line_json(line) for line in self.lines],
            "vocab": [values.to_json(v) for v in self.vocab],
            "max_seq_len": self.max_seq_len,
            **({"causal": True} if self.causal else {}),
        }

    def operand_types(self, line: Line) -> list[VarType]:
        return [self.types[o] for o in line.operands]

    @functools.cached_property
    def aliases(self) -> tuple[str | None, ...]:
        """Per line, the library name of its table (None if no library function has it).

        A name is matched on the operands' values as the line sees them — positions for variables
        a table made (`rank_view`), so that an alias never depends on whether a variable's labels
        are kept as the output's — and on the line's outputs up to relabelling where they are ranks."""
        made = table_made({line.ret: line for line in self.lines}, self.types)
        views = {name: rank_view(t) if name in made else t for name, t in self.types.items()}
        return tuple(
            library.alias(line.op, line.fn, [views[o] for o in line.operands], line.ret in self.ranked)
            if line.op in ops.TABLE_OPS else None
            for line in self.lines
        )

    @property
    def encodings(self) -> dict[str, str]:
        return {ret: t.encoding for ret, t in self.types.items() if not t.selector and ret not in INPUTS}

    # --- RASP ------------------------------------------------------------------------------

    def to_rasp(self) -> rasp.SOp:
        """The program as a Tracr RASP expression; its functions look their tables up."""
        exprs: dict[str, rasp.RASPExpr] = {"tokens": rasp.tokens, "indices": rasp.indices}
        with _quiet_absl():  # Tracr warns about SequenceMaps of one variable's values
            for line in self.lines:
                args = [exprs[o] for o in line.operands]
                exprs[line.ret] = ops.to_rasp(line.op, line.fn, args, self.operand_types(line), self.types[line.ret]).named(line.ret)
        return exprs[self.output]  # type: ignore[return-value]

    def evaluate(self, xs: Sequence[Any]) -> list[Any]:
        """`rasp.evaluate` of the program on one input sequence; for a causal program Tracr's
        `causal_eval.evaluate`, which masks every selector as a causal model's attention does."""
        evaluate = causal_eval.evaluate if self.causal else rasp.evaluate
        return evaluate(self._rasp, list(xs))

    @functools.cached_property
    def _rasp(self) -> rasp.SOp:
        return self.to_rasp()

    @classmethod
    def from_rasp(cls, sop: rasp.SOp, vocab: Iterable[Any] = DEFAULT_VOCAB, max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
                  causal: bool = False) -> "Program":
        """Read any RASP program Tracr can compile, over `vocab` and inputs up to `max_seq_len`
        (`causal`: as compiled with `causal=True`; RASP itself has no mask).

        Raises ProgramError listing every expression Tracr could not compile, and why.
        """
        from inverse_tracr.programs.from_rasp import lines_from_rasp

        vocab = tuple(vocab)
        return cls(lines_from_rasp(sop, vocab, max_seq_len)[0], vocab, max_seq_len, causal)

    # --- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict; `Program.from_json` reads it back."""
        return {
            "format": FORMAT,
            "id": self.id,
            **self._canonical_json(),
            "output": self.output,
            "functions": list(self.aliases),
            "encodings": self.encodings,
            "source": self.source(),
        }

    @classmethod
    def from_json(cls, data: Any) -> "Program":
        """Read `to_json` output (no `causal`: not causal, as before the flag). Untrusted input:
        any defect is a ProgramError saying what."""
        if not isinstance(data, dict):
            raise ProgramError(f"a program is a JSON object, got {type(data).__name__}")
        if data.get("format", FORMAT) != FORMAT:
            raise ProgramError(f"program format {data.get('format')!r} is not {FORMAT!r}: regenerate the zoo with this version")
        missing = {"lines", "vocab", "max_seq_len"} - data.keys()
        if missing:
            raise ProgramError(f"program JSON lacks {', '.join(sorted(missing))}")
        lines, vocab = data["lines"], data["vocab"]
        if not isinstance(lines, list) or len(lines) > MAX_LINES:
            raise ProgramError(f"'lines' must be a list of at most {MAX_LINES} lines")
        if not isinstance(vocab, list):
            raise ProgramError("'vocab' must be a list of values")
        try:
            vocab = tuple(values.from_json(v, "vocab") for v in vocab)
        except OperandError as error:
            raise ProgramError(str(error)) from None
        program = cls(tuple(lines), vocab, data["max_seq_len"], data.get("causal", False))
        if "id" in data and data["id"] != program.id:
            raise ProgramError(f"program id {data['id']!r} does not match its lines ({program.id})")
        return program

    # --- reading ---------------------------------------------------------------------------

    def source(self) -> str:
        """Readable RASP: one assignment per line; tables shown by library name where one matches.
        The mask is said on the last line, so that line i is still `lines[i]` (the CLI marks
        differing lines by position)."""
        out = []
        for line, alias in zip(self.lines, self.aliases):
            a = line.operands
            fn = alias if alias is not None or line.op not in ops.TABLE_OPS else _show_table(line, self.operand_types(line))
            numerical = self.types[line.ret].numerical
            if line.op in ("Map", "NumericalMap"):
                text = f"Map({fn}, {a[0]})"
            elif line.op == "SequenceMap":
                text = f"SequenceMap({fn}, {a[0]}, {a[1]})"
            elif line.op == "LinearSequenceMap":
                text = f"LinearSequenceMap({a[0]}, {a[1]}, {line.fn[0]:g}, {line.fn[1]:g})"
            elif line.op == "Select":
                text = f"Select({a[0]}, {a[1]}, {fn})"
            elif line.op == "Aggregate":
                text = f"Aggregate({a[0]}, {a[1]}, default=0)" if numerical else f"Aggregate({a[0]}, {a[1]})"
            else:
                text = f"SelectorWidth({a[0]})"
            out.append(f"{line.ret} = numerical({text})" if numerical else f"{line.ret} = {text}")
        out.append(f"program = {self.output}" + ("  # causal: each Select sees only keys at positions ≤ its query's" if self.causal else ""))
        return "\n".join(out)

    def __str__(self) -> str:
        return self.source()


def _line_json(line: Line) -> list:
    fields = line.fields()
    if line.fn is not None:
        fields[1] = [values.to_json(v) for v in line.fn]
    return fields


def _show_table(line: Line, operands: list[VarType]) -> str:
    combos = list(itertools.product(*(o.values for o in operands)))
    if line.op == "Select":  # the (key, query) pairs it selects
        return "{" + ", ".join(f"({k!r}, {q!r})" for (k, q), v in zip(combos, line.fn) if v) + "}"
    shown = [(c[0] if len(c) == 1 else c, v) for c, v in zip(combos, line.fn)]
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in shown) + "}"


@contextlib.contextmanager
def _quiet_absl():
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
