"""Losing a training rank (issue 17, point 3), offline: the chart's training command line, as the
Indexed Job's pods run it, on two "machines" on 127.0.0.1 against a GCS emulator.

Attempt 0 loses rank 1 right after the step-2 checkpoint is complete; the Job's podFailurePolicy
then fails the attempt and the Job controller stops rank 0 (emulated here: SIGTERM, then SIGKILL).
Argo retries the step with a new Job, named after the attempt; its ranks resume from the newest
checkpoint and end with the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import subprocess
import sys
import threading

import fsspec
import pytest
import safetensors.torch
from conftest import cli_env, free_port
from k8s_tools import fill, render, training_inputs, training_job, workflow_template

from inverse_tracr.zoo.store import Store

BUCKET = "rank-loss"


@pytest.fixture
def emulator(monkeypatch):
    """A GCS emulator of our own, whose uploads can trigger an action (its server handles one
    request at a time, so the uploading rank waits while the action runs)."""
    from gcp_storage_emulator.server import RequestHandler, _read_raw_data, create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    hooks: list = []  # (bytes in the upload, action); each fires once

    class Hooked(RequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = _read_raw_data(self) or b""
            for hook in list(hooks):
                if hook[0] in body:
                    hooks.remove(hook)
                    hook[1]()
            del self.headers["Transfer-Encoding"]
            del self.headers["Content-Length"]
            self.headers["Content-Length"] = str(len(body))
            self.rfile = io.BytesIO(body)
            super().do_POST()

    httpd = server._api._httpd
    httpd.RequestHandlerClass = functools.partial(Hooked, server._storage)

    def report_all_but_hang_ups(request, address, report=httpd.handle_error):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed rank hangs up mid-request
            report(request, address)

    httpd.handle_error = report_all_but_hang_ups
    options = {"token": "anon", "endpoint_url": f"http://127.0.0.1:{port}"}
    monkeypatch.setitem(fsspec.config.conf, "gs", options)
    yield f"gs://{BUCKET}", {"FSSPEC_GS": json.dumps(options), "STORAGE_EMULATOR_HOST": options["endpoint_url"]}, hooks
    server.stop()


@pytest.fixture
def launched():
    """Processes the test starts (each the leader of its own process group), stopped if it fails."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _checkpoints(store: Store, run: str) -> list[str]:
    folder = ("small", "meta", run, "checkpoints")
    store.fs.invalidate_cache()  # gcsfs caches listings; other processes wrote since
    return [name for name in store.list(*folder) if store.exists(*folder, name, "state.json")]


def test_losing_a_rank_restarts_the_group_from_the_newest_checkpoint_with_the_same_result(emulator, small_zoo, tmp_path, launched):
    url, env, hooks = emulator
    store = Store(url)
    for path in (small_zoo / "small").rglob("*"):
        if path.is_file():
            store.write_bytes(path.read_bytes(), *path.relative_to(small_zoo).parts)
    docs = render(sets=("training.nodes=2", "training.gpusPerNode=1", "training.preset=tiny", "training.batchSize=3",
                        "training.checkpointEvery=2", "training.loaderWorkers=2", "zoo.name=small", f"store.url={url}"))
    train = workflow_template(docs, "train")
    step = next(t for t in train["spec"]["templates"] if t["name"] == "job")
    job = training_job(docs)
    # One attempt, one Job: no pod replaced within it, the first failed or disrupted rank fails it,
    # and the next attempt (an Argo retry) is a new Job with its own name.
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["podReplacementPolicy"] == "Failed"
    assert step["retryStrategy"]["limit"] and step["resource"]["failureCondition"] == "status.failed > 0"
    parameters = training_inputs(docs)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["accelerate"] and container["args"][0] == "launch"

    def pods(run: str, attempt: int, port: int) -> list[subprocess.Popen]:
        """The attempt's two pods: the Job's command line with Argo's and Kubernetes's substitutions."""
        def argo(text: str) -> str:
            text = fill(text, {**parameters, "run": run, "steps": "6"})
            return text.replace("{{workflow.name}}", "wf").replace("{{retries}}", str(attempt))

        name = argo(job["metadata"]["name"])
        args = [argo(a) for a in container["args"][1:]]
        assert args[args.index("--main_process_ip") + 1] == f"{name}-0.wf-train"  # rank 0 of this attempt's Job
        args[args.index("--main_process_ip") + 1] = "127.0.0.1"
        args[args.index("--main_process_port") + 1] = str(port)
        started = []
        for rank in range(2):
            rank_args = [a.replace("$(JOB_COMPLETION_INDEX)", str(rank)).replace("/tmp/runs", str(tmp_path / f"{name}-{rank}")) for a in args]
            with open(tmp_path / f"{run}-{name}-{rank}.log", "w") as log:  # the child keeps its own descriptor
                started.append(subprocess.Popen([sys.executable, "-m", "accelerate.commands.launch", *rank_args], stdout=log,
                                                stderr=subprocess.STDOUT, env=cli_env(ACCELERATE_USE_CPU="true", **env), start_new_session=True))
        launched.extend(started)
        return started

    def finish(started: list[subprocess.Popen]) -> list[int]:
        return [p.wait(timeout=300) for p in started]

    # Attempt 0, alongside an uninterrupted run of its own (run "whole"): rank 1 dies right after the
    # step-2 checkpoint is complete (rank 0 is uploading the run's history, written last). Rank 0
    # cannot pass step 3's all-reduce without it.
    rank_lost = threading.Event()
    attempt: list[subprocess.Popen] = []
    hooks.append((b"small/meta/meta/history.json", lambda: (os.killpg(attempt[1].pid, signal.SIGKILL), rank_lost.set())))
    whole = pods("whole", 0, free_port())
    attempt += pods("meta", 0, free_port())
    attempt[1].wait(timeout=300)
    assert rank_lost.is_set() and attempt[1].returncode != 0
    os.killpg(attempt[0].pid, signal.SIGTERM)  # the Job controller stops the other ranks of a failed Job
    try:
        attempt[0].wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(attempt[0].pid, signal.SIGKILL)
        attempt[0].wait(timeout=10)
    assert attempt[0].returncode != 0
    assert _checkpoints(store, "meta") == ["step-00000002"]
    assert finish(whole) == [0, 0]
    assert _checkpoints(store, "whole") == ["step-00000002", "step-00000004", "step-00000006"]

    # Attempt 1: a new Job, whose ranks resume from step 2 (they never write its checkpoint again).
    redone = threading.Event()
    hooks.append((b"small/meta/meta/checkpoints/step-00000002/", redone.set))
    assert finish(pods("meta", 1, free_port())) == [0, 0], (tmp_path / "meta-wf-train-1-0.log").read_text()[-3000:]
    assert "2 ranks, parameters identical across ranks" in (tmp_path / "meta-wf-train-1-0.log").read_text()
    assert _checkpoints(store, "meta") == ["step-00000002", "step-00000004", "step-00000006"] and not redone.is_set()
    final = ("checkpoints", "step-00000006", "model.safetensors")
    uninterrupted, resumed = (safetensors.torch.load(store.read_bytes("small", "meta", run, *final)) for run in ("whole", "meta"))
    assert uninterrupted.keys() == resumed.keys()
    assert [name for name in uninterrupted if not (uninterrupted[name] == resumed[name]).all()] == []
