"""Sampler properties over many seeds: exact lengths, types as Tracr infers them, nothing Tracr rejects."""

from __future__ import annotations

import collections
import random

import pytest
from tracr.compiler import basis_inference, nodes, rasp_to_graph, validating

from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.verify import expected_outputs, make_inputs
from inverse_tracr.programs.sampler import SamplerConfig, recency_weights, sample_program

SEEDS = range(300)


@pytest.fixture(scope="module")
def sampled():
    config = SamplerConfig(min_ops=3, max_ops=9, vocab_size=5, max_seq_len=5, random_tables=0.2)
    return config, [sample_program(random.Random(seed), config) for seed in SEEDS]


def _share_without_alias(programs) -> float:
    lines = [alias for p in programs for line, alias in zip(p.lines, p.aliases) if line.op in ("Map", "SequenceMap", "Select")]
    return sum(alias is None for alias in lines) / len(lines)


def test_random_tables_take_their_share(sampled):
    _, programs = sampled
    library_only = [sample_program(random.Random(seed), SamplerConfig(min_ops=3, max_ops=9)) for seed in SEEDS]
    # Library functions keep an alias unless ranking their operands' values changes their table
    # (a comparison of two relabelled variables); 20 % random tables add about 20 %.
    base, mixed = _share_without_alias(library_only), _share_without_alias(programs)
    assert base < 0.1 and 0.12 < mixed - base < 0.28, (base, mixed)


def test_thesis_recency_weights():
    assert recency_weights(7) == [1, 1, 2, 4, 7, 11, 16]  # w_n = 2 w_{n-1} - w_{n-2} + 1


def test_lengths_are_exact_and_cover_the_range(sampled):
    config, programs = sampled
    lengths = collections.Counter(len(p.lines) for p in programs)
    assert set(lengths) == set(range(config.min_ops, config.max_ops + 1))
    # the same seed gives the same program; another seed, almost always another
    assert sample_program(random.Random(5), config) == programs[5]
    assert len({p.id for p in programs}) > 0.95 * len(programs)


def test_every_program_reads_tokens_and_uses_every_line(sampled):
    _, programs = sampled
    for program in programs:
        operands = [o for line in program.lines for o in line.operands]
        assert "tokens" in operands
        defined = [line.ret for line in program.lines[:-1]]
        assert all(var in operands for var in defined), program.source()


def test_value_sets_match_tracr_basis_inference(sampled):
    _, programs = sampled
    for program in programs[:120]:
        sop = program.to_rasp()
        graph = rasp_to_graph.extract_rasp_graph(sop)
        basis_inference.infer_bases(graph.graph, graph.sink, set(program.vocab), program.max_seq_len)
        by_name = {node[nodes.EXPR].name: node for node in graph.graph.nodes.values()}
        for name, var_type in program.types.items():
            if not var_type.selector and name in by_name:
                assert set(by_name[name][nodes.VALUE_SET]) == set(var_type.values), (name, program.source())


def test_no_construct_tracr_rejects_reaches_the_compiler(sampled):
    _, programs = sampled
    compiled = 0
    for program in programs:
        assert validating.static_validate(program.to_rasp()) == []
        expected, reason = expected_outputs(program, make_inputs(program, 16))
        if expected is None or compiled >= 40:
            continue
        compile_program(program)  # raises on anything Tracr cannot compile
        compiled += 1
    assert compiled == 40


def test_screening_rejects_little(sampled):
    _, programs = sampled
    reasons = collections.Counter(expected_outputs(p, make_inputs(p, 32))[1] for p in programs)
    assert reasons[None] > 0.7 * len(programs), reasons
    # None reaching a Select or a mean crashes rasp.evaluate: the sampler never builds that
    assert reasons["evaluation_error"] == 0 and reasons["aggregate_not_unique"] == 0, reasons


@pytest.mark.parametrize("bad, message", [
    (dict(min_ops=5, max_ops=4), r"need 2 <= min_ops <= max_ops <= 64, got 5\.\.4"),
    (dict(vocab_size=99), r"vocab_size must be 2\.\.\d+, got 99"),
    (dict(max_seq_len=1), r"max_seq_len must be 2\.\.16, got 1"),
    (dict(random_tables=1.5), "random_tables is a share from 0 to 1, got 1.5"),
])
def test_bad_sampler_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**bad)
