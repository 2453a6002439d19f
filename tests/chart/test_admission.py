"""Admission and scale on a real cluster (issue 17, points 1 and 6): every pod the chart makes,
Argo's own `init`/`wait` containers included, passes Pod Security "restricted" and a ResourceQuota;
the quota has room for helm/values/large.yaml; the Argo controller's settings ship as a values file
for the argo-workflows Helm chart, and the README names every prerequisite."""

from __future__ import annotations

import copy
import re

import kubernetes_validate
import pytest
import yaml
from k8s_tools import ROOT, VALUE_SETS, argo_objects, pod_containers, quantity, render, training_job, workflow_template

ARGO_VALUES = ROOT / "k8s/argo-workflows-values.yaml"
KUBERNETES = "1.33.0"

#: Keys of the argo-workflows chart's values (github.com/argoproj/argo-helm, charts/argo-workflows/
#: values.yaml, chart 1.0.18 = Argo v4.0.6) that our file may set; what lies below them is passed on
#: unchanged (a Kubernetes securityContext or resources, the controller's `persistence` config).
CHART_KEYS = {
    "controller.workflowNamespaces", "controller.extraArgs", "controller.podCleanupWorkers", "controller.workflowWorkers",
    "controller.resourceRateLimit", "controller.nodeEvents.enabled", "controller.resources", "controller.persistence",
    "executor.securityContext", "executor.resources",
}
#: The controller's `persistence` settings, as that values.yaml documents them.
PERSISTENCE_KEYS = {"connectionPool", "nodeStatusOffLoad", "archive", "postgresql", "mysql"}
POSTGRESQL_KEYS = {"host", "port", "database", "tableName", "userNameSecret", "passwordSecret", "ssl", "sslMode"}


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


@pytest.fixture(scope="module")
def argo_values() -> dict:
    return yaml.safe_load(ARGO_VALUES.read_text())


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request):
    return request.param, render(*VALUE_SETS[request.param])


def test_the_argo_values_file_sets_only_keys_the_argo_workflows_chart_has(argo_values):
    for leaf in _leaves(argo_values):
        assert any(leaf == key or leaf.startswith(key + ".") for key in CHART_KEYS), leaf
    persistence = argo_values["controller"]["persistence"]
    assert set(persistence) <= PERSISTENCE_KEYS and set(persistence["postgresql"]) <= POSTGRESQL_KEYS
    assert persistence["nodeStatusOffLoad"] is True  # thousands of nodes: their status goes to the database
    assert argo_values["controller"]["workflowNamespaces"] == ["inverse-tracr"]
    executor = argo_values["executor"]
    assert executor["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                           "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert executor["resources"]["requests"]["memory"] == executor["resources"]["limits"]["memory"]


def test_the_argo_controller_is_set_for_thousands_of_pods(argo_values):
    controller = argo_values["controller"]
    flags = dict(zip(controller["extraArgs"][::2], controller["extraArgs"][1::2]))
    assert int(flags["--qps"]) >= 100 and int(flags["--burst"]) > int(flags["--qps"])  # defaults: 20 and 30
    assert controller["podCleanupWorkers"] >= 16  # default 4: podGC of 500 pods at a time falls behind
    assert controller["nodeEvents"]["enabled"] is False  # one Event per node, in etcd
    assert controller["resourceRateLimit"]["limit"] > 0


def _restricted_violations(pod: dict) -> list[str]:
    """What Pod Security "restricted" (v1.33) refuses in a pod, for the fields this chart can set."""
    spec, problems = pod["spec"], []
    pod_context = spec.get("securityContext", {})
    for container in spec.get("initContainers", []) + spec["containers"]:
        context, name = container.get("securityContext", {}), container["name"]
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in context.get("capabilities", {}).get("drop", []) or context.get("capabilities", {}).get("add"):
            problems.append(f"{name}: capabilities must drop ALL and add none")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot must be true")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser must not be 0")
        if context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault")
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
    for volume in spec.get("volumes", []):
        if not set(volume) - {"name"} <= allowed_volumes:
            problems.append(f"volume {volume['name']}: type not allowed")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append("host namespaces")
    return problems


def _argo_pods(docs: list[dict], argo_values: dict):
    """The pod Argo makes for each container or resource template: the workflow's pod-level
    securityContext and volumes, and the executor's init and wait containers; the main container is
    the template's own, or for a resource template the executor too (argoexec resource), which then
    takes the executor's securityContext (workflow/controller/workflowpod.go, newExecContainer)."""
    executor = argo_values["executor"]
    for doc in argo_objects(docs):
        for template in doc["spec"]["templates"]:
            if "container" not in template and "resource" not in template:
                continue
            executor_container = {"image": "quay.io/argoproj/argoexec:v4.0.6", "securityContext": executor["securityContext"],
                                  "resources": executor["resources"], "volumeMounts": [{"name": "var-run-argo", "mountPath": "/var/run/argo"}]}
            if "container" in template:
                main = {"name": "main", **copy.deepcopy(template["container"])}
                main["args"] = [a.replace("{{", "").replace("}}", "") for a in main["args"]]
                main["volumeMounts"] = main.get("volumeMounts", []) + [{"name": "var-run-argo", "mountPath": "/var/run/argo"}]
            else:
                main = {"name": "main", **executor_container, "args": ["resource", template["resource"]["action"]]}
            yield f"{doc['metadata']['name']}/{template['name']}", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "inverse-tracr"},
                "spec": {
                    "securityContext": doc["spec"]["securityContext"],
                    "serviceAccountName": doc["spec"]["serviceAccountName"],
                    "volumes": doc["spec"]["volumes"] + [{"name": "var-run-argo", "emptyDir": {}}],
                    "initContainers": [{"name": "init", **executor_container}],
                    "containers": [{"name": "wait", **executor_container}, main],
                    **({"priorityClassName": template["priorityClassName"]} if "priorityClassName" in template else {}),
                },
            }


def test_every_pod_passes_pod_security_restricted_with_argo_s_executor_containers(rendered, argo_values):
    name, docs = rendered
    pods = list(_argo_pods(docs, argo_values))
    assert len(pods) == 6  # generate, distill, evaluate and report steps; the training Service and Job steps
    job = training_job(docs)
    pods.append(("training Job", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": job["spec"]["template"]["spec"]}))
    for where, pod in pods:
        kubernetes_validate.validate(pod, KUBERNETES, strict=True)
        assert not _restricted_violations(pod), (name, where, _restricted_violations(pod))


def test_every_container_states_requests_and_limits_for_a_quota(rendered, argo_values):
    _, docs = rendered
    containers = [(where, c) for where, c, _ in pod_containers(docs)] + [("executor", argo_values["executor"])]
    for where, container in containers:
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) >= {"cpu", "memory"}, (where, kind)


def _pod_requests(main: dict, executor: dict, kind: str, resource: str) -> float:
    """A workflow pod's effective requests or limits: main + wait containers (the init container runs alone)."""
    return quantity(main[kind][resource]) + quantity(executor[kind][resource])


def test_the_quota_and_limit_range_have_room_for_the_large_values(argo_values):
    docs = render(*VALUE_SETS["large"])
    quota, limit_range = (d for d in yaml.safe_load_all((ROOT / "k8s/resourcequota.yaml").read_text()))
    hard = {k: quantity(v) for k, v in quota["spec"]["hard"].items()}
    executor = argo_values["executor"]["resources"]
    generate = workflow_template(docs, "generate")
    parallelism = generate["spec"]["parallelism"]
    assert parallelism == 500
    main = next(t for t in generate["spec"]["templates"] if t["name"] == "generate-part")["container"]["resources"]
    job = training_job(docs)
    nodes, train = job["spec"]["parallelism"], job["spec"]["template"]["spec"]["containers"][0]["resources"]
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            needed = parallelism * _pod_requests(main, executor, kind, resource) + nodes * quantity(train[kind][resource])
            assert needed <= hard[f"{kind}.{resource}"], (kind, resource, needed)
    assert parallelism * _pod_requests(main, executor, "requests", "cpu") > 2000  # 500 x 4 CPUs is not enough
    assert hard["requests.nvidia.com/gpu"] >= 2 * nodes * train["limits"]["nvidia.com/gpu"]  # a new attempt while the last terminates
    assert hard["pods"] >= parallelism + nodes
    (limits,) = limit_range["spec"]["limits"]
    assert limits["type"] == "Container" and set(limits["default"]) == set(limits["defaultRequest"]) == {"cpu", "memory"}
    assert limits["default"]["memory"] == limits["defaultRequest"]["memory"]


def test_the_priority_classes_the_values_name_exist_and_the_control_pods_use_theirs():
    classes = {d["metadata"]["name"]: d for d in yaml.safe_load_all((ROOT / "k8s/priorityclass.yaml").read_text())}
    large = yaml.safe_load((ROOT / "helm/values/large.yaml").read_text())
    assert {large["priorityClassName"], large["controlPriorityClassName"]} <= set(classes)
    assert classes[large["controlPriorityClassName"]]["value"] > classes[large["priorityClassName"]]["value"]
    train = workflow_template(render(*VALUE_SETS["large"]), "train")
    control = [t for t in train["spec"]["templates"] if "resource" in t]
    assert [t["name"] for t in control] == ["service", "job"]
    assert all(t["priorityClassName"] == large["controlPriorityClassName"] for t in control)


def _kubernetes_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(r"^## Run on Kubernetes$(.*?)^## ", readme, re.S | re.M).group(1)


def test_the_readme_lists_every_cluster_prerequisite_with_its_values():
    section = _kubernetes_section()
    for needed in ("k8s/argo-workflows-values.yaml", "executor", "restricted", "nodeStatusOffLoad", "--qps", "podCleanupWorkers",
                   "k8s/resourcequota.yaml", "LimitRange", "k8s/priorityclass.yaml", "controlPriorityClassName", "publishNotReadyAddresses",
                   "FSSPEC_GS_TOKEN", "1.29"):
        assert needed in section, needed
