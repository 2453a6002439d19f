"""Memory and sizes (issue 17, points 5 and 7; issue 16's one resources definition): memory requests
equal limits, each compile/distil worker's --memory-limit-mb leaves room for its parent process
within the pod's limit, evaluation has the memory its preset's model needs and as many torch
threads as CPUs, and the GPU image's caches live on the writable /tmp."""

from __future__ import annotations

import json
import re

import pytest
from k8s_tools import CHART, ROOT, VALUE_SETS, pod_containers, quantity, render, run_helm, template_args, workflow_template

STAGES = ("generate", "distill", "train", "evaluate", "control")


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_every_container_requests_the_memory_it_is_limited_to(values):
    containers = list(pod_containers(render(*VALUE_SETS[values])))
    assert len(containers) == 6  # generate, distill, evaluate, report, and the training Job's wait and train
    for where, container, _ in containers:
        resources = container["resources"]
        assert quantity(resources["requests"]["memory"]) == quantity(resources["limits"]["memory"]), (values, where)


def test_memory_requests_below_limits_are_refused():
    result = run_helm(*template_args(sets=("resources.distill.requests.memory=4Gi",)))
    assert result.returncode != 0
    assert "resources.distill: requests.memory (4Gi) must equal limits.memory (8Gi)" in result.stderr


def _args(template: dict) -> dict[str, str]:
    args = template["container"]["args"]
    return {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_each_worker_s_memory_cap_fits_the_pod_s_limit_with_the_parent_s_reserve(values):
    docs = render(*VALUE_SETS[values])
    for stage, part in (("generate", "generate-part"), ("distill", "distill-part")):
        template = next(t for t in workflow_template(docs, stage)["spec"]["templates"] if t["name"] == part)
        args = _args(template)
        limit_mib = quantity(template["container"]["resources"]["limits"]["memory"]) / 2**20
        workers, cap = int(args["--workers"]), int(args["--memory-limit-mb"])
        assert cap == (limit_mib - 1024) // workers, (values, stage)  # memoryReserveMi
        assert workers * cap + 1024 <= limit_mib and cap >= 512, (values, stage)
    if values == "large":  # 4 workers in 16 Gi: 3,840 MB each, not the CLI's 4,096 (which would fill the pod)
        generate = next(t for t in workflow_template(docs, "generate")["spec"]["templates"] if t["name"] == "generate-part")
        assert _args(generate)["--memory-limit-mb"] == "3840"


def test_too_little_memory_per_worker_is_refused():
    result = run_helm(*template_args(sets=("zoo.workersPerPod=16",)))
    assert result.returncode != 0 and "resources.generate.limits.memory (8Gi) leaves 448 MiB per worker" in result.stderr


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_evaluation_has_the_memory_its_preset_needs_and_a_thread_per_cpu(values):
    docs = render(*VALUE_SETS[values])
    template = next(t for t in workflow_template(docs, "evaluate")["spec"]["templates"] if t["name"] == "evaluate-kind")
    resources = template["container"]["resources"]
    env = {e["name"]: e["value"] for e in template["container"]["env"]}
    assert int(env["OMP_NUM_THREADS"]) == int(quantity(resources["limits"]["cpu"]))
    if values == "large":  # the large preset: 710 M parameters, 2.7 GiB of float32 weights, read then loaded
        assert quantity(resources["limits"]["memory"]) >= 16 * 2**30 and quantity(resources["limits"]["cpu"]) >= 8


def test_a_large_model_evaluated_in_the_default_memory_is_refused():
    result = run_helm(*template_args(sets=("training.preset=large",)))
    assert result.returncode != 0
    assert "resources.evaluate.limits.memory (8Gi) is below the 16384 MiB that evaluating a large model needs" in result.stderr


def test_the_five_resources_blocks_are_one_schema_definition_and_it_is_enforced():
    schema = json.loads((CHART / "values.schema.json").read_text())
    blocks = schema["properties"]["resources"]["properties"]
    assert set(blocks) == set(STAGES) and all(block == {"$ref": "#/$defs/resources"} for block in blocks.values())
    assert schema["$defs"]["resources"]["required"] == ["requests", "limits"]
    result = run_helm("template", "x", str(CHART), "--set", "resources.train.limits.cpu=lots", "--set", "resources.evaluate.limits.gpu=1")
    assert result.returncode != 0
    assert "/resources/train/limits/cpu" in result.stderr and "gpu" in result.stderr


def test_the_gpu_image_keeps_its_caches_on_the_writable_tmp():
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        text = (ROOT / name).read_text()
        assert re.search(r"XDG_CACHE_HOME=/tmp/\S+", text) and re.search(r"MPLCONFIGDIR=/tmp/\S+", text), name
    job = next(c for w, c, _ in pod_containers(render()) if w == "job/train")
    assert job["securityContext"]["readOnlyRootFilesystem"] and {"name": "tmp", "mountPath": "/tmp"} in job["volumeMounts"]
