"""Retries that happen (issue 17, point 2): every pod is retried with a capped exponential backoff
(never `maxDuration`, which Argo counts from the first attempt's start), on another node, and no
fan-out stops at its first failed part."""

from __future__ import annotations

import pytest
from k8s_tools import CHART, ROOT, VALUE_SETS, argo_objects, render, run_helm, strings


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request):
    return request.param, render(*VALUE_SETS[request.param])


def _templates(docs):
    for doc in argo_objects(docs):
        for template in doc["spec"]["templates"]:
            yield doc["metadata"]["name"], template


def test_every_pod_template_retries_with_a_capped_backoff_on_another_node(rendered):
    name, docs = rendered
    pods = [(wt, t) for wt, t in _templates(docs) if "container" in t or "resource" in t]
    assert len(pods) == 6  # generate, distill, evaluate, report; the training Service and Job
    for wt, template in pods:
        retry = template["retryStrategy"]
        assert retry["retryPolicy"] == "Always" and int(retry["limit"]) >= 1, (name, wt, template["name"])
        assert set(retry["backoff"]) == {"duration", "factor", "cap"}, (name, wt, template["name"])  # no maxDuration
        assert retry["affinity"] == {"nodeAntiAffinity": {}}, (name, wt, template["name"])


def test_fan_outs_run_every_part_even_when_one_fails(rendered):
    name, docs = rendered
    fan_outs = [(wt, t) for wt, t in _templates(docs)
                if any("withSequence" in task or "withParam" in task for task in t.get("dag", {}).get("tasks", []))]
    assert sorted(f"{wt}/{t['name']}" for wt, t in fan_outs) == [
        "inverse-tracr-distill/distill", "inverse-tracr-distill/distill-kind", "inverse-tracr-evaluate/evaluate", "inverse-tracr-generate/generate"]
    for wt, template in fan_outs:
        assert template["dag"]["failFast"] is False, (name, wt, template["name"])


def test_the_training_job_step_is_retried_with_a_new_job_name_per_attempt(rendered):
    name, docs = rendered
    train = next(d for d in argo_objects(docs) if d["metadata"]["name"].endswith("-train"))
    job_step = next(t for t in train["spec"]["templates"] if t["name"] == "job")
    values = VALUE_SETS[name]
    assert int(job_step["retryStrategy"]["limit"]) == 5  # training.restarts
    assert job_step["resource"]["action"] == "create" and "{{retries}}" in job_step["resource"]["manifest"].split("spec:")[0]
    # {{retries}} exists only in templates that have a retryStrategy (else Argo refuses the workflow)
    for wt, template in _templates(docs):
        if any("{{retries}}" in s for s in strings(template)):
            assert "retryStrategy" in template, (values, wt, template["name"])


def test_maxduration_is_refused_and_a_cap_is_accepted():
    refused = run_helm("template", "x", str(CHART), "--set", "retries.backoff.maxDuration=10m")
    assert refused.returncode != 0 and "maxDuration" in refused.stderr
    accepted = run_helm("template", "x", str(CHART), "--set", "retries.backoff.cap=5m", "--set", "retries.otherNode=false")
    assert accepted.returncode == 0, accepted.stderr
    assert "cap: \"5m\"" in accepted.stdout and "nodeAntiAffinity" not in accepted.stdout


def test_the_large_values_retry_preempted_parts_more_often():
    generate = next(d for d in argo_objects(render(ROOT / "helm/values/large.yaml")) if d["metadata"]["name"].endswith("-generate"))
    part = next(t for t in generate["spec"]["templates"] if t["name"] == "generate-part")
    assert part["retryStrategy"]["limit"] == "5" and part["retryStrategy"]["backoff"]["cap"] == "10m"
