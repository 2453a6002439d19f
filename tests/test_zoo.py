"""The standard zoo on a local store: correct labels, reproducible shards, wary reading."""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil

import numpy as np
import pytest
import webdataset as wds
from tracr.compiler import compiling, lib
from tracr.rasp import rasp
from webdataset import tariterators

from conftest import SMALL
from inverse_tracr.compile import forward
from inverse_tracr.compile.model import BOS, PAD, CompiledModel, Layout
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.verify import check_inputs, make_inputs, verify
from inverse_tracr.programs import Program, library, values
from inverse_tracr.zoo import Reader, read_samples, split_of
from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.manifest import ZooConfig, ZooConfigError
from inverse_tracr.zoo.shards import finished_shards, read_marker, shard_urls
from inverse_tracr.zoo.store import Store


def _samples(store):
    return list(read_samples(f"{store}/small/standard/shard-{{000000..000001}}.tar"))


def test_every_stored_sample_is_what_stock_tracr_compiles_and_computes_its_program(small_zoo):
    samples = _samples(small_zoo)
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


def test_markers_record_counts_hashes_and_stats(small_zoo):
    store = Store(str(small_zoo))
    assert finished_shards(store, "small", "standard") == {0, 1}
    marker = read_marker(store, "small", "standard", 0)
    tar = (small_zoo / "small/standard/shard-000000.tar").read_bytes()
    assert marker["count"] == 6 and marker["bytes"] == len(tar) and marker["sha256"] == hashlib.sha256(tar).hexdigest()
    assert marker["stats"]["candidates"] >= 6 and marker["stats"]["compile_seconds"]["p50"] > 0
    zoo = json.loads((small_zoo / "small/zoo.json").read_text())
    assert zoo["config"]["shard_size"] == 6 and "tracr-pypi" in zoo["versions"]


def test_shards_are_a_pure_function_of_config_seed_and_index(small_zoo, tmp_path):
    # another store, one worker instead of two, shards written in another order: same bytes
    generate(str(tmp_path), "small", SMALL, programs=12, shards=[1, 0], workers=1, progress=False)
    for index in (0, 1):
        name = f"small/standard/shard-00000{index}.tar"
        assert (tmp_path / name).read_bytes() == (small_zoo / name).read_bytes()
    # rerunning skips finished shards
    summary = generate(str(tmp_path), "small", SMALL, programs=12, workers=1, progress=False)
    assert summary.shards_written == 0 and summary.shards_skipped == 2


def test_a_changed_config_is_refused(small_zoo):
    with pytest.raises(ZooConfigError, match="max_ops=6 \\(asked 7\\)"):
        generate(str(small_zoo), "small", ZooConfig(shard_size=6, min_ops=3, max_ops=7, seed=7), programs=12, progress=False)


def test_a_zoo_of_an_older_format_is_refused_with_how_to_regenerate(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old/zoo.json").write_text(json.dumps({"format": "inverse-tracr/zoo/1", "config": {}}))
    with pytest.raises(ZooConfigError, match="format 'inverse-tracr/zoo/1'.*generate it again"):
        generate(str(tmp_path), "old", SMALL, programs=6, progress=False)


def test_a_model_wrong_on_one_input_in_thousands_is_caught():
    # True at the last position of exactly one input of the 3,905: [4, 4, 4, 4, 4].
    program = Program.from_rasp(lib.detect_pattern(rasp.tokens, [4] * 5), range(5), 5)
    model = compile_program(program)
    inputs = check_inputs(program)
    assert len(inputs) == 3905
    wrong = [[False if v is True else v for v in program.evaluate(xs)] for xs in inputs]  # a model that never fires
    caught = verify(model, inputs, wrong, exhaustive=True)
    assert caught.mismatches == 1 and not caught.passed
    assert verify(model, inputs, [program.evaluate(xs) for xs in inputs]).passed
    # 32 random inputs, the old check, almost surely miss it
    sample = make_inputs(program, 32)
    assert verify(model, sample, [[False if v is True else v for v in program.evaluate(xs)] for xs in sample]).passed


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


def test_splits_follow_the_program_id():
    ids = [f"{i:016x}" for i in range(2000)]
    shares = {name: sum(split_of(i) == name for i in ids) / len(ids) for name in ("train", "val", "test")}
    assert 0.87 < shares["train"] < 0.93 and 0.03 < shares["val"] < 0.07 and 0.03 < shares["test"] < 0.07
    assert [split_of(i) for i in ids[:8]] == [split_of(i) for i in ids[:8]] and len({split_of(i) for i in ids}) == 3


def test_reader_filters_by_split_and_deduplicates(small_zoo):
    urls = shard_urls(Store(str(small_zoo)), "small")
    everything = list(Reader(urls + urls[:1]))  # shard 0 twice: its programs are duplicates
    assert len(everything) == 12
    assert len(list(Reader(urls + urls[:1], unique=False))) == 18
    train = list(Reader(urls, split="train"))
    assert [s.key for s in train] == [s.key for s in everything if split_of(s.key) == "train"]


def _rewrite(source, target, change):
    """Copy a shard, passing each sample's files through `change`."""
    with open(source, "rb") as stream:
        samples = list(tariterators.group_by_keys({**f, "__url__": str(source)} for f in tariterators.tar_file_iterator(stream)))
    with open(target, "wb") as out:
        writer = wds.TarWriter(out)
        for files in samples:
            writer.write(change({k: v for k, v in files.items() if not k.startswith("__url")}))
        writer.close()


def _pickled_npz(_files):
    buffer = io.BytesIO()
    np.savez(buffer, w=np.array([{"evil": 1}], dtype=object))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("garbage", "corrupt or truncated shard"),
        ("truncated", "corrupt or truncated shard"),
        ("program", "malformed program.json"),
        ("pickle", "holds pickled objects"),
    ],
)
def test_damaged_shards_are_reported_by_name_and_reading_goes_on(small_zoo, tmp_path, damage, message):
    good = small_zoo / "small/standard/shard-000000.tar"
    bad = tmp_path / f"{damage}.tar"
    if damage == "garbage":
        bad.write_bytes(b"\x00not a tar" * 1000)
    elif damage == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2 + 100])
    elif damage == "program":
        _rewrite(good, bad, lambda f: {**f, "program.json": b'{"lines": [["Map", "oops"'})
    else:
        _rewrite(good, bad, lambda f: {**f, "params.npz": _pickled_npz(f)})
    other = tmp_path / "other.tar"
    shutil.copy(small_zoo / "small/standard/shard-000001.tar", other)
    reader = Reader([str(bad), str(other)])
    samples = list(reader)
    assert len(samples) >= 6  # the good shard is read in full (plus any intact part of the bad one)
    assert all(s.url == str(other) for s in samples[-6:])
    assert reader.errors and all(str(bad) in e for e in reader.errors) and message in reader.errors[0]


def test_file_urls_and_brace_patterns_read_like_paths(small_zoo):
    url = f"file://{small_zoo}/small/standard/shard-{{000000..000001}}.tar"
    assert [s.key for s in read_samples(url)] == [s.key for s in _samples(small_zoo)]
    assert Store(f"file://{small_zoo}").exists("small", "zoo.json")
