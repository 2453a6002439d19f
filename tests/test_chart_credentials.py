"""Credentials at start-up (issue 17, point 4): every pod pins gcsfs's credential mode (no silent
fall-back to anonymous access while the metadata server is not answering yet) and retries its first
store access with backoff; a store that fails twice, then works, is used."""

from __future__ import annotations

import logging

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from inverse_tracr.zoo.store import ATTEMPTS_VARIABLE, Store, StoreError
from k8s_tools import VALUE_SETS, pod_containers, render


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_every_store_using_pod_pins_the_gcs_token_and_retries_its_first_access(values):
    containers = [(where, c) for where, c, init in pod_containers(render(*VALUE_SETS[values])) if not init]
    assert len(containers) == 5
    for where, container in containers:
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["FSSPEC_GS_TOKEN"] == "google_default" and env[ATTEMPTS_VARIABLE] == "6", (values, where)


def test_the_pinned_variable_is_gcsfs_s_token_argument():
    import gcsfs

    conf: dict = {}
    fsspec.config.set_conf_env(conf, {"FSSPEC_GS_TOKEN": "google_default"})
    assert fsspec.config.apply_config(gcsfs.GCSFileSystem, {}, conf) == {"token": "google_default"}


def test_an_unset_gcs_token_is_left_to_gcsfs():
    for _, container, init in pod_containers(render(sets=("store.gcsToken=",))):
        if not init:
            assert "FSSPEC_GS_TOKEN" not in {e["name"] for e in container["env"]}


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
    with pytest.raises(FileNotFoundError):
        Store(str(tmp_path), delay=5).read_bytes("missing")
    Flaky.failures = 0
    with pytest.raises(FileNotFoundError):
        Store("flaky://zoos", delay=5).read_bytes("missing")
    monkeypatch.setenv(ATTEMPTS_VARIABLE, "many")
    with pytest.raises(StoreError, match=ATTEMPTS_VARIABLE):
        Store("flaky://zoos")
