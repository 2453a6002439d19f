"""Stores: the same zoo on gs:// (gcp-storage-emulator) and s3:// (moto), and a first access retried with backoff."""

from __future__ import annotations

import logging
import subprocess
import sys

import fsspec
import pytest
import webdataset as wds
from conftest import SMALL, cli_env
from fsspec.implementations.memory import MemoryFileSystem

from inverse_tracr.zoo import read_samples
from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.shards import finished_shards, shard_urls
from inverse_tracr.zoo.store import ATTEMPTS_VARIABLE, Store, StoreError, register_webdataset_schemes


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


class Flaky(MemoryFileSystem):
    """An in-memory store whose first `failures` calls fail, like an endpoint or credentials that are
    not ready when the pod starts (a refused connection, a 403 before workload identity answers)."""

    protocol = "flaky"
    failures = 0

    def _maybe_fail(self):
        if type(self).failures > 0:
            type(self).failures -= 1
            raise PermissionError("403 Forbidden: anonymous caller")

    def exists(self, path, **kwargs):
        self._maybe_fail()
        return super().exists(path, **kwargs)

    def cat_file(self, path, start=None, end=None, **kwargs):
        self._maybe_fail()
        return super().cat_file(path, start, end, **kwargs)


class FlakyToConnect(MemoryFileSystem):
    """A store whose client cannot be made twice (e.g. google.auth.default() before the metadata server answers)."""

    protocol = "flakyconnect"
    cachable = False
    failures = 0

    def __init__(self, *args, **kwargs):
        if type(self).failures > 0:
            type(self).failures -= 1
            raise OSError("metadata server not ready")
        super().__init__(*args, **kwargs)


@pytest.fixture(autouse=True)
def _registered():
    fsspec.register_implementation("flaky", Flaky, clobber=True)
    fsspec.register_implementation("flakyconnect", FlakyToConnect, clobber=True)
    yield
    Flaky.failures = FlakyToConnect.failures = 0


def test_a_store_that_fails_twice_then_works_is_used_after_two_waits(caplog):
    Store("flaky://zoos").write_bytes(b"{}", "demo", "config.json")
    Flaky.failures = 2
    store = Store("flaky://zoos", attempts=6, delay=0.01)
    with caplog.at_level(logging.WARNING, logger="inverse_tracr.zoo.store"):
        assert store.read_bytes("demo", "config.json") == b"{}"
    waits = [r.getMessage() for r in caplog.records]
    assert len(waits) == 2 and "PermissionError" in waits[0] and "attempt 2 of 6" in waits[0] and "attempt 3 of 6" in waits[1]


def test_the_first_access_gives_up_after_its_attempts_with_one_clear_error():
    Flaky.failures = 10
    with pytest.raises(StoreError, match=r"cannot look up objects in store flaky://zoos \(after 3 attempts\): PermissionError"):
        Store("flaky://zoos", attempts=3, delay=0.01).exists("demo")


def test_after_one_answer_errors_are_not_retried():
    store = Store("flaky://zoos", attempts=6, delay=5)
    assert store.exists("demo") in (True, False)  # an answer
    Flaky.failures = 1
    with pytest.raises(StoreError, match=r"cannot look up objects in store flaky://zoos: PermissionError"):
        store.exists("demo")  # at once: no 5 s wait


def test_making_the_client_is_retried_too():
    FlakyToConnect.failures = 2
    store = Store("flakyconnect://zoos", attempts=3, delay=0.01)
    assert store.exists("nothing") is False
    FlakyToConnect.failures = 5
    with pytest.raises(StoreError, match=r"cannot connect to store flakyconnect://zoos \(after 3 attempts\): OSError"):
        Store("flakyconnect://zoos", attempts=3, delay=0.01)


def test_local_stores_and_a_missing_object_are_not_retried(tmp_path, monkeypatch):
    monkeypatch.setenv(ATTEMPTS_VARIABLE, "6")
    with pytest.raises(FileNotFoundError, match="missing"):
        Store(str(tmp_path), delay=5).read_bytes("missing")
    Flaky.failures = 0
    with pytest.raises(FileNotFoundError, match="missing"):
        Store("flaky://zoos", delay=5).read_bytes("missing")
    monkeypatch.setenv(ATTEMPTS_VARIABLE, "many")
    with pytest.raises(StoreError, match=ATTEMPTS_VARIABLE):
        Store("flaky://zoos")
