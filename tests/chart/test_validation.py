"""The Helm chart, Argo templates, manifests and images, validated offline with real tools."""

from __future__ import annotations

import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import cli_env, free_port
from k8s_tools import CHART, PARAMETER, ROOT, VALUE_SETS, argo_objects, argo_schema, checkov, embedded, fill, render, run_helm, strings, training_inputs

from inverse_tracr.cli import build_parser
from inverse_tracr.zoo import read_samples
from inverse_tracr.zoo.shards import shard_urls
from inverse_tracr.zoo.store import Store

KUBERNETES = "1.33.0"


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request):
    return request.param, render(*VALUE_SETS[request.param])


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_helm_lint_strict_passes(values):
    args = ["lint", "--strict", str(CHART)] + [a for v in VALUE_SETS[values] for a in ("-f", str(v))]
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_values_are_rejected_by_the_schema():
    result = run_helm("template", "x", str(CHART), "-f", str(ROOT / "helm/values/bad.yaml"))
    assert result.returncode != 0
    for fragment in ("programz", "/zoo/pods", "/training/preset", "/training/augment/0"):
        assert fragment in result.stderr


def test_core_objects_validate_strictly(rendered):
    _, docs = rendered
    core = [d for d in docs if not d["apiVersion"].startswith("argoproj.io/")] + embedded(docs)
    kinds = sorted(d["kind"] for d in core)
    assert kinds == ["Job", "NetworkPolicy", "Role", "RoleBinding", "Service", "ServiceAccount"]
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_cluster_manifests_in_k8s_validate_strictly():
    docs = [d for path in sorted((ROOT / "k8s").glob("*.yaml")) if path.name != "argo-workflows-values.yaml"
            for d in yaml.safe_load_all(path.read_text()) if d]
    assert sorted(d["kind"] for d in docs) == ["LimitRange", "Namespace", "PriorityClass", "PriorityClass", "ResourceQuota", "Secret"]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_argo_objects_validate_against_a_strict_schema_and_are_consistent(rendered):
    _, docs = rendered
    templates = {d["metadata"]["name"]: d for d in argo_objects(docs)}
    assert set(templates) == {f"inverse-tracr-{s}" for s in ("generate", "distill", "train", "evaluate", "pipeline")}
    for name, doc in templates.items():
        jsonschema.validate(doc, argo_schema("WorkflowTemplate"))
        spec = doc["spec"]
        own = {t["name"]: t for t in spec["templates"]}
        assert spec["entrypoint"] in own, name
        declared = {p["name"] for p in spec["arguments"]["parameters"]}
        for template in spec["templates"]:
            inputs = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
            for scope, parameter in PARAMETER.findall(" ".join(strings(template))):
                assert parameter in (inputs if scope == "inputs" else declared), (name, template["name"], parameter)
            tasks = template.get("dag", {}).get("tasks", []) + [s for group in template.get("steps", []) for s in group]
            names = {t["name"] for t in tasks}
            for task in tasks:
                assert set(task.get("dependencies", [])) <= names, (name, task["name"])
                if "templateRef" in task:
                    ref = task["templateRef"]
                    assert ref["template"] in {t["name"] for t in templates[ref["name"]]["spec"]["templates"]}
                else:
                    assert task["template"] in own, (name, task["template"])


def test_argo_workflows_users_submit_reference_installed_templates():
    docs = {d["metadata"]["name"]: d for d in argo_objects(render())}
    for path in sorted((ROOT / "argo").glob("*.yaml")):
        workflow = yaml.safe_load(path.read_text())
        jsonschema.validate(workflow, argo_schema("Workflow"))
        target = docs[workflow["spec"]["workflowTemplateRef"]["name"]]
        declared = {p["name"] for p in target["spec"]["arguments"]["parameters"]}
        assert {p["name"] for p in workflow["spec"]["arguments"]["parameters"]} <= declared, path.name


def _containers(docs):
    """(template name, labels, container) of every pod the templates make."""
    for doc in argo_objects(docs):
        for template in doc["spec"]["templates"]:
            if "container" in template:
                yield template["name"], template.get("metadata", {}).get("labels", {}), template["container"]
    for job in (d for d in embedded(docs) if d["kind"] == "Job"):
        spec = job["spec"]["template"]
        for container in spec["spec"]["containers"]:
            yield job["metadata"]["name"], spec["metadata"]["labels"], container


def _substitute(text: str, values: dict[str, str]) -> str:
    text = fill(text, values)
    return text.replace("{{item}}", "0").replace("$(JOB_COMPLETION_INDEX)", "0").replace("{{workflow.name}}", "wf").replace("{{retries}}", "0")


def test_every_command_line_parses_with_the_real_cli(rendered):
    from accelerate.commands.launch import launch_command_parser

    _, docs = rendered
    values = {**training_inputs(docs), "part": "0", "kind": "compressed"}
    parsed = 0
    for name, _labels, container in _containers(docs):
        args = [_substitute(a, values) for a in container["args"]]
        if container["command"] == ["accelerate"]:
            cli_at = args.index("inverse_tracr.cli")
            launch_command_parser().parse_args(args[1:cli_at - 1] + ["x.py"])  # accelerate's own parser
            args = args[cli_at + 1 :]
        else:
            assert container["command"] == ["inverse-tracr"], name
        build_parser().parse_args(args)  # raises SystemExit on any unknown or malformed option
        parsed += 1
    assert parsed == 5  # generate, distill, evaluate, report (status), train


def test_pods_are_labelled_non_root_and_bounded(rendered):
    _, docs = rendered
    for name, labels, container in _containers(docs):
        assert labels["app.kubernetes.io/name"] == "inverse-tracr" and "app.kubernetes.io/component" in labels, name
        assert "inverse-tracr/zoo" in labels, name
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["runAsUser"] != 0 and not security["allowPrivilegeEscalation"], name
        assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"], name
        assert container["resources"]["requests"] and container["resources"]["limits"], name
    generate = next(labels for name, labels, _ in _containers(docs) if name == "generate-part")
    assert generate["inverse-tracr/part"] == "{{inputs.parameters.part}}"
    for doc in argo_objects(docs):
        assert doc["spec"]["securityContext"]["runAsNonRoot"] and doc["spec"]["podGC"] and doc["spec"]["ttlStrategy"]


def test_each_training_pod_has_a_cpu_for_every_rank_and_loader_worker(rendered):
    name, docs = rendered
    container = next(d for d in embedded(docs) if d["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    ranks_per_pod = int(args[args.index("--num_processes") + 1]) // int(args[args.index("--num_machines") + 1])
    workers = int(args[args.index("--loader-workers") + 1])
    assert workers >= 2, name  # one worker (~270 samples/s) would starve a GPU
    assert ranks_per_pod * (workers + 1) <= float(container["resources"]["requests"]["cpu"]), name


def test_the_learning_rate_is_passed_only_when_set(tmp_path):
    values = tmp_path / "lr.yaml"
    values.write_text("training:\n  lr: 0.001\n")  # a file: `--set` would make 0.001 a string
    for files, expected in (((), None), ((values,), "0.001")):
        args = next(d for d in embedded(render(*files)) if d["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert (args[args.index("--lr") + 1] if "--lr" in args else None) == expected  # unset: the CLI takes the preset's


def test_large_values_scale_the_fan_out_and_the_training_job():
    docs = render(*VALUE_SETS["large"])
    generate = next(d for d in argo_objects(docs) if d["metadata"]["name"].endswith("-generate"))
    assert generate["spec"]["parallelism"] == 500
    parameters = {p["name"]: p["value"] for p in generate["spec"]["arguments"]["parameters"]}
    assert parameters["programs"] == "800000" and parameters["pods"] == "1000" and parameters["shard-size"] == "800"
    job = next(d for d in embedded(docs) if d["kind"] == "Job")
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4 and job["spec"]["completionMode"] == "Indexed"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    args = container["args"]
    assert args[args.index("--num_processes") + 1] == "32" and args[args.index("--num_machines") + 1] == "4"
    service, attempt = "{{workflow.name}}-{{inputs.parameters.phase}}", "{{workflow.name}}-{{inputs.parameters.phase}}-{{retries}}"
    assert "--multi_gpu" in args and args[args.index("--main_process_ip") + 1] == f"{attempt}-0.{service}"
    assert job["spec"]["template"]["spec"]["subdomain"] == service


def test_the_rendered_zoo_dag_runs_locally_against_a_gcs_emulator(gcs_bucket):
    store = f"{gcs_bucket}/argo"
    docs = render(sets=("zoo.programs=6", "zoo.shardSize=2", "zoo.pods=2", "zoo.workersPerPod=1", "zoo.minOps=3", "zoo.maxOps=5", f"store.url={store}"))
    generate = next(d for d in argo_objects(docs) if d["metadata"]["name"].endswith("-generate"))
    values = {p["name"]: p["value"] for p in generate["spec"]["arguments"]["parameters"]}
    templates = {t["name"]: t for t in generate["spec"]["templates"]}
    fan_out = templates[generate["spec"]["entrypoint"]]["dag"]["tasks"][0]
    count = int(_substitute(fan_out["withSequence"]["count"], values))
    assert count == 2
    for item in range(count):  # the DAG's fan-out, expanded: each pod's command, as the pod runs it
        container = templates[fan_out["template"]]["container"]
        args = [fill(a, {**values, "part": str(item)}) for a in container["args"]]
        result = subprocess.run([sys.executable, "-m", "inverse_tracr.cli", *args], env=cli_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    urls = shard_urls(Store(store), values["zoo"])
    assert len(urls) == 3  # 6 programs in shards of 2, split over 2 pods
    samples = list(read_samples(urls))
    assert len(samples) == 6 and all(s.meta["verification"]["passed"] for s in samples)
    status = subprocess.run([sys.executable, "-m", "inverse_tracr.cli", "status", "--store", store, "--zoo", values["zoo"]],
                            env=cli_env(), capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "standard: 3 shards, 6 programs" in status.stdout


def test_the_rendered_training_job_runs_as_two_machines_against_a_gcs_emulator(gcs_bucket, small_zoo, tmp_path):
    """The Indexed Job's command line, as each pod runs it, on two "machines" that rendezvous over
    127.0.0.1 (the cluster's pod DNS name), with the chart's bf16 on CPU and gloo instead of NCCL."""
    store = f"{gcs_bucket}/train"
    for path in (small_zoo / "small").rglob("*"):
        if path.is_file():
            Store(store).write_bytes(path.read_bytes(), *path.relative_to(small_zoo).parts)
    docs = render(sets=("training.nodes=2", "training.gpusPerNode=1", "training.preset=tiny", "training.batchSize=3", "training.checkpointEvery=2",
                        "training.loaderWorkers=2", f"training.port={free_port()}", "zoo.name=small", f"store.url={store}"))
    values = {**training_inputs(docs), "steps": "4"}
    job = next(d for d in embedded(docs) if d["kind"] == "Job")
    assert job["spec"]["completions"] == 2
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["accelerate"] and container["args"][0] == "launch"
    args = [fill(a, values) for a in container["args"][1:]]
    assert args[args.index("--mixed_precision") + 1] == "bf16"
    args[args.index("--main_process_ip") + 1] = "127.0.0.1"
    pods = []
    for rank in range(2):
        pod_args = [a.replace("$(JOB_COMPLETION_INDEX)", str(rank)).replace("/tmp/runs", str(tmp_path / f"runs-{rank}")) for a in args]
        pods.append(subprocess.Popen([sys.executable, "-m", "accelerate.commands.launch", *pod_args], env=cli_env(ACCELERATE_USE_CPU="true"),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [pod.communicate(timeout=600) for pod in pods]
    for pod, (out, err) in zip(pods, outputs):
        assert pod.returncode == 0, err[-3000:]
    assert "2 ranks, parameters identical across ranks" in outputs[0][0]
    assert Store(store).exists("small", "meta", values["run"], "checkpoints", "step-00000004", "model.safetensors")


@pytest.mark.parametrize("values", ["defaults", "large"])
def test_checkov_reports_no_failed_check_without_a_written_reason(values, tmp_path):
    import json

    docs = render(*VALUE_SETS[values])
    substitutions = {"{{workflow.name}}": "wf", "{{retries}}": "0", "{{workflow.parameters.zoo}}": "demo", "{{workflow.parameters.kinds}}": "[]",
                     "{{inputs.parameters.phase}}": "train"}
    embedded = []
    for manifest in (t["resource"]["manifest"] for d in argo_objects(docs) for t in d["spec"]["templates"] if "resource" in t):
        for placeholder, value in substitutions.items():
            manifest = manifest.replace(placeholder, value)
        embedded.append({**yaml.safe_load(manifest)})
    files = []
    for i, doc in enumerate(docs + embedded):  # one document per file: checkov's Argo runner misreads multi-document files
        doc.setdefault("metadata", {}).setdefault("namespace", "inverse-tracr")
        path = tmp_path / f"{i:02d}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files += ["-f", str(path)]
    files += ["-f", str(ROOT / "Dockerfile.cpu"), "-f", str(ROOT / "Dockerfile.gpu")]
    result = subprocess.run([checkov(), "--skip-download", "--compact", "-o", "json", *files], capture_output=True, text=True, timeout=600)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} >= {"kubernetes", "argo_workflows", "dockerfile"}
    for report in reports:
        failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert not failed, (report["check_type"], failed)
        for skipped in report["results"]["skipped_checks"]:
            assert len(skipped["check_result"]["suppress_comment"]) > 20, skipped["check_id"]  # a written reason
        assert report["summary"]["passed"] > 0


def test_dockerfiles_pass_hadolint_and_run_as_non_root():
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        result = subprocess.run([str(ROOT / ".venv/bin/hadolint") if (ROOT / ".venv/bin/hadolint").exists() else "hadolint", str(ROOT / name)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
        text = (ROOT / name).read_text()
        assert "USER 10001:10001" in text and "-c constraints.txt" in text
