"""Credentials at start-up (issue 17, point 4): every pod pins gcsfs's credential mode (no silent
fall-back to anonymous access while the metadata server is not answering yet) and retries its first
store access with backoff (the retries themselves: tests/zoo/test_store.py)."""

from __future__ import annotations

import fsspec
import pytest
from k8s_tools import VALUE_SETS, pod_containers, render

from inverse_tracr.zoo.store import ATTEMPTS_VARIABLE


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
