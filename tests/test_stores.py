"""The same zoo on gs:// (gcp-storage-emulator) and s3:// (moto), both real servers on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys

import pytest
import webdataset as wds

from conftest import SMALL, cli_env
from inverse_tracr.zoo import read_samples
from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.shards import finished_shards, shard_urls
from inverse_tracr.zoo.store import Store, register_webdataset_schemes


@pytest.mark.parametrize("bucket", ["gcs_bucket", "s3_bucket"])
def test_generate_and_read_on_object_storage(bucket, request, small_zoo):
    url = f"{request.getfixturevalue(bucket)}/zoos"
    summary = generate(url, "small", SMALL, programs=6, workers=1, progress=False)
    assert summary.shards_written == 1
    store = Store(url)
    assert finished_shards(store, "small", "standard") == {0}
    # the same bytes as on a local disk: a shard does not depend on where it is stored
    local = (small_zoo / "small/standard/shard-000000.tar").read_bytes()
    assert store.read_bytes("small", "standard", "shard-000000.tar") == local
    samples = list(read_samples(shard_urls(store, "small")))
    assert [s.key for s in samples] == [s.key for s in read_samples(str(small_zoo / "small/standard/shard-000000.tar"))]
    # a rerun skips the finished shard; a second shard is added next to it
    summary = generate(url, "small", SMALL, programs=12, workers=1, progress=False)
    assert (summary.shards_skipped, summary.shards_written) == (1, 1)
    # WebDataset pipelines (the trainer's reader) open these URLs through fsspec too
    register_webdataset_schemes()
    keys = [s["__key__"] for s in wds.WebDataset(shard_urls(store, "small"), shardshuffle=False)]
    assert len(keys) == 12 and keys[:6] == [s.key for s in samples]


def test_the_cli_reads_and_writes_gs_with_user_configuration(gcs_bucket):
    url = f"{gcs_bucket}/cli"
    command = [sys.executable, "-m", "inverse_tracr.cli"]
    run = lambda *args: subprocess.run([*command, *args], env=cli_env(), capture_output=True, text=True, timeout=300)  # noqa: E731
    generated = run("generate", "--store", url, "--zoo", "z", "--programs", "4", "--shard-size", "4", "--workers", "1", "--quiet", "--min-ops", "3", "--max-ops", "5")
    assert generated.returncode == 0, generated.stderr
    assert "wrote 1 shard(s)" in generated.stdout and "programs/s" in generated.stdout
    shown = run("inspect", f"{url}/z/standard/shard-000000.tar", "--index", "2")
    assert shown.returncode == 0, shown.stderr
    assert "canonical lines (" in shown.stdout and "re-check on 32 fresh inputs: passed" in shown.stdout


def test_an_unreachable_store_is_one_clear_line(tmp_path):
    env = cli_env(FSSPEC_S3='{"key": "x", "secret": "y", "endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}}}')
    result = subprocess.run(
        [sys.executable, "-m", "inverse_tracr.cli", "generate", "--store", "s3://nowhere/zoos", "--programs", "1", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "cannot" in result.stderr and "s3://nowhere/zoos" in result.stderr
    assert "Traceback" not in result.stderr
