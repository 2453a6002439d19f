"""The generate stage: correct labels, one label for equal weights, reproducible shards."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
from conftest import SMALL, small_zoo_samples
from tracr.compiler import compiling

from inverse_tracr.compile import forward
from inverse_tracr.compile.model import BOS, PAD, CompiledModel, Layout
from inverse_tracr.programs import Program, library, values
from inverse_tracr.zoo import Reader
from inverse_tracr.zoo.config import ZooConfig
from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.shards import shard_urls
from inverse_tracr.zoo.store import Store


def test_every_stored_sample_is_what_stock_tracr_compiles_and_computes_its_program(small_zoo):
    samples = small_zoo_samples(small_zoo)
    assert len(samples) == 12 and len({s.key for s in samples}) == 12
    for sample in samples:
        program = Program.from_json(json.loads(json.dumps(sample.program.to_json())))
        assert program.id == sample.key and 3 <= len(program.lines) <= 6
        sop = program.to_rasp()
        stock = compiling.compile_rasp_to_model(sop, set(program.vocab), program.max_seq_len, compiler_bos=BOS, compiler_pad=PAD)
        stock_params = CompiledModel.from_tracr(stock, sop.label).params
        assert stock_params.keys() == sample.params.keys()
        for name, array in stock_params.items():
            np.testing.assert_array_equal(sample.params[name], array, err_msg=f"{sample.key} {name}")
        # the stored weights, run as stored, reproduce rasp.evaluate at every defined position
        model = CompiledModel(sample.params, Layout.from_json(sample.meta["model"]))
        inputs = [[t % len(program.vocab) for t in range(i, i + program.max_seq_len)] for i in range(4)]
        for xs, got in zip(inputs, forward.run(model, inputs)):
            want = program.evaluate(xs)
            same = (lambda g, w: math.isclose(g, w, rel_tol=0.005, abs_tol=1e-5)) if model.layout.output_values is None else (lambda g, w: g == w)
            assert all(w is None or same(g, w) for g, w in zip(got, want)), (program.source(), xs, got, want)
        # every one of the 3,905 inputs of vocabulary 5 and length 5 was checked
        assert sample.meta["verification"]["passed"] and sample.meta["verification"]["inputs"] == 3905
        assert sample.meta["verification"]["exhaustive"] and sample.meta["format"] == "inverse-tracr/sample/2"


def test_shards_are_a_pure_function_of_config_seed_and_index(small_zoo, tmp_path):
    # another store, one worker instead of two, shards written in another order: same bytes
    generate(str(tmp_path), "small", SMALL, programs=12, shards=[1, 0], workers=1, progress=False)
    for index in (0, 1):
        name = f"small/standard/shard-00000{index}.tar"
        assert (tmp_path / name).read_bytes() == (small_zoo / name).read_bytes()
    # rerunning skips finished shards
    summary = generate(str(tmp_path), "small", SMALL, programs=12, workers=1, progress=False)
    assert summary.shards_written == 0 and summary.shards_skipped == 2


def test_equal_weights_have_one_label_on_a_zoo_of_500(tmp_path):
    """No two samples with identical parameters have different ids, and no line's table could be
    named by another library function giving another id."""
    config = ZooConfig(shard_size=125, min_ops=4, max_ops=8, seed=31)
    generate(str(tmp_path), "labels", config, programs=500, workers=2, progress=False)
    samples = list(Reader(shard_urls(Store(str(tmp_path)), "labels"), unique=False))  # a program may recur across shards
    assert len(samples) == 500
    by_weights: dict[str, set[str]] = {}
    for sample in samples:
        digest = hashlib.sha256()
        for name in sorted(sample.params):
            digest.update(name.encode() + sample.params[name].tobytes() + str(sample.params[name].shape).encode())
        by_weights.setdefault(digest.hexdigest(), set()).add(sample.key)
    assert all(len(ids) == 1 for ids in by_weights.values())
    assert len(by_weights) == len({s.key for s in samples}) > 490  # and distinct ids have distinct weights
    swapped = 0
    for sample in samples[:150]:
        program = sample.program
        for number, line in enumerate(program.lines):
            if line.op not in ("Map", "SequenceMap", "Select"):
                continue
            relabelled = line.ret in program.ranked
            for name in library.names(line.op):
                try:
                    table = library.named_table(line.op, name, program.operand_types(line))
                    if library.signature(line.op, table, relabelled) != library.signature(line.op, line.fn, relabelled):
                        continue
                except values.OperandError:
                    continue
                renamed = Program([*program.lines[:number], line._replace(fn=table), *program.lines[number + 1:]], program.vocab, program.max_seq_len)
                assert renamed.id == program.id
                swapped += 1
    assert swapped > 100
