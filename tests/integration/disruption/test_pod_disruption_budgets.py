"""PodDisruptionBudgets end to end: real ``kumo agent`` pods on Podman, ``kumo controllers``
(deployment, replicaset, garbage collector, disruption; as the controller-manager identity)
and the API server's eviction subresource.

- a budget's status follows the pods (healthy, desired, allowed disruptions);
- an eviction spends a disruption; the next one is refused with 429 and the budget's reason
  until the replacement pod is Ready; then it goes through;
- ``kumo drain`` retries refused evictions and gives up at its timeout, the pod untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from kumo.client import ApiException, Client
from kumo.model.registry import by_kind
from tests.conftest import ApiServerProcess
from tests.integration.agent.conftest import BUSYBOX, AgentProcess
from tests.integration.components import module_agent, module_controllers, run_kumo, wait_until
from tests.integration.services.conftest import Controllers

pytestmark = pytest.mark.podman

Obj = dict[str, Any]
DEPLOYMENT = by_kind("apps/v1", "Deployment")
PDB = by_kind("policy/v1", "PodDisruptionBudget")
POD = by_kind("v1", "Pod")
assert DEPLOYMENT is not None and PDB is not None and POD is not None
IDLE = "while :; do sleep 3600; done"


@pytest.fixture(scope="module")
def agent(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    yield from module_agent(api_server, tmp_path_factory, "pdb")


@pytest.fixture(scope="module")
def controllers(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controllers]:
    yield from module_controllers(
        api_server, tmp_path_factory, "pdb", "deployment,replicaset,garbagecollector,disruption"
    )


def deployment(name: str, node: str, replicas: int) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {"name": "app", "image": BUSYBOX, "command": ["sh", "-c", IDLE]}
                    ],
                },
            },
        },
    }


def budget(name: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, **spec},
    }


def ready_pods(client: Client, namespace: str, app: str) -> list[Obj]:
    items, _ = client.list_all_raw(POD, namespace, label_selector=f"app={app}")  # type: ignore[arg-type]
    return [
        p
        for p in items
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    ]


def budget_status(client: Client, namespace: str, name: str) -> Obj:
    found: Obj = client.get_raw(PDB, name, namespace).get("status") or {}  # type: ignore[arg-type]
    return found


def delete_deployment(client: Client, namespace: str, name: str) -> None:
    client.request(
        "DELETE",
        DEPLOYMENT.path(namespace, name),  # type: ignore[union-attr]
        params={"propagationPolicy": "Foreground"},
    )


def evict(client: Client, namespace: str, pod_name: str) -> None:
    client.request(
        "POST",
        POD.path(namespace, pod_name, "eviction"),  # type: ignore[union-attr]
        body={
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod_name, "namespace": namespace},
        },
    )


def test_evictions_spend_the_budget_and_wait_for_replacements(
    api_server: ApiServerProcess,
    agent: AgentProcess,
    controllers: Controllers,
    client: Client,
    namespace: str,
) -> None:
    name = "web"
    client.create_raw(deployment(name, agent.name, 3), namespace)
    try:
        wait_until(
            lambda: len(ready_pods(client, namespace, name)) == 3,
            60,
            f"3 ready pods\n{controllers.log_tail()}\n{agent.log_tail(20)}",
        )
        client.create_raw(budget(name, minAvailable=2), namespace)
        status = wait_until(
            lambda: (
                (s := budget_status(client, namespace, name)).get("disruptionsAllowed") == 1 and s
            ),
            30,
            f"budget status\n{controllers.log_tail()}",
        )
        assert (status["currentHealthy"], status["desiredHealthy"], status["expectedPods"]) == (
            3,
            2,
            3,
        )
        table = run_kumo(api_server, "get", "pdb", "-n", namespace).stdout.splitlines()
        assert table[0].split() == [
            "NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE",
        ], table  # fmt: skip
        assert re.match(r"web\s+2\s+N/A\s+1\s", table[1]), table

        first, second = (p["metadata"]["name"] for p in ready_pods(client, namespace, name)[:2])
        evict(client, namespace, first)
        with pytest.raises(ApiException) as refused:
            evict(client, namespace, second)
        assert refused.value.code == 429, refused.value.status
        assert refused.value.status["reason"] == "TooManyRequests"
        assert (
            refused.value.status["message"]
            == "Cannot evict pod as it would violate the pod's disruption budget."
        )
        cause = refused.value.status["details"]["causes"][0]
        assert cause["reason"] == "DisruptionBudget", cause
        assert cause["message"].startswith("The disruption budget web needs 2 healthy pods")

        # the ReplicaSet replaces the evicted pod; once it is Ready a disruption is allowed
        wait_until(
            lambda: budget_status(client, namespace, name).get("disruptionsAllowed") == 1,
            60,
            f"disruption allowed again\n{controllers.log_tail()}",
        )
        evict(client, namespace, second)
        assert all(
            p["metadata"]["name"] not in (first, second)
            for p in ready_pods(client, namespace, name)
        )
    finally:
        delete_deployment(client, namespace, name)


def test_drain_gives_up_on_a_pod_its_budget_protects(
    api_server: ApiServerProcess,
    agent: AgentProcess,
    controllers: Controllers,
    client: Client,
    namespace: str,
) -> None:
    name = "db"
    client.create_raw(deployment(name, agent.name, 1), namespace)
    try:
        wait_until(lambda: ready_pods(client, namespace, name), 60, "db ready")
        client.create_raw(budget(name, maxUnavailable=0), namespace)
        wait_until(
            lambda: budget_status(client, namespace, name).get("observedGeneration") == 1,
            30,
            "budget observed",
        )
        protected = ready_pods(client, namespace, name)[0]["metadata"]["name"]
        drained = run_kumo(
            api_server, "drain", agent.name, "--pod-selector", f"app={name}", "--timeout", "7s",
            timeout=90,
        )  # fmt: skip
        assert drained.returncode != 0, drained.stdout
        assert "Cannot evict pod as it would violate the pod's disruption budget" in (
            drained.stderr
        ), drained.stderr
        assert "will retry after 5s" in drained.stderr
        assert "drain did not complete within 7s" in drained.stderr
        # the pod is still there, untouched
        assert [p["metadata"]["name"] for p in ready_pods(client, namespace, name)] == [protected]
    finally:
        run_kumo(api_server, "uncordon", agent.name)
        delete_deployment(client, namespace, name)
