"""Where Tracr puts each line of a program: the sublayer of the compiled model that computes it.

Tracr (`craft_graph_to_model._allocate_modules_to_layers`) places every operation by its depth —
the longest chain of operations from the inputs, Selects not counted (a Select is part of the
attention that uses it) — attention at sublayer 2·(depth − 1), MLPs at the next; where one depth
holds only attention and the next only MLPs, the two share a layer. SelectorWidth is an
attention and an MLP in series, so it takes both sublayers of its layer. Mirrored here as a pure
function of the program, so that the meta-model's targets can follow the order of the weights
without compiling; the tests check it against Tracr's own allocation and the compiled depth.
"""

from __future__ import annotations

import collections

from inverse_tracr.programs.program import Program

ATTENTION = frozenset({"Aggregate"})
MLP = frozenset({"Map", "NumericalMap", "SequenceMap", "LinearSequenceMap"})
BLOCKS = frozenset({"SelectorWidth", "NumericalSelectorWidth"})  # attention then MLP


def is_attention(sublayer: int) -> bool:
    return sublayer % 2 == 0


def sublayers(program: Program) -> dict[str, int]:
    """Each line's sublayer (0: the first attention, 1: the first MLP, …), by variable; a Select's
    is that of its first user."""
    depth: dict[str, int] = {}
    for line in program.lines:  # canonical order is topological
        below = max((depth.get(o, 0) for o in line.operands), default=0)
        depth[line.ret] = below if line.op == "Select" else below + 1
    kind = {line.ret: "attn" if line.op in ATTENTION else "mlp" if line.op in MLP else "block"
            for line in program.lines if line.op != "Select"}
    by_depth: dict[int, list[str]] = collections.defaultdict(list)
    for var in kind:
        by_depth[depth[var]].append(var)
    level, top = min(by_depth), max(by_depth)
    while level < top:
        if all(kind[v] == "attn" for v in by_depth[level]) and all(kind[v] == "mlp" for v in by_depth[level + 1]):
            for shifted in range(level + 1, top + 1):
                for var in by_depth[shifted]:
                    depth[var] = shifted - 1
                by_depth[shifted - 1] += by_depth.pop(shifted)
            top -= 1
        level += 1
    where = {var: 2 * (depth[var] - 1) + (kind[var] == "mlp") for var in kind}
    for line in reversed(program.lines):  # users come after what they use
        if line.op == "Select":
            where[line.ret] = min(where[user.ret] for user in program.lines if line.ret in user.operands)
    return where


def count(program: Program) -> int:
    """The compiled model's sublayers: twice its layers (a layer is an attention and an MLP)."""
    where = sublayers(program)
    last = max(where[line.ret] + (line.op in BLOCKS) for line in program.lines)
    return 2 * (last // 2 + 1)
