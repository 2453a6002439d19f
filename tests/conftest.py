"""Shared fixtures: a small real zoo, and real object stores (GCS emulator, moto S3) on 127.0.0.1.

Stores are configured the way a user would: fsspec's `FSSPEC_<PROTOCOL>` variables (for
subprocesses) and `fsspec.config.conf` (for this process).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import fsspec
import pytest

from inverse_tracr.zoo.config import ZooConfig
from inverse_tracr.zoo.generate import generate
from inverse_tracr.zoo.shards import read_samples

ROOT = Path(__file__).resolve().parent.parent
#: The small zoo most tests read: 2 shards of 6 programs of 3–6 lines.
SMALL = ZooConfig(shard_size=6, min_ops=3, max_ops=6, seed=7)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """`make test` runs the suite on pytest-xdist workers (`--dist loadgroup`): the tests that read
    the `overfit` model share one worker, so it is trained once (~70 s), not once per worker.
    xdist groups by a suffix it appends to node ids; pytest 9.2 ignores it (pytest-xdist#1386), hence
    pytest < 9.2 (tests/meta/test_train.py checks the suffix is there)."""
    for item in items:
        if "overfit" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("overfit"))


def interruptible() -> None:
    """A child's Ctrl-C back to the default (Popen's preexec_fn): a test run started in the background
    of a shell (`make test &`) has SIGINT ignored, children inherit that, and a test's Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for running the CLI in a subprocess (this interpreter's venv, tests' stores)."""
    env = dict(os.environ, **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("store")
    summary = generate(str(store), "small", SMALL, programs=12, workers=2, progress=False)
    assert summary.programs == 12
    return store


def small_zoo_samples(store: Path) -> list:
    """The small zoo's samples, in shard order."""
    return list(read_samples(f"{store}/small/standard/shard-{{000000..000001}}.tar"))


def _set_fsspec(protocol: str, options: dict) -> None:
    fsspec.config.conf[protocol] = options
    os.environ[f"FSSPEC_{protocol.upper()}"] = json.dumps(options)


@pytest.fixture(scope="session")
def gcs_bucket():
    """gs://test-bucket on an in-memory gcp-storage-emulator."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="test-bucket")
    server.start()
    httpd = server._api._httpd  # the emulator's http.server, which prints every error's traceback

    def report_all_but_hang_ups(request, address, report=httpd.handle_error):
        # A training process that ends (os._exit) while its loader fetches hangs up mid-request: not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            report(request, address)

    httpd.handle_error = report_all_but_hang_ups
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    _set_fsspec("gs", {"token": "anon", "endpoint_url": f"http://127.0.0.1:{port}"})
    yield "gs://test-bucket"
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket():
    """s3://test-bucket on a moto server."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    options = {"key": "testing", "secret": "testing", "endpoint_url": f"http://127.0.0.1:{port}"}
    _set_fsspec("s3", options)
    fsspec.filesystem("s3", **options).mkdir("test-bucket")
    yield "s3://test-bucket"
    server.stop()


@pytest.fixture(scope="session")
def zoo32(tmp_path_factory):
    """32 verified programs of 3–5 lines (the meta-model and decompilation tests train on them)."""
    store = tmp_path_factory.mktemp("meta")
    generate(str(store), "z", ZooConfig(shard_size=16, min_ops=3, max_ops=5, seed=11), programs=32, workers=2, progress=False)
    return store


@pytest.fixture(scope="session")
def overfit(zoo32, tmp_path_factory):
    """A tiny model trained on zoo32's 32 programs, and its TensorBoard folder."""
    from inverse_tracr.meta.config import MetaConfig, TrainConfig
    from inverse_tracr.meta.train import load_model, train

    logs = tmp_path_factory.mktemp("logs")
    config = TrainConfig(store=str(zoo32), zoo="z", run="overfit", split=None, model=MetaConfig(preset="tiny", max_chunks=128),
                         steps=300, batch_size=32, lr=3e-3, warmup=10, shuffle_buffer=0, checkpoint_every=300)
    train(config, logdir=str(logs), progress=False)
    return load_model(str(zoo32), "z", "overfit"), logs
