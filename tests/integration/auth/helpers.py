"""Helpers for access tests: user tokens minted through the API, clients acting as users."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import ApiServerProcess

USER_TOKENS = "/apis/kumo.dev/v1/usertokens"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def mint_token(
    server: ApiServerProcess,
    user: str,
    groups: list[str] | None = None,
    *,
    seconds: int | None = None,
) -> tuple[str, str]:
    """(token id, token) of a new user token, made by the admin through the API."""
    spec: dict[str, Any] = {"user": user, "groups": groups or []}
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    with server.http() as http:
        response = http.post(
            USER_TOKENS, json={"apiVersion": "kumo.dev/v1", "kind": "UserToken", "spec": spec}
        )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["metadata"]["name"], body["status"]["token"]


def admin_create(server: ApiServerProcess, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    with server.http() as http:
        response = http.post(path, json=obj)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def role(namespace: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules,
    }


def binding(
    name: str,
    role_kind: str,
    role_name: str,
    subjects: list[dict[str, Any]],
    namespace: str | None = None,
) -> dict[str, Any]:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": subjects,
    }


def user(name: str) -> dict[str, Any]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def group(name: str) -> dict[str, Any]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


def grant(
    server: ApiServerProcess,
    namespace: str,
    who: dict[str, Any],
    rules: list[dict[str, Any]],
    name: str,
) -> None:
    """A Role with ``rules`` in ``namespace`` and a RoleBinding of it to ``who``."""
    admin_create(server, f"{RBAC}/namespaces/{namespace}/roles", role(namespace, name, rules))
    admin_create(
        server,
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        binding(name, "Role", name, [who], namespace),
    )


def audit_records(server: ApiServerProcess) -> list[dict[str, Any]]:
    path = Path(server.data_dir) / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
