"""Container probes and lifecycle handlers, run by the agent.

Kubernetes' semantics: a startup probe gates the other two until it succeeds once;
liveness starts as passing and, after ``failureThreshold`` consecutive failures,
asks for the container to be restarted; readiness starts as failing and flips after
``successThreshold`` consecutive successes / ``failureThreshold`` consecutive
failures. The first probe runs ``initialDelaySeconds`` after the container started,
then every ``periodSeconds``; each has ``timeoutSeconds``.

httpGet and tcpSocket connect from inside the pod's network namespace to
127.0.0.1 (see ``kumo.node.netns``) unless the handler names another host; exec
runs the command in the container through the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from kumo.model.core import Container, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction
from kumo.node import netns
from kumo.node.runtime import ContainerRuntime, ContainerRuntimeError, ExecTimeout

__all__ = [
    "HandlerOutcome",
    "ProbeKind",
    "ProbeManager",
    "ProbeWorker",
    "resolve_port",
    "run_handler",
]

log = logging.getLogger(__name__)

_LOCAL_HOSTS = ("", "127.0.0.1", "localhost", "::1")


class ProbeKind(enum.StrEnum):
    STARTUP = "Startup"
    LIVENESS = "Liveness"
    READINESS = "Readiness"


@dataclass(frozen=True, slots=True)
class HandlerOutcome:
    ok: bool
    message: str = ""


def resolve_port(port: int | str, container: Container) -> int:
    """A handler's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for declared in container.ports or []:
        if declared.name == port:
            return declared.container_port
    raise ValueError(f"container {container.name!r} has no port named {port!r}")


def _target(action: HTTPGetAction | TCPSocketAction) -> tuple[bool, str]:
    """(connect from the pod's namespace?, host): the pod's loopback unless the handler
    names another host."""
    host = (action.host or "").strip()
    if host in _LOCAL_HOSTS:
        return True, "::1" if host == "::1" else "127.0.0.1"
    return False, host


def _os_reason(err: OSError) -> str:
    """ "connection refused" rather than asyncio's "connect call failed (...)"."""
    if err.errno:
        return os.strerror(err.errno)
    return err.strerror or str(err) or type(err).__name__


async def _http(action: HTTPGetAction, container: Container, pid: int | None) -> HandlerOutcome:
    port = resolve_port(action.port, container)
    in_pod, host = _target(action)
    scheme = (action.scheme or "HTTP").upper()
    path = action.path or "/"
    url = f"{scheme.lower()}://{host}:{port}{path if path.startswith('/') else '/' + path}"
    headers = {h.name: h.value for h in action.http_headers or []}
    try:
        result = await netns.http_get(
            pid if in_pod else None, host, port, path, scheme=scheme, headers=headers
        )
    except netns.NetnsError as err:
        return HandlerOutcome(False, f'Get "{url}": {err.strerror}')
    except (OSError, ValueError) as err:
        reason = _os_reason(err) if isinstance(err, OSError) else str(err)
        return HandlerOutcome(
            False, f'Get "{url}": dial tcp {host}:{port}: connect: {reason.lower()}'
        )
    if 200 <= result.status < 400:
        return HandlerOutcome(True)
    return HandlerOutcome(False, f"HTTP probe failed with statuscode: {result.status}")


async def _tcp(action: TCPSocketAction, container: Container, pid: int | None) -> HandlerOutcome:
    port = resolve_port(action.port, container)
    in_pod, host = _target(action)
    try:
        await netns.tcp_connect(pid if in_pod else None, host, port)
    except OSError as err:
        reason = _os_reason(err).lower()
        return HandlerOutcome(False, f"dial tcp {host}:{port}: connect: {reason}")
    return HandlerOutcome(True)


async def run_handler(
    runtime: ContainerRuntime,
    container: Container,
    handler: Probe | LifecycleHandler,
    *,
    container_id: str,
    pid: int | None,
    timeout: float,  # noqa: ASYNC109 - exec needs it to kill the process; others are cut off
) -> HandlerOutcome:
    """Run one probe or lifecycle handler once, within ``timeout`` seconds."""
    try:
        if handler.exec is not None:
            command = list(handler.exec.command or [])
            if not command:
                return HandlerOutcome(False, "exec handler has no command")
            try:
                result = await runtime.exec(container_id, command, timeout=timeout)
            except ExecTimeout:
                return HandlerOutcome(False, f"command {command!r} timed out")
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            if result.exit_code == 0:
                return HandlerOutcome(True, output)
            return HandlerOutcome(
                False, output or f"command {command!r} exited with {result.exit_code}"
            )
        if handler.http_get is not None:
            async with asyncio.timeout(timeout):
                return await _http(handler.http_get, container, pid)
        if handler.tcp_socket is not None:
            async with asyncio.timeout(timeout):
                return await _tcp(handler.tcp_socket, container, pid)
        if isinstance(handler, LifecycleHandler) and handler.sleep is not None:
            await asyncio.sleep(min(handler.sleep.seconds, timeout))
            return HandlerOutcome(True)
        if isinstance(handler, Probe) and handler.grpc is not None:
            return HandlerOutcome(False, "grpc probes are not supported by kumo")
        return HandlerOutcome(False, "the handler names no action")
    except TimeoutError:
        return HandlerOutcome(False, f"timeout: no answer within {timeout:g}s")
    except ValueError as err:
        return HandlerOutcome(False, str(err))
    except ContainerRuntimeError as err:
        return HandlerOutcome(False, err.reason)


class ProbeWorker:
    """One probe of one container run on its schedule in its own task. ``on_change`` is
    called whenever the result flips; ``on_failure`` with each failure message (for
    Unhealthy events)."""

    def __init__(
        self,
        kind: ProbeKind,
        probe: Probe,
        container: Container,
        *,
        container_id: str,
        pid: int | None,
        started_at: float,
        runtime: ContainerRuntime,
        on_change: Callable[[], None],
        on_failure: Callable[[ProbeKind, str], None],
        gate: Callable[[], bool] | None = None,
        initial: bool | None = None,
    ) -> None:
        self.kind = kind
        self.probe = probe
        self.container = container
        self.container_id = container_id
        self.pid = pid
        self.started_at = started_at
        self.runtime = runtime
        self.on_change = on_change
        self.on_failure = on_failure
        self.gate = gate
        if initial is None:
            initial = kind == ProbeKind.LIVENESS
        self.result: bool = initial
        # True once the startup probe succeeded (and then it stops).
        self.done = False
        self._successes = 0
        self._failures = 0
        self.last_message = ""

    @property
    def period(self) -> float:
        return float(self.probe.period_seconds or 10)

    async def run(self) -> None:
        delay = (self.probe.initial_delay_seconds or 0) - (time.time() - self.started_at)
        if delay > 0:
            await asyncio.sleep(delay)
        while not self.done:
            if self.gate is None or self.gate():
                await self.probe_once()
            if self.done:
                return
            await asyncio.sleep(self.period)

    async def probe_once(self) -> None:
        outcome = await run_handler(
            self.runtime,
            self.container,
            self.probe,
            container_id=self.container_id,
            pid=self.pid,
            timeout=float(self.probe.timeout_seconds or 1),
        )
        before = self.result
        if outcome.ok:
            self._successes += 1
            self._failures = 0
            if self._successes >= (self.probe.success_threshold or 1):
                self.result = True
                if self.kind == ProbeKind.STARTUP:
                    self.done = True
        else:
            self._failures += 1
            self._successes = 0
            self.last_message = outcome.message
            self.on_failure(self.kind, outcome.message)
            if self._failures >= (self.probe.failure_threshold or 3):
                self.result = False
                if self.kind != ProbeKind.READINESS:
                    # Liveness/startup failure: the container is restarted; a new
                    # container gets a new worker.
                    self.done = True
        if self.result != before or self.done:
            self.on_change()

    @property
    def failed(self) -> bool:
        """For liveness and startup: the container must be restarted."""
        return self.kind != ProbeKind.READINESS and self.done and not self.result


@dataclass(slots=True)
class _ContainerProbes:
    container_id: str
    workers: dict[ProbeKind, ProbeWorker]
    tasks: list[asyncio.Task[None]]


class ProbeManager:
    """The probes of one pod's running containers, keyed by container id."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        *,
        on_change: Callable[[], None],
        on_failure: Callable[[Container, ProbeKind, str], None],
    ) -> None:
        self.runtime = runtime
        self.on_change = on_change
        self.on_failure = on_failure
        self._containers: dict[str, _ContainerProbes] = {}

    def has(self, container_id: str) -> bool:
        return container_id in self._containers

    def ensure(
        self,
        container: Container,
        container_id: str,
        pid: int | None,
        started_at: float,
        *,
        seed_ready: bool = False,
        seed_started: bool = False,
    ) -> None:
        """Start the probe workers of a running container (once per container id).
        ``seed_*`` carry over what an earlier agent reported for the same container, so an
        agent restart does not flip a ready container to unready."""
        if container_id in self._containers:
            return
        workers: dict[ProbeKind, ProbeWorker] = {}
        startup = container.startup_probe

        def started() -> bool:
            worker = workers.get(ProbeKind.STARTUP)
            return worker is None or worker.result

        def failure(kind: ProbeKind, message: str) -> None:
            self.on_failure(container, kind, message)

        if startup is not None:
            workers[ProbeKind.STARTUP] = ProbeWorker(
                ProbeKind.STARTUP,
                startup,
                container,
                container_id=container_id,
                pid=pid,
                started_at=started_at,
                runtime=self.runtime,
                on_change=self.on_change,
                on_failure=failure,
                initial=seed_started or None,
            )
            if seed_started:
                workers[ProbeKind.STARTUP].done = True
        for kind, probe in (
            (ProbeKind.LIVENESS, container.liveness_probe),
            (ProbeKind.READINESS, container.readiness_probe),
        ):
            if probe is None:
                continue
            workers[kind] = ProbeWorker(
                kind,
                probe,
                container,
                container_id=container_id,
                pid=pid,
                started_at=started_at,
                runtime=self.runtime,
                on_change=self.on_change,
                on_failure=failure,
                gate=started,
                initial=True if kind == ProbeKind.LIVENESS else seed_ready,
            )
        tasks = [
            asyncio.create_task(worker.run(), name=f"probe-{kind}-{container_id[:12]}")
            for kind, worker in workers.items()
            if not worker.done
        ]
        self._containers[container_id] = _ContainerProbes(container_id, workers, tasks)

    def _worker(self, container_id: str, kind: ProbeKind) -> ProbeWorker | None:
        entry = self._containers.get(container_id)
        return entry.workers.get(kind) if entry else None

    def started(self, container_id: str) -> bool:
        """Startup probe passed (or there is none) — for a container with probes running."""
        worker = self._worker(container_id, ProbeKind.STARTUP)
        return worker is None or worker.result

    def ready(self, container_id: str) -> bool:
        """Readiness passed (or there is no readiness probe) and the container started."""
        if container_id not in self._containers or not self.started(container_id):
            return False
        worker = self._worker(container_id, ProbeKind.READINESS)
        return worker is None or worker.result

    def restart_reason(self, container_id: str) -> str | None:
        """Why the container must be restarted ("liveness" / "startup"), if it must."""
        for kind in (ProbeKind.STARTUP, ProbeKind.LIVENESS):
            worker = self._worker(container_id, kind)
            if worker is not None and worker.failed:
                return kind.value.lower()
        return None

    async def forget(self, container_id: str) -> None:
        entry = self._containers.pop(container_id, None)
        if entry is None:
            return
        for task in entry.tasks:
            task.cancel()
        for task in entry.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def keep_only(self, container_ids: set[str]) -> None:
        for container_id in [c for c in self._containers if c not in container_ids]:
            await self.forget(container_id)

    async def stop(self) -> None:
        await self.keep_only(set())
