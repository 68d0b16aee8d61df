"""Fixtures for tests with real Podman containers.

- ``require_podman()``: skips when podman is not installed — except under ``CI=true``,
  where a missing podman fails the test.
- ``runtime`` (module): a ``PodmanRuntime`` that started its own ``podman system service``
  on the machine's default storage, with a node name unique to this test run. The
  busybox base image is bootstrapped once (a no-op when it exists).
- ``clean_node`` (function, autouse in these tests): after every test — passed or
  failed — removes every sandbox, container and volume carrying the run's node label.

Tests run their coroutines on the module's event loop (``loop_scope="module"``) so one
service serves the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from kumo.node.images import bootstrap
from kumo.node.runtime import (
    ContainerConfig,
    ContainerRuntime,
    ContainerState,
    LogLine,
    SandboxConfig,
    SandboxStatus,
)
from kumo.node.runtime.podman import PodmanRuntime

BUSYBOX = "busybox"  # resolves to the bootstrapped docker.io/library/busybox:latest


def require_podman() -> None:
    missing = [tool for tool in ("podman", "runc", "conmon") if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (apt-get install podman runc conmon)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs real Podman: {message}")
    pytest.skip(message)


async def remove_everything(runtime: ContainerRuntime) -> None:
    for sandbox in await runtime.list_sandboxes():
        with contextlib.suppress(Exception):
            await runtime.remove_sandbox(sandbox.id)
    for container in await runtime.list_containers():
        with contextlib.suppress(Exception):
            await runtime.remove_container(container.id, force=True)
    for volume in await runtime.list_volumes():
        with contextlib.suppress(Exception):
            await runtime.remove_volume(volume.name, force=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PodmanRuntime]:
    require_podman()
    node = f"test-{uuid.uuid4().hex[:10]}"
    state = Path(tmp_path_factory.mktemp("podman-state", numbered=True))
    podman = PodmanRuntime(node, state_dir=state)
    await podman.start()
    try:
        await bootstrap(podman, only=["busybox"])
        yield podman
    finally:
        await remove_everything(podman)
        await podman.close()


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def clean_node(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "runtime" in request.fixturenames:
        await remove_everything(request.getfixturevalue("runtime"))


def release_private_storage(runtime: PodmanRuntime, root: Path) -> None:
    """After a runtime with its own storage under ``root`` has closed: unmount what
    containers/storage leaves mounted there (so the directory can be deleted) and
    remove its run root and tmpdir."""
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for mountpoint in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mountpoint], check=False)
    for private in (runtime.run_root, runtime.tmp_dir):
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
            with contextlib.suppress(OSError):
                private.parent.rmdir()  # /run/kumo-podman/<key>, once empty


async def podman_cli(runtime: PodmanRuntime, *args: str) -> int:
    """Run the ``podman`` command on the runtime's storage; returns its exit status."""
    process = await asyncio.create_subprocess_exec(
        *runtime.podman_command(),
        *args,
        env=runtime.podman_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


def new_uid() -> str:
    return str(uuid.uuid4())


async def run_sandbox(
    runtime: ContainerRuntime, name: str = "pod", **kwargs: object
) -> SandboxStatus:
    return await runtime.run_sandbox(SandboxConfig("test", name, new_uid(), **kwargs))  # type: ignore[arg-type]


async def start(runtime: ContainerRuntime, sandbox_id: str, config: ContainerConfig) -> str:
    container_id = await runtime.create_container(sandbox_id, config)
    await runtime.start_container(container_id)
    return container_id


async def collect_logs(
    runtime: ContainerRuntime, container_id: str, **kwargs: object
) -> list[LogLine]:
    return [line async for line in runtime.logs(container_id, **kwargs)]  # type: ignore[arg-type]


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


async def wait_exited(runtime: ContainerRuntime, container_id: str, within: float = 20.0) -> int:
    async with asyncio.timeout(within):
        code = await runtime.wait_container(container_id)
    status = await runtime.container_status(container_id)
    assert status.state == ContainerState.EXITED
    return code
