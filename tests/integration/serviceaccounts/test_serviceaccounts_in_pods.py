"""Every pod runs as a ServiceAccount and calls the API with exactly that account's RBAC
rights, through the token, CA and namespace mounted at
/var/run/secrets/kumo.dev/serviceaccount. Real API server (RBAC), controllers, node agent
and Podman (see conftest)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from kumo.client import ApiException, AsyncClient
from kumo.model.core import ConfigMap, Pod, ServiceAccount
from kumo.model.registry import for_model
from tests.integration.agent.conftest import wait_pod
from tests.integration.services.conftest import Cluster

Obj = dict[str, Any]
POD = for_model(Pod)
SERVICE_ACCOUNT = for_model(ServiceAccount)
CONFIG_MAP = for_model(ConfigMap)
PYTHON = "docker.io/library/python:3.11-slim"
BUSYBOX = "docker.io/library/busybox:latest"
MOUNT = "/var/run/secrets/kumo.dev/serviceaccount"
KUBERNETES_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

# What the pod runs: Python's standard library only, the mounted files only.
LISTER_SCRIPT = f"""
import json, os, ssl, urllib.error, urllib.request
base = "{MOUNT}/"
token = open(base + "token").read()
namespace = open(base + "namespace").read()
context = ssl.create_default_context(cafile=base + "ca.crt")

def get(path):
    request = urllib.request.Request(
        "https://kubernetes.default.svc" + path, headers={{"Authorization": "Bearer " + token}}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)

code, body = get("/api/v1/namespaces/%s/pods" % namespace)
print("pods=%d %s" % (code, ",".join(i["metadata"]["name"] for i in body.get("items", []))))
code, body = get("/api/v1/namespaces/%s/secrets" % namespace)
print("secrets=%d %s" % (code, body.get("message", "")))
code, body = get("/api/v1/namespaces/default/pods")
print("default-pods=%d %s" % (code, body.get("message", "")))
print("namespace=" + namespace)
print("files=" + ",".join(sorted(n for n in os.listdir(base) if not n.startswith(".."))))
print("k8s-files=" + ",".join(sorted(
    n for n in os.listdir("{KUBERNETES_MOUNT}") if not n.startswith("..")
)))
"""


def _ns(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _eventually_get(
    client: AsyncClient, info: Any, name: str, namespace: str, within: float = 30.0
) -> Obj:
    deadline = time.monotonic() + within
    while True:
        try:
            return await client.get_raw(info, name, namespace)
        except ApiException as err:
            if not err.not_found or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def _namespace(cluster: Cluster, name: str) -> None:
    """A namespace, once the controllers gave it its default account and CA ConfigMap."""
    async with cluster.client(name) as client:
        await client.create_raw(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        await _eventually_get(client, SERVICE_ACCOUNT, "default", name)
        published = await _eventually_get(client, CONFIG_MAP, "kube-root-ca.crt", name)
    assert published["data"] == {"ca.crt": cluster.server.ca_file.read_text()}


async def _run(client: AsyncClient, manifest: Obj, namespace: str) -> tuple[Obj, str]:
    """Create the pod, wait until it finished, return it and its log (the API's log
    subresource, served through the node agent)."""
    await client.create_raw(manifest, namespace)
    name = manifest["metadata"]["name"]
    pod = await wait_pod(
        client,
        name,
        lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        within=90,
        what="finished",
        interval=0.3,
    )
    response = await client.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log")
    return pod, response.text


def _pod(name: str, node: str, image: str, command: list[str], **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": command}],
            **spec,
        },
    }


def _token_volume(pod: Obj) -> Obj:
    volumes = [
        v for v in pod["spec"].get("volumes") or [] if v["name"].startswith("kube-api-access-")
    ]
    assert len(volumes) == 1, pod["spec"].get("volumes")
    return dict(volumes[0])


async def test_pod_lists_pods_with_its_token_and_is_denied_the_rest(sa_cluster: Cluster) -> None:
    namespace = _ns("sa")
    await _namespace(sa_cluster, namespace)
    async with sa_cluster.client(namespace) as client:
        await client.create_raw(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "lister"}},
            namespace,
        )
        await client.create_raw(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            },
            namespace,
        )
        await client.create_raw(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "lister-reads-pods"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "pod-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": namespace}],
            },
            namespace,
        )
        # First, from the host: the server really authorizes with RBAC (a token of this
        # account is denied secrets), so what the pod sees below is the account's rights.
        issued = await client.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/lister/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        host_token = issued.json()["status"]["token"]
        server = sa_cluster.server
        with server.http(token=host_token) as http:
            assert http.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200
            assert http.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 403

        manifest = _pod("lister", sa_cluster.node, PYTHON, ["python3", "-c", LISTER_SCRIPT])
        manifest["spec"]["serviceAccountName"] = "lister"
        pod, logs = await _run(client, manifest, namespace)

    # Admission gave the pod the token volume, mounted read-only at both paths.
    volume = _token_volume(pod)
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {(m["mountPath"], m["name"], m.get("readOnly")) for m in mounts} == {
        (MOUNT, volume["name"], True),
        (KUBERNETES_MOUNT, volume["name"], True),
    }
    lines = logs.splitlines()
    assert pod["status"]["phase"] == "Succeeded", logs
    assert "pods=200 lister" in lines, logs
    secrets_line = next(line for line in lines if line.startswith("secrets="))
    assert secrets_line.startswith("secrets=403 "), logs
    assert f'User "system:serviceaccount:{namespace}:lister" cannot list' in secrets_line
    default_line = next(line for line in lines if line.startswith("default-pods="))
    assert default_line.startswith("default-pods=403 "), logs
    assert f"namespace={namespace}" in lines, logs
    assert "files=ca.crt,namespace,token" in lines, logs
    assert "k8s-files=ca.crt,namespace,token" in lines, logs


async def test_no_token_when_automount_is_off(sa_cluster: Cluster) -> None:
    namespace = _ns("noauto")
    await _namespace(sa_cluster, namespace)
    script = f"ls {MOUNT} 2>/dev/null; echo kumo=$?; ls {KUBERNETES_MOUNT} 2>/dev/null; echo k8s=$?"
    async with sa_cluster.client(namespace) as client:
        manifest = _pod(
            "quiet",
            sa_cluster.node,
            BUSYBOX,
            ["sh", "-c", script],
            automountServiceAccountToken=False,
        )
        pod, logs = await _run(client, manifest, namespace)
    assert pod["spec"]["serviceAccountName"] == "default"
    assert not [v for v in pod["spec"].get("volumes") or [] if v["name"].startswith("kube-api")]
    assert not pod["spec"]["containers"][0].get("volumeMounts")
    lines = logs.splitlines()
    assert pod["status"]["phase"] == "Succeeded", logs
    assert "kumo=0" not in lines and any(line.startswith("kumo=") for line in lines), logs
    assert "k8s=0" not in lines and any(line.startswith("k8s=") for line in lines), logs


async def test_pod_naming_a_missing_account_is_rejected(sa_cluster: Cluster) -> None:
    namespace = _ns("ghost")
    await _namespace(sa_cluster, namespace)
    manifest = _pod("haunted", sa_cluster.node, BUSYBOX, ["true"], serviceAccountName="ghost")
    with sa_cluster.server.http() as http:
        response = http.post(f"/api/v1/namespaces/{namespace}/pods", json=manifest)
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["kind"] == "Status"
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        f'pods "haunted" is forbidden: error looking up service account {namespace}/ghost:'
        ' serviceaccount "ghost" not found'
    )
    async with sa_cluster.client(namespace) as client:
        with pytest.raises(ApiException) as caught:
            await client.get_raw(POD, "haunted", namespace)
        assert caught.value.not_found
