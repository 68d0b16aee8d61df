"""The scheduler against a real API server (a private one: Nodes are cluster-wide).

Three Node objects of different sizes, labels and taints (no node agent: status.allocatable
and a Ready condition); pods arrive one at a time and land where Kubernetes would put them;
an unschedulable pod gets PodScheduled=False and a FailedScheduling event worded like
Kubernetes', deduplicated when it fails the same way again; a new node lets parked pods in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kumo.client import AsyncClient
from kumo.platform.scheduler import LeaderElector, run_scheduler
from tests.conftest import REPO, ApiServerFactory, ApiServerProcess, component_config

Obj = dict[str, Any]
NS = "sched"
TIMEOUT = 20.0
TAINT_MESSAGE = "1 node(s) had untolerated taint {dedicated: ml}"


def node_obj(
    name: str,
    cpu: str,
    memory: str,
    labels: dict[str, str],
    taints: list[Obj] | None = None,
) -> Obj:
    resources = {"cpu": cpu, "memory": memory, "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def pod_obj(
    name: str, cpu: str = "100m", memory: str = "128Mi", namespace: str = NS, **spec: Any
) -> Obj:
    ports = spec.pop("host_ports", None)
    container: Obj = {
        "name": "app",
        "image": "busybox:1.36",
        "resources": {"requests": {"cpu": cpu, "memory": memory}},
    }
    if ports:
        container["ports"] = [{"containerPort": p, "hostPort": p} for p in ports]
    labels = spec.pop("labels", None)
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [container], **spec},
    }


TOLERATE_ML = [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
WEB_ANTI = {
    "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "labelSelector": {"matchLabels": {"app": "web"}},
                "topologyKey": "kubernetes.io/hostname",
            }
        ]
    }
}


@contextlib.asynccontextmanager
async def running_scheduler(client: AsyncClient, **options: Any) -> AsyncIterator[None]:
    """The scheduler, acting as its own identity (system:kube-scheduler) on ``client``'s
    server, as ``kumo up`` runs it."""
    stop = asyncio.Event()
    options.setdefault("initial_backoff", 0.2)
    options.setdefault("max_backoff", 1.0)
    async with AsyncClient(component_config(client.config, "scheduler")) as own:
        task = asyncio.create_task(run_scheduler(own, stop, **options))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def pod_outcome(client: AsyncClient, name: str) -> tuple[str, Obj | None]:
    """(node name, None) once bound, ("", PodScheduled condition) once reported unschedulable."""
    from kumo.model.registry import by_kind

    info = by_kind("v1", "Pod")
    assert info is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        obj = await client.get_raw(info, name, NS)
        node = (obj.get("spec") or {}).get("nodeName")
        if node:
            return str(node), None
        for condition in (obj.get("status") or {}).get("conditions") or ():
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return "", condition
        await asyncio.sleep(0.05)
    raise AssertionError(f"pod {name} neither bound nor reported unschedulable in {TIMEOUT}s")


async def bound_to(client: AsyncClient, name: str) -> str:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        node, _ = await pod_outcome(client, name)
        if node:
            return node
        await asyncio.sleep(0.05)
    raise AssertionError(f"pod {name} not bound in {TIMEOUT}s")


async def scheduling_events(client: AsyncClient, pod_name: str) -> list[Obj]:
    response = await client.request(
        "GET",
        f"/api/v1/namespaces/{NS}/events",
        params={"fieldSelector": f"involvedObject.name={pod_name},reason=FailedScheduling"},
    )
    items: list[Obj] = response.json().get("items") or []
    return items


async def eventually_event(client: AsyncClient, pod_name: str, count: int) -> Obj:
    deadline = time.monotonic() + TIMEOUT
    events: list[Obj] = []
    while time.monotonic() < deadline:
        events = await scheduling_events(client, pod_name)
        if events and max(int(e.get("count") or 0) for e in events) >= count:
            return max(events, key=lambda e: int(e.get("count") or 0))
        await asyncio.sleep(0.05)
    raise AssertionError(f"no FailedScheduling event with count {count} for {pod_name}: {events}")


@pytest.fixture
def server(api_server_factory: ApiServerFactory) -> ApiServerProcess:
    return api_server_factory.start()


async def create(client: AsyncClient, obj: Obj) -> None:
    await client.create_raw(obj, NS)


async def test_places_pods_where_kubernetes_would(server: ApiServerProcess) -> None:
    async with AsyncClient(server.client_config(NS)) as client:
        await client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        for obj in (
            node_obj("small", "2", "4Gi", {"disk": "hdd", "zone": "a"}),
            node_obj("medium", "4", "8Gi", {"disk": "ssd", "zone": "b"}),
            node_obj(
                "large",
                "8",
                "32Gi",
                {"gpu": "true", "zone": "c"},
                [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
            ),
        ):
            await client.create_raw(obj)

        async with running_scheduler(client):
            # Least allocated + balanced allocation: the emptier, more balanced medium node.
            await create(client, pod_obj("plain", cpu="1", memory="1Gi"))
            assert await bound_to(client, "plain") == "medium"
            # Only the tainted large node has room; the pod tolerates the taint.
            await create(client, pod_obj("heavy", cpu="6", memory="20Gi", tolerations=TOLERATE_ML))
            assert await bound_to(client, "heavy") == "large"
            # nodeSelector
            await create(client, pod_obj("ssd", nodeSelector={"disk": "ssd"}))
            assert await bound_to(client, "ssd") == "medium"
            # required anti-affinity by hostname: one web pod per untainted node, the third
            # has nowhere to go.
            placed = []
            for i in range(2):
                await create(client, pod_obj(f"web-{i}", labels={"app": "web"}, affinity=WEB_ANTI))
                placed.append(await bound_to(client, f"web-{i}"))
            assert sorted(placed) == ["medium", "small"]
            await create(client, pod_obj("web-2", labels={"app": "web"}, affinity=WEB_ANTI))
            node, condition = await pod_outcome(client, "web-2")
            assert node == ""
            assert condition is not None
            assert condition["message"] == (
                f"0/3 nodes are available: {TAINT_MESSAGE},"
                " 2 node(s) didn't match pod anti-affinity rules."
            )
            # host ports: two pods on port 8080 cannot share a node
            zone_a_or_c = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "zone", "operator": "In", "values": ["a", "c"]}
                                ]
                            }
                        ]
                    }
                }
            }
            for name in ("port-a", "port-b"):
                await create(
                    client,
                    pod_obj(name, host_ports=[8080], tolerations=TOLERATE_ML, affinity=zone_a_or_c),
                )
            ports_nodes = {await bound_to(client, "port-a"), await bound_to(client, "port-b")}
            assert ports_nodes == {"small", "large"}

            # Too big for every node: PodScheduled=False and a FailedScheduling event.
            await create(client, pod_obj("huge", cpu="1", memory="64Gi"))
            node, condition = await pod_outcome(client, "huge")
            expected = f"0/3 nodes are available: {TAINT_MESSAGE}, 2 Insufficient memory."
            assert node == ""
            assert condition is not None
            assert condition["reason"] == "Unschedulable"
            assert condition["message"] == expected
            event = await eventually_event(client, "huge", 1)
            assert event["type"] == "Warning"
            assert event["message"] == expected
            assert event["source"]["component"] == "default-scheduler"
            assert event["involvedObject"]["kind"] == "Pod"
            assert event["involvedObject"]["name"] == "huge"
            assert event["count"] == 1

            # A node update that does not help: the pod is retried, fails the same way, and
            # the same Event counts 2 instead of a second Event appearing.
            await client.patch_raw(
                by_kind_node(),
                "medium",
                {"status": {"allocatable": {"memory": "9Gi"}}},
                sub="status",
            )
            event = await eventually_event(client, "huge", 2)
            assert event["message"] == expected
            assert len(await scheduling_events(client, "huge")) == 1

            # A big node arrives: both parked pods get in.
            await client.create_raw(node_obj("xl", "16", "128Gi", {"zone": "d"}))
            assert await bound_to(client, "huge") == "xl"
            assert await bound_to(client, "web-2") == "xl"


def by_kind_node() -> Any:
    from kumo.model.registry import by_kind

    info = by_kind("v1", "Node")
    assert info is not None
    return info


async def test_leader_election_hands_over(server: ApiServerProcess) -> None:
    async with AsyncClient(server.client_config()) as client:
        first, second = (
            LeaderElector(
                client,
                name="sched-test",
                identity=identity,
                lease_duration=2.0,
                renew_deadline=1.5,
                retry_period=0.2,
            )
            for identity in ("first", "second")
        )
        leading: list[str] = []

        def lead_as(name: str) -> Any:
            async def lead(stop_leading: asyncio.Event) -> None:
                leading.append(name)
                await stop_leading.wait()

            return lead

        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        task_first = asyncio.create_task(first.run(stop_first, lead_as("first")))
        for _ in range(100):
            if first.is_leader:
                break
            await asyncio.sleep(0.05)
        assert first.is_leader
        task_second = asyncio.create_task(second.run(stop_second, lead_as("second")))
        await asyncio.sleep(2.5)  # longer than the lease: the first keeps renewing it
        assert first.is_leader and not second.is_leader
        assert leading == ["first"]

        stop_first.set()
        await asyncio.wait_for(task_first, 5)
        for _ in range(100):
            if second.is_leader:
                break
            await asyncio.sleep(0.05)
        assert second.is_leader
        assert leading == ["first", "second"]
        stop_second.set()
        await asyncio.wait_for(task_second, 5)


def test_kumo_scheduler_command_binds_and_stops_on_sigterm(server: ApiServerProcess) -> None:
    """The command alone (registered on a click group, as kumo's main does), against the
    current context of a client config file."""
    from kumo.client import Client

    with Client(server.client_config()) as admin:
        admin.create_raw(node_obj("solo", "2", "2Gi", {}))
        admin.create_raw(pod_obj("p", cpu="500m", memory="256Mi", namespace="default"))
    script = (
        "import click\n"
        "from kumo.cli.scheduler_commands import register\n"
        "group = click.Group('kumo')\n"
        "register(group)\n"
        "group(['scheduler', '--initial-backoff', '0.2'])\n"
    )
    env = dict(os.environ, KUMOCONFIG=str(server.kubeconfig_path))
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        node = ""
        with Client(server.client_config()) as admin:
            from kumo.model.registry import by_kind

            info = by_kind("v1", "Pod")
            assert info is not None
            while time.monotonic() < deadline and not node:
                node = str(
                    admin.get_raw(info, "p", "default").get("spec", {}).get("nodeName") or ""
                )
                time.sleep(0.05)
        assert node == "solo"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
        assert process.returncode == 0, output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_scheduler_with_leader_election_takes_the_lease_and_schedules(
    server: ApiServerProcess,
) -> None:
    from kumo.model.registry import by_kind

    lease_info = by_kind("coordination.k8s.io/v1", "Lease")
    assert lease_info is not None
    async with AsyncClient(server.client_config("default")) as client:
        await client.create_raw(node_obj("solo", "2", "2Gi", {}))
        async with running_scheduler(client, leader_elect=True, lease_name="kumo-scheduler"):
            await client.create_raw(pod_obj("p", namespace="default"))
            node, _ = await pod_outcome_in(client, "p", "default")
            assert node == "solo"
            lease = await client.get_raw(lease_info, "kumo-scheduler", "kube-system")
            assert lease["spec"]["holderIdentity"]
        # Stopping releases the lease for the next scheduler.
        lease = await client.get_raw(lease_info, "kumo-scheduler", "kube-system")
        assert lease["spec"]["holderIdentity"] == ""


async def pod_outcome_in(client: AsyncClient, name: str, namespace: str) -> tuple[str, None]:
    from kumo.model.registry import by_kind

    info = by_kind("v1", "Pod")
    assert info is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        obj = await client.get_raw(info, name, namespace)
        node = (obj.get("spec") or {}).get("nodeName")
        if node:
            return str(node), None
        await asyncio.sleep(0.05)
    raise AssertionError(f"pod {name} not bound in {TIMEOUT}s")
