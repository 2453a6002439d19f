"""Program tokens: the meta-model's output vocabulary, built from the named-function library.

A program is BOS, then five tokens per canonical line (op, arg1, arg2, arg3, ret), then EOS. The
vocabulary holds every op, library function, predicate, input, variable name and NA, so every
token sequence either decodes to a `Program` or gets a clear "invalid" verdict.

`Grammar` says which tokens may come next, for decoding constrained to well-formed programs: the
op's arity and argument kinds, variables already in scope (selectors where a selector is due), the
canonical name of each new variable, EOS only after a complete line.
"""

from __future__ import annotations

import dataclasses

from inverse_tracr.programs import Program, ProgramError, library
from inverse_tracr.programs.program import INPUTS, NA, OPS

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
MAX_VARIABLES = 48
VARIABLES = tuple(f"v{i}" for i in range(1, MAX_VARIABLES + 1))
TOKENS: tuple[str, ...] = (
    PAD,
    BOS,
    EOS,
    NA,
    *OPS,
    *INPUTS,
    *VARIABLES,
    *library.MAP_FNS,
    *library.SEQUENCE_MAP_FNS,
    *library.PREDICATES,
)
INDEX = {token: i for i, token in enumerate(TOKENS)}
PAD_ID, BOS_ID, EOS_ID = INDEX[PAD], INDEX[BOS], INDEX[EOS]
FIELDS = ("op", "arg1", "arg2", "arg3", "ret")


def encode(program: Program) -> list[int]:
    """[BOS, op, arg1, arg2, arg3, ret, …, EOS] as token ids."""
    if len(program.lines) > MAX_VARIABLES:
        raise ValueError(f"programs of at most {MAX_VARIABLES} lines can be tokenised")
    return [BOS_ID, *(INDEX[field] for line in program.lines for field in line), EOS_ID]


def decode(ids, vocab: tuple, max_seq_len: int) -> Program:
    """The Program a token sequence spells; ProgramError saying why if it spells none."""
    tokens = [TOKENS[i] if 0 <= i < len(TOKENS) else "?" for i in ids]
    if tokens and tokens[0] == BOS:
        tokens = tokens[1:]
    if EOS not in tokens:
        raise ProgramError("no end-of-program token")
    body = tokens[: tokens.index(EOS)]
    if not body or len(body) % 5:
        raise ProgramError(f"{len(body)} tokens do not make whole lines of 5")
    lines = tuple(tuple(body[i : i + 5]) for i in range(0, len(body), 5))
    return Program(lines, vocab, max_seq_len)


def _ids(tokens) -> frozenset[int]:
    return frozenset(INDEX[t] for t in tokens)


_ARGUMENTS = {  # per op: what each of arg1..arg3 holds
    "Map": ("map_fn", "categorical", "na"),
    "NumericalMap": ("map_fn", "categorical", "na"),
    "SequenceMap": ("sequence_map_fn", "categorical", "categorical"),
    "Select": ("predicate", "categorical", "categorical"),
    "Aggregate": ("selector", "sequence", "na"),
    "SelectorWidth": ("selector", "na", "na"),
}
_FIXED = {
    "map_fn": _ids(library.MAP_FNS),
    "sequence_map_fn": _ids(library.SEQUENCE_MAP_FNS),
    "predicate": _ids(library.PREDICATES),
    "na": _ids([NA]),
}
_OPS = _ids(OPS)
_NEEDS_SELECTOR = _ids(["Aggregate", "SelectorWidth"])


@dataclasses.dataclass
class Grammar:
    """Which token ids may follow the tokens seen so far (after BOS)."""

    lines: int = 0
    field: int = 0
    op: str | None = None
    numerical_arg: bool = False  # the current line reads a numerical variable
    selectors: set[str] = dataclasses.field(default_factory=set)
    categorical: set[str] = dataclasses.field(default_factory=lambda: set(INPUTS))
    numerical: set[str] = dataclasses.field(default_factory=set)
    done: bool = False

    def allowed(self) -> frozenset[int]:
        if self.done:
            return frozenset([PAD_ID])
        if self.field == 0:
            ops = _OPS if self.selectors else _OPS - _NEEDS_SELECTOR
            ops = ops if self.lines < MAX_VARIABLES else frozenset()
            return ops | ({EOS_ID} if self.lines and self.op != "Select" else frozenset())
        if self.field == 4:
            return _ids([VARIABLES[self.lines]])
        kind = _ARGUMENTS[self.op][self.field - 1]
        if kind == "selector":
            return _ids(self.selectors)
        if kind == "categorical":
            return _ids(self.categorical)
        if kind == "sequence":
            return _ids(self.categorical | self.numerical)
        return _FIXED[kind]

    def step(self, token_id: int) -> None:
        token = TOKENS[token_id]
        if self.field == 0:
            if token == EOS:
                self.done = True
                return
            self.op, self.numerical_arg = token, False
        elif self.field == 4:
            if self.op == "Select":
                self.selectors.add(token)
            elif self.op == "NumericalMap" or self.numerical_arg:  # an Aggregate keeps its input's encoding
                self.numerical.add(token)
            else:
                self.categorical.add(token)
            self.lines += 1
        elif token in self.numerical:
            self.numerical_arg = True
        self.field = (self.field + 1) % 5
