"""`inverse-tracr submit`: a Workflow that Argo's schema accepts, posted to the Kubernetes API."""

from __future__ import annotations

import subprocess
import sys

import jsonschema
import yaml
from conftest import cli_env
from k8s_tools import argo_objects, argo_schema, render


def test_submit_posts_a_valid_workflow_to_the_kubernetes_api(tmp_path):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    recorded = []

    class Api(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            recorded.append((self.path, body))
            created = {**body, "metadata": {**body["metadata"], "name": body["metadata"]["generateName"] + "abc12"}}
            payload = json.dumps(created).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "me", "user": {"token": "test"}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "me"}}],
    }))
    try:
        result = subprocess.run([sys.executable, "-m", "inverse_tracr.cli", "submit", "-p", "programs=800000", "-p", "pods=500", "-p", "zoo=big"],
                                env=cli_env(KUBECONFIG=str(kubeconfig)), capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "inverse-tracr-pipeline-abc12" in result.stdout and "argo watch -n inverse-tracr" in result.stdout
    (path, body), = recorded
    assert path == "/apis/argoproj.io/v1alpha1/namespaces/inverse-tracr/workflows"
    jsonschema.validate(body, argo_schema("Workflow"))
    template = next(d for d in argo_objects(render()) if d["metadata"]["name"] == body["spec"]["workflowTemplateRef"]["name"])
    declared = {p["name"] for p in template["spec"]["arguments"]["parameters"]}
    assert {p["name"]: p["value"] for p in body["spec"]["arguments"]["parameters"]} == {"programs": "800000", "pods": "500", "zoo": "big"}
    assert {p["name"] for p in body["spec"]["arguments"]["parameters"]} <= declared
