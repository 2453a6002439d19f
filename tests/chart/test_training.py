"""The multi-node training Job as rendered (issue 17, points 3 and 7): one Job per attempt that fails
as a whole on the first lost rank, DNS names published before the pods are ready, a bounded wait
for rank 0's name (run here), a rendezvous timeout, and NCCL's environment. The rank-loss run itself
is tests/chart/test_rank_loss.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from k8s_tools import CHART, VALUE_SETS, embedded, render, training_job, workflow_template


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request):
    return request.param, render(*VALUE_SETS[request.param])


def test_one_job_per_attempt_that_fails_on_the_first_lost_rank(rendered):
    name, docs = rendered
    job = training_job(docs)
    spec = job["spec"]
    # an Argo retry: a new Job (no AlreadyExists); a phase of its own for each training of a pipeline
    assert job["metadata"]["name"] == "{{workflow.name}}-{{inputs.parameters.phase}}-{{retries}}", name
    assert spec["backoffLimit"] == 0 and spec["podReplacementPolicy"] == "Failed", name
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules
    assert {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "NotIn", "values": [0]}} in rules
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    step = next(t for t in workflow_template(docs, "train")["spec"]["templates"] if t["name"] == "job")
    assert step["resource"]["successCondition"] == f"status.succeeded == {spec['completions']}"
    assert step["resource"]["failureCondition"] == "status.failed > 0"


def test_every_attempt_s_pods_share_one_headless_service_that_publishes_unready_addresses(rendered):
    name, docs = rendered
    service = next(d for d in embedded(docs) if d["kind"] == "Service")
    job = training_job(docs)
    pod = job["spec"]["template"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert "job-name" not in service["spec"]["selector"]  # would match one attempt only
    assert pod["spec"]["subdomain"] == service["metadata"]["name"]
    args = pod["spec"]["containers"][0]["args"]
    rank0 = f"{job['metadata']['name']}-0.{service['metadata']['name']}"  # <hostname of index 0>.<subdomain>
    assert args[args.index("--main_process_ip") + 1] == rank0
    wait = pod["spec"]["initContainers"][0]
    assert {e["name"]: e["value"] for e in wait["env"]}["RANK0_HOST"] == rank0
    assert args[args.index("--rdzv_conf") + 1] == "timeout=900"  # torch's static rendezvous gives up after this


def test_training_pods_set_nccl_s_environment(rendered):
    name, docs = rendered
    container = training_job(docs)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NCCL_DEBUG"] == "WARN" and env["NCCL_SOCKET_IFNAME"] == "eth0", name
    unset = training_job(render(*VALUE_SETS[name], sets=("training.nccl.socketIfname=",)))["spec"]["template"]["spec"]["containers"][0]
    assert "NCCL_SOCKET_IFNAME" not in {e["name"] for e in unset["env"]}


def _run_wait(container: dict, host: str, seconds: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "RANK0_HOST": host, "RANK0_WAIT_SECONDS": seconds}
    command = [sys.executable if c == "python" else c for c in container["command"]]
    start = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - start


def test_the_wait_for_rank_0_s_name_ends_when_it_resolves_and_fails_after_its_bound():
    container = training_job(render())["spec"]["template"]["spec"]["initContainers"][0]
    assert container["command"][:2] == ["python", "-c"]
    resolved, _ = _run_wait(container, "localhost", "10")
    assert resolved.returncode == 0 and "localhost resolves" in resolved.stdout
    missing, took = _run_wait(container, "rank-0.nowhere.invalid", "3")
    assert missing.returncode == 1 and "did not resolve within 3 s" in missing.stderr
    assert took < 10


def test_the_job_steps_run_at_the_control_priority_when_one_is_set():
    train = workflow_template(render(sets=("controlPriorityClassName=inverse-tracr-control",)), "train")
    assert {t["name"]: t.get("priorityClassName") for t in train["spec"]["templates"] if "resource" in t} == {
        "service": "inverse-tracr-control", "job": "inverse-tracr-control"}
    default = workflow_template(render(), "train")
    assert all("priorityClassName" not in t for t in default["spec"]["templates"])


def test_the_chart_offers_exactly_the_meta_model_presets_the_code_has():
    from inverse_tracr.meta.presets import PRESETS

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["training"]["properties"]["preset"]["enum"] == list(PRESETS)
