"""Shards on a local store: markers, split filtering and deduplication, wary reading, file URLs."""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import webdataset as wds
from conftest import small_zoo_samples
from webdataset import tariterators

from inverse_tracr.zoo import Reader, read_samples, split_of
from inverse_tracr.zoo.shards import finished_shards, read_marker, shard_urls
from inverse_tracr.zoo.store import Store


def test_markers_record_counts_hashes_and_stats(small_zoo):
    store = Store(str(small_zoo))
    assert finished_shards(store, "small", "standard") == {0, 1}
    marker = read_marker(store, "small", "standard", 0)
    tar = (small_zoo / "small/standard/shard-000000.tar").read_bytes()
    assert marker["count"] == 6 and marker["bytes"] == len(tar) and marker["sha256"] == hashlib.sha256(tar).hexdigest()
    assert marker["stats"]["candidates"] >= 6 and marker["stats"]["compile_seconds"]["p50"] > 0
    zoo = json.loads((small_zoo / "small/zoo.json").read_text())
    assert zoo["config"]["shard_size"] == 6 and "tracr-pypi" in zoo["versions"]


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
    assert [s.key for s in read_samples(url)] == [s.key for s in small_zoo_samples(small_zoo)]
    assert Store(f"file://{small_zoo}").exists("small", "zoo.json")
