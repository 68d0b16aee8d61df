"""Fixtures for the tenancy tests (quota, limit ranges, pod security, Secrets at rest).

They run against the shared real API server (``api_server``, ``namespace``) or a private one
(``api_server_factory``); controllers run in the test process over a real client, as in the
workload tests (``start_controllers``, ``wait_for`` come from there). No Podman is needed:
admission decides before any pod would run.
"""

from __future__ import annotations

from typing import Any

from kumo.model.registry import by_kind
from tests.integration.workloads.conftest import start_controllers, wait_for
from tests.integration.workloads.helpers import EVENT, POD, SERVICE

QUOTA = by_kind("v1", "ResourceQuota")
LIMITS = by_kind("v1", "LimitRange")
SECRET = by_kind("v1", "Secret")
NAMESPACE = by_kind("v1", "Namespace")
CONFIGMAP = by_kind("v1", "ConfigMap")
assert QUOTA and LIMITS and SECRET and NAMESPACE and CONFIGMAP

__all__ = ["EVENT", "POD", "SERVICE", "start_controllers", "wait_for"]


def pod(
    name: str,
    *,
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    image: str = "kumo.test/web:1",
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    resources = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], **spec},
    }


def quota(name: str, hard: dict[str, str], scopes: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": spec}
