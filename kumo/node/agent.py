"""The node agent (the kubelet role).

``Agent.run(stop)``:

1. connects to the container runtime (starting its own ``podman system service``
   with kumo's containers.conf unless a socket URL is given);
2. registers the Node and creates / renews its Lease (then keeps both fresh);
3. lists and watches the pods bound to the node and runs one ``PodWorker`` per pod;
   container events from the runtime wake the worker of the pod concerned;
4. housekeeping: sandboxes, containers and pod directories that no pod owns are
   removed once they have been unowned for ``orphan_grace_period`` seconds.

Stopping the agent leaves containers running; a new agent adopts them (labels carry
the pod uid, container name and attempt, so nothing is started twice and restart
counts stay as they were).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from kumo.client import AsyncClient
from kumo.model.core import Pod
from kumo.node.api import ClientNodeApi, EventRecorder
from kumo.node.backoff import Backoff
from kumo.node.config import AgentOptions
from kumo.node.lookup import ContainerLookupError, find_container
from kumo.node.node_status import NodeStatusReporter, host_facts, node_capacity
from kumo.node.pod_source import PodSource
from kumo.node.pod_worker import PodWorker, WorkerContext
from kumo.node.ports import HostPortAllocator
from kumo.node.runtime import (
    LABEL_POD_UID,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerSummary,
)
from kumo.node.serviceproxy import ServiceProxy
from kumo.node.stats import StatsCollector
from kumo.node.volumes import VolumeManager

__all__ = ["Agent", "AgentService", "ContainerLookupError", "run_agent"]

log = logging.getLogger(__name__)

#: Something that runs alongside the agent until ``stop`` is set (e.g. its HTTPS server).
AgentService = Callable[["Agent", asyncio.Event], Awaitable[None]]

_REMEMBER_FINISHED = 4096


class Agent:
    """One node's agent. ``runtime`` defaults to a ``PodmanRuntime`` built from the
    options (its own ``podman system service`` unless ``podman_url`` is set). Callers may
    rely on ``find_container`` (logs / exec), ``pod`` and ``registered``."""

    def __init__(
        self,
        client: AsyncClient,
        options: AgentOptions,
        *,
        runtime: ContainerRuntime | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self._owns_runtime = runtime is None
        if runtime is None:
            from kumo.node.runtime.podman import PodmanRuntime

            runtime = PodmanRuntime(
                options.node_name,
                socket_url=options.podman_url,
                state_dir=None if options.podman_url else options.podman_state_dir,
                storage_root=options.podman_root,
                run_root=options.podman_runroot,
                tmp_dir=options.podman_tmpdir,
                image_store=options.podman_image_store,
                containers_conf=options.containers_conf,
            )
        self.runtime: ContainerRuntime = runtime
        self.recorder = EventRecorder(client, options.node_name)
        self.api = ClientNodeApi(client, self.recorder)
        self.facts = host_facts()
        # resourceFieldRef without a limit reports the node's allocatable amount.
        allocatable_cpu = max(0, self.facts.cpu_millis - options.reserved_cpu_millis)
        allocatable_memory = max(0, self.facts.memory_bytes - options.reserved_memory_bytes)
        self.ports = HostPortAllocator(*options.port_range)
        self.volumes = VolumeManager(options.pods_dir, runtime, self.api)
        self.volumes.node_cpu_millis = allocatable_cpu
        self.volumes.node_memory_bytes = allocatable_memory
        self.context = WorkerContext(
            runtime=runtime,
            api=self.api,
            options=options,
            volumes=self.volumes,
            ports=self.ports,
            crash_backoff=Backoff(options.restart_backoff_initial, options.restart_backoff_max),
            image_backoff=Backoff(options.image_backoff_initial, options.image_backoff_max),
            node_cpu_millis=allocatable_cpu,
            node_memory_bytes=allocatable_memory,
            on_finished=self._worker_finished,
        )
        self.reporter = NodeStatusReporter(client, runtime, options, self.facts)
        self.source = PodSource(
            client, options.node_name, on_sync=self._on_sync, on_event=self._on_event
        )
        self.workers: dict[str, PodWorker] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        # Cluster IPs and cluster DNS on this machine (one agent per machine runs it).
        self.service_proxy: ServiceProxy | None = None
        if options.service_proxy:
            self.service_proxy = ServiceProxy(
                client,
                service_cidr=options.service_cidr,
                cluster_dns=options.cluster_dns,
                cluster_domain=options.cluster_domain,
            )
        # Usage of the node and its pods, served at /stats/summary (metrics.k8s.io reads it).
        self.stats = StatsCollector(runtime, options.node_name, interval=options.stats_interval)
        self._orphans: dict[str, float] = {}
        self.registered = asyncio.Event()

    @property
    def node_name(self) -> str:
        return self.options.node_name

    def capacity(self) -> tuple[dict[str, str], dict[str, str]]:
        return node_capacity(self.facts, self.options)

    # ---- pods ---------------------------------------------------------------------------

    def pod(self, namespace: str, name: str) -> Pod | None:
        """The newest pod of that name the agent is working on."""
        for worker in self.workers.values():
            meta = worker.pod.metadata
            if meta.namespace == namespace and meta.name == name and not worker.deleted:
                return worker.pod
        return None

    async def find_container(
        self,
        namespace: str,
        pod_name: str,
        container: str | None = None,
        *,
        previous: bool = False,
        attempt: int | None = None,
    ) -> ContainerSummary:
        """The runtime container behind ``namespace/pod_name``'s ``container`` (its
        latest attempt; the one before with ``previous``; or exactly ``attempt``). With
        no container name the pod's default container is used (the
        ``kubectl.kubernetes.io/default-container`` annotation, else the first one).
        Raises ``ContainerLookupError``."""
        pod = self.pod(namespace, pod_name)
        default = None
        uid = None
        if pod is not None:
            uid = pod.metadata.uid
            annotations = pod.metadata.annotations or {}
            default = annotations.get("kubectl.kubernetes.io/default-container") or (
                pod.spec.containers[0].name if pod.spec.containers else None
            )
        return await find_container(
            self.runtime,
            namespace,
            pod_name,
            container,
            previous=previous,
            attempt=attempt,
            pod_uid=uid,
            default_container=default,
        )

    def _upsert(self, pod: Pod) -> None:
        uid = pod.metadata.uid or ""
        if not uid or uid in self._finished:
            return
        worker = self.workers.get(uid)
        if worker is None:
            worker = PodWorker(self.context, pod)
            self.workers[uid] = worker
            self._orphans.pop(uid, None)
            worker.start()
        else:
            worker.update(pod)

    def _on_sync(self, pods: list[Pod]) -> None:
        present = set()
        for pod in pods:
            present.add(pod.metadata.uid or "")
            self._upsert(pod)
        for uid, worker in list(self.workers.items()):
            if uid not in present:
                worker.mark_deleted()

    def _on_event(self, kind: str, pod: Pod) -> None:
        if kind == "DELETED":
            worker = self.workers.get(pod.metadata.uid or "")
            if worker is not None:
                worker.update(pod)
                worker.mark_deleted()
            return
        if pod.spec.node_name != self.node_name:
            return
        self._upsert(pod)

    def _worker_finished(self, uid: str) -> None:
        self.workers.pop(uid, None)
        self._finished[uid] = None
        while len(self._finished) > _REMEMBER_FINISHED:
            self._finished.popitem(last=False)

    # ---- background loops ----------------------------------------------------------------

    async def _runtime_events(self, stop: asyncio.Event) -> None:
        since = datetime.datetime.now(datetime.UTC)
        while not stop.is_set():
            try:
                async for event in self.runtime.events(since=since):
                    since = event.time
                    worker = self.workers.get(event.labels.get(LABEL_POD_UID, ""))
                    if worker is not None and event.action in (
                        "died",
                        "oom",
                        "stop",
                        "remove",
                        "kill",
                    ):
                        worker.wake()
            except asyncio.CancelledError:
                raise
            except ContainerRuntimeError as err:
                log.warning("runtime events interrupted: %s", err.reason)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()

    async def housekeeping(self) -> None:
        """One pass of orphan removal (only once the pod list is known)."""
        if not self.source.synced.is_set():
            return
        now = time.monotonic()
        grace = self.options.orphan_grace_period
        owned = set(self.workers)
        sandboxes = await self.runtime.list_sandboxes()
        containers = await self.runtime.list_containers()
        seen: set[str] = set()

        def expired(uid: str) -> bool:
            seen.add(uid)
            first = self._orphans.setdefault(uid, now)
            return now - first >= grace

        for sandbox in sandboxes:
            uid = sandbox.pod_uid
            if uid in owned or not expired(uid):
                continue
            log.info("removing sandbox %s: no pod owns it", sandbox.name)
            await self.runtime.remove_sandbox(sandbox.id)
        for container in containers:
            uid = container.pod_uid
            if uid in owned or not expired(uid):
                continue
            log.info("removing container %s: no pod owns it", container.name)
            await self.runtime.remove_container(container.id, force=True)
        for uid in self.volumes.known_pod_uids():
            if uid in owned or not expired(uid):
                continue
            await self.volumes.cleanup(uid)
            self.ports.release(uid)
        for uid in [u for u in self._orphans if u not in seen or u in owned]:
            del self._orphans[uid]

    async def _housekeeping_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.housekeeping()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("housekeeping failed: %s", err)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.housekeeping_interval):
                    await stop.wait()

    async def _register(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self.reporter.register()
                await self.reporter.renew_lease()
                self.registered.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("registering node %s failed: %s", self.node_name, err)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, 10.0)

    async def _service(self, service: AgentService, stop: asyncio.Event) -> None:
        await service(self, stop)

    # ---- run --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, services: Sequence[AgentService] = ()) -> None:
        """Run until ``stop`` is set. Containers keep running afterwards."""
        started_runtime = False
        tasks: list[asyncio.Task[None]] = []
        try:
            if self._owns_runtime:
                start = getattr(self.runtime, "start", None)
                if start is not None:
                    await start()
                    started_runtime = True
            self.options.pods_dir.mkdir(parents=True, exist_ok=True)
            self.recorder.start()
            await self._register(stop)
            if stop.is_set():
                return
            log.info("node %s registered; watching its pods", self.node_name)
            loops = {
                "node-status": self.reporter.run_status_loop(stop),
                "lease": self.reporter.run_lease_loop(stop),
                "pods": self.source.run(stop),
                "runtime-events": self._runtime_events(stop),
                "housekeeping": self._housekeeping_loop(stop),
                "stats": self.stats.run(stop),
            }
            if self.service_proxy is not None:
                loops["service-proxy"] = self.service_proxy.run(stop)
            for name, coroutine in loops.items():
                tasks.append(asyncio.create_task(coroutine, name=f"agent-{name}"))
            for service in services:
                tasks.append(
                    asyncio.create_task(self._service(service, stop), name="agent-service")
                )
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            stopper.cancel()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await asyncio.gather(*(w.stop() for w in list(self.workers.values())))
            await self.recorder.stop()
            if started_runtime:
                close = getattr(self.runtime, "close", None)
                if close is not None:
                    await close()


async def run_agent(
    client: AsyncClient,
    stop_event: asyncio.Event,
    *,
    runtime: ContainerRuntime | None = None,
    services: Sequence[AgentService] = (),
    **options: object,
) -> None:
    """Run a node agent until ``stop_event`` is set.

    ``options`` are ``AgentOptions`` fields (``node_name`` defaults to the host name,
    ``address`` to 127.0.0.1, ``data_dir`` to ``~/.kumo/agent``; see
    ``kumo.node.config``). Without ``runtime`` (and without ``podman_url``) the agent
    starts its own Podman service with kumo's containers.conf. ``services`` run next to
    the agent (each gets the agent and the stop event)."""
    agent = Agent(client, AgentOptions.build(**options), runtime=runtime)
    await agent.run(stop_event, services)
