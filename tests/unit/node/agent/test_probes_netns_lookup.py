"""Probe workers (thresholds, startup gating), connections from another network
namespace, and container lookup for logs / exec."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from kumo.model.core import Probe
from kumo.node import netns
from kumo.node.lookup import ContainerLookupError, find_container
from kumo.node.probes import ProbeKind, ProbeManager, ProbeWorker, resolve_port, run_handler
from kumo.node.runtime import ContainerConfig, ContainerStatus, ExecResult, SandboxConfig
from kumo.node.runtime.fake import FakeRuntime
from tests.unit.node.agent.conftest import make_pod


async def running_container(runtime: FakeRuntime, name: str = "c") -> str:
    sandbox = await runtime.run_sandbox(SandboxConfig("ns", "p", "uid-1"))
    container_id = await runtime.create_container(sandbox.id, ContainerConfig(name, "busybox"))
    await runtime.start_container(container_id)
    return container_id


def exec_probe(command: str, **fields: int) -> Probe:
    probe = Probe.model_validate({"exec": {"command": [command]}, **fields})
    probe.apply_defaults()
    return probe


class Script:
    """Exec results by command, from a list of exit codes consumed in order."""

    def __init__(self, **codes: list[int]) -> None:
        self.codes = codes

    def __call__(
        self, status: ContainerStatus, command: tuple[str, ...], stdin: bytes
    ) -> ExecResult:
        code = self.codes[command[0]].pop(0) if self.codes[command[0]] else 0
        return ExecResult(code, b"", b"boom" if code else b"")


async def test_readiness_thresholds() -> None:
    runtime = FakeRuntime()
    container_id = await running_container(runtime)
    runtime.exec_handler = Script(check=[0, 0, 1, 0, 1, 1, 0])
    changes: list[bool] = []
    failures: list[str] = []
    container = make_pod([{"name": "c", "image": "busybox"}]).spec.containers[0]
    worker = ProbeWorker(
        ProbeKind.READINESS,
        exec_probe("check", successThreshold=2, failureThreshold=2),
        container,
        container_id=container_id,
        pid=None,
        started_at=time.time(),
        runtime=runtime,
        on_change=lambda: changes.append(worker.result),
        on_failure=lambda kind, message: failures.append(message),
    )
    seen = []
    for _ in range(7):
        await worker.probe_once()
        seen.append(worker.result)
    assert seen == [False, True, True, True, True, False, False]
    assert changes == [True, False]
    assert failures == ["boom", "boom", "boom"]
    assert not worker.failed  # readiness never asks for a restart


async def test_liveness_failure_asks_for_a_restart() -> None:
    runtime = FakeRuntime()
    container_id = await running_container(runtime)
    runtime.exec_handler = Script(alive=[1, 0, 1, 1, 1])
    container = make_pod([{"name": "c", "image": "busybox"}]).spec.containers[0]
    worker = ProbeWorker(
        ProbeKind.LIVENESS,
        exec_probe("alive", failureThreshold=3),
        container,
        container_id=container_id,
        pid=None,
        started_at=time.time(),
        runtime=runtime,
        on_change=lambda: None,
        on_failure=lambda kind, message: None,
    )
    assert worker.result is True  # liveness starts as passing
    for _ in range(4):
        await worker.probe_once()
        assert not worker.failed
    await worker.probe_once()
    assert worker.failed and worker.done


async def test_startup_probe_gates_liveness_and_readiness() -> None:
    runtime = FakeRuntime()
    container_id = await running_container(runtime)
    runtime.exec_handler = Script(start=[1, 1, 0], live=[], ready=[])
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "startupProbe": {
                    "exec": {"command": ["start"]},
                    "periodSeconds": 1,
                    "failureThreshold": 5,
                },
                "livenessProbe": {"exec": {"command": ["live"]}, "periodSeconds": 1},
                "readinessProbe": {"exec": {"command": ["ready"]}, "periodSeconds": 1},
            }
        ]
    )
    changed = asyncio.Event()
    manager = ProbeManager(runtime, on_change=changed.set, on_failure=lambda c, k, m: None)
    manager.ensure(pod.spec.containers[0], container_id, None, time.time())
    try:
        assert not manager.started(container_id) and not manager.ready(container_id)
        await asyncio.sleep(1.5)
        commands = [command[0] for _, command in runtime.exec_calls]
        assert set(commands) == {"start"}  # nothing else runs before startup succeeded
        deadline = time.monotonic() + 5
        while not manager.ready(container_id):
            assert time.monotonic() < deadline, runtime.exec_calls
            await asyncio.sleep(0.05)
        assert manager.started(container_id)
        assert {"live", "ready"} <= {command[0] for _, command in runtime.exec_calls}
        assert manager.restart_reason(container_id) is None
    finally:
        await manager.stop()
    assert not manager.has(container_id)


async def test_seeded_state_survives_an_agent_restart() -> None:
    runtime = FakeRuntime()
    container_id = await running_container(runtime)
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "startupProbe": {"exec": {"command": ["start"]}, "initialDelaySeconds": 60},
                "readinessProbe": {"exec": {"command": ["ready"]}, "initialDelaySeconds": 60},
            }
        ]
    )
    manager = ProbeManager(runtime, on_change=lambda: None, on_failure=lambda c, k, m: None)
    manager.ensure(
        pod.spec.containers[0], container_id, None, time.time(), seed_ready=True, seed_started=True
    )
    try:
        assert manager.started(container_id) and manager.ready(container_id)
    finally:
        await manager.stop()


async def test_handlers_exec_timeout_and_named_ports() -> None:
    runtime = FakeRuntime()
    container_id = await running_container(runtime)

    async def slow(status: ContainerStatus, command: tuple[str, ...], stdin: bytes) -> ExecResult:
        await asyncio.sleep(5)
        return ExecResult(0, b"", b"")

    runtime.exec_handler = slow
    container = make_pod(
        [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]
    ).spec.containers[0]
    outcome = await run_handler(
        runtime, container, exec_probe("slow"), container_id=container_id, pid=None, timeout=0.1
    )
    assert not outcome.ok and "timed out" in outcome.message
    assert resolve_port("http", container) == 8080 and resolve_port(9090, container) == 9090
    with pytest.raises(ValueError, match="no port named 'grpc'"):
        resolve_port("grpc", container)
    grpc = Probe.model_validate({"grpc": {"port": 1}})
    outcome = await run_handler(
        runtime, container, grpc, container_id=container_id, pid=None, timeout=1
    )
    assert not outcome.ok and "not supported" in outcome.message


# ---- network namespaces ---------------------------------------------------------------------


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ")[1]
        status = b"200 OK" if path == b"/ok" else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nhi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port


@pytest.fixture
def other_netns() -> Iterator[int]:
    """A process in a network namespace of its own (created by this test)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        message = "needs root and unshare(1) (util-linux)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    process = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{process.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield process.pid
    finally:
        process.kill()
        process.wait()


async def test_http_get_and_tcp_connect(http_server: int) -> None:
    ok = await netns.http_get(None, "127.0.0.1", http_server, "/ok")
    assert ok.status == 200 and ok.body == b"hi"
    # the same from "inside" our own namespace, through setns
    inside = await netns.http_get(os.getpid(), "127.0.0.1", http_server, "/down")
    assert inside.status == 503
    await netns.tcp_connect(os.getpid(), "127.0.0.1", http_server)


async def test_sockets_from_another_namespace_do_not_see_ours(
    http_server: int, other_netns: int
) -> None:
    sock = await netns.socket_in_netns(other_netns)
    sock.close()
    # Our listener on 127.0.0.1 does not exist in the other namespace (its loopback is
    # even down), so the connection fails there while it works here.
    with pytest.raises(OSError):
        await netns.tcp_connect(other_netns, "127.0.0.1", http_server)
    await netns.tcp_connect(None, "127.0.0.1", http_server)
    assert os.readlink("/proc/thread-self/ns/net") == os.readlink("/proc/self/ns/net")


async def test_entering_a_missing_namespace_fails_clearly() -> None:
    with pytest.raises(netns.NetnsError, match="network namespace of pid 999999999"):
        await netns.socket_in_netns(999_999_999)


async def test_probe_messages_for_refused_connections(http_server: int) -> None:
    runtime = FakeRuntime()
    container = make_pod([{"name": "c", "image": "busybox"}]).spec.containers[0]
    # a port that was just free and has no listener: bound, then closed without listening
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        closed = probe_socket.getsockname()[1]
    assert closed != http_server
    probe = Probe.model_validate({"tcpSocket": {"port": closed}})
    outcome = await run_handler(
        runtime, container, probe, container_id="x", pid=os.getpid(), timeout=1
    )
    assert outcome == type(outcome)(
        False, f"dial tcp 127.0.0.1:{closed}: connect: connection refused"
    )
    probe = Probe.model_validate({"httpGet": {"port": http_server, "path": "/down"}})
    outcome = await run_handler(
        runtime, container, probe, container_id="x", pid=os.getpid(), timeout=1
    )
    assert outcome.message == "HTTP probe failed with statuscode: 503"
    probe = Probe.model_validate({"httpGet": {"port": http_server, "path": "/ok"}})
    assert (
        await run_handler(runtime, container, probe, container_id="x", pid=os.getpid(), timeout=1)
    ).ok


# ---- lookup -------------------------------------------------------------------------------------


async def test_find_container_by_name_attempt_and_previous() -> None:
    runtime = FakeRuntime()
    sandbox = await runtime.run_sandbox(SandboxConfig("ns", "web", "uid-1"))
    ids = {}
    for name, attempt in (("app", 0), ("app", 1), ("app", 2), ("side", 0)):
        ids[(name, attempt)] = await runtime.create_container(
            sandbox.id, ContainerConfig(name, "busybox", attempt=attempt)
        )
    assert (await find_container(runtime, "ns", "web", "app")).id == ids[("app", 2)]
    assert (await find_container(runtime, "ns", "web", "app", previous=True)).id == ids[("app", 1)]
    assert (await find_container(runtime, "ns", "web", "app", attempt=0)).id == ids[("app", 0)]
    found = await find_container(runtime, "ns", "web", default_container="side")
    assert found.id == ids[("side", 0)]
    with pytest.raises(ContainerLookupError) as caught:
        await find_container(runtime, "ns", "web")
    assert caught.value.choices == ("app", "side")
    assert "choose one of: [app side]" in caught.value.message
    with pytest.raises(ContainerLookupError, match="previous terminated container"):
        await find_container(runtime, "ns", "web", "side", previous=True)
    with pytest.raises(ContainerLookupError, match='pod "db" has no containers'):
        await find_container(runtime, "ns", "db", "app")
    with pytest.raises(ContainerLookupError, match='container "nope"'):
        await find_container(runtime, "ns", "web", "nope")
