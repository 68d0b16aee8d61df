"""The in-memory runtime keeps the ContainerRuntime contract (so agent unit tests built on
it test real behaviour): ownership by node label, lifecycle, stop semantics, logs, exec,
images, volumes, events."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kumo.node.runtime import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_NODE,
    LABEL_POD_UID,
    BindMount,
    Conflict,
    ContainerConfig,
    ContainerEvent,
    ContainerRuntime,
    ContainerStartError,
    ContainerState,
    ExecResult,
    ExecTimeout,
    ImageNotFound,
    ImagePullError,
    InvalidConfig,
    LogStream,
    NotFound,
    PortMapping,
    SandboxConfig,
    SandboxState,
    VolumeMount,
)
from kumo.node.runtime.fake import FakeBehavior, FakeHost, FakeRuntime, normalize_image_reference

UID = "6c0f8a0e-1111-4a2b-9c3d-000000000001"


async def sandbox(
    runtime: ContainerRuntime, name: str = "web", uid: str = UID, **kwargs: object
) -> str:
    status = await runtime.run_sandbox(SandboxConfig("default", name, uid, **kwargs))  # type: ignore[arg-type]
    return status.id


async def running(
    runtime: FakeRuntime, sandbox_id: str, name: str = "app", attempt: int = 0
) -> str:
    container_id = await runtime.create_container(
        sandbox_id, ContainerConfig(name=name, image="busybox", attempt=attempt)
    )
    await runtime.start_container(container_id)
    return container_id


def test_fake_is_a_container_runtime() -> None:
    assert isinstance(FakeRuntime(), ContainerRuntime)


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
        ("user/app:1", "docker.io/user/app:1"),
        ("localhost/kumo/busybox", "localhost/kumo/busybox:latest"),
        ("registry:5000/app", "registry:5000/app:latest"),
        ("quay.io/x/y@sha256:abc", "quay.io/x/y@sha256:abc"),
    ],
)
def test_short_names(short: str, full: str) -> None:
    assert normalize_image_reference(short) == full


async def test_sandbox_labels_ip_and_ports() -> None:
    runtime = FakeRuntime("node-a")
    status = await runtime.run_sandbox(
        SandboxConfig(
            "team",
            "web",
            UID,
            labels={"app": "web"},
            ports=(PortMapping(80, 30080, host_ip="127.0.0.1"),),
        )
    )
    assert status.state == SandboxState.READY
    assert status.ip
    assert status.hostname == "web"
    assert status.ports == (PortMapping(80, 30080, "tcp", "127.0.0.1"),)
    assert status.labels[LABEL_NODE] == "node-a"
    assert (status.pod_uid, status.pod_name, status.pod_namespace) == (UID, "web", "team")
    assert status.labels["app"] == "web"
    with pytest.raises(Conflict):
        await runtime.run_sandbox(SandboxConfig("team", "web", UID))
    with pytest.raises(Conflict, match="port"):
        await runtime.run_sandbox(
            SandboxConfig(
                "team", "other", UID + "x", ports=(PortMapping(81, 30080, host_ip="127.0.0.1"),)
            )
        )


async def test_create_needs_local_image_and_existing_sandbox() -> None:
    runtime = FakeRuntime()
    sandbox_id = await sandbox(runtime)
    with pytest.raises(ImageNotFound):
        await runtime.create_container(sandbox_id, ContainerConfig(name="app", image="nginx:1.27"))
    with pytest.raises(NotFound):
        await runtime.create_container(
            "no-such-sandbox", ContainerConfig(name="app", image="busybox")
        )
    with pytest.raises(InvalidConfig):
        await runtime.create_container(
            sandbox_id,
            ContainerConfig(name="app", image="busybox", labels={LABEL_POD_UID: "forged"}),
        )
    with pytest.raises(InvalidConfig, match="does not exist"):
        await runtime.create_container(
            sandbox_id,
            ContainerConfig(
                name="app", image="busybox", mounts=(BindMount("/no/such/path", "/x"),)
            ),
        )


async def test_container_lifecycle_and_labels() -> None:
    runtime = FakeRuntime()
    sandbox_id = await sandbox(runtime)
    container_id = await runtime.create_container(
        sandbox_id, ContainerConfig(name="app", image="busybox", attempt=2, labels={"team": "a"})
    )
    status = await runtime.container_status(container_id)
    assert status.state == ContainerState.CREATED
    assert status.exit_code is None and status.started_at is None
    assert status.labels[LABEL_CONTAINER_NAME] == "app"
    assert status.labels[LABEL_ATTEMPT] == "2" and status.attempt == 2
    assert status.labels[LABEL_POD_UID] == UID and status.pod_uid == UID
    assert status.labels["team"] == "a"
    with pytest.raises(Conflict):
        await runtime.create_container(
            sandbox_id, ContainerConfig(name="app", image="busybox", attempt=2)
        )

    await runtime.start_container(container_id)
    status = await runtime.container_status(container_id)
    assert (
        status.state == ContainerState.RUNNING
        and status.pid is not None
        and status.started_at is not None
    )
    await runtime.start_container(container_id)  # no-op

    with pytest.raises(Conflict):
        await runtime.remove_container(container_id)
    await runtime.exit_container(container_id, 3)
    assert await runtime.wait_container(container_id) == 3
    status = await runtime.container_status(container_id)
    assert (
        status.state == ContainerState.EXITED
        and status.exit_code == 3
        and status.finished_at is not None
    )
    assert status.pid is None and not status.oom_killed
    with pytest.raises(Conflict):
        await runtime.kill_container(container_id)
    await runtime.remove_container(container_id)
    await runtime.remove_container(container_id)  # no-op
    with pytest.raises(NotFound):
        await runtime.container_status(container_id)


async def test_behaviors_exit_oom_and_start_error() -> None:
    runtime = FakeRuntime()
    runtime.behaviors["job"] = FakeBehavior(exit_code=0, output=("done",))
    runtime.behaviors["hog"] = FakeBehavior(oom_on_start=True)
    runtime.behaviors["broken"] = FakeBehavior(
        start_error='exec: "nope": executable file not found in $PATH'
    )
    sandbox_id = await sandbox(runtime)
    job = await running(runtime, sandbox_id, "job")
    assert (await runtime.container_status(job)).exit_code == 0
    assert [line.text async for line in runtime.logs(job)] == ["done"]
    hog = await running(runtime, sandbox_id, "hog")
    status = await runtime.container_status(hog)
    assert status.oom_killed and status.exit_code == 137
    broken = await runtime.create_container(
        sandbox_id, ContainerConfig(name="broken", image="busybox")
    )
    with pytest.raises(ContainerStartError, match="executable file not found"):
        await runtime.start_container(broken)
    status = await runtime.container_status(broken)
    assert (
        status.state == ContainerState.CREATED
        and status.exit_code is None
        and "not found" in status.error
    )


async def test_stop_sends_stop_signal_then_sigkill_after_grace_period() -> None:
    runtime = FakeRuntime()
    runtime.behaviors["polite"] = FakeBehavior(stop_exit_code=0)
    runtime.behaviors["stubborn"] = FakeBehavior(ignores_stop_signal=True)
    sandbox_id = await sandbox(runtime)
    polite = await running(runtime, sandbox_id, "polite")
    stubborn = await running(runtime, sandbox_id, "stubborn")

    started = time.monotonic()
    await runtime.stop_container(polite, grace_period=5)
    assert time.monotonic() - started < 1
    assert runtime.signals[polite] == ["SIGTERM"]
    assert (await runtime.container_status(polite)).exit_code == 0

    started = time.monotonic()
    await runtime.stop_container(stubborn, grace_period=1)
    assert time.monotonic() - started >= 0.9
    assert runtime.signals[stubborn] == ["SIGTERM", "SIGKILL"]
    assert (await runtime.container_status(stubborn)).exit_code == 137
    await runtime.stop_container(stubborn, grace_period=1)  # no-op once exited
    assert runtime.signals[stubborn] == ["SIGTERM", "SIGKILL"]


async def test_custom_stop_signal() -> None:
    runtime = FakeRuntime()
    sandbox_id = await sandbox(runtime)
    container_id = await runtime.create_container(
        sandbox_id, ContainerConfig(name="app", image="busybox", stop_signal="SIGQUIT")
    )
    await runtime.start_container(container_id)
    await runtime.stop_container(container_id, grace_period=1)
    assert runtime.signals[container_id] == ["SIGQUIT"]


async def test_nodes_sharing_a_host_are_isolated_and_restarts_adopt() -> None:
    host = FakeHost()
    node_a = FakeRuntime("node-a", host=host)
    node_b = FakeRuntime("node-b", host=host)
    sandbox_a = await sandbox(node_a, "web", UID)
    container_a = await running(node_a, sandbox_a)
    sandbox_b = await sandbox(node_b, "web", UID[:-1] + "2")
    await running(node_b, sandbox_b)

    assert [s.id for s in await node_a.list_sandboxes()] == [sandbox_a]
    assert [c.id for c in await node_a.list_containers()] == [container_a]
    with pytest.raises(NotFound):
        await node_b.container_status(container_a)
    with pytest.raises(NotFound):
        await node_b.stop_container(container_a, 0)
    await node_b.remove_sandbox(sandbox_a)  # not its own: no-op
    assert (await node_a.container_status(container_a)).state == ContainerState.RUNNING

    restarted = FakeRuntime("node-a", host=host)
    adopted = await restarted.list_containers({LABEL_POD_UID: UID})
    assert [(c.id, c.state, c.container_name, c.attempt) for c in adopted] == [
        (container_a, ContainerState.RUNNING, "app", 0)
    ]
    assert await restarted.list_containers({LABEL_POD_UID: "someone-else"}) == []
    assert [c.id for c in await restarted.list_containers(sandbox_id=sandbox_a)] == [container_a]


async def test_remove_sandbox_removes_its_containers() -> None:
    runtime = FakeRuntime()
    runtime.behaviors["stubborn"] = FakeBehavior(ignores_stop_signal=True)
    sandbox_id = await sandbox(runtime)
    first = await running(runtime, sandbox_id, "app")
    second = await running(runtime, sandbox_id, "stubborn")
    await runtime.remove_sandbox(sandbox_id, grace_period=1)
    assert runtime.signals[first] == ["SIGTERM"]
    assert runtime.signals[second] == ["SIGTERM", "SIGKILL"]
    assert await runtime.list_containers() == []
    assert await runtime.list_sandboxes() == []
    await runtime.remove_sandbox(sandbox_id)  # no-op


async def test_logs_tail_since_and_follow() -> None:
    runtime = FakeRuntime()
    container_id = await running(runtime, await sandbox(runtime))
    await runtime.write_log(container_id, "one\ntwo")
    await asyncio.sleep(0.01)
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await runtime.write_log(container_id, "three", LogStream.STDERR)
    assert [line.text async for line in runtime.logs(container_id)] == ["one", "two", "three"]
    assert [line.text async for line in runtime.logs(container_id, tail=2)] == ["two", "three"]
    assert [line.text async for line in runtime.logs(container_id, tail=0)] == []
    since = [line async for line in runtime.logs(container_id, since=cutoff)]
    assert [(line.text, line.stream) for line in since] == [("three", LogStream.STDERR)]

    seen: list[str] = []

    async def follow() -> None:
        async for line in runtime.logs(container_id, tail=1, follow=True):
            seen.append(line.text)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    await runtime.write_log(container_id, "four")
    await runtime.exit_container(container_id, 0)
    await asyncio.wait_for(task, 1)
    assert seen == ["three", "four"]


async def test_exec() -> None:
    runtime = FakeRuntime()
    runtime.behaviors["app"] = FakeBehavior(
        exec_results={("cat", "/ready"): ExecResult(1, b"", b"no such file")}
    )
    container_id = await running(runtime, await sandbox(runtime))
    assert (await runtime.exec(container_id, ["cat", "/ready"])).exit_code == 1
    assert await runtime.exec(container_id, ["true"]) == ExecResult(0, b"", b"")

    async def slow(status: object, command: tuple[str, ...], stdin: bytes) -> ExecResult:
        await asyncio.sleep(5)
        return ExecResult(0, b"", b"")

    runtime.exec_handler = slow
    with pytest.raises(ExecTimeout):
        await runtime.exec(container_id, ["sleep", "5"], timeout=0.05)
    runtime.exec_handler = lambda status, command, stdin: ExecResult(0, stdin.upper() * 3, b"")
    result = await runtime.exec(container_id, ["tr"], stdin=b"ab", max_output=4)
    assert result.stdout == b"ABAB" and result.truncated
    async with await runtime.open_exec(container_id, ["tr"]) as session:
        await session.write(b"hi")
        await session.close_stdin()
        chunks = [chunk async for chunk in session.output()]
        assert chunks == [(LogStream.STDOUT, b"HIHIHI")]
        assert await session.wait() == 0
    assert runtime.exec_calls[0] == (container_id, ("cat", "/ready"))
    await runtime.exit_container(container_id, 0)
    with pytest.raises(Conflict):
        await runtime.exec(container_id, ["true"])


async def test_images_pull_and_tags(tmp_path: Path) -> None:
    host = FakeHost(images=("docker.io/library/busybox:latest",), registry=("nginx:1.27",))
    runtime = FakeRuntime(host=host)
    assert await runtime.image_exists("busybox")
    assert await runtime.image_exists("docker.io/library/busybox")
    assert not await runtime.image_exists("nginx:1.27")
    with pytest.raises(ImagePullError) as failure:
        await runtime.pull_image("docker.io/library/missing:1")
    assert "no registry is reachable" in failure.value.pull_reason
    host.pull_errors[normalize_image_reference("private/app")] = (
        "unauthorized: authentication required"
    )
    with pytest.raises(ImagePullError, match="unauthorized"):
        await runtime.pull_image("private/app")
    pulled = await runtime.pull_image("nginx:1.27")
    assert pulled.repo_tags == ("docker.io/library/nginx:1.27",)
    await runtime.tag_image("nginx:1.27", "localhost/web:1")
    assert (await runtime.inspect_image("localhost/web:1")).id == pulled.id
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(b"x" * 10)
    imported = await runtime.import_image(
        tarball, "localhost/kumo/thing:1", changes=["USER 1000", "LABEL a=b"]
    )
    assert imported.user == "1000" and imported.labels == {"a": "b"}
    assert all(image.user is None for image in await runtime.list_images())
    sandbox_id = await sandbox(runtime)
    await runtime.create_container(sandbox_id, ContainerConfig(name="app", image="nginx:1.27"))
    await runtime.remove_image("localhost/web:1")  # just that name
    assert await runtime.image_exists("nginx:1.27")
    with pytest.raises(Conflict):
        await runtime.remove_image("nginx:1.27")
    await runtime.remove_image("no-such-image")  # no-op


async def test_volumes() -> None:
    host = FakeHost()
    runtime = FakeRuntime("node-a", host=host)
    volume = await runtime.create_volume("data", {"kumo.dev/claim": "db"})
    assert volume.labels[LABEL_NODE] == "node-a"
    assert (await runtime.create_volume("data")).name == "data"  # idempotent
    with pytest.raises(Conflict):
        await FakeRuntime("node-b", host=host).create_volume("data")
    assert [v.name for v in await runtime.list_volumes({"kumo.dev/claim": "db"})] == ["data"]
    assert await FakeRuntime("node-b", host=host).list_volumes() == []
    sandbox_id = await sandbox(runtime)
    await runtime.create_container(
        sandbox_id,
        ContainerConfig(name="db", image="busybox", mounts=(VolumeMount("data", "/data"),)),
    )
    with pytest.raises(Conflict):
        await runtime.remove_volume("data")
    await runtime.remove_volume("data", force=True)
    assert await runtime.list_volumes() == []


async def test_events_only_for_own_node() -> None:
    host = FakeHost()
    mine = FakeRuntime("node-a", host=host)
    other = FakeRuntime("node-b", host=host)
    events: list[ContainerEvent] = []

    async def collect() -> None:
        async for event in mine.events(since=datetime.now(UTC) - timedelta(seconds=1)):
            events.append(event)
            if event.action == "died":
                return

    task = asyncio.create_task(collect())
    await asyncio.sleep(0)
    await running(other, await sandbox(other, "x", UID[:-1] + "9"))
    container_id = await running(mine, await sandbox(mine))
    await mine.exit_container(container_id, 2)
    await asyncio.wait_for(task, 1)
    assert [(e.action, e.container_id) for e in events] == [
        ("create", container_id),
        ("start", container_id),
        ("died", container_id),
    ]
    assert events[-1].exit_code == 2


async def test_stats_only_for_running_containers() -> None:
    runtime = FakeRuntime()
    sandbox_id = await sandbox(runtime)
    busy = await running(runtime, sandbox_id, "busy")
    done = await running(runtime, sandbox_id, "done")
    await runtime.exit_container(done, 0)
    runtime.set_stats(busy, cpu_usage_ns=5_000_000, memory_bytes=1 << 20)
    stats = await runtime.container_stats()
    assert [(s.container_id, s.cpu_usage_ns, s.memory_working_set_bytes) for s in stats] == [
        (busy, 5_000_000, 1 << 20)
    ]
    assert await runtime.container_stats([done]) == []
