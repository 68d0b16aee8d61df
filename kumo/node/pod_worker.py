"""One task per pod: makes the node run what the pod says, and reports what runs.

A worker syncs its pod whenever something may have changed (a new version of the
pod from the API, a container event, a probe flipping, a back-off ending) and every
``sync_period`` seconds anyway. A sync:

1. reads the pod's sandbox and containers from the runtime (labels carry the pod
   uid, container name and attempt, so a restarted agent sees the same thing);
2. pod being deleted: preStop hooks, SIGTERM, SIGKILL after the grace period, the
   sandbox and the pod's volumes removed, the Pod object deleted;
3. otherwise: creates the sandbox if there is none, runs init containers one at a
   time in order, each to completion, then the app containers; restarts what
   exited (per ``restartPolicy``, with crash-loop back-off), kills what failed its
   liveness or startup probe, keeps probe workers running for running containers;
4. computes the status and writes it through the status subresource only when it
   differs from what the API has.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kumo.model.base import to_wire
from kumo.model.core import Container, Pod, PodStatus
from kumo.node.api import NodeApi, PodGone, format_time
from kumo.node.backoff import Backoff
from kumo.node.config import AgentOptions
from kumo.node.containers import (
    LABEL_SPEC_HASH,
    ConfigError,
    EnvContext,
    build_container_config,
    pod_full_name,
    resolve_env,
    spec_hash,
)
from kumo.node.pod_status import (
    CONTAINER_ID_PREFIX,
    Attempt,
    ContainerView,
    build_status,
    compute_conditions,
    compute_phase,
    container_status,
    initialized,
)
from kumo.node.ports import HostPortAllocator, PortsExhausted
from kumo.node.probes import ProbeKind, ProbeManager, run_handler
from kumo.node.runtime import (
    LABEL_POD_UID,
    Conflict,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerStartError,
    ContainerState,
    ContainerStatus,
    HostAlias,
    ImageNotFound,
    ImagePullError,
    InvalidConfig,
    NotFound,
    PortMapping,
    SandboxConfig,
    SandboxState,
    SandboxStatus,
)
from kumo.node.service_discovery import (
    KUBERNETES_NAMESPACE,
    KUBERNETES_SERVICE,
    pod_dns_config,
    service_env,
    services_for_env,
)
from kumo.node.volumes import PreparedVolume, VolumeError, VolumeManager

__all__ = ["PodWorker", "WorkerContext", "go_duration"]

log = logging.getLogger(__name__)

_KEEP_ATTEMPTS = 2  # the current attempt and the previous one (kumo logs --previous)
_DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def go_duration(seconds: float) -> str:
    """Seconds the way Go prints a time.Duration: ``300ms``, ``1.5s``, ``10s``, ``1m20s``,
    ``5m0s``."""
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{rest}s"


@dataclass(slots=True)
class WorkerContext:
    """What every pod worker of an agent shares."""

    runtime: ContainerRuntime
    api: NodeApi
    options: AgentOptions
    volumes: VolumeManager
    ports: HostPortAllocator
    crash_backoff: Backoff
    image_backoff: Backoff
    node_cpu_millis: int = 0
    node_memory_bytes: int = 0
    # Called with the pod uid when a worker has finished for good.
    on_finished: Callable[[str], None] = field(default=lambda uid: None)


class _Wake(Exception):
    """Internal: stop this sync early and sync again right away."""


class PodWorker:
    def __init__(self, ctx: WorkerContext, pod: Pod) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid = pod.metadata.uid or ""
        self.deleted = False
        self.finished = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sandbox: SandboxStatus | None = None
        self._volumes: dict[str, PreparedVolume] | None = None
        self._waiting: dict[str, tuple[str, str]] = {}
        self._image_failed_at: dict[str, float] = {}
        self._inspected: dict[str, ContainerStatus] = {}
        self._pids: dict[str, int | None] = {}
        self._wake_at: float | None = None
        self._refreshed_at = time.monotonic()
        self._start_time: str | None = pod.status.start_time if pod.status else None
        self._deadline_exceeded = False
        self._terminal = (pod.status.phase if pod.status else None) in ("Succeeded", "Failed")
        self._sandbox_failures = 0
        self._sandbox_retry_at = 0.0
        # Runtime changes made by the current sync (containers created, started, stopped).
        self._changes = 0
        self._deferred_report = False
        # Highest attempt seen per container name (restart counts survive a sandbox
        # that had to be re-created).
        self._attempt_floor: dict[str, int] = {}
        # (container, containerPort, protocol) -> host port allocated from the range
        self._allocated_ports: dict[tuple[str, int, str], int] = {}
        self.probes = ProbeManager(ctx.runtime, on_change=self.wake, on_failure=self._probe_failed)

    # ---- control -------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-{self.key}")

    def update(self, pod: Pod) -> None:
        """A newer version of the pod from the API."""
        if _rv(pod) >= _rv(self.pod):
            self.pod = pod
        self.wake()

    def mark_deleted(self) -> None:
        """The Pod object is gone from the API: tear everything down."""
        self.deleted = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop working on the pod (agent shutdown); containers keep running."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.probes.stop()

    def _schedule(self, at: float) -> None:
        """Sync again at ``at`` (epoch seconds) at the latest."""
        if self._wake_at is None or at < self._wake_at:
            self._wake_at = at

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._wake_at = None
            try:
                done = await self._sync()
            except asyncio.CancelledError:
                raise
            except PodGone:
                self.deleted = True
                continue
            except _Wake:
                continue
            except Exception as err:
                log.warning(
                    "pod %s: sync failed: %s",
                    self.key,
                    err,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                self._schedule(time.time() + 2.0)
                done = False
            if done:
                await self.probes.stop()
                self.finished.set()
                self.ctx.on_finished(self.uid)
                return
            timeout = self.ctx.options.sync_period
            if self._wake_at is not None:
                timeout = max(0.0, min(timeout, self._wake_at - time.time()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    # ---- observation -----------------------------------------------------------------------

    async def _observe(self) -> dict[str, list[Attempt]]:
        """The pod's containers by container name, oldest attempt first."""
        runtime = self.ctx.runtime
        found: dict[str, list[Attempt]] = {}
        for summary in await runtime.list_containers({LABEL_POD_UID: self.uid}):
            info: Any = summary
            if summary.state in (ContainerState.EXITED, ContainerState.CREATED):
                cached = self._inspected.get(summary.id)
                if cached is None:
                    try:
                        cached = await runtime.container_status(summary.id)
                    except NotFound:
                        continue
                    if cached.state == ContainerState.EXITED:
                        self._inspected[summary.id] = cached
                info = cached
            found.setdefault(summary.container_name, []).append(
                Attempt.of(info, summary.labels.get(LABEL_SPEC_HASH, ""))
            )
        for name, attempts in found.items():
            attempts.sort(key=lambda a: a.attempt)
            self._attempt_floor[name] = max(self._attempt_floor.get(name, -1), attempts[-1].attempt)
        return found

    # ---- the sync -------------------------------------------------------------------------

    async def _sync(self) -> bool:
        """One pass; True when the worker is finished for good."""
        if self.deleted:
            await self._tear_down(grace=None, delete_object=False)
            return True
        pod = self.pod
        if pod.metadata.deletion_timestamp:
            await self._tear_down(grace=_grace_of(pod), delete_object=True)
            return True
        if self._start_time is None:
            self._start_time = format_time()
        observed = await self._observe()
        self._changes = 0
        if not self._terminal:
            observed = await self._ensure_sandbox(observed)
            if self._sandbox is not None:
                await self._run_containers(observed)
                if self._changes:
                    observed = await self._observe()
                await self._maybe_refresh_volumes()
        await self._garbage_collect(observed)
        if self._changes and self._wake.is_set() and not self._deferred_report:
            # Something changed again while this sync ran (typically the first probe
            # of a container just started): report once, after the next sync.
            self._deferred_report = True
            return False
        self._deferred_report = False
        await self._report(observed)
        return False

    async def _ensure_sandbox(self, observed: dict[str, list[Attempt]]) -> dict[str, list[Attempt]]:
        runtime = self.ctx.runtime
        sandboxes = await runtime.list_sandboxes({LABEL_POD_UID: self.uid})
        ready = sorted(
            (s for s in sandboxes if s.state == SandboxState.READY),
            key=lambda s: s.created_at or datetime.datetime.min.replace(tzinfo=datetime.UTC),
        )
        if ready:
            keep = ready[-1]
            for extra in sandboxes:
                if extra.id != keep.id:
                    await runtime.remove_sandbox(extra.id)
            if self._sandbox is None or self._sandbox.id != keep.id:
                self._sandbox = await runtime.sandbox_status(keep.id)
                for port in self._sandbox.ports:
                    self.ctx.ports.reserve(self.uid, port.host_port, port.protocol)
            return observed
        if sandboxes:
            # The infra container died: everything in the pod goes and comes back.
            self._event(
                "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created."
            )
            await self.probes.stop()
            for stale in sandboxes:
                await runtime.remove_sandbox(stale.id)
            self._sandbox = None
            observed = await self._observe()
        if self._sandbox_failures and self._sandbox_retry_at > time.time():
            self._schedule(self._sandbox_retry_at)
            return observed
        try:
            await self._prepare_volumes()
            self._sandbox = await self._create_sandbox()
            self._sandbox_failures = 0
            self._waiting = {
                name: why for name, why in self._waiting.items() if why[0] != "ContainerCreating"
            }
        except (VolumeError, ContainerRuntimeError, PortsExhausted) as err:
            self._sandbox_failures += 1
            delay = min(2.0**self._sandbox_failures, 60.0)
            self._sandbox_retry_at = time.time() + delay
            self._schedule(self._sandbox_retry_at)
            if isinstance(err, VolumeError):
                self._event("Warning", "FailedMount", str(err))
                message = str(err)
            else:
                reason = err.reason if isinstance(err, ContainerRuntimeError) else str(err)
                message = f"Failed to create pod sandbox: {reason}"
                self._event("Warning", "FailedCreatePodSandBox", message)
            for container in self._all_containers():
                self._waiting[container.name] = ("ContainerCreating", message)
        return observed

    async def _prepare_volumes(self) -> dict[str, PreparedVolume]:
        if self._volumes is None:
            self._volumes = await self.ctx.volumes.prepare(self.pod)
        return self._volumes

    async def _maybe_refresh_volumes(self) -> None:
        interval = self.ctx.options.config_refresh_interval
        if time.monotonic() - self._refreshed_at < interval:
            return
        self._refreshed_at = time.monotonic()
        await self.ctx.volumes.refresh(self.pod)

    def _port_mappings(self) -> list[PortMapping]:
        """Every container port, published on the node address: its hostPort, or a
        port allocated from the agent's range (kept across sandbox retries)."""
        mappings: list[PortMapping] = []
        address = self.ctx.options.address
        for container in self._all_containers():
            for port in container.ports or []:
                raw = (port.protocol or "TCP").lower()
                if raw not in ("tcp", "udp"):
                    continue  # SCTP cannot be published by Podman
                protocol: Literal["tcp", "udp"] = "udp" if raw == "udp" else "tcp"
                host_ip = port.host_ip or address
                if port.host_port:
                    if not self.ctx.ports.reserve(self.uid, port.host_port, protocol):
                        raise Conflict(
                            f"host port {port.host_port}/{protocol} is used by another pod"
                        )
                    host_port = port.host_port
                else:
                    key = (container.name, port.container_port, protocol)
                    if key not in self._allocated_ports:
                        self._allocated_ports[key] = self.ctx.ports.allocate(
                            self.uid, host_ip, protocol
                        )
                    host_port = self._allocated_ports[key]
                mappings.append(PortMapping(port.container_port, host_port, protocol, host_ip))
        return mappings

    async def _create_sandbox(self) -> SandboxStatus:
        pod = self.pod
        spec = pod.spec
        options = self.ctx.options
        dns = pod_dns_config(pod, options.cluster_dns, options.cluster_domain)
        hostname = (spec.hostname or pod.metadata.name or "")[:63].rstrip("-.") or None
        for attempt in range(3):
            ports = self._port_mappings()
            config = SandboxConfig(
                namespace=pod.metadata.namespace or "default",
                name=pod.metadata.name or "",
                uid=self.uid,
                hostname=hostname,
                ports=tuple(ports),
                host_aliases=tuple(
                    HostAlias(alias.ip, tuple(alias.hostnames or ()))
                    for alias in spec.host_aliases or []
                    if alias.hostnames
                ),
                dns=dns,
            )
            try:
                return await self.ctx.runtime.run_sandbox(config)
            except Conflict as err:
                if "port" not in err.reason or not self._allocated_ports or attempt == 2:
                    raise
                # An allocated port turned out to be taken (by something outside this
                # agent): give them back and try fresh ones.
                self.ctx.ports.release(
                    self.uid, [(port, key[2]) for key, port in self._allocated_ports.items()]
                )
                self._allocated_ports.clear()
        raise AssertionError("unreachable")

    def _all_containers(self) -> list[Container]:
        return [*(self.pod.spec.init_containers or []), *self.pod.spec.containers]

    async def _run_containers(self, observed: dict[str, list[Attempt]]) -> None:
        pod = self.pod
        policy = pod.spec.restart_policy or "Always"
        init_containers = pod.spec.init_containers or []
        app_views = [
            ContainerView(c.name, c.image or "", _last(observed.get(c.name)))
            for c in pod.spec.containers
        ]
        init_views = [
            ContainerView(c.name, c.image or "", _last(observed.get(c.name)))
            for c in init_containers
        ]
        if self._check_deadline():
            await self._kill_all(observed)
            return
        if not initialized(init_views, app_views):
            for container in init_containers:
                attempts = observed.get(container.name, [])
                current = attempts[-1] if attempts else None
                if current is None:
                    await self._start(container, self._attempt_floor.get(container.name, -1) + 1)
                    return
                if current.state == ContainerState.CREATED and not current.error:
                    await self._resume_created(container, current)
                    return
                if current.running:
                    return
                if current.succeeded:
                    continue
                if policy == "Never":
                    return  # the pod has failed
                await self._restart(container, current)
                return
            return
        for container in pod.spec.containers:
            attempts = observed.get(container.name, [])
            current = attempts[-1] if attempts else None
            if current is None:
                await self._start(container, self._attempt_floor.get(container.name, -1) + 1)
                continue
            if current.state == ContainerState.CREATED and not current.error:
                await self._resume_created(container, current)
                continue
            if current.running:
                await self._check_running(container, current)
                continue
            if _should_restart(policy, current):
                await self._restart(container, current)

    async def _resume_created(self, container: Container, current: Attempt) -> None:
        """A container created but never started (the agent stopped in between)."""
        self._changes += 1
        try:
            await self.ctx.runtime.start_container(current.id)
        except ContainerStartError as err:
            self._event("Warning", "Failed", f"Error: {err.reason}", container)
            return
        self._event("Normal", "Started", f"Started container {container.name}", container)
        self._waiting.pop(container.name, None)
        await self._start_probes(container, current.id, time.time())

    async def _check_running(self, container: Container, current: Attempt) -> None:
        runtime = self.ctx.runtime
        wanted_hash = spec_hash(container)
        if current.spec_hash and current.spec_hash != wanted_hash:
            self._event(
                "Normal",
                "Killing",
                f"Container {container.name} definition changed, will be restarted",
                container,
            )
            await self.probes.forget(current.id)
            await runtime.stop_container(current.id, _grace_of(self.pod))
            self.ctx.crash_backoff.reset(self._key(container))
            await self._start(container, current.attempt + 1)
            return
        reason = self.probes.restart_reason(current.id)
        if reason is not None:
            self._event(
                "Normal",
                "Killing",
                f"Container {container.name} failed {reason} probe, will be restarted",
                container,
            )
            probe = container.liveness_probe if reason == "liveness" else container.startup_probe
            grace = _grace_of(self.pod)
            if probe is not None and probe.termination_grace_period_seconds is not None:
                grace = probe.termination_grace_period_seconds
            await self.probes.forget(current.id)
            await runtime.stop_container(current.id, grace)
            raise _Wake
        if not self.probes.has(current.id):
            started = current.started_at.timestamp() if current.started_at else time.time()
            await self._start_probes(container, current.id, started)

    async def _start_probes(self, container: Container, container_id: str, started: float) -> None:
        """Probe workers for a running app container (seeded with what the API last
        said about it, so an agent restart does not make a ready container unready)."""
        if not any(c.name == container.name for c in self.pod.spec.containers):
            return
        pid = await self._pid(container_id)
        seed = self._reported(container_id)
        self.probes.ensure(
            container,
            container_id,
            pid,
            started,
            seed_ready=bool(seed.get("ready")),
            seed_started=bool(seed.get("started")),
        )

    def _reported(self, container_id: str) -> dict[str, Any]:
        """What the API's status last said about this container (after an agent restart)."""
        status = self.pod.status
        if status is None:
            return {}
        for entry in [*(status.container_statuses or []), *(status.init_container_statuses or [])]:
            if entry.container_id == CONTAINER_ID_PREFIX + container_id:
                return {"ready": entry.ready, "started": entry.started}
        return {}

    async def _pid(self, container_id: str) -> int | None:
        if container_id not in self._pids:
            try:
                self._pids[container_id] = (
                    await self.ctx.runtime.container_status(container_id)
                ).pid
            except NotFound:
                return None
        return self._pids[container_id]

    def _key(self, container: Container) -> tuple[str, str]:
        return (self.uid, container.name)

    async def _restart(self, container: Container, current: Attempt) -> None:
        backoff = self.ctx.crash_backoff
        key = self._key(container)
        if (
            current.started_at is not None
            and current.finished_at is not None
            and (current.finished_at - current.started_at).total_seconds()
            >= self.ctx.options.restart_backoff_reset
        ):
            backoff.reset(key)
        failed_at = current.failed_at
        finished = failed_at.timestamp() if failed_at is not None else time.time()
        if backoff.in_backoff(key, finished):
            delay = backoff.delay(key)
            self._waiting[container.name] = (
                "CrashLoopBackOff",
                f"back-off {go_duration(delay)} restarting failed container={container.name} "
                f"pod={pod_full_name(self.pod)}",
            )
            self._event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {container.name} in pod {pod_full_name(self.pod)}",
                container,
            )
            self._schedule(backoff.retry_at(key, finished))
            return
        backoff.next(key)
        await self._start(container, current.attempt + 1)

    async def _start(self, container: Container, attempt: int) -> None:
        """Pull if needed, create and start one attempt of the container."""
        runtime = self.ctx.runtime
        self._changes += 1
        assert self._sandbox is not None
        image = container.image or ""
        if not await self._ensure_image(container, image):
            return
        try:
            volumes = await self._prepare_volumes()
            env_context = EnvContext(
                pod_ip=self._sandbox.ip or "",
                host_ip=self.ctx.options.address,
                node_cpu_millis=self.ctx.node_cpu_millis,
                node_memory_bytes=self.ctx.node_memory_bytes,
                service_env=await self._service_env(),
            )
            env = await resolve_env(self.pod, container, self.ctx.api, env_context)
            image_user = None
            if _wants_non_root(self.pod, container):
                image_user = (await runtime.inspect_image(image)).user
            config = build_container_config(
                self.pod,
                container,
                attempt=attempt,
                env=env,
                mounts=self.ctx.volumes.mounts_for(container, volumes),
                image=image,
                image_user=image_user,
            )
            container_id = await runtime.create_container(self._sandbox.id, config)
        except (ConfigError, InvalidConfig, VolumeError) as err:
            message = err.reason if isinstance(err, InvalidConfig) else str(err)
            self._waiting[container.name] = ("CreateContainerConfigError", message)
            self._event("Warning", "Failed", f"Error: {message}", container)
            self._schedule(time.time() + min(self.ctx.options.sync_period, 5.0))
            return
        except ImageNotFound as err:
            self._waiting[container.name] = ("ErrImagePull", err.reason)
            self._schedule(time.time() + 1.0)
            return
        except Conflict as err:
            # That attempt exists already; the next observation will show it.
            log.info("pod %s: %s", self.key, err.reason)
            self._schedule(time.time() + 1.0)
            return
        self._attempt_floor[container.name] = max(
            self._attempt_floor.get(container.name, -1), attempt
        )
        self._event("Normal", "Created", f"Created container {container.name}", container)
        try:
            await runtime.start_container(container_id)
        except ContainerStartError as err:
            self._waiting.pop(container.name, None)
            self._event("Warning", "Failed", f"Error: {err.reason}", container)
            return
        self._waiting.pop(container.name, None)
        self._event("Normal", "Started", f"Started container {container.name}", container)
        lifecycle = container.lifecycle
        if lifecycle is not None and lifecycle.post_start is not None:
            pid = await self._pid(container_id)
            outcome = await run_handler(
                runtime,
                container,
                lifecycle.post_start,
                container_id=container_id,
                pid=pid,
                timeout=float(_grace_of(self.pod) or 30),
            )
            if not outcome.ok:
                self._event(
                    "Warning",
                    "FailedPostStartHook",
                    f"PostStartHook failed: {outcome.message}",
                    container,
                )
                await runtime.stop_container(container_id, _grace_of(self.pod))
                return
        # Probes start with the container, not at the next sync.
        await self._start_probes(container, container_id, time.time())

    async def _service_env(self) -> dict[str, str]:
        """The variables of the Services that exist now (see service_discovery)."""
        namespace = self.pod.metadata.namespace or "default"
        links = self.pod.spec.enable_service_links is not False
        api = self.ctx.api
        services = list(await api.list_services(namespace)) if links else []
        if not links or namespace != KUBERNETES_NAMESPACE:
            master = await api.get_service(KUBERNETES_NAMESPACE, KUBERNETES_SERVICE)
            if master is not None:
                services.append(master)
        return service_env(services_for_env(services, namespace, links))

    async def _ensure_image(self, container: Container, image: str) -> bool:
        runtime = self.ctx.runtime
        policy = container.image_pull_policy or "IfNotPresent"
        key = self._key(container)
        if await runtime.image_exists(image):
            # Present images are used as they are, whatever the policy: no registry is
            # needed to run what a node already has.
            self._image_failed_at.pop(container.name, None)
            self.ctx.image_backoff.reset(key)
            self._event(
                "Normal",
                "Pulled",
                f'Container image "{image}" already present on machine',
                container,
            )
            return True
        if policy == "Never":
            message = f'Container image "{image}" is not present with pull policy of Never'
            self._waiting[container.name] = ("ErrImageNeverPull", message)
            self._event("Warning", "ErrImageNeverPull", message, container)
            self._schedule(time.time() + self.ctx.options.sync_period)
            return False
        backoff = self.ctx.image_backoff
        failed_at = self._image_failed_at.get(container.name)
        if failed_at is not None and backoff.in_backoff(key, failed_at):
            self._waiting[container.name] = (
                "ImagePullBackOff",
                f'Back-off pulling image "{image}"',
            )
            self._event("Normal", "BackOff", f'Back-off pulling image "{image}"', container)
            self._schedule(backoff.retry_at(key, failed_at))
            return False
        self._event("Normal", "Pulling", f'Pulling image "{image}"', container)
        began = time.monotonic()
        try:
            await runtime.pull_image(image)
        except ImagePullError as err:
            backoff.next(key)
            now = time.time()
            self._image_failed_at[container.name] = now
            self._waiting[container.name] = ("ErrImagePull", err.reason)
            self._event("Warning", "Failed", err.reason, container)
            self._event("Warning", "Failed", "Error: ErrImagePull", container)
            # Look again soon (the status then says ImagePullBackOff) and pull again
            # once the back-off is over.
            self._schedule(now + min(0.5, backoff.delay(key) / 2))
            return False
        self._event(
            "Normal",
            "Pulled",
            f'Successfully pulled image "{image}" in {time.monotonic() - began:.3f}s',
            container,
        )
        return True

    # ---- deadlines, kills, teardown ------------------------------------------------------

    def _check_deadline(self) -> bool:
        deadline = self.pod.spec.active_deadline_seconds
        if deadline is None or self._start_time is None:
            return False
        started = datetime.datetime.fromisoformat(self._start_time.replace("Z", "+00:00"))
        elapsed = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
        if elapsed < deadline:
            self._schedule(started.timestamp() + deadline)
            return False
        if not self._deadline_exceeded:
            self._deadline_exceeded = True
            self._event("Normal", "DeadlineExceeded", _DEADLINE_MESSAGE)
        return True

    async def _kill_all(self, observed: dict[str, list[Attempt]]) -> None:
        self._changes += 1
        await self.probes.stop()
        grace = _grace_of(self.pod)
        running = [a for attempts in observed.values() for a in attempts if a.running]
        await asyncio.gather(
            *(self.ctx.runtime.stop_container(a.id, grace) for a in running),
            return_exceptions=True,
        )

    async def _tear_down(self, grace: int | None, *, delete_object: bool) -> None:
        """Stop everything of the pod, remove the sandbox and volumes; delete the Pod
        object when it is waiting for us (graceful deletion)."""
        runtime = self.ctx.runtime
        await self.probes.stop()
        observed = await self._observe()
        specs = {c.name: c for c in self._all_containers()}
        if grace is None:
            # The object is gone already (force-deleted, or finished and deleted).
            grace = 0 if self._terminal else min(_grace_of(self.pod), 2)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace

        async def stop_one(name: str, attempt: Attempt) -> None:
            container = specs.get(name)
            lifecycle = container.lifecycle if container else None
            if container is not None and lifecycle is not None and lifecycle.pre_stop is not None:
                remaining = deadline - loop.time()
                if remaining > 0:
                    pid = await self._pid(attempt.id)
                    outcome = await run_handler(
                        runtime,
                        container,
                        lifecycle.pre_stop,
                        container_id=attempt.id,
                        pid=pid,
                        timeout=remaining,
                    )
                    if not outcome.ok:
                        self._event(
                            "Warning",
                            "FailedPreStopHook",
                            f"PreStopHook failed: {outcome.message}",
                            container,
                        )
            if container is not None:
                self._event("Normal", "Killing", f"Stopping container {name}", container)
            with contextlib.suppress(NotFound, Conflict):
                # Podman counts whole seconds.
                await runtime.stop_container(attempt.id, max(0, round(deadline - loop.time())))

        running = [(name, a) for name, attempts in observed.items() for a in attempts if a.running]
        await asyncio.gather(*(stop_one(name, a) for name, a in running))
        for sandbox in await runtime.list_sandboxes({LABEL_POD_UID: self.uid}):
            await runtime.remove_sandbox(sandbox.id, grace_period=0)
        for leftover in await runtime.list_containers({LABEL_POD_UID: self.uid}):
            await runtime.remove_container(leftover.id, force=True)
        await self.ctx.volumes.cleanup(self.uid)
        self.ctx.ports.release(self.uid)
        self.ctx.crash_backoff.forget(lambda key: isinstance(key, tuple) and key[0] == self.uid)
        self.ctx.image_backoff.forget(lambda key: isinstance(key, tuple) and key[0] == self.uid)
        if delete_object:
            await self.ctx.api.delete_pod(self.pod)

    async def _garbage_collect(self, observed: dict[str, list[Attempt]]) -> None:
        for attempts in observed.values():
            finished = [a for a in attempts[:-1] if a.finished]
            for old in finished[: max(0, len(attempts) - _KEEP_ATTEMPTS)]:
                with contextlib.suppress(ContainerRuntimeError):
                    await self.ctx.runtime.remove_container(old.id, force=True)
                self._inspected.pop(old.id, None)
                self._pids.pop(old.id, None)

    # ---- status ---------------------------------------------------------------------------

    def _views(
        self, observed: dict[str, list[Attempt]]
    ) -> tuple[list[ContainerView], list[ContainerView]]:
        pod = self.pod

        def base(container: Container) -> ContainerView:
            attempts = observed.get(container.name, [])
            return ContainerView(
                container.name,
                container.image or "",
                attempts[-1] if attempts else None,
                attempts[-2] if len(attempts) >= 2 else None,
            )

        init_views = [base(c) for c in pod.spec.init_containers or []]
        app_views = [base(c) for c in pod.spec.containers]
        is_initialized = initialized(init_views, app_views)
        for view, init in [(v, True) for v in init_views] + [(v, False) for v in app_views]:
            current = view.current
            if current is not None and current.running:
                self._waiting.pop(view.name, None)
                view.ready = self.probes.ready(current.id)
                view.started = self.probes.started(current.id)
                continue
            view.waiting = self._waiting.get(view.name)
            if view.waiting is not None and self._terminal and current is not None:
                view.waiting = None  # nothing is restarted any more
            if view.waiting is None and current is None and (init or not is_initialized):
                view.waiting = ("PodInitializing", "")
            if current is None and view.name in self._attempt_floor:
                view.restart_count = self._attempt_floor[view.name]
        return init_views, app_views

    async def _report(self, observed: dict[str, list[Attempt]]) -> None:
        pod = self.pod
        init_views, app_views = self._views(observed)
        previous = to_wire(pod.status) if pod.status is not None else {}
        phase = compute_phase(
            pod.spec.restart_policy or "Always", init_views, app_views, previous.get("phase")
        )
        reason = message = None
        if self._deadline_exceeded and phase not in ("Succeeded", "Failed"):
            phase, reason, message = "Failed", "DeadlineExceeded", _DEADLINE_MESSAGE
        elif self._deadline_exceeded:
            reason, message = previous.get("reason"), previous.get("message")
        if phase in ("Succeeded", "Failed") and not self._terminal:
            self._terminal = True
            await self.probes.stop()
        now = format_time()
        conditions = compute_conditions(
            previous.get("conditions"), phase, init_views, app_views, now
        )
        status = build_status(
            previous,
            phase=phase,
            conditions=conditions,
            host_ip=self.ctx.options.address,
            pod_ip=self._sandbox.ip if self._sandbox else previous.get("podIP"),
            start_time=self._start_time or now,
            init_statuses=[container_status(v) for v in init_views],
            statuses=[container_status(v) for v in app_views],
            published_ports=self._published_ports(),
            reason=reason or (previous.get("reason") if phase in ("Succeeded", "Failed") else None),
            message=message
            or (previous.get("message") if phase in ("Succeeded", "Failed") else None),
        )
        normalized = to_wire(PodStatus.model_validate(status))
        if normalized == previous:
            return
        self.pod = await self.ctx.api.write_pod_status(pod, normalized)

    def _published_ports(self) -> list[dict[str, Any]]:
        if self._sandbox is None:
            return []
        published = []
        for mapping in self._sandbox.ports:
            for container in self._all_containers():
                declared = next(
                    (
                        p
                        for p in container.ports or []
                        if p.container_port == mapping.container_port
                        and (p.protocol or "TCP").lower() == mapping.protocol
                    ),
                    None,
                )
                if declared is None:
                    continue
                entry: dict[str, Any] = {
                    "containerName": container.name,
                    "containerPort": mapping.container_port,
                    "protocol": mapping.protocol.upper(),
                    "hostIP": mapping.host_ip or self.ctx.options.address,
                    "hostPort": mapping.host_port,
                }
                if declared.name:
                    entry["name"] = declared.name
                published.append(entry)
                break
        return published

    # ---- events ------------------------------------------------------------------------------

    def _event(
        self, event_type: str, reason: str, message: str, container: Container | None = None
    ) -> None:
        field_path = None
        if container is not None:
            group = (
                "initContainers"
                if any(c.name == container.name for c in self.pod.spec.init_containers or [])
                else "containers"
            )
            field_path = f"spec.{group}{{{container.name}}}"
        self.ctx.api.record_event(self.pod, event_type, reason, message, field_path)

    def _probe_failed(self, container: Container, kind: ProbeKind, message: str) -> None:
        self._event("Warning", "Unhealthy", f"{kind.value} probe failed: {message}", container)


def _rv(pod: Pod) -> int:
    try:
        return int(pod.metadata.resource_version or 0)
    except ValueError:
        return 0


def _last(attempts: list[Attempt] | None) -> Attempt | None:
    return attempts[-1] if attempts else None


def _grace_of(pod: Pod) -> int:
    if pod.metadata.deletion_grace_period_seconds is not None:
        return max(0, pod.metadata.deletion_grace_period_seconds)
    grace = pod.spec.termination_grace_period_seconds
    return 30 if grace is None else max(0, grace)


def _should_restart(policy: str, attempt: Attempt) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return not attempt.succeeded
    return False


def _wants_non_root(pod: Pod, container: Container) -> bool:
    context = container.security_context
    if context is not None and context.run_as_non_root is not None:
        return context.run_as_non_root
    pod_context = pod.spec.security_context
    return bool(pod_context and pod_context.run_as_non_root)
