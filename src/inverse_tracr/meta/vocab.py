"""Program tokens: the meta-model's output vocabulary and target layout (version 4: sublayers, tables).

A program is BOS, then the lines each sublayer of its compiled model computes — the first
attention's, the first MLP's, the second attention's, … (`programs.layers`: where Tracr puts
them) — each sublayer's closed by EOL, empty ones too, then EOS. So the k-th group of lines is
what the k-th block of weights computes, and a decoder writing a sublayer's lines can look at
that sublayer's weights. A line is `op, arg1, arg2, fn…, ret`:

- `op`: the operation; `arg1`, `arg2`: `tokens`, `indices` or a variable (NA where unused);
- `fn…`: NA for Aggregate and SelectorWidth; otherwise one token per entry of the function's table,
  in the order of the operands' value sets. An entry is *a position, not a label*: `#r` is the
  r-th value of the line's output value set (`#none` for undefined), a Select entry `#0`/`#1`
  (False/True), a numerical entry one of a fixed set of numbers (`=0.5`). The vocabulary therefore
  does not grow with the labels a user's model has; `decode` puts the labels back (tokens from the
  vocabulary, output values from the model's layout). A function is always written as its table,
  never by a library name (`lt_3`, `EQ`), which the canonical form gives when it prints a program:
  the table is what the weights hold, entry by entry, and each entry is looked up where it is
  written (`Grammar.entry`), whereas a name asked the meta-model to recognise a whole table at once
  and to tell it from every near miss. Measured (4,000 programs, 3,000 steps, 300 held-out
  programs, greedy): names where they exist 24.0 % exact, 32.7 % functional; tables 38.7 %, 50.0 %;
- `ret`: the variable's name, v1, v2, … in the order written (the grammar fixes it).

Within a sublayer lines keep their canonical order (a Select comes before the attention that uses
it, in that attention's sublayer). `Grammar` says which tokens may come next, for decoding
constrained to well-formed programs: the op's arity and argument kinds, attention ops in
attention sublayers and MLP ops in MLP ones, operands computed in an earlier sublayer, exactly as
many table entries as the operands' value sets need (it types each line as it completes), as many
sublayers as the weights have when it is told, EOS only after a whole layer.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any, Sequence

from inverse_tracr.programs import Program, ProgramError, layers, ops, values
from inverse_tracr.programs.program import INPUTS, NA, Line, rank_view
from inverse_tracr.programs.values import OperandError, VarType

LAYOUT = "inverse-tracr/targets/4"
PAD, BOS, EOS, EOL, NONE = "<pad>", "<bos>", "<eos>", "<eol>", "#none"
MAX_VARIABLES = 48
#: Largest output value set a table's entries can index.
MAX_RANK = 64
#: Longest target (BOS and EOS included); longer programs cannot be tokenised. Tracr's `lib` programs
#: need up to 1,034 (`make_sort_freq`); sampled 4–8-op programs up to ~200.
MAX_PROGRAM_TOKENS = 2048
VARIABLES = tuple(f"v{i}" for i in range(1, MAX_VARIABLES + 1))
RANKS = tuple(f"#{r}" for r in range(MAX_RANK))
#: Numbers a numerical table entry (or a LinearSequenceMap factor) may be: what small programs use.
NUMBERS: tuple[float, ...] = tuple(sorted({float(Fraction(k, d)) for d in range(1, 9) for k in range(-16 * d, 16 * d + 1) if abs(Fraction(k, d)) <= 8 and (d == 1 or abs(Fraction(k, d)) <= 2)}))
NUMBER_TOKENS = tuple(f"={n:g}" for n in NUMBERS)
TOKENS: tuple[str, ...] = (PAD, BOS, EOS, EOL, NA, *ops.OPS, *INPUTS, *VARIABLES, NONE, *RANKS, *NUMBER_TOKENS)
INDEX = {token: i for i, token in enumerate(TOKENS)}
PAD_ID, BOS_ID, EOS_ID, EOL_ID, NA_ID = INDEX[PAD], INDEX[BOS], INDEX[EOS], INDEX[EOL], INDEX[NA]
#: Tokens that end something, not a line's field: a sublayer, the program.
ENDS = frozenset({EOS, EOL})
_NUMBER_BY_VALUE = {values.number(n, "number"): token for n, token in zip(NUMBERS, NUMBER_TOKENS)}
#: Fields of a line, as `metrics` reports them.
FIELDS = ("op", "arg1", "arg2", "fn", "ret")


class Untokenizable(ValueError):
    """A program the target layout cannot write (too long, too many values, an unusual number)."""


def encode(program: Program) -> list[int]:
    """[BOS, …sublayers' lines, each closed by EOL…, EOS] as token ids; Untokenizable if the layout cannot write it."""
    if len(program.lines) > MAX_VARIABLES:
        raise Untokenizable(f"programs of at most {MAX_VARIABLES} lines can be tokenised")
    where = layers.sublayers(program)
    order = sorted(range(len(program.lines)), key=lambda i: (where[program.lines[i].ret], i))
    names = {**{name: name for name in INPUTS}, **{program.lines[i].ret: VARIABLES[k] for k, i in enumerate(order)}}
    tokens, group = [BOS], 0
    for i in order:
        line = program.lines[i]
        tokens += [EOL] * (where[line.ret] - group)
        group = where[line.ret]
        args = [names[o] for o in line.operands] + [NA] * (2 - len(line.operands))
        tokens += [line.op, *args, *_function_tokens(program, line), names[line.ret]]
    tokens += [EOL] * (layers.count(program) - group)
    tokens.append(EOS)
    if len(tokens) > MAX_PROGRAM_TOKENS:
        raise Untokenizable(f"{len(tokens)} tokens (at most {MAX_PROGRAM_TOKENS})")
    return [INDEX[t] for t in tokens]


def fields(ids: Sequence[int]) -> list[int]:
    """Per token of an encoding without BOS: its field (index into FIELDS; len(FIELDS) for EOL and EOS).

    Reads the layout as written: a line is op, two args, fn tokens up to the variable, ret."""
    out, field = [], 0
    for i in ids:
        token = TOKENS[i] if 0 <= i < len(TOKENS) else "?"
        if token in ENDS and field == 0:
            out.append(len(FIELDS))
            continue
        if field <= 2:
            out.append(field)
            field += 1
        elif token in VARIABLES:
            out.append(4)
            field = 0
        else:
            out.append(3)
    return out


def _function_tokens(program: Program, line: Line) -> list[str]:
    if line.fn is None:
        return [NA]
    if line.op == "LinearSequenceMap":
        return [_number(v) for v in line.fn]
    result = program.types[line.ret]
    if line.op == "Select":
        return [RANKS[int(v)] for v in line.fn]
    if result.numerical:
        return [_number(v) for v in line.fn]
    if len(result.values) > MAX_RANK:
        raise Untokenizable(f"{line.ret} has {len(result.values)} values (at most {MAX_RANK})")
    index = result.index()
    return [NONE if v is None else RANKS[index[v]] for v in line.fn]


def _number(v: float) -> str:
    try:
        return _NUMBER_BY_VALUE[values.number(v, "number")]
    except KeyError:
        raise Untokenizable(f"the number {v!r} has no token") from None


def decode(ids: Sequence[int], vocab: Sequence[Any], max_seq_len: int, output_values: Sequence[Any] | None = None) -> Program:
    """The Program a token sequence spells; ProgramError saying why if it spells none.

    `output_values`: the labels of the model's output (its layout's), which `#r` entries of the
    tables that make the output's values stand for; without them those entries stay ranks."""
    tokens = [TOKENS[i] if 0 <= i < len(TOKENS) else "?" for i in ids]
    if tokens and tokens[0] == BOS:
        tokens = tokens[1:]
    if EOS not in tokens:
        raise ProgramError("no end-of-program token")
    grammar = Grammar(tuple(vocab), max_seq_len)
    for token in tokens[: tokens.index(EOS) + 1]:
        if INDEX.get(token) not in grammar.allowed():
            raise ProgramError(f"token {token!r} cannot come here (line {len(grammar.lines) + 1})")
        grammar.step(INDEX[token])
    return grammar.program(output_values)


_ARGUMENTS = {  # per op: what arg1, arg2 hold
    "Map": ("sequence", "na"),
    "NumericalMap": ("sequence", "na"),
    "SequenceMap": ("categorical", "categorical"),
    "LinearSequenceMap": ("numerical", "numerical"),
    "Select": ("categorical", "categorical"),
    "Aggregate": ("selector", "sequence"),
    "SelectorWidth": ("selector", "na"),
    "NumericalSelectorWidth": ("selector", "na"),
}
_OPS = frozenset(INDEX[op] for op in ops.OPS)
_RANK_IDS = [INDEX[r] for r in RANKS]
_NUMBER_IDS = frozenset(INDEX[t] for t in NUMBER_TOKENS)
_BOOLEAN_IDS = frozenset(_RANK_IDS[:2])
#: The ops whose function is written entry by entry (a LinearSequenceMap's is two numbers).
_TABLE_OPS = ops.FUNCTION_OPS - {"LinearSequenceMap"}


#: The ops an attention sublayer (even) and an MLP sublayer (odd) may hold.
_ATTENTION_OPS = frozenset(INDEX[op] for op in ops.OPS if op not in layers.MLP)
_MLP_OPS = frozenset(INDEX[op] for op in layers.MLP)


@dataclasses.dataclass
class Grammar:
    """Which token ids may follow the tokens seen so far (after BOS), and the program they spell.

    `sublayers`: how many the weights have (`weights.sublayers`), if known: then the program
    fills exactly that many, and cannot end before."""

    vocab: tuple = (0, 1, 2, 3, 4)
    max_seq_len: int = 5
    sublayers: int | None = None
    lines: list[Line] = dataclasses.field(default_factory=list)
    current: list[str] = dataclasses.field(default_factory=list)  # tokens of the line being read
    #: Each variable's type as the lines reading it see it (`program.rank_view` for table-made ones).
    types: dict[str, VarType] = dataclasses.field(default_factory=dict)
    made: set[str] = dataclasses.field(default_factory=set)  # table-made variables
    group: int = 0  # the sublayer being written
    groups: dict[str, int] = dataclasses.field(default_factory=dict)  # each variable's sublayer (inputs: none)
    closed: bool = False  # the last token closed a sublayer
    done: bool = False

    def __post_init__(self):
        if not self.types:
            self.types = values.input_types(self.vocab, self.max_seq_len)

    def copy(self) -> "Grammar":
        """An independent copy (beam search branches one per candidate)."""
        return dataclasses.replace(self, lines=list(self.lines), current=list(self.current), types=dict(self.types),
                                   made=set(self.made), groups=dict(self.groups))

    # --- where we are in a line ------------------------------------------------------------

    def _operand_types(self) -> list[VarType]:
        return [self.types[a] for a in self.current[1:3] if a != NA]

    def _table_size(self) -> int:
        return ops.table_size(self.current[0], self._operand_types())

    def allowed(self) -> frozenset[int]:
        if self.done:
            return frozenset([PAD_ID])
        n = len(self.current)
        if n == 0:
            return frozenset(self._line_starts())
        op = self.current[0]
        if n in (1, 2):
            return frozenset(INDEX[v] for v in self._operands(_ARGUMENTS[op][n - 1]))
        fn = self.current[3:]
        if op not in ops.FUNCTION_OPS:
            return frozenset([NA_ID]) if not fn else self._ret()
        if op == "LinearSequenceMap":
            return _NUMBER_IDS if len(fn) < 2 else self._ret()
        if len(fn) == self._table_size():
            return self._ret()
        if op == "Select":
            return _BOOLEAN_IDS
        if op == "NumericalMap":
            return _NUMBER_IDS
        return frozenset([INDEX[NONE], *_RANK_IDS])

    def entry(self) -> tuple[int, int | None] | None:
        """Where the next token sits if it is a table entry: the indices of its operands' values in
        their value sets (the first operand's varying slowest, as tables list them; None for a
        second operand there is not) — the values' offsets in their variables' blocks, which
        `weights` gives the units that compute the entry. None for any other token."""
        if self.done or len(self.current) < 3 or self.current[0] not in _TABLE_OPS:
            return None
        i = len(self.current) - 3  # entries written so far
        if i >= self._table_size():
            return None
        sizes = [len(t.values) for t in self._operand_types()]
        return (i, None) if len(sizes) == 1 else (i // sizes[1], i % sizes[1])

    def _line_starts(self) -> set[int]:
        """Between lines: a line of an op this sublayer holds, the sublayer's end, the program's."""
        ok = set()
        open_ = self.sublayers is None or self.group < self.sublayers
        if open_ and len(self.lines) < MAX_VARIABLES:
            ok = {i for i in (_ATTENTION_OPS if layers.is_attention(self.group) else _MLP_OPS) if self._can_start(TOKENS[i])}
            if len(self.lines) == MAX_VARIABLES - 1:  # a Select now would leave no line to use it, and no way on
                ok.discard(INDEX["Select"])
        dangling = self.lines and self.lines[-1].op == "Select" and self.groups[self.lines[-1].ret] == self.group
        # The last sublayer may not close on an empty program, which could then never end.
        if open_ and not dangling and (self.lines or self.sublayers is None or self.group < self.sublayers - 1):
            ok.add(EOL_ID)
        if self.closed and self.lines and layers.is_attention(self.group) and self.sublayers in (None, self.group):
            ok.add(EOS_ID)
        return ok

    def _ret(self) -> frozenset[int]:
        return frozenset([INDEX[VARIABLES[len(self.lines)]]])

    def _can_start(self, op: str) -> bool:
        return all(self._operands(kind) for kind in _ARGUMENTS[op])

    def _operands(self, kind: str) -> list[str]:
        """What an argument of this kind may be: a selector of this sublayer or before, any
        other variable of an earlier sublayer (what this one reads is written before it)."""
        if kind == "na":
            return [NA]
        test = {
            "selector": lambda t: t.selector,
            "sequence": lambda t: not t.selector,
            "categorical": lambda t: t.categorical,
            "numerical": lambda t: t.numerical,
        }[kind]
        before = (lambda g: g <= self.group) if kind == "selector" else (lambda g: g < self.group)
        return [name for name, t in self.types.items() if test(t) and before(self.groups.get(name, -1))]

    def step(self, token_id: int) -> None:
        token = TOKENS[token_id]
        self.closed = not self.current and token == EOL
        if not self.current and token in ENDS:
            self.done, self.group = token == EOS, self.group + (token == EOL)
            return
        self.current.append(token)
        if token in VARIABLES and len(self.current) > 3:
            self._complete()

    def _complete(self) -> None:
        """Type the line just read; a line that cannot be typed ends decoding (no valid program)."""
        op, a1, a2, *fn, ret = self.current
        self.current = []
        operands = tuple(a for a in (a1, a2) if a != NA)
        try:
            table = self._table(op, fn, [self.types[o] for o in operands])
            result = ops.result_type(op, table, [self.types[o] for o in operands], self.max_seq_len)
        except (OperandError, KeyError, ValueError):
            result, table = VarType(selector=op == "Select", values=(0, 1)), ("invalid",)  # `program` refuses it
        if result.categorical and (op in ("Map", "SequenceMap") or (op == "Aggregate" and operands[1] in self.made)):
            self.made.add(ret)
            result = rank_view(result)
        self.types[ret] = result
        self.groups[ret] = self.group
        self.lines.append(Line(op, table, operands, ret))

    def _table(self, op: str, fn: list[str], operands: list[VarType]) -> ops.Table | None:
        if op not in ops.FUNCTION_OPS:
            return None
        if op == "LinearSequenceMap":
            return tuple(float(t[1:]) for t in fn)
        if op == "Select":
            return tuple(e == RANKS[1] for e in fn)
        if op == "NumericalMap":
            return tuple(float(t[1:]) for t in fn)
        return tuple(None if e == NONE else _RankLabel(int(e[1:])) for e in fn)

    def program(self, output_values: Sequence[Any] | None = None) -> Program:
        """The program read so far (it must be complete), with the output's labels if given."""
        if not self.lines or self.current:
            raise ProgramError("the tokens do not make whole lines")
        if any(line.fn == ("invalid",) for line in self.lines):
            bad = next(i for i, line in enumerate(self.lines, 1) if line.fn == ("invalid",))
            raise ProgramError(f"line {bad} does not type-check")
        labels = _output_labels(self.lines, output_values)
        lines = [line._replace(fn=tuple(_label(v, labels.get(line.ret)) for v in line.fn)) if line.fn else line for line in self.lines]
        return Program(lines, self.vocab, self.max_seq_len)  # the canonical form ranks the intermediates


def entries(ids: Sequence[int], vocab_: Sequence[Any], max_seq_len: int) -> list[tuple[int, int | None] | None]:
    """`Grammar.entry` after each of `ids` (BOS first): where the token after it sits in its table.
    A token the grammar refuses (an unconstrained prediction) ends the reading: no entries after it."""
    grammar, out = Grammar(tuple(vocab_), max_seq_len), []
    for token in ids[1:]:
        out.append(grammar.entry())
        follow(grammar, token)
    return out + [grammar.entry()]


def follow(grammar: Grammar, token: int) -> None:
    """Step `grammar` by `token`, or end its reading if the token breaks it."""
    if not grammar.done and token in grammar.allowed():
        grammar.step(token)
    else:
        grammar.done = True


class _RankLabel(int):
    """A table entry read as a rank (`#r`), until `program` gives it its label."""


def _output_labels(lines: list[Line], output_values: Sequence[Any] | None) -> dict[str, Sequence[Any]]:
    """Which line's rank entries are output labels: the line that makes the output's values (the
    output itself, or what categorical Aggregates copy into it)."""
    if output_values is None:
        return {}
    by_ret = {line.ret: line for line in lines}
    var = lines[-1].ret
    while var in by_ret and by_ret[var].op == "Aggregate":
        var = by_ret[var].operands[1]
    return {var: values.order(output_values)} if var in by_ret and by_ret[var].op in ("Map", "SequenceMap") else {}


def _label(value: Any, labels: Sequence[Any] | None) -> Any:
    if not isinstance(value, _RankLabel):
        return value
    if labels is None:
        return int(value)
    if value >= len(labels):
        raise ProgramError(f"table entry #{int(value)} but the output has {len(labels)} values")
    return labels[value]
