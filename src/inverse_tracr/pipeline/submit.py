"""`inverse-tracr submit`: start a Workflow from an installed WorkflowTemplate, through the Kubernetes API.

The same as `argo submit --from workflowtemplate/<name> -p k=v`, without the argo binary: uses the
current kube-context (or the in-cluster service account).
"""

from __future__ import annotations

from typing import Any

from inverse_tracr.errors import InverseTracrError

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"


class SubmitError(InverseTracrError, RuntimeError):
    """The cluster could not be reached or refused the Workflow; the message says why."""


def workflow_body(template: str, parameters: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{template}-",
            "labels": {"app.kubernetes.io/name": "inverse-tracr", "workflows.argoproj.io/workflow-template": template, **(labels or {})},
        },
        "spec": {
            "workflowTemplateRef": {"name": template},
            "arguments": {"parameters": [{"name": k, "value": str(v)} for k, v in parameters.items()]},
        },
    }


def submit(body: dict[str, Any], namespace: str, context: str | None = None) -> str:
    """Create the Workflow; returns its generated name."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException

    try:
        try:
            config.load_kube_config(context=context)
        except (ConfigException, FileNotFoundError):
            if context:
                raise
            config.load_incluster_config()
    except (ConfigException, FileNotFoundError) as error:
        raise SubmitError(f"cannot load a Kubernetes configuration (kube-context or in-cluster): {error}") from None
    api = client.CustomObjectsApi()
    try:
        created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    except ApiException as error:
        raise SubmitError(f"the cluster refused the Workflow ({error.status} {error.reason}): {(error.body or '')[:300]}") from None
    except Exception as error:  # noqa: BLE001 - connection errors come from urllib3 in many types
        raise SubmitError(f"cannot reach the cluster: {type(error).__name__}: {error}") from None
    return created["metadata"]["name"]
