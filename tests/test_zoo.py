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
from tracr.compiler import compiling
from webdataset import tariterators

from conftest import SMALL
from inverse_tracr.compile import forward
from inverse_tracr.compile.model import BOS, PAD, CompiledModel, Layout
from inverse_tracr.programs import Program
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
        assert sample.meta["verification"]["passed"] and sample.meta["verification"]["inputs"] == 32


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


def test_splits_follow_the_program_id():
    ids = [f"{i:016x}" for i in range(2000)]
    shares = {name: sum(split_of(i) == name for i in ids) / len(ids) for name in ("train", "val", "test")}
    assert 0.87 < shares["train"] < 0.93 and 0.03 < shares["val"] < 0.07 and 0.03 < shares["test"] < 0.07
    assert all(split_of(i) == split_of(i) for i in ids[:50])


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
