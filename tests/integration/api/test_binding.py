"""pods/{name}/binding as Kubernetes' BindingREST answers it: one write that sets
spec.nodeName and PodScheduled=True; 404 for a missing pod; 409 for a pod already bound, and
for a Binding whose uid / resourceVersion preconditions are not the pod's; 400 for a Binding
named differently from the URL; the Binding's annotations land on the pod."""

from __future__ import annotations

from typing import Any

import pytest

from kumo.client import ApiException, Client
from tests.conftest import kind_info

POD = kind_info("v1", "Pod")


def make_pod(client: Client, namespace: str, name: str) -> dict[str, Any]:
    return client.create_raw(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:latest"}]},
        },
        namespace=namespace,
    )


def bind(client: Client, namespace: str, name: str, node: str, **metadata: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, **metadata},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    response = client.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods/{name}/binding", body=body
    )
    assert response.status_code == 201
    result: dict[str, Any] = response.json()
    return result


def test_binding_sets_the_node_and_pod_scheduled(client: Client, namespace: str) -> None:
    created = make_pod(client, namespace, "p1")
    status = bind(
        client,
        namespace,
        "p1",
        "node-a",
        uid=created["metadata"]["uid"],
        resourceVersion=created["metadata"]["resourceVersion"],
        annotations={"example.com/placed-by": "test"},
    )
    assert status["kind"] == "Status" and status["status"] == "Success"
    bound = client.get_raw(POD, "p1", namespace)
    assert bound["spec"]["nodeName"] == "node-a"
    scheduled = [c for c in bound["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert len(scheduled) == 1 and scheduled[0]["status"] == "True"
    assert bound["metadata"]["annotations"]["example.com/placed-by"] == "test"
    assert int(bound["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    # Everything else is as it was.
    assert bound["spec"]["containers"] == created["spec"]["containers"]
    assert bound["metadata"]["uid"] == created["metadata"]["uid"]


def test_binding_a_bound_pod_conflicts(client: Client, namespace: str) -> None:
    make_pod(client, namespace, "p2")
    bind(client, namespace, "p2", "node-a")
    with pytest.raises(ApiException) as caught:
        bind(client, namespace, "p2", "node-b")
    assert caught.value.code == 409
    assert 'already assigned to node "node-a"' in caught.value.message
    assert client.get_raw(POD, "p2", namespace)["spec"]["nodeName"] == "node-a"


def test_binding_a_missing_pod_is_not_found(client: Client, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        bind(client, namespace, "nobody", "node-a")
    assert caught.value.code == 404


def test_binding_preconditions(client: Client, namespace: str) -> None:
    created = make_pod(client, namespace, "p3")
    with pytest.raises(ApiException) as caught:
        bind(client, namespace, "p3", "node-a", uid="not-the-uid")
    assert caught.value.code == 409
    assert "Precondition failed: UID" in caught.value.message
    # The pod changes after the scheduler saw it: its resourceVersion is stale.
    client.patch_raw(POD, "p3", {"metadata": {"labels": {"x": "y"}}}, namespace)
    with pytest.raises(ApiException) as caught:
        bind(
            client,
            namespace,
            "p3",
            "node-a",
            resourceVersion=created["metadata"]["resourceVersion"],
        )
    assert caught.value.code == 409
    assert "Precondition failed: ResourceVersion" in caught.value.message
    assert not client.get_raw(POD, "p3", namespace)["spec"].get("nodeName")


def test_binding_named_unlike_the_url_is_a_bad_request(client: Client, namespace: str) -> None:
    make_pod(client, namespace, "p4")
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "someone-else"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"},
    }
    with pytest.raises(ApiException) as caught:
        client.request("POST", f"/api/v1/namespaces/{namespace}/pods/p4/binding", body=body)
    assert caught.value.code == 400
    with pytest.raises(ApiException) as caught:
        client.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods/p4/binding",
            body={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p4"}, "target": {}},
        )
    assert caught.value.code == 422
