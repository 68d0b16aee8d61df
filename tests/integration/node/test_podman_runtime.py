"""PodmanRuntime against real Podman: real pods, real containers, real cgroups."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from kumo.node.images import bootstrap
from kumo.node.runtime import (
    LABEL_NODE,
    LABEL_POD_UID,
    BindMount,
    Conflict,
    ContainerConfig,
    ContainerEvent,
    ContainerStartError,
    ContainerState,
    DNSConfig,
    ExecTimeout,
    HostAlias,
    ImageNotFound,
    ImagePullError,
    LogStream,
    NotFound,
    PortMapping,
    Resources,
    SandboxState,
    SecurityConfig,
    VolumeMount,
)
from kumo.node.runtime.podman import PodmanRuntime
from tests.integration.node.conftest import (
    BUSYBOX,
    collect_logs,
    eventually,
    podman_cli,
    release_private_storage,
    remove_everything,
    run_sandbox,
    start,
    wait_exited,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SLEEP = ("sleep", "300")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_containers_of_a_sandbox_share_localhost(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "web")
    assert sandbox.state == SandboxState.READY
    assert sandbox.ip and sandbox.ip.startswith("10.88.")
    server = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="server",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                "mkdir /www && echo hello-from-server > /www/index.html && exec httpd -f -p 8080 -h /www",
            ),
        ),
    )
    client = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="client",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                "for i in $(seq 50); do wget -q -O- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1",
            ),
        ),
    )
    assert await wait_exited(runtime, client) == 0
    assert [line.text for line in await collect_logs(runtime, client)] == ["hello-from-server"]
    assert (await runtime.container_status(server)).state == ContainerState.RUNNING


async def test_published_port_is_reachable_on_127_0_0_1(runtime: PodmanRuntime) -> None:
    port = free_port()
    sandbox = await run_sandbox(
        runtime, "published", ports=(PortMapping(8080, port, host_ip="127.0.0.1"),)
    )
    assert sandbox.ports == (PortMapping(8080, port, "tcp", "127.0.0.1"),)
    await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="server",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                "mkdir /www && echo published > /www/index.html && exec httpd -f -p 8080 -h /www",
            ),
        ),
    )
    body = ""

    async def answered() -> bool:
        nonlocal body
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                response = await http.get(f"http://127.0.0.1:{port}/")
        except httpx.HTTPError:
            return False
        body = response.text
        return response.status_code == 200

    await eventually(answered, what=f"http://127.0.0.1:{port}/")
    assert body == "published\n"
    with pytest.raises(Conflict):
        await run_sandbox(runtime, "clash", ports=(PortMapping(80, port, host_ip="127.0.0.1"),))
    assert [s.pod_name for s in await runtime.list_sandboxes()] == ["published"]


async def test_sandbox_hostname_hosts_and_dns(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(
        runtime,
        "named",
        hostname="my-host",
        host_aliases=(HostAlias("10.1.2.3", ("db.example", "cache.example")),),
        dns=DNSConfig(
            servers=("10.0.0.10",), searches=("test.svc.cluster.local",), options=("ndots:5",)
        ),
    )
    container = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="c",
            image=BUSYBOX,
            command=("sh", "-c", "hostname; cat /etc/hosts /etc/resolv.conf"),
        ),
    )
    assert await wait_exited(runtime, container) == 0
    text = "\n".join(line.text for line in await collect_logs(runtime, container))
    assert text.splitlines()[0] == "my-host"
    assert "10.1.2.3\tdb.example" in text and "10.1.2.3\tcache.example" in text
    assert "nameserver 10.0.0.10" in text
    assert "search test.svc.cluster.local" in text
    assert "options ndots:5" in text


async def test_env_working_dir_and_read_only_bind_mount(
    runtime: PodmanRuntime, tmp_path: Path
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "settings.txt").write_text("colour=blue\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sandbox = await run_sandbox(runtime, "env")
    container = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="reader",
            image=BUSYBOX,
            command=("sh", "-c"),
            args=(
                'echo "greeting=$GREETING"; echo "empty=[$EMPTY]"; pwd; cat /config/settings.txt; '
                "(echo changed > /config/settings.txt) 2>/dev/null && echo config-writable || echo config-read-only; "
                "echo from-container > /scratch/out.txt && echo scratch-writable",
            ),
            env={"GREETING": "hello world", "EMPTY": ""},
            working_dir="/tmp",
            mounts=(
                BindMount(str(config_dir), "/config", read_only=True),
                BindMount(str(scratch), "/scratch"),
            ),
        ),
    )
    assert await wait_exited(runtime, container) == 0
    assert [line.text for line in await collect_logs(runtime, container)] == [
        "greeting=hello world",
        "empty=[]",
        "/tmp",
        "colour=blue",
        "config-read-only",
        "scratch-writable",
    ]
    assert (config_dir / "settings.txt").read_text() == "colour=blue\n"
    assert (scratch / "out.txt").read_text() == "from-container\n"


async def test_command_replaces_entrypoint_and_args_replace_cmd(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "cmd")
    only_args = await start(
        runtime, sandbox.id, ContainerConfig(name="a", image=BUSYBOX, args=("echo", "args-only"))
    )
    assert await wait_exited(runtime, only_args) == 0
    assert [line.text for line in await collect_logs(runtime, only_args)] == ["args-only"]
    # The image's CMD is ["sh"]; with only a command, CMD must not be appended.
    only_command = await start(
        runtime, sandbox.id, ContainerConfig(name="b", image=BUSYBOX, command=("echo",))
    )
    assert await wait_exited(runtime, only_command) == 0
    assert [line.text for line in await collect_logs(runtime, only_command)] == [""]


async def test_memory_hog_is_oom_killed(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "hog")
    hog = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="hog",
            image=BUSYBOX,
            command=("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"),
            resources=Resources(memory_limit_bytes=16 << 20),
        ),
    )
    assert await wait_exited(runtime, hog) == 137
    status = await runtime.container_status(hog)
    assert status.oom_killed
    assert status.exit_code == 137
    modest = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="modest",
            image=BUSYBOX,
            command=("dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=4"),
            resources=Resources(memory_limit_bytes=16 << 20),
        ),
    )
    assert await wait_exited(runtime, modest) == 0
    assert not (await runtime.container_status(modest)).oom_killed


async def test_resource_limits_become_cgroup_limits(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "limits")
    container = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="c",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
                "/sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/pids/pids.max",
            ),
            resources=Resources.from_kubernetes(
                cpu_request_millis=250,
                cpu_limit_millis=500,
                memory_limit_bytes=64 << 20,
                pids_limit=50,
            ),
        ),
    )
    assert await wait_exited(runtime, container) == 0
    assert [line.text for line in await collect_logs(runtime, container)] == [
        str(64 << 20),
        "50000",
        "100000",
        "256",
        "50",
    ]


async def test_security_defaults_and_settings(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "security")
    probe = "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; id -u; id -g; (touch /probe 2>/dev/null && echo rootfs-rw) || echo rootfs-ro"
    default = await start(
        runtime,
        sandbox.id,
        ContainerConfig(name="default", image=BUSYBOX, command=("sh", "-c", probe)),
    )
    assert await wait_exited(runtime, default) == 0
    # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP
    assert [line.text for line in await collect_logs(runtime, default)] == [
        "CapEff:\t00000000800405fb",
        "NoNewPrivs:\t1",
        "0",
        "0",
        "rootfs-rw",
    ]
    locked = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="locked",
            image=BUSYBOX,
            command=("sh", "-c", probe),
            security=SecurityConfig(
                run_as_user=65534,
                run_as_group=65534,
                read_only_rootfs=True,
                cap_drop=("ALL",),
                cap_add=("NET_BIND_SERVICE",),
            ),
        ),
    )
    assert await wait_exited(runtime, locked) == 0
    assert (
        [line.text for line in await collect_logs(runtime, locked)]
        == [
            "CapEff:\t0000000000000400",  # only NET_BIND_SERVICE: Podman gives added caps to non-root users too
            "NoNewPrivs:\t1",
            "65534",
            "65534",
            "rootfs-ro",
        ]
    )
    root_with_fewer = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="fewer",
            image=BUSYBOX,
            command=("sh", "-c", probe),
            security=SecurityConfig(
                cap_drop=("ALL",), cap_add=("NET_BIND_SERVICE",), no_new_privileges=False
            ),
        ),
    )
    assert await wait_exited(runtime, root_with_fewer) == 0
    lines = [line.text for line in await collect_logs(runtime, root_with_fewer)]
    assert lines[:2] == ["CapEff:\t0000000000000400", "NoNewPrivs:\t0"]


async def test_stop_sends_sigterm_first_then_sigkill_after_the_grace_period(
    runtime: PodmanRuntime,
) -> None:
    sandbox = await run_sandbox(runtime, "stop")
    polite = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="polite",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                'trap "echo got-TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done',
            ),
        ),
    )
    stubborn = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="stubborn",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                'trap "echo ignoring-TERM" TERM; echo ready; while true; do sleep 0.1; done',
            ),
        ),
    )
    for container in (polite, stubborn):

        async def ready(container: str = container) -> bool:
            return any(line.text == "ready" for line in await collect_logs(runtime, container))

        await eventually(ready, what="the TERM trap to be installed")

    started = time.monotonic()
    await runtime.stop_container(polite, grace_period=10)
    polite_seconds = time.monotonic() - started
    status = await runtime.container_status(polite)
    assert status.state == ContainerState.EXITED and status.exit_code == 0
    assert [line.text for line in await collect_logs(runtime, polite)] == ["ready", "got-TERM"]
    assert polite_seconds < 5

    started = time.monotonic()
    await runtime.stop_container(stubborn, grace_period=2)
    stubborn_seconds = time.monotonic() - started
    status = await runtime.container_status(stubborn)
    assert status.state == ContainerState.EXITED and status.exit_code == 137  # SIGKILL
    assert "ignoring-TERM" in [line.text for line in await collect_logs(runtime, stubborn)]
    assert 1.9 <= stubborn_seconds < 10
    await runtime.stop_container(stubborn, grace_period=2)  # already stopped: no-op


async def test_remove_sandbox_uses_the_grace_period(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "remove")
    script = 'trap "echo ignoring-TERM" TERM; echo ready; while true; do sleep 0.1; done'
    stubborn = await start(
        runtime,
        sandbox.id,
        ContainerConfig(name="stubborn", image=BUSYBOX, command=("sh", "-c", script)),
    )

    async def ready() -> bool:
        return any(line.text == "ready" for line in await collect_logs(runtime, stubborn))

    await eventually(ready, what="the TERM trap to be installed")
    started = time.monotonic()
    await runtime.remove_sandbox(sandbox.id, grace_period=1)
    assert 0.9 <= time.monotonic() - started < 8
    assert await runtime.list_containers() == []
    assert await runtime.list_sandboxes() == []

    sandbox = await run_sandbox(runtime, "remove-now")
    await start(runtime, sandbox.id, ContainerConfig(name="sleeper", image=BUSYBOX, command=SLEEP))
    started = time.monotonic()
    await runtime.remove_sandbox(sandbox.id)  # no grace period: SIGKILL
    assert time.monotonic() - started < 5
    assert await runtime.list_sandboxes() == []
    await runtime.remove_sandbox(sandbox.id)  # gone: no-op


async def test_kill_and_remove(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "kill")
    container = await start(
        runtime, sandbox.id, ContainerConfig(name="c", image=BUSYBOX, command=SLEEP)
    )
    with pytest.raises(Conflict):
        await runtime.remove_container(container)
    await runtime.kill_container(container, "SIGKILL")
    assert await wait_exited(runtime, container) == 137
    with pytest.raises(Conflict):
        await runtime.kill_container(container)
    await runtime.remove_container(container)
    await runtime.remove_container(container)  # no-op
    with pytest.raises(NotFound):
        await runtime.container_status(container)


async def test_exec_exit_codes_output_stdin_and_timeout(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "exec")
    container = await start(
        runtime, sandbox.id, ContainerConfig(name="c", image=BUSYBOX, command=SLEEP)
    )
    result = await runtime.exec(container, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    result = await runtime.exec(container, ["cat"], stdin=b"from stdin")
    assert (result.exit_code, result.stdout) == (0, b"from stdin")
    result = await runtime.exec(
        container,
        ["sh", "-c", 'echo "$WHO in $(pwd) as $(id -u)"'],
        env={"WHO": "me"},
        working_dir="/etc",
        user="65534",
    )
    assert result.stdout == b"me in /etc as 65534\n"
    missing = await runtime.exec(container, ["no-such-command"])
    assert missing.exit_code == 127
    result = await runtime.exec(container, ["sh", "-c", "head -c 3000 /dev/zero"], max_output=1000)
    assert len(result.stdout) == 1000 and result.truncated

    started = time.monotonic()
    with pytest.raises(ExecTimeout):
        await runtime.exec(container, ["sleep", "7"], timeout=0.5)
    assert time.monotonic() - started < 5
    processes = await runtime.exec(container, ["ps", "-o", "args"])
    assert b"sleep 7" not in processes.stdout  # the timed-out process was killed

    async with await runtime.open_exec(
        container, ["sh", "-c", "read line; echo got:$line; echo bye >&2"]
    ) as session:
        await session.write(b"hello\n")
        await session.close_stdin()
        chunks = [chunk async for chunk in session.output()]
        assert await session.wait() == 0
    assert (LogStream.STDOUT, b"got:hello\n") in chunks
    assert (LogStream.STDERR, b"bye\n") in chunks

    await runtime.kill_container(container)
    await wait_exited(runtime, container)
    with pytest.raises(Conflict):
        await runtime.exec(container, ["true"])


async def test_exec_exit_code_outlives_the_session(runtime: PodmanRuntime) -> None:
    """Podman forgets finished exec sessions after 2 s (kumo's containers.conf); a
    caller that asks later still gets the exit code (from the exec_died event)."""
    sandbox = await run_sandbox(runtime, "exec-late")
    container = await start(
        runtime, sandbox.id, ContainerConfig(name="c", image=BUSYBOX, command=SLEEP)
    )
    async with await runtime.open_exec(
        container, ["sh", "-c", "echo bye; exit 9"], stdin=False
    ) as session:
        assert [chunk async for chunk in session.output()] == [(LogStream.STDOUT, b"bye\n")]
        await asyncio.sleep(3.5)
        assert await session.wait() == 9


async def test_logs_tail_since_follow_and_after_exit(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "logs")
    container = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="c",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                "echo one; echo two; echo three >&2; sleep 2; echo four; sleep 1; echo five",
            ),
        ),
    )

    async def three_lines() -> bool:
        return len(await collect_logs(runtime, container)) >= 3

    await eventually(three_lines, what="three log lines")
    cutoff = datetime.now(UTC)
    followed = [line async for line in runtime.logs(container, follow=True, tail=1)]
    assert [line.text for line in followed] == [
        "three",
        "four",
        "five",
    ]  # ends when the container exits
    assert (await runtime.container_status(container)).state == ContainerState.EXITED

    everything = await collect_logs(runtime, container)
    assert [(line.text, line.stream) for line in everything] == [
        ("one", LogStream.STDOUT),
        ("two", LogStream.STDOUT),
        ("three", LogStream.STDERR),
        ("four", LogStream.STDOUT),
        ("five", LogStream.STDOUT),
    ]
    timestamps = [line.timestamp for line in everything]
    assert timestamps == sorted(timestamps)
    assert all(abs((t - cutoff).total_seconds()) < 30 for t in timestamps)
    assert [line.text for line in await collect_logs(runtime, container, tail=2)] == [
        "four",
        "five",
    ]
    assert [line.text for line in await collect_logs(runtime, container, since=cutoff)] == [
        "four",
        "five",
    ]
    assert await collect_logs(runtime, container, tail=0) == []


async def test_list_by_label_finds_exactly_the_labelled_containers(runtime: PodmanRuntime) -> None:
    first = await run_sandbox(runtime, "first", labels={"test-group": "a"})
    second = await run_sandbox(runtime, "second", labels={"test-group": "b"})
    a1 = await runtime.create_container(
        first.id, ContainerConfig(name="x", image=BUSYBOX, labels={"role": "web"})
    )
    a2 = await runtime.create_container(
        first.id, ContainerConfig(name="y", image=BUSYBOX, labels={"role": "db"})
    )
    b1 = await runtime.create_container(
        second.id, ContainerConfig(name="x", image=BUSYBOX, labels={"role": "web"})
    )
    stranger = f"stranger-{os.getpid()}"
    # A container of another node (or of no kumo node) in the same storage must be invisible.
    created = await podman_cli(
        runtime,
        "create",
        "--name",
        stranger,
        "--label",
        f"{LABEL_NODE}=other-node",
        "--label",
        "role=web",
        BUSYBOX,
        "true",
    )
    assert created == 0
    try:
        assert {c.id for c in await runtime.list_containers()} == {a1, a2, b1}
        assert {c.id for c in await runtime.list_containers({"role": "web"})} == {a1, b1}
        assert {
            c.id for c in await runtime.list_containers({"role": "web"}, sandbox_id=first.id)
        } == {a1}
        assert {c.id for c in await runtime.list_containers({LABEL_POD_UID: second.pod_uid})} == {
            b1
        }
        assert {c.id for c in await runtime.list_containers({"role": "nothing"})} == set()
        assert [s.id for s in await runtime.list_sandboxes({"test-group": "b"})] == [second.id]
        summary = next(c for c in await runtime.list_containers() if c.id == a1)
        assert (summary.container_name, summary.attempt, summary.pod_uid, summary.state) == (
            "x",
            0,
            first.pod_uid,
            ContainerState.CREATED,
        )
        with pytest.raises(NotFound):
            await runtime.container_status(stranger)
        await runtime.remove_container(stranger)  # not ours: left alone
        assert await podman_cli(runtime, "container", "exists", stranger) == 0
    finally:
        await podman_cli(runtime, "rm", "-f", stranger)


async def test_a_restarted_runtime_adopts_running_containers(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "adopt")
    container = await start(
        runtime, sandbox.id, ContainerConfig(name="c", image=BUSYBOX, command=SLEEP)
    )
    started_at = (await runtime.container_status(container)).started_at
    async with PodmanRuntime(
        runtime.node_name
    ) as successor:  # a new service, as after an agent restart
        [adopted] = await successor.list_containers({LABEL_POD_UID: sandbox.pod_uid})
        assert adopted.id == container and adopted.state == ContainerState.RUNNING
        assert [s.id for s in await successor.list_sandboxes()] == [sandbox.id]
        assert (await successor.sandbox_status(sandbox.id)).ip == sandbox.ip
    status = await runtime.container_status(container)
    assert status.state == ContainerState.RUNNING and status.started_at == started_at


async def test_two_storage_roots_do_not_see_each_other(
    runtime: PodmanRuntime, tmp_path: Path
) -> None:
    mine = await run_sandbox(runtime, "shared-name")
    my_container = await start(
        runtime, mine.id, ContainerConfig(name="c", image=BUSYBOX, command=SLEEP)
    )
    # Same node name on purpose: only the storage separates them.
    other = PodmanRuntime(
        runtime.node_name, state_dir=tmp_path / "state", storage_root=tmp_path / "storage"
    )
    async with other:
        try:
            info = await other.info()
            assert info.storage_root == str(tmp_path / "storage")
            assert info.storage_root != (await runtime.info()).storage_root
            assert not await other.image_exists(BUSYBOX)
            await bootstrap(other, only=["busybox"])
            theirs = await run_sandbox(other, "shared-name")
            their_container = await start(
                other, theirs.id, ContainerConfig(name="c", image=BUSYBOX, command=SLEEP)
            )
            assert [c.id for c in await other.list_containers()] == [their_container]
            assert [c.id for c in await runtime.list_containers()] == [my_container]
            assert [s.id for s in await runtime.list_sandboxes()] == [mine.id]
            with pytest.raises(NotFound):
                await runtime.container_status(their_container)
            with pytest.raises(NotFound):
                await other.sandbox_status(mine.id)
            assert theirs.ip != mine.ip  # one machine-wide IP allocator, no clashes
        finally:
            await remove_everything(other)
    release_private_storage(other, tmp_path)


async def test_pulling_a_missing_image_fails_clearly(runtime: PodmanRuntime) -> None:
    image = "docker.io/library/kumo-test-no-such-image:1"
    with pytest.raises(ImagePullError) as failure:
        await runtime.pull_image(image)
    assert failure.value.image == image
    assert failure.value.pull_reason
    assert image in str(failure.value) or "kumo-test-no-such-image" in str(failure.value)
    assert not await runtime.image_exists(image)
    sandbox = await run_sandbox(runtime, "missing-image")
    with pytest.raises(ImageNotFound) as missing:
        await runtime.create_container(sandbox.id, ContainerConfig(name="c", image=image))
    assert missing.value.image == image


async def test_images_inspect_and_short_names(runtime: PodmanRuntime) -> None:
    info = await runtime.inspect_image("busybox")
    assert "docker.io/library/busybox:latest" in info.repo_tags
    assert "localhost/kumo/busybox:latest" in info.repo_tags
    assert info.user == ""
    assert len(info.id) == 64 and info.size_bytes > 1_000_000
    assert info.labels.get("dev.kumo.base-image") == "busybox"
    listed = {image.id: image for image in await runtime.list_images()}
    assert info.id in listed and listed[info.id].user is None


async def test_volumes_persist_between_containers(runtime: PodmanRuntime) -> None:
    name = f"{runtime.node_name}-data"
    volume = await runtime.create_volume(name, {"kumo.dev/claim": "data"})
    assert volume.labels[LABEL_NODE] == runtime.node_name
    assert (await runtime.create_volume(name)).mountpoint == volume.mountpoint
    assert [v.name for v in await runtime.list_volumes({"kumo.dev/claim": "data"})] == [name]
    sandbox = await run_sandbox(runtime, "volume")
    writer = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="writer",
            image=BUSYBOX,
            command=("sh", "-c", "echo kept > /data/file"),
            mounts=(VolumeMount(name, "/data"),),
        ),
    )
    assert await wait_exited(runtime, writer) == 0
    reader = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="reader",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                "cat /data/file; (echo x > /data/other) 2>/dev/null || echo read-only",
            ),
            mounts=(VolumeMount(name, "/data", read_only=True),),
        ),
    )
    assert await wait_exited(runtime, reader) == 0
    assert [line.text for line in await collect_logs(runtime, reader)] == ["kept", "read-only"]
    with pytest.raises(Conflict):
        await runtime.remove_volume(name)
    await runtime.remove_sandbox(sandbox.id)
    await runtime.remove_volume(name)
    assert await runtime.list_volumes() == []


async def test_stats_report_cpu_and_working_set(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "stats")
    container = await start(
        runtime,
        sandbox.id,
        ContainerConfig(
            name="c",
            image=BUSYBOX,
            command=(
                "sh",
                "-c",
                "dd if=/dev/zero of=/tmp/cache bs=1M count=32 2>/dev/null; echo written; exec sleep 300",
            ),
            resources=Resources(memory_limit_bytes=256 << 20),
        ),
    )

    async def written() -> bool:
        return any(line.text == "written" for line in await collect_logs(runtime, container))

    await eventually(written, what="the cache file")
    [stats] = await runtime.container_stats([container])
    assert stats.container_id == container
    assert stats.cpu_usage_ns > 0
    assert stats.memory_limit_bytes == 256 << 20
    assert stats.memory_usage_bytes >= 32 << 20  # the page cache of /tmp/cache counts as usage...
    assert stats.memory_working_set_bytes < stats.memory_usage_bytes - (
        16 << 20
    )  # ...but not as working set
    assert stats.pids >= 1
    assert [s.container_id for s in await runtime.container_stats()] == [container]


async def test_events_report_start_and_death(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "events")
    since = datetime.now(UTC)
    container = await start(
        runtime,
        sandbox.id,
        ContainerConfig(name="c", image=BUSYBOX, command=("sh", "-c", "exit 5")),
    )
    await wait_exited(runtime, container)
    seen: list[ContainerEvent] = []

    async def watch() -> None:
        async for event in runtime.events(since=since):
            if event.container_id == container:
                seen.append(event)
                if event.action == "died":
                    return

    await asyncio.wait_for(watch(), 10)
    actions = [event.action for event in seen]
    assert actions.index("create") < actions.index("start") < actions.index("died")
    assert seen[-1].exit_code == 5
    assert seen[-1].labels[LABEL_NODE] == runtime.node_name


async def test_start_error_is_reported(runtime: PodmanRuntime) -> None:
    sandbox = await run_sandbox(runtime, "broken")
    container = await runtime.create_container(
        sandbox.id, ContainerConfig(name="c", image=BUSYBOX, command=("/no/such/binary",))
    )
    with pytest.raises(ContainerStartError, match="no such file or directory"):
        await runtime.start_container(container)
    status = await runtime.container_status(container)
    assert status.state == ContainerState.CREATED and status.exit_code is None
    assert "/no/such/binary" in status.error
    await runtime.remove_container(container)
