"""The agent's Node object and Lease.

Registration creates (or takes over) the Node named after the agent: capacity and
allocatable cpu / memory / pods read from the host (allocatable is capacity minus
the agent's reservation), the ``kubernetes.io/hostname|os|arch`` labels plus the
user's, addresses, nodeInfo, local images (for image locality), the agent's own
port, and a Ready condition. Afterwards the status is refreshed every
``status_update_interval`` seconds (each refresh is a Ready heartbeat) and the Lease
``kube-node-lease/<node>`` is renewed every ``lease_renew_interval`` seconds; the
node lifecycle controller marks the node NotReady when renewals stop.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumo import __version__
from kumo.client import ApiException, AsyncClient
from kumo.model.coordination import Lease
from kumo.model.core import Node
from kumo.model.registry import for_model
from kumo.model.validation import format_cpu
from kumo.node.api import format_time
from kumo.node.config import AgentOptions
from kumo.node.runtime import ContainerRuntime, ContainerRuntimeError, RuntimeInfo

__all__ = [
    "LEASE_NAMESPACE",
    "HostFacts",
    "NodeStatusReporter",
    "host_facts",
    "node_capacity",
    "read_meminfo_bytes",
]

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
NODE = for_model(Node)
LEASE = for_model(Lease)
_MAX_IMAGES = 50
_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def read_meminfo_bytes(path: Path = Path("/proc/meminfo")) -> int:
    """MemTotal of the host in bytes."""
    for line in path.read_text().splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            value = int(parts[1])
            unit = parts[2].lower() if len(parts) > 2 else "b"
            return value * 1024 if unit == "kb" else value
    raise ValueError(f"no MemTotal in {path}")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class HostFacts:
    cpu_millis: int
    memory_bytes: int
    hostname: str
    kernel_version: str
    os_image: str
    architecture: str
    operating_system: str
    machine_id: str
    boot_id: str


def host_facts() -> HostFacts:
    machine = platform.machine()
    return HostFacts(
        cpu_millis=_cpu_count() * 1000,
        memory_bytes=read_meminfo_bytes(),
        hostname=socket.gethostname(),
        kernel_version=platform.release(),
        os_image=_os_image(),
        architecture=_ARCH.get(machine, machine),
        operating_system=platform.system().lower(),
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
    )


def node_capacity(facts: HostFacts, options: AgentOptions) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable): allocatable is capacity minus the reservation, never
    below zero."""
    capacity = {
        "cpu": format_cpu(facts.cpu_millis),
        "memory": f"{facts.memory_bytes // 1024}Ki",
        "pods": str(options.max_pods),
    }
    cpu = max(0, facts.cpu_millis - options.reserved_cpu_millis)
    memory = max(0, facts.memory_bytes - options.reserved_memory_bytes)
    allocatable = {
        "cpu": format_cpu(cpu),
        "memory": f"{memory // 1024}Ki",
        "pods": str(options.max_pods),
    }
    return capacity, allocatable


def _micro_time(when: datetime.datetime | None = None) -> str:
    """Kubernetes' MicroTime."""
    moment = (when or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeStatusReporter:
    def __init__(
        self,
        client: AsyncClient,
        runtime: ContainerRuntime,
        options: AgentOptions,
        facts: HostFacts,
        *,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.options = options
        self.facts = facts
        self._now = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._runtime_info: RuntimeInfo | None = None
        self._ready_since: str | None = None
        self._node_uid: str | None = None
        self._lease: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.options.node_name

    def labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": self.facts.operating_system,
            "kubernetes.io/arch": self.facts.architecture,
            **self.options.node_labels,
        }

    async def _images(self) -> list[dict[str, Any]]:
        try:
            images = await self.runtime.list_images()
        except ContainerRuntimeError as err:
            log.warning("cannot list images: %s", err.reason)
            return []
        images.sort(key=lambda image: image.size_bytes, reverse=True)
        out = []
        for image in images[:_MAX_IMAGES]:
            names = [*image.repo_tags, f"sha256:{image.id}"]
            out.append({"names": names, "sizeBytes": image.size_bytes})
        return out

    async def status(self, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Node status the agent reports now (a fresh Ready heartbeat)."""
        if self._runtime_info is None:
            self._runtime_info = await self.runtime.info()
        info = self._runtime_info
        capacity, allocatable = node_capacity(self.facts, self.options)
        now = format_time(self._now())
        previous_ready = next(
            (
                c
                for c in (previous or {}).get("conditions") or []
                if isinstance(c, dict) and c.get("type") == "Ready"
            ),
            None,
        )
        if self._ready_since is None:
            if previous_ready is not None and previous_ready.get("status") == "True":
                self._ready_since = str(previous_ready.get("lastTransitionTime") or now)
            else:
                self._ready_since = now

        def condition(
            kind: str, status: str, reason: str, message: str, since: str
        ) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": since,
            }

        pressure_since = self._ready_since
        return {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    pressure_since,
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    pressure_since,
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    pressure_since,
                ),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status",
                    self._ready_since,
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.options.address},
                {"type": "Hostname", "address": self.facts.hostname},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.options.kubelet_port}},
            "nodeInfo": {
                "machineID": self.facts.machine_id,
                "systemUUID": self.facts.machine_id,
                "bootID": self.facts.boot_id,
                "kernelVersion": self.facts.kernel_version,
                "osImage": self.facts.os_image,
                "containerRuntimeVersion": info.runtime_version,
                "kubeletVersion": f"v{__version__}",
                "kubeProxyVersion": "",
                "operatingSystem": self.facts.operating_system,
                "architecture": self.facts.architecture,
            },
            "images": await self._images(),
        }

    # ---- registration and heartbeats ---------------------------------------------------

    async def register(self) -> dict[str, Any]:
        """Create the Node, or take over an existing one of the same name (labels merged,
        status refreshed). Returns the stored Node."""
        try:
            existing: dict[str, Any] | None = await self.client.get_raw(NODE, self.name)
        except ApiException as err:
            if not err.not_found:
                raise
            existing = None
        status = await self.status((existing or {}).get("status"))
        if existing is None:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels()},
                "spec": {},
                "status": status,
            }
            try:
                created = await self.client.create_raw(body)
            except ApiException as err:
                if not err.already_exists:
                    raise
                return await self.register()
            self._node_uid = str(created.get("metadata", {}).get("uid") or "")
            if created.get("status", {}).get("conditions"):
                return created
            return await self.update_status()
        labels = {**(existing.get("metadata", {}).get("labels") or {}), **self.labels()}
        await self.client.patch_raw(NODE, self.name, {"metadata": {"labels": labels}})
        self._node_uid = str(existing.get("metadata", {}).get("uid") or "")
        return await self.update_status()

    async def update_status(self) -> dict[str, Any]:
        """Write the current status (a Ready heartbeat). Re-registers a deleted Node."""
        status = await self.status()
        try:
            return await self.client.patch_raw(NODE, self.name, {"status": status}, sub="status")
        except ApiException as err:
            if err.not_found:
                log.warning("node %s was deleted; registering again", self.name)
                self._ready_since = None
                return await self.register()
            raise

    async def renew_lease(self) -> dict[str, Any]:
        """Create or renew ``kube-node-lease/<node>`` (holder: this node)."""
        now = _micro_time(self._now())
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": self.options.lease_duration_seconds,
            "renewTime": now,
        }
        if self._lease is None:
            try:
                self._lease = await self.client.get_raw(LEASE, self.name, LEASE_NAMESPACE)
            except ApiException as err:
                if not err.not_found:
                    raise
                body: dict[str, Any] = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE},
                    "spec": {**spec, "acquireTime": now},
                }
                if self._node_uid:
                    body["metadata"]["ownerReferences"] = [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": self.name,
                            "uid": self._node_uid,
                        }
                    ]
                try:
                    self._lease = await self.client.create_raw(body, LEASE_NAMESPACE)
                    return self._lease
                except ApiException as create_err:
                    if not create_err.already_exists:
                        raise
                    self._lease = await self.client.get_raw(LEASE, self.name, LEASE_NAMESPACE)
        lease = dict(self._lease)
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        try:
            self._lease = await self.client.replace_raw(lease, LEASE_NAMESPACE)
        except ApiException as err:
            self._lease = None
            if err.conflict or err.not_found:
                return await self.renew_lease()
            raise
        return self._lease

    async def run_status_loop(self, stop: asyncio.Event) -> None:
        await self._every(
            self.options.status_update_interval, self.update_status, stop, "node status"
        )

    async def run_lease_loop(self, stop: asyncio.Event) -> None:
        await self._every(self.options.lease_renew_interval, self.renew_lease, stop, "lease")

    @staticmethod
    async def _every(
        interval: float,
        action: Callable[[], Any],
        stop: asyncio.Event,
        what: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("%s update failed: %s", what, err)
            remaining = interval - (loop.time() - started)
            if remaining > 0:
                try:
                    async with asyncio.timeout(remaining):
                        await stop.wait()
                except TimeoutError:
                    pass
