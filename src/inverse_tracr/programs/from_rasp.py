"""RASP → program lines: every expression Tracr compiles, its functions tabulated on their inputs' values.

What Tracr compiles (`tracr.compiler.expr_to_craft_graph`), and so what this reads: tokens and
indices; Map between any encodings; categorical SequenceMap; numerical LinearSequenceMap;
Select of categorical keys and queries with any predicate (a `Comparison` or a lambda);
Aggregate of a Select (categorical with default None, numerical with default 0, the input's
encoding); SelectorWidth of a Select (either encoding). Anything else — `Full`, constant SOps,
selector combinations, a numerical non-linear SequenceMap — Tracr refuses, and so does this, with
every such expression named in one error.
"""

from __future__ import annotations

from typing import Any, Sequence

from tracr.rasp import rasp

from inverse_tracr.programs import ops, values
from inverse_tracr.programs.program import NA, ProgramError
from inverse_tracr.programs.values import OperandError, VarType


def lines_from_rasp(sop: rasp.SOp, vocab: Sequence[Any], max_seq_len: int) -> tuple[list[tuple], dict[str, str]]:
    """The program's lines (`op, table, arg1, arg2, ret`, operands first) and the variable name
    given to each expression (by label)."""
    try:
        types = values.input_types([values.check(v, "vocab") for v in vocab], max_seq_len)
    except OperandError as error:
        raise ProgramError(str(error)) from None
    names: dict[str, str] = {}
    lines: list[tuple] = []
    problems: list[str] = []
    for expr in _postorder(sop):
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            names[expr.label] = "tokens" if isinstance(expr, rasp.TokensType) else "indices"
            continue
        names[expr.label] = ret = f"x{len(names)}"
        children = [names.get(child.label) for child in expr.children]
        if any(c is None or c not in types for c in children):
            continue  # an input was refused and is reported already
        try:
            op, fn, operands = _line(expr, [types[c] for c in children])
            types[ret] = ops.result_type(op, fn, [types[children[i]] for i in operands], max_seq_len)
        except OperandError as error:
            problems.append(f"{type(expr).__name__} {expr.name!r}: {error}")
            continue
        args = [children[i] for i in operands] + [NA] * (2 - len(operands))
        lines.append((op, NA if fn is None else fn, *args, ret))
    if problems:
        raise ProgramError("Tracr cannot compile these RASP expressions:\n" + "\n".join(problems))
    return lines, names


def _line(expr: rasp.RASPExpr, children: list[VarType]) -> tuple[str, ops.Table | None, tuple[int, ...]]:
    """(op, table, which children are the operands) of one expression whose children are typed."""
    if isinstance(expr, rasp.Map):
        (x,) = children
        if x.selector:
            raise OperandError("a Map needs a sequence")
        op = "NumericalMap" if rasp.is_numerical(expr) else "Map"
        return op, ops.tabulate(expr.f, [x.values]), (0,)
    if isinstance(expr, rasp.LinearSequenceMap):
        return "LinearSequenceMap", (expr.fst_fac, expr.snd_fac), (0, 1)
    if isinstance(expr, rasp.SequenceMap):
        if rasp.is_numerical(expr):
            raise OperandError("Tracr compiles a numerical SequenceMap only as a LinearSequenceMap")
        return "SequenceMap", ops.tabulate(expr.f, [c.values for c in children]), (0, 1)
    if isinstance(expr, rasp.Select):
        keys, queries = children
        if not (keys.categorical and queries.categorical):
            raise OperandError("Tracr needs categorical keys and queries")
        predicate = expr.predicate
        return "Select", ops.tabulate(lambda k, q: bool(predicate(k, q)), [keys.values, queries.values]), (0, 1)
    if isinstance(expr, rasp.Aggregate):
        if not isinstance(expr.selector, rasp.Select):
            raise OperandError(f"Tracr aggregates only a Select, not a {type(expr.selector).__name__}")
        sop = children[1]
        if rasp.get_encoding(expr) != rasp.get_encoding(expr.sop):
            raise OperandError("an Aggregate's encoding must be its input's")
        expected = 0 if rasp.is_numerical(expr) else None
        if expr.default != expected:
            raise OperandError(f"Tracr needs default {expected} for a {rasp.get_encoding(expr).value} Aggregate, got {expr.default!r}")
        if sop.selector:
            raise OperandError("an Aggregate needs a sequence to aggregate")
        return "Aggregate", None, (0, 1)
    if isinstance(expr, rasp.SelectorWidth):
        if not isinstance(expr.selector, rasp.Select):
            raise OperandError(f"Tracr computes the width only of a Select, not a {type(expr.selector).__name__}")
        return ("NumericalSelectorWidth" if rasp.is_numerical(expr) else "SelectorWidth"), None, (0,)
    raise OperandError(f"Tracr cannot compile a {type(expr).__name__}")


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


def canonical_names(sop: rasp.SOp, vocab: Sequence[Any], max_seq_len: int) -> dict[str, str]:
    """Each expression's variable name in the canonical `Program` (by label; merged expressions
    share one)."""
    from inverse_tracr.programs.program import canonicalize
    from inverse_tracr.programs.values import order

    lines, names = lines_from_rasp(sop, vocab, max_seq_len)
    canonical = canonicalize(lines, order(vocab), max_seq_len).names
    return {label: canonical.get(name, name) for label, name in names.items()}


def renamed(sop: rasp.SOp, names: dict[str, str]) -> rasp.SOp:
    """The same RASP program with every expression (by label) given the name in `names` — its
    functions, predicates and annotations untouched. Tracr orders the residual stream by name, so
    the user's program renamed to a `Program`'s canonical names compiles to exactly that
    `Program`'s parameters: how the tests and `benchmarks/coverage.py` check a round trip."""
    memo: dict[str, rasp.RASPExpr] = {}

    def go(e):
        if isinstance(e, (rasp.TokensType, rasp.IndicesType)):
            return e
        if e.label not in memo:
            if isinstance(e, rasp.Map):
                new = rasp.Map(e.f, go(e.inner), simplify=False)
            elif isinstance(e, rasp.LinearSequenceMap):
                new = rasp.LinearSequenceMap(go(e.fst), go(e.snd), e.fst_fac, e.snd_fac)
            elif isinstance(e, rasp.SequenceMap):
                new = rasp.SequenceMap(e.f, go(e.fst), go(e.snd))
            elif isinstance(e, rasp.Select):
                new = rasp.Select(go(e.keys), go(e.queries), e.predicate)
            elif isinstance(e, rasp.Aggregate):
                new = rasp.Aggregate(go(e.selector), go(e.sop), default=e.default)
            else:
                new = rasp.SelectorWidth(go(e.selector))
            memo[e.label] = rasp.annotate(new, **{**e.annotations, "name": names[e.label]})
        return memo[e.label]

    return go(sop)
