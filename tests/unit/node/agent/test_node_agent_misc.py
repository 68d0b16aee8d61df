"""Node status, events, housekeeping of orphans, pod bookkeeping and the CLI."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kumo.cli.agent_commands import _client_config
from kumo.cli.agent_commands import agent as agent_command
from kumo.client import AsyncClient, ClientConfig
from kumo.node.agent import Agent
from kumo.node.api import EventRecorder
from kumo.node.config import AgentOptions
from kumo.node.node_status import HostFacts, NodeStatusReporter, node_capacity, read_meminfo_bytes
from kumo.node.pod_worker import PodWorker
from kumo.node.runtime import ContainerConfig, SandboxConfig
from kumo.node.runtime.fake import FakeRuntime
from tests.unit.node.agent.conftest import make_pod

FACTS = HostFacts(
    cpu_millis=4000,
    memory_bytes=8 * 1024**3,
    hostname="box",
    kernel_version="6.1.0",
    os_image="Debian GNU/Linux 12 (bookworm)",
    architecture="amd64",
    operating_system="linux",
    machine_id="m1",
    boot_id="b1",
)


def unused_client() -> AsyncClient:
    """A client for objects whose tested parts never call the API."""
    return AsyncClient(ClientConfig(server="https://127.0.0.1:9", token="t"))


def test_meminfo_and_capacity(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684092 kB\nMemFree:  1 kB\n")
    assert read_meminfo_bytes(meminfo) == 24684092 * 1024
    options = AgentOptions.build(node_name="n", reserved="cpu=100m,memory=256Mi", max_pods=30)
    capacity, allocatable = node_capacity(FACTS, options)
    assert capacity == {"cpu": "4", "memory": "8388608Ki", "pods": "30"}
    assert allocatable == {"cpu": "3900m", "memory": f"{8388608 - 262144}Ki", "pods": "30"}


async def test_node_status_fields() -> None:
    runtime = FakeRuntime("n")
    runtime.host.add_image("docker.io/library/python:3.11", size=50_000_000)
    options = AgentOptions.build(
        node_name="n", address="10.0.0.5", kubelet_port=10255, node_labels="x=y"
    )
    moments = iter(
        [
            datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
            datetime.datetime(2024, 1, 1, 0, 0, 10, tzinfo=datetime.UTC),
        ]
    )
    reporter = NodeStatusReporter(
        unused_client(), runtime, options, FACTS, clock=lambda: next(moments)
    )
    assert reporter.labels() == {
        "kubernetes.io/hostname": "n",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "x": "y",
    }
    status = await reporter.status()
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "Hostname", "address": "box"},
    ]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10255}}
    assert status["nodeInfo"]["containerRuntimeVersion"] == "fake://1.0.0"
    assert status["nodeInfo"]["kubeletVersion"] == "v0.1.0"
    assert status["images"][0]["names"][0] == "docker.io/library/python:3.11"  # largest first
    ready = status["conditions"][-1]
    assert ready["type"] == "Ready" and ready["status"] == "True"
    assert ready["lastHeartbeatTime"] == "2024-01-01T00:00:00Z"
    later = await reporter.status()
    ready_later = later["conditions"][-1]
    assert ready_later["lastHeartbeatTime"] == "2024-01-01T00:00:10Z"
    assert ready_later["lastTransitionTime"] == "2024-01-01T00:00:00Z"  # still the same Ready
    assert {c["type"] for c in later["conditions"]} == {
        "Ready",
        "MemoryPressure",
        "DiskPressure",
        "PIDPressure",
    }


class RecordingClient:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []

    async def create_raw(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        self.created.append(obj)
        return obj

    async def patch_raw(
        self, info: object, name: str, patch: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        self.patched.append((name, patch))
        return patch


async def test_event_recorder_aggregates_repeats() -> None:
    client = RecordingClient()
    recorder = EventRecorder(client, "node-1")  # type: ignore[arg-type]
    recorder.start()
    involved = {
        "kind": "Pod",
        "name": "web",
        "namespace": "ns",
        "uid": "u1",
        "fieldPath": "spec.containers{c}",
    }
    recorder.record(involved, "Warning", "BackOff", "Back-off restarting failed container c")
    recorder.record(involved, "Warning", "BackOff", "Back-off restarting failed container c")
    recorder.record(involved, "Normal", "Started", "Started container c")
    await recorder.stop()
    assert [e["reason"] for e in client.created] == ["BackOff", "Started"]
    first = client.created[0]
    assert first["involvedObject"] == involved
    assert first["source"] == {"component": "kubelet", "host": "node-1"}
    assert first["type"] == "Warning" and first["count"] == 1
    assert first["metadata"]["name"].startswith("web.")
    [(name, patch)] = client.patched
    assert name == first["metadata"]["name"] and patch["count"] == 2


async def test_housekeeping_removes_what_no_pod_owns(tmp_path: Path) -> None:
    runtime = FakeRuntime("n")
    options = AgentOptions.build(node_name="n", data_dir=tmp_path, orphan_grace_period=0.3)
    agent = Agent(unused_client(), options, runtime=runtime)
    owned_pod = make_pod([{"name": "c", "image": "busybox"}], uid="owned-uid")
    for uid in ("owned-uid", "orphan-uid"):
        sandbox = await runtime.run_sandbox(SandboxConfig("ns", f"p-{uid[:5]}", uid))
        await runtime.create_container(sandbox.id, ContainerConfig("c", "busybox"))
        (options.pods_dir / uid).mkdir(parents=True)
    agent.workers["owned-uid"] = PodWorker(agent.context, owned_pod)  # not started
    await agent.housekeeping()  # the pod list is not known yet: nothing happens
    assert len(await runtime.list_sandboxes()) == 2
    agent.source.synced.set()
    await agent.housekeeping()  # first sighting of the orphan: grace period starts
    assert len(await runtime.list_sandboxes()) == 2
    await asyncio.sleep(0.35)
    await agent.housekeeping()
    assert [s.pod_uid for s in await runtime.list_sandboxes()] == ["owned-uid"]
    assert {c.pod_uid for c in await runtime.list_containers()} == {"owned-uid"}
    assert sorted(p.name for p in options.pods_dir.iterdir()) == ["owned-uid"]
    await agent.client.close()


async def test_pod_bookkeeping_ignores_finished_pods(tmp_path: Path) -> None:
    agent = Agent(
        unused_client(),
        AgentOptions.build(node_name="n", data_dir=tmp_path),
        runtime=FakeRuntime("n"),
    )
    started: list[str] = []
    original = PodWorker.start
    PodWorker.start = lambda self: started.append(self.uid)  # type: ignore[method-assign]
    try:
        pod = make_pod([{"name": "c", "image": "busybox"}], uid="u1")
        agent._on_sync([pod])
        assert started == ["u1"] and agent.pod("ns", "p") is pod
        other = make_pod([{"name": "c", "image": "busybox"}], uid="u2", name="q")
        agent._on_sync([other])  # u1 disappeared from the list while unwatched
        assert agent.workers["u1"].deleted and not agent.workers["u2"].deleted
        agent._worker_finished("u1")
        agent._on_event("MODIFIED", pod)  # a late event for a pod that is done
        assert "u1" not in agent.workers and started == ["u1", "u2"]
        agent._on_event("DELETED", other)
        assert agent.workers["u2"].deleted
    finally:
        PodWorker.start = original  # type: ignore[method-assign]
        await agent.client.close()


def test_cli_client_config(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("secret-token\n")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    config = _client_config("https://h:7443", None, token_file, ca, False, None)
    assert config.server == "https://h:7443" and config.token == "secret-token"
    assert config.ca_data == b"-----BEGIN CERTIFICATE-----\n"
    import click

    with pytest.raises(click.UsageError, match="--server needs --token"):
        _client_config("https://h:7443", None, None, None, False, None)
    with pytest.raises(click.UsageError, match="not both"):
        _client_config("https://h:7443", "t", token_file, None, False, None)


def test_cli_rejects_bad_flags_before_connecting(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        agent_command, ["--server", "https://127.0.0.1:9", "--token", "t", "--port-range", "9-1"]
    )
    assert result.exit_code == 2
    assert "invalid port range" in result.output
    result = runner.invoke(agent_command, [], env={"KUMOCONFIG": str(tmp_path / "none")})
    assert result.exit_code == 2
    assert "no client configuration" in result.output and "--server" in result.output
