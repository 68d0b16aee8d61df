"""An in-memory ``ContainerRuntime`` for unit tests of agent logic.

Nothing runs: a started container stays RUNNING until the test (or a scripted
``FakeBehavior``) makes it exit. Everything else follows the protocol's
contract as Podman does it — the same validation, the same errors, node-label
ownership, images that must be present before create, pulls that fail unless
the image is in the fake registry, stop = stop signal then SIGKILL after the
grace period.

Several ``FakeRuntime`` objects can share one ``FakeHost`` (one machine's
Podman storage): two agents on one machine, or an agent restarting and
adopting what its predecessor left running.

Test controls (on ``FakeRuntime``): ``behaviors`` (per container name),
``exit_container``, ``write_log``, ``set_stats``, ``signals``, ``exec_calls``,
``exec_handler``, and ``host.registry`` / ``host.pull_errors`` for pulls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import os
import signal as _signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from kumo.node.runtime import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    BindMount,
    Conflict,
    ContainerConfig,
    ContainerEvent,
    ContainerRuntime,
    ContainerStartError,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    ContainerSummary,
    ExecResult,
    ExecSession,
    ExecTimeout,
    ImageInfo,
    ImageNotFound,
    ImagePullError,
    InvalidConfig,
    LogLine,
    LogStream,
    NotFound,
    PortMapping,
    RuntimeInfo,
    SandboxConfig,
    SandboxState,
    SandboxStatus,
    SandboxSummary,
    VolumeInfo,
    VolumeMount,
    container_name,
    normalize_signal,
    sandbox_name,
    validate_container_config,
    validate_labels,
    validate_name,
    validate_sandbox_config,
)

__all__ = [
    "FakeBehavior",
    "FakeExecSession",
    "FakeHost",
    "FakeRuntime",
    "normalize_image_reference",
]

ExecHandler = Callable[
    [ContainerStatus, tuple[str, ...], bytes], Awaitable[ExecResult] | ExecResult
]


def normalize_image_reference(reference: str) -> str:
    """Podman's short-name rules as far as kumo needs them: ``busybox`` →
    ``docker.io/library/busybox:latest``, ``user/app:1`` → ``docker.io/user/app:1``;
    references with a registry host (a dot, a port or ``localhost``) stay as they are."""
    name, _, digest = reference.partition("@")
    first, slash, _ = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        name += ":latest"
    return f"{name}@{digest}" if digest else name


def _new_id(*parts: object) -> str:
    return hashlib.sha256(repr((parts, os.urandom(8))).encode()).hexdigest()


@dataclass
class FakeBehavior:
    """How a fake container's "process" behaves (matched by container name).

    ``exit_code`` set: it exits with that code right after starting.
    ``start_error`` set: starting fails with ContainerStartError (it stays CREATED).
    ``oom_on_start``: the OOM killer gets it right after start (137, oom_killed).
    ``ignores_stop_signal``: a stop waits out the grace period, then SIGKILL (137);
    otherwise it exits on the stop signal with ``stop_exit_code`` (0 means it
    traps the signal and exits cleanly; 143 is SIGTERM's default action).
    ``output``: stdout lines it prints when it starts.
    ``exec_results``: fixed results for exact exec commands."""

    exit_code: int | None = None
    start_error: str | None = None
    oom_on_start: bool = False
    ignores_stop_signal: bool = False
    stop_exit_code: int = 143
    output: tuple[str, ...] = ()
    exec_results: Mapping[tuple[str, ...], ExecResult] = field(default_factory=dict)


@dataclass
class _Image:
    id: str
    names: list[str]
    size: int
    created: datetime
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class _Sandbox:
    id: str
    name: str
    labels: dict[str, str]
    hostname: str
    ports: tuple[PortMapping, ...]
    ip: str
    infra_id: str
    created: datetime
    ready: bool = True


@dataclass
class _Container:
    id: str
    name: str
    sandbox_id: str
    config: ContainerConfig
    labels: dict[str, str]
    image: str
    image_id: str
    created: datetime
    state: ContainerState = ContainerState.CREATED
    started: datetime | None = None
    finished: datetime | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    pid: int | None = None
    error: str = ""
    logs: list[LogLine] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    cpu_ns: int = 0
    memory: int = 0


@dataclass
class _Volume:
    name: str
    labels: dict[str, str]
    created: datetime


class FakeHost:
    """One machine's fake Podman storage, shared by the ``FakeRuntime`` views on it.

    ``registry``: references (normalized) a pull can fetch. ``pull_errors``: the
    reason a pull of a given reference fails (default: no registry reachable)."""

    def __init__(
        self,
        *,
        images: Sequence[str] = ("docker.io/library/busybox:latest",),
        registry: Sequence[str] = (),
    ) -> None:
        self.images: dict[str, _Image] = {}
        self.sandboxes: dict[str, _Sandbox] = {}
        self.containers: dict[str, _Container] = {}
        self.volumes: dict[str, _Volume] = {}
        self.registry: set[str] = {normalize_image_reference(r) for r in registry}
        self.pull_errors: dict[str, str] = {}
        self._subscribers: list[asyncio.Queue[ContainerEvent]] = []
        self._ips = itertools.count(2)
        self._pids = itertools.count(1000)
        for reference in images:
            self.add_image(reference)

    def add_image(self, reference: str, *, user: str = "", size: int = 2_000_000) -> str:
        """Put an image into local storage; returns its id."""
        name = normalize_image_reference(reference)
        image_id = _new_id("image", name)
        self.images[image_id] = _Image(image_id, [name], size, datetime.now(UTC), user)
        return image_id

    def find_image(self, reference: str) -> _Image | None:
        wanted = normalize_image_reference(reference)
        for image in self.images.values():
            if wanted in image.names or (len(reference) >= 12 and image.id.startswith(reference)):
                return image
        return None

    def emit(self, container: _Container, action: str) -> None:
        event = ContainerEvent(
            container_id=container.id,
            name=container.name,
            action=action,
            time=datetime.now(UTC),
            labels=dict(container.labels),
            exit_code=container.exit_code if action == "died" else None,
        )
        for queue in self._subscribers:
            queue.put_nowait(event)

    def next_ip(self) -> str:
        n = next(self._ips)
        return f"10.88.{n // 250}.{n % 250 + 2}"

    def next_pid(self) -> int:
        return next(self._pids)


class FakeExecSession:
    """An interactive exec against the fake: stdin is collected until
    ``close_stdin``; then the exec handler runs and its output is yielded."""

    def __init__(
        self, runtime: FakeRuntime, container_id: str, command: tuple[str, ...], *, tty: bool
    ) -> None:
        self._runtime = runtime
        self._container_id = container_id
        self._command = command
        self._tty = tty
        self._stdin = bytearray()
        self._stdin_closed = asyncio.Event()
        self._result: ExecResult | None = None

    @property
    def tty(self) -> bool:
        return self._tty

    async def write(self, data: bytes) -> None:
        if self._stdin_closed.is_set():
            raise Conflict("stdin is closed")
        self._stdin.extend(data)

    async def close_stdin(self) -> None:
        self._stdin_closed.set()

    async def _run(self) -> ExecResult:
        if self._result is None:
            await self._stdin_closed.wait()
            self._result = await self._runtime.exec(
                self._container_id, self._command, stdin=bytes(self._stdin)
            )
        return self._result

    async def output(self) -> AsyncIterator[tuple[LogStream, bytes]]:
        result = await self._run()
        if result.stdout:
            yield LogStream.STDOUT, result.stdout
        if result.stderr:
            yield (LogStream.STDOUT if self._tty else LogStream.STDERR), result.stderr

    async def resize(self, height: int, width: int) -> None:
        return None

    async def wait(self) -> int:
        return (await self._run()).exit_code

    async def close(self) -> None:
        self._stdin_closed.set()

    async def __aenter__(self) -> FakeExecSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class FakeRuntime:
    """``ContainerRuntime`` over a ``FakeHost`` (see the module docstring)."""

    def __init__(self, node_name: str = "fake-node", *, host: FakeHost | None = None) -> None:
        if not node_name or "=" in node_name or "," in node_name:
            raise InvalidConfig(f"invalid node name {node_name!r}")
        self._node = node_name
        self.host = host or FakeHost()
        self.behaviors: dict[str, FakeBehavior] = {}
        self.signals: dict[str, list[str]] = {}
        self.exec_calls: list[tuple[str, tuple[str, ...]]] = []
        self.exec_handler: ExecHandler | None = None
        self.stats: dict[str, tuple[int, int]] = {}
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def node_name(self) -> str:
        return self._node

    async def __aenter__(self) -> FakeRuntime:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def close(self) -> None:
        return None

    # ----------------------------------------------------------------- test controls

    def behavior_for(self, container: _Container) -> FakeBehavior:
        return self.behaviors.get(container.config.name) or FakeBehavior()

    async def _finish(self, container: _Container, code: int, *, oom: bool = False) -> None:
        async with container.changed:
            if container.state != ContainerState.RUNNING:
                return
            container.state = ContainerState.EXITED
            container.exit_code = code
            container.finished = datetime.now(UTC)
            container.oom_killed = container.oom_killed or oom
            container.pid = None
            container.changed.notify_all()
        if oom:
            self.host.emit(container, "oom")
        self.host.emit(container, "died")

    async def exit_container(
        self, container_id: str, exit_code: int, *, oom_killed: bool = False
    ) -> None:
        """Make a running container's process exit (a crash, an OOM kill, a normal end)."""
        await self._finish(self._container(container_id), exit_code, oom=oom_killed)

    async def write_log(
        self, container_id: str, text: str, stream: LogStream = LogStream.STDOUT
    ) -> None:
        """Make the container print ``text`` (one line per newline-separated part)."""
        container = self._container(container_id)
        async with container.changed:
            for line in text.splitlines() or [""]:
                container.logs.append(LogLine(datetime.now(UTC), stream, line))
            container.changed.notify_all()

    def set_stats(self, container_id: str, *, cpu_usage_ns: int, memory_bytes: int) -> None:
        self.stats[self._container(container_id).id] = (cpu_usage_ns, memory_bytes)

    # ----------------------------------------------------------------- lookups

    def _owned(self, labels: Mapping[str, str]) -> bool:
        return labels.get(LABEL_NODE) == self._node

    def _container(self, container_id: str) -> _Container:
        container = self.host.containers.get(container_id)
        if container is None:
            container = next(
                (
                    c
                    for c in self.host.containers.values()
                    if c.name == container_id
                    or (len(container_id) >= 12 and c.id.startswith(container_id))
                ),
                None,
            )
        if container is None or not self._owned(container.labels):
            raise NotFound(f"container {container_id} not found on node {self._node}")
        return container

    def _sandbox(self, sandbox_id: str) -> _Sandbox:
        sandbox = self.host.sandboxes.get(sandbox_id)
        if sandbox is None:
            sandbox = next(
                (
                    s
                    for s in self.host.sandboxes.values()
                    if s.name == sandbox_id
                    or (len(sandbox_id) >= 12 and s.id.startswith(sandbox_id))
                ),
                None,
            )
        if sandbox is None or not self._owned(sandbox.labels):
            raise NotFound(f"sandbox {sandbox_id} not found on node {self._node}")
        return sandbox

    # ----------------------------------------------------------------- info

    async def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            name="fake",
            version="1.0.0",
            api_version="1.0.0",
            storage_root="/fake/storage",
            run_root="/fake/run",
            oci_runtime="fake",
            cgroup_version="v2",
        )

    # ----------------------------------------------------------------- sandboxes

    async def run_sandbox(self, config: SandboxConfig) -> SandboxStatus:
        hostname = validate_sandbox_config(config)
        name = sandbox_name(config.namespace, config.name, config.uid)
        if any(s.name == name for s in self.host.sandboxes.values()):
            raise Conflict(f"sandbox {name}: that name is already in use")
        for other in self.host.sandboxes.values():
            if not other.ready:
                continue
            for mine in config.ports:
                for theirs in other.ports:
                    same_ip = (
                        not mine.host_ip or not theirs.host_ip or mine.host_ip == theirs.host_ip
                    )
                    if (
                        same_ip
                        and mine.host_port == theirs.host_port
                        and mine.protocol == theirs.protocol
                    ):
                        raise Conflict(
                            f"sandbox {name}: a published port is in use: {mine.host_port}"
                        )
        labels = {
            **config.labels,
            LABEL_NODE: self._node,
            LABEL_POD_UID: config.uid,
            LABEL_POD_NAME: config.name,
            LABEL_POD_NAMESPACE: config.namespace,
        }
        sandbox = _Sandbox(
            id=_new_id("pod", name),
            name=name,
            labels=labels,
            hostname=hostname,
            ports=tuple(
                sorted(config.ports, key=lambda p: (p.container_port, p.protocol, p.host_port))
            ),
            ip=self.host.next_ip(),
            infra_id=_new_id("infra", name),
            created=datetime.now(UTC),
        )
        self.host.sandboxes[sandbox.id] = sandbox
        return await self.sandbox_status(sandbox.id)

    async def remove_sandbox(self, sandbox_id: str, *, grace_period: float = 0) -> None:
        try:
            sandbox = self._sandbox(sandbox_id)
        except NotFound:
            return
        members = [c for c in self.host.containers.values() if c.sandbox_id == sandbox.id]
        if grace_period > 0:
            await asyncio.gather(
                *(
                    self.stop_container(c.id, grace_period)
                    for c in members
                    if c.state == ContainerState.RUNNING
                )
            )
        for container in members:
            await self.remove_container(container.id, force=True)
        self.host.sandboxes.pop(sandbox.id, None)

    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        sandbox = self._sandbox(sandbox_id)
        return SandboxStatus(
            id=sandbox.id,
            name=sandbox.name,
            labels=dict(sandbox.labels),
            state=SandboxState.READY if sandbox.ready else SandboxState.NOT_READY,
            created_at=sandbox.created,
            infra_container_id=sandbox.infra_id,
            ip=sandbox.ip if sandbox.ready else None,
            hostname=sandbox.hostname,
            ports=sandbox.ports,
        )

    async def list_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[SandboxSummary]:
        return [
            SandboxSummary(
                id=s.id,
                name=s.name,
                labels=dict(s.labels),
                state=SandboxState.READY if s.ready else SandboxState.NOT_READY,
                created_at=s.created,
                infra_container_id=s.infra_id,
            )
            for s in self.host.sandboxes.values()
            if self._owned(s.labels)
            and all(s.labels.get(k) == v for k, v in (labels or {}).items())
        ]

    # ----------------------------------------------------------------- containers

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        validate_container_config(config)
        sandbox = self._sandbox(sandbox_id)
        for mount in config.mounts:
            if isinstance(mount, BindMount) and not os.path.exists(mount.host_path):  # noqa: ASYNC240
                raise InvalidConfig(
                    f"container {config.name}: host path {mount.host_path!r} does not exist"
                )
            if isinstance(mount, VolumeMount) and mount.volume not in self.host.volumes:
                # Podman creates a missing named volume on first use.
                self.host.volumes[mount.volume] = _Volume(
                    mount.volume, {LABEL_NODE: self._node}, datetime.now(UTC)
                )
        image = self.host.find_image(config.image)
        if image is None:
            raise ImageNotFound(config.image)
        labels = dict(sandbox.labels)
        labels.update(config.labels)
        labels.update(
            {
                LABEL_NODE: self._node,
                LABEL_CONTAINER_NAME: config.name,
                LABEL_ATTEMPT: str(config.attempt),
            }
        )
        name = container_name(
            labels[LABEL_POD_NAMESPACE],
            labels[LABEL_POD_NAME],
            labels[LABEL_POD_UID],
            config.name,
            config.attempt,
        )
        if any(c.name == name for c in self.host.containers.values()):
            raise Conflict(f"container {name}: that name is already in use")
        container = _Container(
            id=_new_id("container", name),
            name=name,
            sandbox_id=sandbox.id,
            config=config,
            labels=labels,
            image=config.image,
            image_id=image.id,
            created=datetime.now(UTC),
        )
        self.host.containers[container.id] = container
        self.host.emit(container, "create")
        return container.id

    async def start_container(self, container_id: str) -> None:
        container = self._container(container_id)
        if container.state == ContainerState.RUNNING:
            return
        if (
            container.state == ContainerState.EXITED
            and not self._sandbox(container.sandbox_id).ready
        ):
            raise ContainerStartError(f"container {container.name}: the sandbox is not running")
        behavior = self.behavior_for(container)
        if behavior.start_error:
            if container.state == ContainerState.CREATED:
                container.error = behavior.start_error  # like Podman: stays CREATED
            raise ContainerStartError(behavior.start_error)
        async with container.changed:
            container.state = ContainerState.RUNNING
            container.started = datetime.now(UTC)
            container.finished = None
            container.exit_code = None
            container.oom_killed = False
            container.error = ""
            container.pid = self.host.next_pid()
            for line in behavior.output:
                container.logs.append(LogLine(datetime.now(UTC), LogStream.STDOUT, line))
            container.changed.notify_all()
        self.host.emit(container, "start")
        if behavior.oom_on_start:
            await self._finish(container, 137, oom=True)
        elif behavior.exit_code is not None:
            await self._finish(container, behavior.exit_code)

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        container = self._container(container_id)
        if container.state != ContainerState.RUNNING:
            return
        behavior = self.behavior_for(container)
        stop_signal = _signal.Signals(
            normalize_signal(container.config.stop_signal or "SIGTERM")
        ).name
        self.signals.setdefault(container.id, []).append(stop_signal)
        if not behavior.ignores_stop_signal:
            await self._finish(container, behavior.stop_exit_code)
            return
        async with container.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    container.changed.wait_for(lambda: container.state != ContainerState.RUNNING),
                    timeout=max(0, math.ceil(grace_period)),
                )
        if container.state == ContainerState.RUNNING:
            self.signals[container.id].append("SIGKILL")
            await self._finish(container, 137)

    async def kill_container(self, container_id: str, signal: str | int = "SIGKILL") -> None:
        container = self._container(container_id)
        number = normalize_signal(signal)
        if container.state != ContainerState.RUNNING:
            raise Conflict(f"container {container.name} is not running: container state improper")
        try:
            name = _signal.Signals(number).name
        except ValueError:
            name = str(number)
        self.signals.setdefault(container.id, []).append(name)
        behavior = self.behavior_for(container)
        if number == _signal.SIGKILL:
            await self._finish(container, 137)
        elif number in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGHUP) and not (
            behavior.ignores_stop_signal
        ):
            await self._finish(
                container, behavior.stop_exit_code if number == _signal.SIGTERM else 128 + number
            )

    async def remove_container(self, container_id: str, *, force: bool = False) -> None:
        try:
            container = self._container(container_id)
        except NotFound:
            return
        if container.state == ContainerState.RUNNING:
            if not force:
                raise Conflict(f"container {container.name} is running: container state improper")
            self.signals.setdefault(container.id, []).append("SIGKILL")
            await self._finish(container, 137)
        self.host.containers.pop(container.id, None)
        self.stats.pop(container.id, None)
        self.host.emit(container, "remove")
        async with container.changed:
            container.changed.notify_all()

    def _status(self, container: _Container) -> ContainerStatus:
        return ContainerStatus(
            id=container.id,
            name=container.name,
            sandbox_id=container.sandbox_id,
            labels=dict(container.labels),
            state=container.state,
            image=container.image,
            image_id=container.image_id,
            created_at=container.created,
            started_at=container.started,
            finished_at=container.finished if container.state == ContainerState.EXITED else None,
            exit_code=container.exit_code if container.state == ContainerState.EXITED else None,
            oom_killed=container.oom_killed,
            pid=container.pid if container.state == ContainerState.RUNNING else None,
            error=container.error,
        )

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._status(self._container(container_id))

    async def list_containers(
        self, labels: Mapping[str, str] | None = None, *, sandbox_id: str | None = None
    ) -> list[ContainerSummary]:
        pod_id: str | None = None
        if sandbox_id is not None:
            try:
                pod_id = self._sandbox(sandbox_id).id
            except NotFound:
                return []
        result: list[ContainerSummary] = []
        for container in self.host.containers.values():
            if not self._owned(container.labels) or (
                pod_id is not None and container.sandbox_id != pod_id
            ):
                continue
            if not all(container.labels.get(k) == v for k, v in (labels or {}).items()):
                continue
            status = self._status(container)
            result.append(
                ContainerSummary(
                    id=status.id,
                    name=status.name,
                    sandbox_id=status.sandbox_id,
                    labels=status.labels,
                    state=status.state,
                    image=status.image,
                    image_id=status.image_id,
                    created_at=status.created_at,
                    started_at=status.started_at,
                    finished_at=status.finished_at,
                    exit_code=status.exit_code,
                )
            )
        return result

    async def wait_container(self, container_id: str) -> int:
        container = self._container(container_id)
        async with container.changed:
            await container.changed.wait_for(
                lambda: (
                    container.state == ContainerState.EXITED
                    or container.id not in self.host.containers
                )
            )
        if container.state != ContainerState.EXITED:
            raise NotFound(f"container {container_id} was removed")
        return container.exit_code or 0

    # ----------------------------------------------------------------- logs / exec / stats / events

    async def logs(
        self,
        container_id: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
    ) -> AsyncIterator[LogLine]:
        container = self._container(container_id)
        if tail is not None and tail < 0:
            raise InvalidConfig("tail must not be negative")
        lines = [line for line in container.logs if since is None or line.timestamp > since]
        if tail is not None:
            lines = lines[len(lines) - tail :] if tail else []
        for line in lines:
            yield line
        if not follow:
            return
        position = len(container.logs)

        def progressed(start: int) -> Callable[[], bool]:
            return lambda: (
                len(container.logs) > start
                or container.state != ContainerState.RUNNING
                or container.id not in self.host.containers
            )

        while True:
            async with container.changed:
                await container.changed.wait_for(progressed(position))
                fresh = container.logs[position:]
                position = len(container.logs)
                done = (
                    container.state != ContainerState.RUNNING
                    or container.id not in self.host.containers
                )
            for line in fresh:
                yield line
            if done:
                return

    async def exec(
        self,
        container_id: str,
        command: Sequence[str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - mirrors the protocol
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
        stdin: bytes | None = None,
        max_output: int = 1 << 20,
    ) -> ExecResult:
        if not command:
            raise InvalidConfig("exec needs a command")
        container = self._container(container_id)
        if container.state != ContainerState.RUNNING:
            raise Conflict(f"container {container.name} is not running: container state improper")
        key = tuple(command)
        self.exec_calls.append((container.id, key))
        behavior = self.behavior_for(container)

        async def run() -> ExecResult:
            if key in behavior.exec_results:
                return behavior.exec_results[key]
            if self.exec_handler is not None:
                outcome = self.exec_handler(self._status(container), key, stdin or b"")
                return await outcome if isinstance(outcome, Awaitable) else outcome
            return ExecResult(exit_code=0, stdout=b"", stderr=b"")

        try:
            result = await asyncio.wait_for(run(), timeout)
        except TimeoutError:
            raise ExecTimeout(
                f"command {list(command)!r} did not finish within {timeout}s"
            ) from None
        truncated = (
            result.truncated or len(result.stdout) > max_output or len(result.stderr) > max_output
        )
        return replace(
            result,
            stdout=result.stdout[:max_output],
            stderr=result.stderr[:max_output],
            truncated=truncated,
        )

    async def open_exec(
        self,
        container_id: str,
        command: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = True,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
    ) -> FakeExecSession:
        if not command:
            raise InvalidConfig("exec needs a command")
        container = self._container(container_id)
        if container.state != ContainerState.RUNNING:
            raise Conflict(f"container {container.name} is not running: container state improper")
        session = FakeExecSession(self, container.id, tuple(command), tty=tty)
        if not stdin:
            await session.close_stdin()
        return session

    async def container_stats(
        self, container_ids: Sequence[str] | None = None
    ) -> list[ContainerStats]:
        if container_ids is None:
            wanted = [c for c in self.host.containers.values() if self._owned(c.labels)]
        else:
            wanted = []
            for container_id in container_ids:
                with contextlib.suppress(NotFound):
                    wanted.append(self._container(container_id))
        now = datetime.now(UTC)
        return [
            ContainerStats(
                container_id=c.id,
                timestamp=now,
                cpu_usage_ns=self.stats.get(c.id, (0, 0))[0],
                memory_usage_bytes=self.stats.get(c.id, (0, 0))[1],
                memory_working_set_bytes=self.stats.get(c.id, (0, 0))[1],
                memory_limit_bytes=c.config.resources.memory_limit_bytes,
                pids=1,
            )
            for c in wanted
            if c.state == ContainerState.RUNNING
        ]

    async def events(self, *, since: datetime | None = None) -> AsyncIterator[ContainerEvent]:
        queue: asyncio.Queue[ContainerEvent] = asyncio.Queue()
        self.host._subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                if self._owned(event.labels) and (since is None or event.time >= since):
                    yield event
        finally:
            self.host._subscribers.remove(queue)

    # ----------------------------------------------------------------- images

    def _image_info(self, image: _Image, *, inspected: bool = True) -> ImageInfo:
        return ImageInfo(
            id=image.id,
            repo_tags=tuple(image.names),
            size_bytes=image.size,
            created_at=image.created,
            user=image.user if inspected else None,
            labels=dict(image.labels),
        )

    async def image_exists(self, image: str) -> bool:
        return self.host.find_image(image) is not None

    async def inspect_image(self, image: str) -> ImageInfo:
        found = self.host.find_image(image)
        if found is None:
            raise ImageNotFound(image)
        return self._image_info(found)

    async def list_images(self) -> list[ImageInfo]:
        return [self._image_info(image, inspected=False) for image in self.host.images.values()]

    async def pull_image(self, image: str) -> ImageInfo:
        if not image or any(c.isspace() for c in image):
            raise ImagePullError(image, "invalid image reference")
        name = normalize_image_reference(image)
        if name in self.host.pull_errors:
            raise ImagePullError(image, self.host.pull_errors[name])
        if name not in self.host.registry:
            raise ImagePullError(
                image,
                f"initializing source docker://{name}: pinging container registry: no registry is reachable",
            )
        existing = self.host.find_image(name)
        if existing is not None:
            return self._image_info(existing)
        return await self.inspect_image(self.host.add_image(name))

    async def import_image(
        self,
        tarball: Path,
        reference: str,
        *,
        changes: Sequence[str] = (),
        message: str = "",
    ) -> ImageInfo:
        if not await asyncio.to_thread(tarball.is_file):
            raise InvalidConfig(f"{tarball} is not a file")
        size = (await asyncio.to_thread(tarball.stat)).st_size
        name = normalize_image_reference(reference)
        for image in self.host.images.values():
            if name in image.names:
                image.names.remove(name)
        image_id = self.host.add_image(name, size=size)
        image = self.host.images[image_id]
        for change in changes:
            keyword, _, value = change.partition(" ")
            if keyword.upper() == "USER":
                image.user = value.strip()
            elif keyword.upper() == "LABEL":
                label, _, label_value = value.partition("=")
                image.labels[label.strip()] = label_value.strip()
        return self._image_info(image)

    async def tag_image(self, image: str, reference: str) -> None:
        found = self.host.find_image(image)
        if found is None:
            raise ImageNotFound(image)
        name = normalize_image_reference(reference)
        for other in self.host.images.values():
            if name in other.names:
                other.names.remove(name)
        found.names.append(name)

    async def remove_image(self, image: str, *, force: bool = False) -> None:
        found = self.host.find_image(image)
        if found is None:
            return
        name = normalize_image_reference(image)
        if name in found.names and len(found.names) > 1:
            found.names.remove(name)
            return
        in_use = any(c.image_id == found.id for c in self.host.containers.values())
        if in_use and not force:
            raise Conflict(f"image {image} is in use by a container")
        self.host.images.pop(found.id, None)

    # ----------------------------------------------------------------- volumes

    def _volume_info(self, volume: _Volume) -> VolumeInfo:
        return VolumeInfo(
            name=volume.name,
            mountpoint=f"/fake/storage/volumes/{volume.name}/_data",
            labels=dict(volume.labels),
            created_at=volume.created,
        )

    async def create_volume(self, name: str, labels: Mapping[str, str] | None = None) -> VolumeInfo:
        validate_name(name, "volume name")
        validate_labels(labels or {})
        volume = self.host.volumes.get(name)
        if volume is None:
            volume = _Volume(name, {**(labels or {}), LABEL_NODE: self._node}, datetime.now(UTC))
            self.host.volumes[name] = volume
        if not self._owned(volume.labels):
            raise Conflict(f"volume {name} belongs to another node")
        return self._volume_info(volume)

    async def remove_volume(self, name: str, *, force: bool = False) -> None:
        volume = self.host.volumes.get(name)
        if volume is None or not self._owned(volume.labels):
            return
        users = [
            c
            for c in self.host.containers.values()
            if any(isinstance(m, VolumeMount) and m.volume == name for m in c.config.mounts)
        ]
        if users and not force:
            raise Conflict(f"volume {name} is being used by {len(users)} container(s)")
        for container in users:
            await self.remove_container(container.id, force=True)
        self.host.volumes.pop(name, None)

    async def list_volumes(self, labels: Mapping[str, str] | None = None) -> list[VolumeInfo]:
        return [
            self._volume_info(v)
            for v in self.host.volumes.values()
            if self._owned(v.labels)
            and all(v.labels.get(k) == val for k, val in (labels or {}).items())
        ]


def _conforms(
    runtime: FakeRuntime, session: FakeExecSession
) -> tuple[ContainerRuntime, ExecSession]:
    """Lets mypy prove the fake implements the protocol."""
    return runtime, session
