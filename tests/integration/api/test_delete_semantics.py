"""DELETE as Kubernetes does it, against a real API server: the propagation policy's
finalizer (and switching it with a second DELETE), the legacy orphanDependents field, the
default policy, and graceful deletion of pods (gracePeriodSeconds, force, finalizers).

No garbage collector runs here: what the API server writes is what is asserted. The
collector's part is in tests/integration/controllers/test_gc_policy_switch.py."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kumo.client import ApiException, Client
from tests.conftest import ApiServerProcess, kind_info

CM = kind_info("v1", "ConfigMap")
POD = kind_info("v1", "Pod")
HOLD = "test.kumo.dev/hold"
OTHER = "test.kumo.dev/other"
Obj = dict[str, Any]


@pytest.fixture
def http(api_server: ApiServerProcess) -> Iterator[httpx.Client]:
    with api_server.http() as raw:
        yield raw


def config_map(name: str, finalizers: list[str] | None = None) -> Obj:
    meta: Obj = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def pod(
    name: str,
    *,
    node: str | None = "node-a",
    finalizers: list[str] | None = None,
    grace: int | None = None,
) -> Obj:
    meta: Obj = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    spec: Obj = {"containers": [{"name": "main", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node  # bound: as the scheduler leaves it
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def delete(http: httpx.Client, path: str, body: Obj | None = None, **params: Any) -> httpx.Response:
    return http.request(
        "DELETE",
        path,
        params={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()},
        json=body,
    )


def cm_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{name}"


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def meta_of(response: httpx.Response, code: int = 200) -> Obj:
    assert response.status_code == code, response.text
    found: Obj = response.json()["metadata"]
    return found


def missing(http: httpx.Client, path: str) -> bool:
    return http.get(path).status_code == 404


def parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# ---- propagation policy and finalizers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "added"),
    [("Orphan", ["orphan"]), ("Foreground", ["foregroundDeletion"]), ("Background", [])],
)
def test_a_propagation_policy_adds_its_finalizer(
    client: Client, http: httpx.Client, namespace: str, policy: str, added: list[str]
) -> None:
    client.create_raw(config_map("owner", [HOLD]))
    meta = meta_of(delete(http, cm_path(namespace, "owner"), propagationPolicy=policy))
    assert meta["finalizers"] == [HOLD, *added]
    assert meta["deletionTimestamp"]
    assert meta["deletionGracePeriodSeconds"] == 0, "no grace: it waits for finalizers only"
    assert client.get_raw(CM, "owner")["metadata"]["finalizers"] == [HOLD, *added]


def test_a_second_delete_switches_the_policy_finalizer(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(config_map("owner", [HOLD, OTHER]))
    path = cm_path(namespace, "owner")
    first = meta_of(delete(http, path, propagationPolicy="Orphan"))
    assert first["finalizers"] == [HOLD, OTHER, "orphan"]

    steps = [
        ("Foreground", [HOLD, OTHER, "foregroundDeletion"]),
        ("Orphan", [HOLD, OTHER, "orphan"]),
        ("Background", [HOLD, OTHER]),
        ("Foreground", [HOLD, OTHER, "foregroundDeletion"]),
        ("Background", [HOLD, OTHER]),
    ]
    for policy, expected in steps:
        meta = meta_of(delete(http, path, propagationPolicy=policy))
        assert meta["finalizers"] == expected, policy
        assert meta["deletionTimestamp"] == first["deletionTimestamp"], "deleted once, at first"
        assert client.get_raw(CM, "owner")["metadata"]["finalizers"] == expected


def test_a_delete_without_a_policy_keeps_the_policy_finalizer(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(config_map("owner", [HOLD]))
    path = cm_path(namespace, "owner")
    meta_of(delete(http, path, propagationPolicy="Foreground"))
    assert meta_of(delete(http, path))["finalizers"] == [HOLD, "foregroundDeletion"]
    meta_of(delete(http, path, propagationPolicy="Orphan"))
    assert meta_of(delete(http, path))["finalizers"] == [HOLD, "orphan"]


def test_background_drops_an_orphan_finalizer_the_object_was_created_with(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(config_map("preset", ["orphan", HOLD]))
    meta = meta_of(delete(http, cm_path(namespace, "preset"), propagationPolicy="Background"))
    assert meta["finalizers"] == [HOLD]
    # without a policy the finalizer the object holds decides: orphan stays
    client.create_raw(config_map("kept", ["orphan", HOLD]))
    assert meta_of(delete(http, cm_path(namespace, "kept")))["finalizers"] == ["orphan", HOLD]
    # and an object whose only finalizer was orphan is gone at once under Background
    client.create_raw(config_map("only", ["orphan"]))
    assert delete(http, cm_path(namespace, "only"), propagationPolicy="Background").is_success
    assert missing(http, cm_path(namespace, "only"))


def test_legacy_orphan_dependents_maps_to_orphan_and_background(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(config_map("legacy", [HOLD]))
    path = cm_path(namespace, "legacy")
    # query parameter, then DeleteOptions body
    assert meta_of(delete(http, path, orphanDependents=True))["finalizers"] == [HOLD, "orphan"]
    meta_of(delete(http, path, propagationPolicy="Foreground"))
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "orphanDependents": True}
    assert meta_of(delete(http, path, body))["finalizers"] == [HOLD, "orphan"]
    # orphanDependents=false is Background; Kubernetes answers it 202 while the object stays
    assert meta_of(delete(http, path, orphanDependents=False), 202)["finalizers"] == [HOLD]
    # propagationPolicy=Foreground is answered 200, as Kubernetes does
    assert delete(http, path, propagationPolicy="Foreground").status_code == 200


def test_orphan_dependents_and_propagation_policy_together_are_invalid(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(config_map("both"))
    path = cm_path(namespace, "both")
    for response in (
        delete(http, path, orphanDependents=True, propagationPolicy="Foreground"),
        delete(http, path, {"orphanDependents": False, "propagationPolicy": "Orphan"}),
    ):
        assert response.status_code == 422, response.text
        status = response.json()
        assert status["kind"] == "Status"
        assert status["reason"] == "Invalid"
        assert "cannot be both set" in status["message"]
    assert "deletionTimestamp" not in client.get_raw(CM, "both")["metadata"]


def test_orphan_and_foreground_finalizers_cannot_both_be_held(
    client: Client, namespace: str
) -> None:
    with pytest.raises(ApiException) as caught:
        client.create_raw(config_map("both", ["orphan", "foregroundDeletion"]))
    assert caught.value.code == 422
    assert "cannot be both set" in caught.value.message


@pytest.mark.parametrize("kind", ["ReplicaSet", "Deployment"])
def test_apps_v1_workloads_default_to_background(
    client: Client, http: httpx.Client, namespace: str, kind: str
) -> None:
    workload = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "finalizers": [HOLD]},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "busybox"}]},
            },
        },
    }
    client.create_raw(workload)
    plural = f"{kind.lower()}s"
    path = f"/apis/apps/v1/namespaces/{namespace}/{plural}/web"
    meta = meta_of(delete(http, path))
    assert meta["finalizers"] == [HOLD], "no orphan (or foreground) finalizer by default"
    assert meta["deletionTimestamp"]


# ---- graceful deletion of pods -------------------------------------------------------------------


def test_a_bound_pod_is_deleted_gracefully(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("default"))
    meta = meta_of(delete(http, pod_path(namespace, "default")))
    assert meta["deletionGracePeriodSeconds"] == 30
    live = client.get_raw(POD, "default")["metadata"]
    assert live["deletionGracePeriodSeconds"] == 30
    assert live["deletionTimestamp"] == meta["deletionTimestamp"]
    # the deadline is the grace period after the deletion was asked for
    deadline = parse(meta["deletionTimestamp"])
    assert deadline > parse(live["creationTimestamp"]) + datetime.timedelta(seconds=25)

    client.create_raw(pod("custom", grace=7))
    assert meta_of(delete(http, pod_path(namespace, "custom")))["deletionGracePeriodSeconds"] == 7


def test_a_second_delete_may_shorten_the_grace_period_but_not_lengthen_it(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("web"))
    path = pod_path(namespace, "web")
    first = meta_of(delete(http, path))
    assert first["deletionGracePeriodSeconds"] == 30

    longer = meta_of(delete(http, path, gracePeriodSeconds=100))
    assert longer["deletionGracePeriodSeconds"] == 30
    assert longer["deletionTimestamp"] == first["deletionTimestamp"]

    shorter = meta_of(delete(http, path, gracePeriodSeconds=10))
    assert shorter["deletionGracePeriodSeconds"] == 10
    # counted from when the deletion was first asked for, as Kubernetes does
    assert parse(first["deletionTimestamp"]) - parse(shorter["deletionTimestamp"]) == (
        datetime.timedelta(seconds=20)
    )
    assert client.get_raw(POD, "web")["metadata"]["deletionGracePeriodSeconds"] == 10

    assert delete(http, path, gracePeriodSeconds=0).status_code == 200
    assert missing(http, path)


def test_force_delete_removes_a_bound_pod_at_once(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("forced"))
    assert delete(http, pod_path(namespace, "forced"), gracePeriodSeconds=0).status_code == 200
    assert missing(http, pod_path(namespace, "forced"))


def test_an_unbound_pod_is_deleted_at_once(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("pending", node=None))
    assert delete(http, pod_path(namespace, "pending")).status_code == 200
    assert missing(http, pod_path(namespace, "pending"))
    client.create_raw(pod("asked", node=None, grace=60))
    assert delete(http, pod_path(namespace, "asked"), gracePeriodSeconds=45).status_code == 200
    assert missing(http, pod_path(namespace, "asked"))


def test_a_negative_grace_period_counts_as_one_second(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("negative"))
    meta = meta_of(delete(http, pod_path(namespace, "negative"), gracePeriodSeconds=-5))
    assert meta["deletionGracePeriodSeconds"] == 1
    assert client.get_raw(POD, "negative")["metadata"]["deletionGracePeriodSeconds"] == 1


def test_force_delete_of_a_pod_with_finalizers_waits_for_them(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("held", finalizers=[HOLD]))
    meta = meta_of(delete(http, pod_path(namespace, "held"), gracePeriodSeconds=0))
    assert meta["deletionGracePeriodSeconds"] == 0
    assert meta["deletionTimestamp"]
    live = client.get_raw(POD, "held")["metadata"]
    assert live["finalizers"] == [HOLD]
    assert live["deletionGracePeriodSeconds"] == 0
    # the last finalizer removed: the pod goes at once (nothing left for its node to do)
    client.patch_raw(POD, "held", {"metadata": {"finalizers": None}})
    assert missing(http, pod_path(namespace, "held"))


def test_force_after_a_graceful_delete_of_a_pod_with_finalizers(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("held", finalizers=[HOLD]))
    path = pod_path(namespace, "held")
    graceful = meta_of(delete(http, path))
    assert graceful["deletionGracePeriodSeconds"] == 30
    forced = meta_of(delete(http, path, gracePeriodSeconds=0))
    assert forced["deletionGracePeriodSeconds"] == 0
    assert parse(forced["deletionTimestamp"]) < parse(graceful["deletionTimestamp"])
    assert client.get_raw(POD, "held")["metadata"]["finalizers"] == [HOLD]
    client.patch_raw(POD, "held", {"metadata": {"finalizers": None}})
    assert missing(http, path)


def test_a_gracefully_deleting_pod_waits_for_its_node_after_its_finalizers(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("held", finalizers=[HOLD]))
    path = pod_path(namespace, "held")
    meta_of(delete(http, path))
    client.patch_raw(POD, "held", {"metadata": {"finalizers": None}})
    live = client.get_raw(POD, "held")["metadata"]
    assert live["deletionGracePeriodSeconds"] == 30, "its containers may still be stopping"
    assert delete(http, path, gracePeriodSeconds=0).status_code == 200  # what the agent does
    assert missing(http, path)


def test_a_pending_graceful_deletion_keeps_its_finalizers_unless_shortened(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(pod("web", finalizers=[HOLD]))
    path = pod_path(namespace, "web")
    first = meta_of(delete(http, path, propagationPolicy="Orphan"))
    assert first["finalizers"] == [HOLD, "orphan"]
    # Kubernetes: while a graceful deletion is pending, a DELETE that does not shorten it
    # changes nothing, the propagation policy included
    same = meta_of(delete(http, path, propagationPolicy="Foreground"))
    assert same["finalizers"] == [HOLD, "orphan"]
    assert same["resourceVersion"] == first["resourceVersion"]
    # one that shortens it switches the policy too
    forced = meta_of(delete(http, path, propagationPolicy="Foreground", gracePeriodSeconds=0))
    assert forced["finalizers"] == [HOLD, "foregroundDeletion"]
    assert forced["deletionGracePeriodSeconds"] == 0
    # from then on (no grace left) a DELETE switches the policy again
    again = meta_of(delete(http, path, propagationPolicy="Background"))
    assert again["finalizers"] == [HOLD]
