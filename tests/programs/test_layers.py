"""Each line's sublayer as Tracr itself allocates it, and as many layers as the compiled model has."""

from __future__ import annotations

import random
import re

from tracr.compiler import basis_inference, craft_graph_to_model, expr_to_craft_graph, rasp_to_graph
from tracr.craft import bases
from tracr.rasp import rasp

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.meta import weights
from inverse_tracr.programs import Program, layers
from inverse_tracr.programs.sampler import SamplerConfig, sample_program
from inverse_tracr.programs.tracr_lib import tracr_lib_programs


def tracr_sublayers(program: Program) -> dict[str, int]:
    """Tracr's own allocation (the steps of `compiling.compile_rasp_to_model` up to it), by line."""
    graph = rasp_to_graph.extract_rasp_graph(program.to_rasp())
    basis_inference.infer_bases(graph.graph, graph.sink, set(program.vocab), program.max_seq_len)
    expr_to_craft_graph.add_craft_components_to_rasp_graph(graph.graph, bos_dir=bases.BasisDirection(rasp.tokens.label, "bos"))
    allocation = craft_graph_to_model._allocate_modules_to_layers(graph.graph, graph.sources)
    return {re.sub(r"_\d+$", "", node): sublayer for node, sublayer in allocation.items() if sublayer >= 0}


def test_a_map_then_an_aggregate():
    program = Program((
        ("Map", "lt_3", "tokens", "NA", "v1"),
        ("Select", "EQ", "indices", "indices", "v2"),
        ("Aggregate", "NA", "v2", "v1", "v3"),
    ))
    # The Map in the first MLP (the first attention empty); the Select goes with its Aggregate.
    assert layers.sublayers(program) == {"v1": 1, "v2": 2, "v3": 2} and layers.count(program) == 4


def test_every_line_sits_where_tracr_puts_it():
    config = SamplerConfig(min_ops=2, max_ops=10, random_tables=0.2)
    programs = [sample_program(random.Random(seed), config) for seed in range(60)] + list(tracr_lib_programs().values())
    for program in programs:
        ours = layers.sublayers(program)
        selects = {line.ret for line in program.lines if line.op == "Select"}
        assert {v: s for v, s in ours.items() if v not in selects} == tracr_sublayers(program), program.source()
        users = {v: [ours[line.ret] for line in program.lines if v in line.operands] for v in selects}
        assert all(ours[v] == min(users[v]) and layers.is_attention(ours[v]) for v in selects)
    # An MLP reading the attention just before it in its own layer: an attention-only depth and an
    # MLP-only one condensed into a layer — the case Tracr's allocation treats apart — is sampled.
    assert any(layers.sublayers(p)[o] == layers.sublayers(p)[line.ret] - 1 for p in programs for line in p.lines for o in line.operands
               if line.op in layers.MLP and o in layers.sublayers(p))


def test_the_count_is_the_compiled_models_sublayers():
    config = SamplerConfig(min_ops=3, max_ops=8)
    for seed in range(12):
        program = sample_program(random.Random(seed), config)
        assert layers.count(program) == weights.sublayers(compile_program(program).params), program.source()
