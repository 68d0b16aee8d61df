"""The agent as a process: registration, lease, SIGKILL and restart (adoption, orphan
removal, pods deleted while it was away), and the node lifecycle controller noticing
an agent whose lease stopped."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kumo.client import AsyncClient
from kumo.platform.controllers import run_controllers
from tests.conftest import ApiServerFactory
from tests.integration.agent.conftest import (
    BUSYBOX,
    LEASE,
    NODE,
    POD,
    AgentFactory,
    condition,
    container_status,
    eventually,
    node_containers,
    parse_time,
    pod_manifest,
    podman,
    wait_gone,
    wait_pod,
)

pytestmark = pytest.mark.podman


def node_condition(node: dict[str, Any], kind: str) -> dict[str, Any]:
    for entry in (node.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def host_memory_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise AssertionError("no MemTotal")


async def test_registration_reports_the_host_and_renews_the_lease(
    agent_factory: AgentFactory, async_client: AsyncClient
) -> None:
    agent = agent_factory.start(
        "--node-labels",
        "tier=edge,zone=a",
        "--reserved",
        "cpu=500m,memory=1Gi",
        "--kubelet-port",
        "10999",
        "--max-pods",
        "50",
    )
    node = await async_client.get_raw(NODE, agent.name)
    labels = node["metadata"]["labels"]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    assert labels == {
        "kubernetes.io/hostname": agent.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "tier": "edge",
        "zone": "a",
    }
    status = node["status"]
    cpus = len(os.sched_getaffinity(0))
    memory = host_memory_kib()
    assert status["capacity"] == {"cpu": str(cpus), "memory": f"{memory}Ki", "pods": "50"}
    assert status["allocatable"] == {
        "cpu": f"{cpus * 1000 - 500}m",
        "memory": f"{memory - 1024 * 1024}Ki",
        "pods": "50",
    }
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10999}}
    version = podman("version", "--format", "{{.Client.Version}}").strip()
    info = status["nodeInfo"]
    assert info["containerRuntimeVersion"] == f"podman://{version}"
    assert info["kubeletVersion"] == "v0.1.0"
    assert info["operatingSystem"] == "linux" and info["architecture"] == arch
    assert info["kernelVersion"] == platform.release()
    names = {name for image in status["images"] for name in image["names"]}
    assert "docker.io/library/busybox:latest" in names
    ready = node_condition(node, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"

    lease = await async_client.get_raw(LEASE, agent.name, "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == agent.name
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    first = parse_time(lease["spec"]["renewTime"])
    first_beat = parse_time(str(ready["lastHeartbeatTime"]))

    async def renewed() -> bool:
        again = await async_client.get_raw(LEASE, agent.name, "kube-node-lease")
        return parse_time(again["spec"]["renewTime"]) > first  # type: ignore[operator]

    await eventually(renewed, within=5)

    async def heartbeat() -> bool:
        again = await async_client.get_raw(NODE, agent.name)
        beat = parse_time(str(node_condition(again, "Ready")["lastHeartbeatTime"]))
        return beat is not None and first_beat is not None and beat > first_beat

    await eventually(heartbeat, within=6)


def inspect(container_id: str) -> dict[str, object]:
    data = json.loads(podman("inspect", container_id))
    return dict(data[0])


async def test_after_kill_9_the_agent_adopts_its_pods_and_reaps_orphans(
    agent_factory: AgentFactory, async_client: AsyncClient, namespace: str
) -> None:
    agent = agent_factory.start("--orphan-grace-period", "2")
    crash_once = (
        "if [ -f /data/once ]; then trap 'exit 0' TERM; sleep 3600 & wait;"
        " else touch /data/once; exit 1; fi"
    )
    keeper = pod_manifest(
        "keeper",
        agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["sh", "-c", crash_once],
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    sleeper = {
        "name": "c",
        "image": BUSYBOX,
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
    }
    goner = pod_manifest("goner", agent.name, [sleeper])
    late = pod_manifest("late", agent.name, [sleeper], grace=5)
    for manifest in (keeper, goner, late):
        await async_client.create_raw(manifest)
    before = await wait_pod(
        async_client,
        "keeper",
        lambda p: (
            condition(p, "Ready").get("status") == "True"
            and container_status(p, "c").get("restartCount") == 1
        ),
    )
    for name in ("goner", "late"):
        await wait_pod(async_client, name, lambda p: condition(p, "Ready").get("status") == "True")
    keeper_uid = before["metadata"]["uid"]
    keeper_ids = sorted(node_containers(agent.name, f"kumo.dev/pod-uid={keeper_uid}"))
    assert len(keeper_ids) == 2  # the attempt that crashed once and the running one
    running_id = container_status(before, "c")["containerID"].removeprefix("podman://")
    started_at = inspect(running_id)["State"]["StartedAt"]  # type: ignore[index]
    goner_uid = (await async_client.get_raw(POD, "goner"))["metadata"]["uid"]

    agent.kill()
    # Containers outlive their agent.
    assert inspect(running_id)["State"]["Running"] is True  # type: ignore[index]
    # While the agent is away: one pod is force-deleted (it vanishes from the API at
    # once, leaving its containers behind), another is deleted gracefully (the API
    # keeps it until an agent has stopped its containers).
    await async_client.delete_raw(POD, "goner", grace_period=0)
    await wait_gone(async_client, "goner", within=5)
    await async_client.delete_raw(POD, "late")
    await asyncio.sleep(0.5)
    pending = await async_client.get_raw(POD, "late")
    assert pending["metadata"]["deletionTimestamp"]
    assert node_containers(agent.name, f"kumo.dev/pod-uid={goner_uid}")

    agent.start()
    # The graceful deletion is finished by the new agent.
    await wait_gone(async_client, "late", within=15)

    async def orphans_removed() -> bool:
        return node_containers(agent.name, f"kumo.dev/pod-uid={goner_uid}") == []

    await eventually(orphans_removed, within=15)
    assert podman("pod", "ps", "-q", "--filter", f"label=kumo.dev/pod-uid={goner_uid}") == ""
    # The pod that still exists was adopted, not restarted.
    await asyncio.sleep(2.5)  # a few sync periods of the new agent
    after = await async_client.get_raw(POD, "keeper")
    assert sorted(node_containers(agent.name, f"kumo.dev/pod-uid={keeper_uid}")) == keeper_ids
    assert inspect(running_id)["State"]["StartedAt"] == started_at  # type: ignore[index]
    status = container_status(after, "c")
    assert status["restartCount"] == 1
    assert status["containerID"] == f"podman://{running_id}"
    assert status["ready"] is True
    # Ready never flipped while the agent was replaced.
    assert condition(after, "Ready") == condition(before, "Ready")


async def test_a_node_whose_lease_stops_is_marked_not_ready(
    agent_factory: AgentFactory,
    api_server_factory: ApiServerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = api_server_factory.start()
    agent = agent_factory.start(server=server)
    monkeypatch.setenv("KUMO_NODE_MONITOR_GRACE_PERIOD", "3")
    monkeypatch.setenv("KUMO_POD_EVICTION_TIMEOUT", "300")
    async with AsyncClient(server.client_config()) as client:
        await client.create_raw(
            pod_manifest(
                "web",
                agent.name,
                [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],
            )
        )
        await wait_pod(client, "web", lambda p: condition(p, "Ready").get("status") == "True")
        stop = asyncio.Event()
        controllers = asyncio.create_task(run_controllers(client, stop, names=["nodelifecycle"]))
        try:
            await asyncio.sleep(1.5)
            node = await client.get_raw(NODE, agent.name)
            assert node_condition(node, "Ready")["status"] == "True"  # the lease is fresh

            agent.kill()
            killed = time.monotonic()
            last_renewal = (await client.get_raw(LEASE, agent.name, "kube-node-lease"))["spec"][
                "renewTime"
            ]

            async def not_ready() -> dict[str, object] | None:
                current = await client.get_raw(NODE, agent.name)
                ready = node_condition(current, "Ready")
                return ready if ready.get("status") == "Unknown" else None

            ready = await eventually(not_ready, within=15)
            assert time.monotonic() - killed >= 2.0  # not before the grace period
            assert ready["reason"] == "NodeStatusUnknown"
            lease = await client.get_raw(LEASE, agent.name, "kube-node-lease")
            assert lease["spec"]["renewTime"] == last_renewal
            pod = await wait_pod(
                client, "web", lambda p: condition(p, "Ready").get("status") == "False"
            )
            assert condition(pod, "Ready")["status"] == "False"

            agent.start()  # back: the node is Ready again

            async def ready_again() -> bool:
                current = await client.get_raw(NODE, agent.name)
                return node_condition(current, "Ready").get("status") == "True"

            await eventually(ready_again, within=15)
            await wait_pod(client, "web", lambda p: condition(p, "Ready").get("status") == "True")
        finally:
            stop.set()
            await asyncio.wait_for(controllers, 15)


async def test_run_agent_in_process_as_kumo_up_does(
    async_client: AsyncClient, namespace: str, tmp_path: Path
) -> None:
    """``kumo up`` calls ``run_agent`` in its own process: it starts a private Podman
    service, registers the node, runs pods, and leaves them running when stopped."""
    from kumo.node import Agent, run_agent
    from tests.integration.agent.conftest import (
        ensure_busybox,
        remove_node_objects,
        require_podman,
        unmount_under,
    )

    require_podman()
    ensure_busybox()
    node = f"inproc-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    seen: list[Agent] = []

    async def service(agent: Agent, stopping: asyncio.Event) -> None:
        seen.append(agent)  # what the logs/exec server gets: the running agent
        await stopping.wait()

    task = asyncio.create_task(
        run_agent(
            async_client,
            stop,
            node_name=node,
            data_dir=tmp_path / "agent",
            kubelet_port=10251,
            services=[service],
        )
    )
    try:
        await async_client.create_raw(
            pod_manifest(
                "inproc",
                node,
                [
                    {
                        "name": "c",
                        "image": BUSYBOX,
                        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                    }
                ],
            )
        )
        pod = await wait_pod(
            async_client,
            "inproc",
            lambda p: condition(p, "Ready").get("status") == "True",
            within=40,
        )
        [agent] = seen
        found = await agent.find_container(namespace, "inproc")
        assert f"podman://{found.id}" == container_status(pod, "c")["containerID"]
        node_object = await async_client.get_raw(NODE, node)
        assert node_object["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10251
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert inspect(found.id)["State"]["Running"] is True  # type: ignore[index]
    remove_node_objects(node)
    unmount_under(tmp_path / "agent")
