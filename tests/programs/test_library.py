"""The function library: a table's alias is the first library name with that table, on operands of any type."""

from __future__ import annotations

import random

from inverse_tracr.programs import library, ops
from inverse_tracr.programs.program import rank_view, table_made
from inverse_tracr.programs.sampler import SamplerConfig, sample_program
from inverse_tracr.programs.values import VarType


def test_an_alias_is_found_on_operands_that_python_counts_equal_but_tables_do_not():
    # 1 == 1.0 == True and they hash alike, but add_1 gives 2 on one and 2.0 on the other: a lookup
    # keyed by value alone would answer the float table from the int one (and find no name).
    for values in ((1, 2), (1.0, 2.0)):
        operands = [VarType(values=values)]
        table = library.named_table("Map", "add_1", operands)
        assert library.alias("Map", table, operands, relabelled=False) == "add_1"
    assert library.alias("Map", (True, False), [VarType(values=(1, 2))], relabelled=False) == "eq_1"  # the first of eq_1, lt_2, le_1, …
    assert library.alias("Map", (5, 5), [VarType(values=(1, 2))], relabelled=False) is None


def test_aliases_are_what_a_walk_through_the_library_finds():
    def first_name(op, table, operands, relabelled):
        wanted = library.signature(op, table, relabelled)
        for name in library.names(op):
            try:
                if library.signature(op, library.named_table(op, name, operands), relabelled) == wanted:
                    return name
            except Exception:  # noqa: BLE001 - as the library: a function may not apply to these values
                continue
        return None

    rng, checked = random.Random(3), 0
    for _ in range(40):
        program = sample_program(rng, SamplerConfig(min_ops=4, max_ops=8))
        made = table_made({line.ret: line for line in program.lines}, program.types)
        views = {name: rank_view(t) if name in made else t for name, t in program.types.items()}
        for line, alias in zip(program.lines, program.aliases):
            if line.op in ops.TABLE_OPS:
                assert alias == first_name(line.op, line.fn, [views[o] for o in line.operands], line.ret in program.ranked)
                checked += alias is not None
    assert checked >= 40
