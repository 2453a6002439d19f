"""`Program`: a RASP program as canonical lines, and its conversions to RASP, JSON and source.

A program is a list of lines `op, arg1, arg2, arg3, ret` (the thesis format), args padded with NA:

    Map           fn    x     NA     v   (categorical output)
    NumericalMap  fn    x     NA     v   (numerical output; fn is a comparison)
    SequenceMap   fn    x     y      v
    Select        pred  keys  query  v   (v is a selector)
    Aggregate     sel   x     NA     v   (numerical iff x is)
    SelectorWidth sel   NA    NA     v

Unlike the thesis, variable arguments keep their positional order (a Select's keys and queries, a
SequenceMap's `sub` arguments are not interchangeable) except for commutative functions, where they
are sorted; otherwise the program could not be rebuilt from its lines.

The canonical form makes equal programs equal token sequences, so the program id (a hash of the
lines) deduplicates and splits: only ancestors of the output are kept, identical lines are merged,
lines are ordered by depth in the computation graph with ties broken by their content, and variables
are renamed v1, v2, … in that order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
from typing import Any, Iterable, Sequence

from tracr.rasp import rasp

from inverse_tracr.programs import library, values

NA = "NA"
INPUTS = ("tokens", "indices")
OPS = ("Map", "NumericalMap", "SequenceMap", "Select", "Aggregate", "SelectorWidth")
FORMAT = "inverse-tracr/program/1"

#: The defaults of `from_rasp` and of the zoo: Tracr's own examples use similar sizes.
DEFAULT_VOCAB = (0, 1, 2, 3, 4)
DEFAULT_MAX_SEQ_LEN = 5
MAX_LINES = 256

Line = tuple[str, str, str, str, str]


class ProgramError(ValueError):
    """A program that is not well formed, or uses something outside the library."""


@dataclasses.dataclass(frozen=True)
class Op:
    """One parsed line: the operation, its function or predicate (if any) and its operands."""

    op: str
    fn: str | None
    operands: tuple[str, ...]

    @classmethod
    def parse(cls, line: Sequence[str]) -> tuple["Op", str]:
        if len(line) != 5 or not all(isinstance(field, str) for field in line):
            raise ProgramError(f"a line has 5 string fields, got {list(line)!r}")
        op, a1, a2, a3, ret = line
        if op in ("Map", "NumericalMap"):
            parsed, unused = cls(op, a1, (a2,)), (a3,)
        elif op in ("SequenceMap", "Select"):
            parsed, unused = cls(op, a1, (a2, a3)), ()
        elif op == "Aggregate":
            parsed, unused = cls(op, None, (a1, a2)), (a3,)
        elif op == "SelectorWidth":
            parsed, unused = cls(op, None, (a1,)), (a2, a3)
        else:
            raise ProgramError(f"unknown operation {op!r} (expected one of {', '.join(OPS)})")
        if any(field != NA for field in unused) or NA in parsed.operands or ret in (NA, *INPUTS):
            raise ProgramError(f"malformed {op} line {list(line)!r}")
        return parsed, ret

    def line(self, ret: str) -> Line:
        fields = ([self.fn] if self.fn is not None else []) + list(self.operands)
        return (self.op, *(fields + [NA] * (3 - len(fields))), ret)  # type: ignore[return-value]

    @property
    def commutative(self) -> bool:
        fn = library.SEQUENCE_MAP_FNS.get(self.fn) if self.op == "SequenceMap" else None
        return fn is not None and fn.commutative


def canonicalize(lines: Iterable[Sequence[str]], output: str | None = None) -> tuple[Line, ...]:
    """The canonical form of a program whose output is `output` (default: the last line's)."""
    parsed: dict[str, Op] = {}
    for line in lines:
        op, ret = Op.parse(line)
        if ret in parsed:
            raise ProgramError(f"variable {ret!r} is assigned twice")
        for operand in op.operands:
            if operand not in parsed and operand not in INPUTS:
                raise ProgramError(f"variable {operand!r} is used before it is assigned")
        parsed[ret] = op
    if not parsed:
        raise ProgramError("a program needs at least one line")
    output = output if output is not None else next(reversed(parsed))
    if output not in parsed:
        raise ProgramError(f"output {output!r} is not assigned by any line")

    @functools.cache
    def depth(var: str) -> int:
        return 0 if var in INPUTS else 1 + max(depth(o) for o in parsed[var].operands)

    ancestors, stack = set(), [output]
    while stack:
        var = stack.pop()
        if var not in INPUTS and var not in ancestors:
            ancestors.add(var)
            stack.extend(parsed[var].operands)

    # Number variables level by level: a line's operands all live on lower levels, so they are
    # already renamed when its level is sorted, and identical lines get identical keys (merged).
    rank = {"tokens": -2, "indices": -1}
    renamed: dict[str, str] = {name: name for name in INPUTS}
    result: list[Line] = []
    for level in sorted({depth(v) for v in ancestors}):
        keyed: dict[tuple, list[str]] = {}
        for var in (v for v in ancestors if depth(v) == level):
            op = parsed[var]
            operands = [renamed[o] for o in op.operands]
            if op.commutative:
                operands.sort(key=lambda name: rank[name])
            key = (op.op, op.fn or "", tuple(rank[o] for o in operands))
            keyed.setdefault(key, []).append(var)
            parsed[var] = Op(op.op, op.fn, tuple(operands))
        for key in sorted(keyed):
            name = f"v{len(result) + 1}"
            rank[name] = len(result) + 1
            for var in keyed[key]:
                renamed[var] = name
            result.append(parsed[keyed[key][0]].line(name))
    return tuple(result)


@dataclasses.dataclass(frozen=True)
class Program:
    """A RASP program over `tokens` and `indices`, in canonical form.

    Build one from lines (`Program(lines, vocab, max_seq_len)`: they are canonicalised and
    type-checked), from RASP (`Program.from_rasp`) or from JSON (`Program.from_json`).
    """

    lines: tuple[Line, ...]
    vocab: tuple = DEFAULT_VOCAB
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN

    def __post_init__(self):
        if not isinstance(self.max_seq_len, int) or not 1 <= self.max_seq_len <= 64:
            raise ProgramError(f"max_seq_len must be an integer from 1 to 64, got {self.max_seq_len!r}")
        vocab = tuple(sorted(set(self.vocab)))
        if not vocab or not all(isinstance(v, int) and not isinstance(v, bool) for v in vocab):
            raise ProgramError(f"vocab must be a non-empty list of integers, got {self.vocab!r}")
        if len(self.lines) > MAX_LINES:
            raise ProgramError(f"a program has at most {MAX_LINES} lines, got {len(self.lines)}")
        object.__setattr__(self, "vocab", vocab)
        object.__setattr__(self, "lines", canonicalize(self.lines))
        self.types  # noqa: B018 - computing the types type-checks every line

    # --- derived views ---------------------------------------------------------------------

    @property
    def output(self) -> str:
        return self.lines[-1][-1]

    @property
    def ops(self) -> list[tuple[Op, str]]:
        return [Op.parse(line) for line in self.lines]

    @functools.cached_property
    def types(self) -> dict[str, values.VarType]:
        """Every variable's type and value set; ProgramError if a line cannot compile."""
        types = values.input_types(self.vocab, self.max_seq_len)
        for number, (op, ret) in enumerate(self.ops, start=1):
            try:
                types[ret] = values.result_type(
                    op.op, op.fn, [types[o] for o in op.operands], self.max_seq_len
                )
            except (values.OperandError, KeyError) as error:
                raise ProgramError(f"line {number} {list(self.lines[number - 1])}: {error}") from None
        if types[self.output].selector:
            raise ProgramError("the output must be a sequence, not a selector")
        return types

    @functools.cached_property
    def id(self) -> str:
        """Hash of the canonical lines: equal programs have equal ids."""
        blob = json.dumps(self.lines, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def functions(self) -> list[str]:
        return sorted({op.fn for op, _ in self.ops if op.fn is not None})

    @property
    def encodings(self) -> dict[str, str]:
        return {ret: t.encoding for ret, t in self.types.items() if not t.selector and ret not in INPUTS}

    # --- RASP ------------------------------------------------------------------------------

    def to_rasp(self) -> rasp.SOp:
        """The program as a Tracr RASP expression, made of library functions."""
        exprs: dict[str, rasp.RASPExpr] = {"tokens": rasp.tokens, "indices": rasp.indices}
        for op, ret in self.ops:
            args = [exprs[o] for o in op.operands]
            if op.op in ("Map", "NumericalMap"):
                expr = rasp.Map(library.MAP_FNS[op.fn], args[0], simplify=False)
            elif op.op == "SequenceMap":
                with _quiet_absl():  # Tracr warns about SequenceMap(f, x, x), which canonical forms produce
                    expr = rasp.SequenceMap(library.SEQUENCE_MAP_FNS[op.fn], *args)
            elif op.op == "Select":
                expr = rasp.Select(args[0], args[1], library.PREDICATES[op.fn])
            elif op.op == "Aggregate":
                numerical = self.types[ret].encoding == values.NUMERICAL
                expr = rasp.Aggregate(args[0], args[1], default=0 if numerical else None)
            else:
                expr = rasp.SelectorWidth(args[0])
            if not self.types[ret].selector:
                encode = rasp.numerical if self.types[ret].encoding == values.NUMERICAL else rasp.categorical
                expr = encode(expr)
            exprs[ret] = expr.named(ret)
        return exprs[self.output]  # type: ignore[return-value]

    def evaluate(self, xs: Sequence[Any]) -> list[Any]:
        """`rasp.evaluate` of the program on one input sequence."""
        return rasp.evaluate(self._rasp, list(xs))

    @functools.cached_property
    def _rasp(self) -> rasp.SOp:
        return self.to_rasp()

    @classmethod
    def from_rasp(
        cls, sop: rasp.SOp, vocab: Iterable[int] = DEFAULT_VOCAB, max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    ) -> "Program":
        """Read a RASP program made of library functions (any lambda equal to one on its inputs).

        Raises ProgramError listing every unsupported expression and why.
        """
        vocab = tuple(sorted(set(vocab)))
        types = values.input_types(vocab, max_seq_len)
        lines: list[Line] = []
        problems: list[str] = []
        names = {rasp.tokens.label: "tokens", rasp.indices.label: "indices"}
        for expr in _postorder(sop):
            if isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
                names[expr.label] = "tokens" if isinstance(expr, rasp.TokensType) else "indices"
                continue
            names[expr.label] = ret = f"x{len(names)}"
            if any(names[child.label] not in types for child in expr.children):
                continue  # its input was unsupported and is reported already
            try:
                line = _line_from_expr(expr, names, types)
                op, _ = Op.parse(line)
                types[ret] = values.result_type(op.op, op.fn, [types[o] for o in op.operands], max_seq_len)
                lines.append(line)
            except (ProgramError, values.OperandError) as error:
                problems.append(f"{type(expr).__name__} {expr.name!r}: {error}")
        if problems:
            raise ProgramError("unsupported RASP expressions:\n" + "\n".join(problems))
        return cls(tuple(lines), tuple(vocab), max_seq_len)

    # --- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict; `Program.from_json` reads it back."""
        return {
            "format": FORMAT,
            "id": self.id,
            "lines": [list(line) for line in self.lines],
            "output": self.output,
            "vocab": list(self.vocab),
            "max_seq_len": self.max_seq_len,
            "functions": self.functions,
            "encodings": self.encodings,
            "source": self.source(),
        }

    @classmethod
    def from_json(cls, data: Any) -> "Program":
        """Read `to_json` output. Untrusted input: any defect is a ProgramError saying what."""
        if not isinstance(data, dict):
            raise ProgramError(f"a program is a JSON object, got {type(data).__name__}")
        missing = {"lines", "vocab", "max_seq_len"} - data.keys()
        if missing:
            raise ProgramError(f"program JSON lacks {', '.join(sorted(missing))}")
        lines = data["lines"]
        if not isinstance(lines, list) or len(lines) > MAX_LINES:
            raise ProgramError(f"'lines' must be a list of at most {MAX_LINES} lines")
        if not isinstance(data["vocab"], list):
            raise ProgramError("'vocab' must be a list of integers")
        program = cls(tuple(tuple(line) if isinstance(line, list) else line for line in lines),
                      tuple(data["vocab"]), data["max_seq_len"])
        if "id" in data and data["id"] != program.id:
            raise ProgramError(f"program id {data['id']!r} does not match its lines ({program.id})")
        return program

    # --- reading ---------------------------------------------------------------------------

    def source(self) -> str:
        """Readable RASP: one assignment per line, library functions by name."""
        out = []
        for op, ret in self.ops:
            a = op.operands
            if op.op == "Map":
                text = f"Map({op.fn}, {a[0]})"
            elif op.op == "NumericalMap":
                text = f"numerical(Map({op.fn}, {a[0]}))"
            elif op.op == "SequenceMap":
                text = f"SequenceMap({op.fn}, {a[0]}, {a[1]})"
            elif op.op == "Select":
                text = f"Select({a[0]}, {a[1]}, {op.fn})"
            elif op.op == "Aggregate":
                numerical = self.types[ret].encoding == values.NUMERICAL
                text = f"numerical(Aggregate({a[0]}, {a[1]}, default=0))" if numerical else f"Aggregate({a[0]}, {a[1]})"
            else:
                text = f"SelectorWidth({a[0]})"
            out.append(f"{ret} = {text}")
        out.append(f"program = {self.output}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.source()


@contextlib.contextmanager
def _quiet_absl():
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _postorder(sop: rasp.RASPExpr) -> list[rasp.RASPExpr]:
    order, seen = [], set()

    def visit(expr: rasp.RASPExpr) -> None:
        if expr.label in seen:
            return
        seen.add(expr.label)
        for child in expr.children:
            visit(child)
        order.append(expr)

    visit(sop)
    return order


def _line_from_expr(expr: rasp.RASPExpr, names: dict[str, str], types: dict[str, values.VarType]) -> Line:
    """One line for one RASP expression whose children are already named and typed."""
    name = lambda child: names[child.label]  # noqa: E731
    value_set = lambda child: types[name(child)].values  # noqa: E731
    ret = names[expr.label]
    if isinstance(expr, rasp.Map):
        if not rasp.is_categorical(expr.inner):
            raise ProgramError("Map of a numerical input is not in the library")
        fn = library.identify(expr.f, [value_set(expr.inner)])
        if fn is None:
            raise ProgramError(f"its function matches no library function on inputs {sorted(value_set(expr.inner))}")
        op = "NumericalMap" if rasp.is_numerical(expr) else "Map"
        return (op, fn.name, name(expr.inner), NA, ret)
    if isinstance(expr, rasp.LinearSequenceMap):
        raise ProgramError("LinearSequenceMap is not in the library")
    if isinstance(expr, rasp.SequenceMap):
        if rasp.is_numerical(expr):
            raise ProgramError("a numerical SequenceMap is not in the library")
        fn = library.identify(expr.f, [value_set(expr.fst), value_set(expr.snd)])
        if fn is None:
            raise ProgramError("its function matches no library function on its inputs")
        return ("SequenceMap", fn.name, name(expr.fst), name(expr.snd), ret)
    if isinstance(expr, rasp.Select):
        predicate = library.identify_predicate(expr.predicate, value_set(expr.keys), value_set(expr.queries))
        if predicate is None:
            raise ProgramError("its predicate matches no comparison on its inputs")
        return ("Select", predicate, name(expr.keys), name(expr.queries), ret)
    if isinstance(expr, rasp.Aggregate):
        if not isinstance(expr.selector, rasp.Select):
            raise ProgramError("only Select selectors can be aggregated")
        expected = 0 if rasp.is_numerical(expr) else None
        if expr.default != expected or rasp.get_encoding(expr) != rasp.get_encoding(expr.sop):
            raise ProgramError("Tracr needs default None (categorical) or 0 (numerical), and the input's encoding")
        return ("Aggregate", name(expr.selector), name(expr.sop), NA, ret)
    if isinstance(expr, rasp.SelectorWidth):
        if not isinstance(expr.selector, rasp.Select):
            raise ProgramError("only Select selectors have a width here")
        return ("SelectorWidth", name(expr.selector), NA, NA, ret)
    raise ProgramError("this kind of expression is not in the library")
